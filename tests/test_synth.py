"""``iron synth``: Mitsuba's captures checked against our cameras and independent physics.

Budget: about 30-40 s (one 64x64 scene of 8 + 4 views rendered once at module scope), plus a
few seconds for two tiny captures with a room and a support plane.
Mitsuba is the renderer under test only as far as our *use* of it goes: silhouettes are checked
against the GT mesh projected with our ``Cameras.project``, radiance against the co-located
BRDF evaluated here from the GT maps (after checking that formula against Mitsuba's own
``BSDF.eval``), the environment-map layout against Mitsuba's ``envmap.eval``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ironrender.data.check import check_dataset
from ironrender.data.dataset import load_split
from ironrender.data.images import read_image
from ironrender.data.synth import SynthConfig, sample_poses, synthesize
from ironrender.errors import IronError

RESOLUTION = 64
N_TRAIN, N_TEST = 8, 4
IOU_MIN = 0.95


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    config = SynthConfig(
        views=N_TRAIN, test_views=N_TEST, resolution=RESOLUTION, spp=16, relight_spp=16
    )
    return synthesize(config, tmp_path_factory.mktemp("synth") / "spot", progress=False)


@pytest.fixture(scope="module")
def light(scene: Path) -> dict:
    return json.loads((scene / "gt" / "light.json").read_text())


def _read_obj(path: Path) -> dict[str, np.ndarray]:
    """Our own minimal OBJ parser (v, vt, vn, triangles with one index per corner)."""
    data: dict[str, list] = {"v": [], "vt": [], "vn": [], "f": []}
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts and parts[0] in ("v", "vt", "vn"):
            data[parts[0]].append([float(x) for x in parts[1:]])
        elif parts and parts[0] == "f":
            corners = [p.split("/") for p in parts[1:]]
            assert all(len(set(c)) == 1 for c in corners), "expected shared v/vt/vn indices"
            data["f"].append([int(c[0]) - 1 for c in corners])
    return {k: np.asarray(v) for k, v in data.items()}


def _mask(scene: Path, split: str, name: str) -> np.ndarray:
    return np.asarray(Image.open(scene / "gt" / "masks" / split / name), dtype=np.float64) / 255


def _rasterize(uv: np.ndarray, faces: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixels whose centre (i + 0.5, j + 0.5) lies inside any projected triangle."""
    tri = uv[faces]  # (F, 3, 2)
    lo = np.floor(tri.min(axis=1) - 0.5).astype(int) + 1  # first pixel index with centre >= min
    size = int(np.ceil(tri.max(axis=1) - tri.min(axis=1)).max()) + 2
    offsets = np.stack(np.meshgrid(np.arange(size), np.arange(size), indexing="xy"), -1)
    pix = lo[:, None, :] + offsets.reshape(-1, 2)[None]  # (F, K, 2) integer pixel indices
    centre = pix + 0.5
    a, b, c = (tri[:, k][:, None, :] for k in range(3))

    def edge(p, q, x):
        return (q[..., 0] - p[..., 0]) * (x[..., 1] - p[..., 1]) - (q[..., 1] - p[..., 1]) * (
            x[..., 0] - p[..., 0]
        )

    w0, w1, w2 = edge(b, c, centre), edge(c, a, centre), edge(a, b, centre)
    inside = ((w0 >= 0) & (w1 >= 0) & (w2 >= 0)) | ((w0 <= 0) & (w1 <= 0) & (w2 <= 0))
    inside &= (pix[..., 0] >= 0) & (pix[..., 0] < width) & (pix[..., 1] >= 0)
    inside &= pix[..., 1] < height
    mask = np.zeros((height, width), dtype=bool)
    mask[pix[inside][:, 1], pix[inside][:, 0]] = True
    return mask


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


# ------------------------------------------------------------------------------ dataset
def test_dataset_passes_check_and_loads(scene: Path) -> None:
    problems = check_dataset(scene)
    assert not [p for p in problems if p.fatal], problems
    train, test = load_split(scene, "train"), load_split(scene, "test")
    assert train.images.shape == (N_TRAIN, RESOLUTION, RESOLUTION, 3)
    assert test.images.shape == (N_TEST, RESOLUTION, RESOLUTION, 3)
    assert load_split(scene, "train", linear=True).hdr


def _check_masks_match_projected_mesh(scene: Path, resolution: int) -> None:
    """Mitsuba's coverage >= 1/2 equals the pixels whose centre our projection covers."""
    mesh = _read_obj(scene / "gt" / "mesh.obj")
    vertices = torch.from_numpy(mesh["v"]).float()
    totals = np.zeros((5, 2))  # correct and four half-pixel shifts: (intersection, union)
    shifts = [(0, 0), (0.5, 0), (-0.5, 0), (0, 0.5), (0, -0.5)]
    for split in ("train", "test"):
        data = load_split(scene, split)
        for i, name in enumerate(data.names):
            uv, z = data.cameras.project(vertices, i)
            assert (z > 0).all()
            rendered = _mask(scene, split, name) >= 0.5
            for k, shift in enumerate(shifts):
                ours = _rasterize(uv.double().numpy() + shift, mesh["f"], resolution, resolution)
                totals[k] += [(ours & rendered).sum(), (ours | rendered).sum()]
                if k == 0:
                    assert _iou(ours, rendered) > IOU_MIN, f"{split}/{name}"
    iou = totals[:, 0] / totals[:, 1]
    assert (iou[0] > iou[1:]).all(), iou  # half a pixel off in any direction is worse


def test_silhouette_matches_gt_mesh_projected_by_our_cameras(scene: Path) -> None:
    _check_masks_match_projected_mesh(scene, RESOLUTION)


def test_images_lit_centred_unclipped_black_background(scene: Path) -> None:
    for split in ("train", "test"):
        data = load_split(scene, split, linear=True)
        for i, name in enumerate(data.names):
            image = data.images[i].numpy()
            coverage = _mask(scene, split, name)
            obj = coverage >= 0.5
            assert 0.05 < obj.mean() < 0.7
            assert (image[coverage == 0] == 0).all()  # nothing but the object is lit
            assert (image[coverage == 1].max(-1) > 0).mean() > 0.99
            encoded = np.clip(image[obj], 0, 1) ** (1 / 2.2)
            assert (encoded.max(-1) >= 1).mean() < 0.01  # few saturated pixels
            assert 0.25 < np.median(encoded.max(-1)) < 0.9  # well exposed
            ys, xs = np.nonzero(obj)
            centre = (RESOLUTION - 1) / 2
            assert abs(xs.mean() - centre) < 0.15 * RESOLUTION
            assert abs(ys.mean() - centre) < 0.15 * RESOLUTION
            # no clipping at the border: the object never touches the image edge
            assert not (obj[0].any() or obj[-1].any() or obj[:, 0].any() or obj[:, -1].any())


def test_exr_twin_equals_png_within_quantization(scene: Path) -> None:
    folder = scene / "train" / "image"
    for png in sorted(folder.glob("*.png")):
        encoded = np.asarray(Image.open(png), dtype=np.float64) / 255
        linear = read_image(png.with_suffix(".exr")).astype(np.float64)
        expected = np.clip(linear, 0, 1) ** (1 / 2.2)
        assert np.abs(encoded - expected).max() <= 0.5 / 255 + 1e-6


def test_cameras_disjoint_and_seeded(scene: Path, light: dict) -> None:
    train, test = load_split(scene, "train").cameras, load_split(scene, "test").cameras
    distance = torch.cdist(train.centers.double(), test.centers.double())
    assert distance.min() > 0.1
    radius = torch.cat([train.centers, test.centers]).norm(dim=-1)
    assert torch.allclose(radius, torch.full_like(radius, light["config"]["camera_distance"]))
    a_train, a_test = sample_poses(8, 4, 3.0, seed=1)
    b_train, b_test = sample_poses(8, 4, 3.0, seed=1)
    c_train, _ = sample_poses(8, 4, 3.0, seed=2)
    assert torch.equal(a_train, b_train) and torch.equal(a_test, b_test)
    assert (a_train - c_train).abs().max() > 0.1


# ------------------------------------------------------------------------------ physics
def _colocated_principled(c, base, perceptual, f0):
    """Mitsuba's principled BSDF times cos at a co-located light and camera (c = n.v).

    GGX with alpha = perceptual^2, Smith G = G1^2, Fresnel = F0 (half vector = view); Disney
    diffuse with retro-reflection. Written from the Disney/GGX formulas, not from our code.
    """
    alpha2 = (perceptual**2) ** 2
    c = np.clip(c, 1e-6, 1.0)
    d = alpha2 / (math.pi * (c * c * (alpha2 - 1) + 1) ** 2)
    g1 = 2 / (1 + np.sqrt(1 + alpha2 * (1 - c * c) / (c * c)))
    specular = f0 * d * g1**2 / (4 * c)
    fresnel = (1 - c) ** 5
    retro = 2 * perceptual
    disney = (1 - fresnel / 2) ** 2 + retro * (2 * fresnel + fresnel**2 * (retro - 1))
    diffuse = base / math.pi * c[..., None] * disney[..., None]
    return diffuse + specular[..., None]


def test_colocated_formula_matches_mitsuba_principled() -> None:
    from ironrender.data.mitsuba_backend import select_variant

    select_variant()
    import mitsuba as mi

    base = np.array([0.6, 0.3, 0.1])
    for perceptual, specular in [(0.3, 0.5), (0.7, 0.5), (0.5, 1.0)]:
        bsdf = mi.load_dict(
            {
                "type": "principled",
                "base_color": {"type": "rgb", "value": base.tolist()},
                "roughness": perceptual,
                "specular": specular,
            }
        )
        for c in (1.0, 0.8, 0.5, 0.2):
            w = mi.Vector3f(math.sqrt(1 - c * c), 0.0, c)
            si = mi.SurfaceInteraction3f()
            si.wi = w
            si.sh_frame = mi.Frame3f(mi.Vector3f(0.0, 0.0, 1.0))
            value = np.array(bsdf.eval(mi.BSDFContext(), si, w)).reshape(-1)
            expected = _colocated_principled(np.array(c), base, perceptual, 0.08 * specular)
            np.testing.assert_allclose(value, expected.reshape(-1), rtol=1e-4)


def _bilinear(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Mitsuba's bitmap lookup: texel centres at (i + 0.5) / W, v flipped (OBJ), repeat."""
    height, width = texture.shape[:2]
    x = uv[:, 0] * width - 0.5
    y = (1 - uv[:, 1]) * height - 0.5
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    wx, wy = (x - x0)[:, None], (y - y0)[:, None]
    i0, i1, j0, j1 = x0 % width, (x0 + 1) % width, y0 % height, (y0 + 1) % height
    top = (1 - wx) * texture[j0, i0] + wx * texture[j0, i1]
    bottom = (1 - wx) * texture[j1, i0] + wx * texture[j1, i1]
    return (1 - wy) * top + wy * bottom


def _intersect(origins: np.ndarray, directions: np.ndarray, mesh: dict, chunk: int = 64):
    """Nearest ray-triangle hits (Moller-Trumbore): triangle index and barycentrics (N, 3)."""
    a, b, c = (mesh["v"][mesh["f"][:, k]] for k in range(3))
    e1, e2 = b - a, c - a
    triangles, barycentrics = [], []
    for start in range(0, len(origins), chunk):
        o, d = origins[start : start + chunk, None], directions[start : start + chunk, None]
        p = np.cross(d, e2)
        det = (e1 * p).sum(-1)
        inv = 1.0 / np.where(np.abs(det) > 1e-12, det, np.nan)
        s = o - a
        u = (s * p).sum(-1) * inv
        q = np.cross(s, e1)
        v = (d * q).sum(-1) * inv
        t = (e2 * q).sum(-1) * inv
        hit = (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 1e-6)
        t = np.where(hit, t, np.inf)
        index = t.argmin(-1)
        rows = np.arange(len(index))
        assert np.isfinite(t[rows, index]).all(), "a covered pixel's ray missed the mesh"
        triangles.append(index)
        bu, bv = u[rows, index], v[rows, index]
        barycentrics.append(np.stack([1 - bu - bv, bu, bv], -1))
    return np.concatenate(triangles), np.concatenate(barycentrics)


def test_radiance_equals_light_over_d2_times_brdf_from_gt_maps(scene: Path, light: dict) -> None:
    """EXR pixel = I / d^2 * f_r * cos from gt maps at the ray hit (smooth interior pixels)."""
    base = read_image(scene / "gt" / "diffuse_albedo.exr")
    alpha = read_image(scene / "gt" / "roughness.exr")[..., 0]
    f0 = read_image(scene / "gt" / "specular_albedo.exr")[..., 0]
    errors = []
    for i, cameras, hits, normal, uv, measured in _surface_samples(scene, "test"):
        to_camera = cameras.centers[i].double().numpy() - hits
        d2 = (to_camera**2).sum(-1)
        cos = np.einsum("nd,nd->n", normal, to_camera) / np.sqrt(d2)
        keep = cos > 0.3
        brdf_cos = _colocated_principled(
            cos[keep],
            _bilinear(base, uv[keep]),
            np.sqrt(_bilinear(alpha[..., None], uv[keep])[:, 0]),
            _bilinear(f0[..., None], uv[keep])[:, 0],
        )
        predicted = light["intensity"] / d2[keep, None] * brdf_cos
        errors.append(np.abs(measured[keep] - predicted) / predicted)
    errors = np.concatenate(errors)
    # A wrong exposure, UV flip, alpha = roughness (not squared), F0 or Lambert diffuse each
    # moves the median by several percent; the tail holds texture edges inside a footprint.
    assert np.median(errors) < 0.01, np.median(errors)
    assert np.percentile(errors, 75) < 0.03, np.percentile(errors, 75)


def test_gt_maps_and_normalization(scene: Path, light: dict) -> None:
    mesh = _read_obj(scene / "gt" / "mesh.obj")
    radius = np.linalg.norm(mesh["v"], axis=-1).max()
    assert radius == pytest.approx(light["config"]["bounding_radius"], abs=1e-3)
    source_text = Path(light["normalization"]["source_mesh"]).read_text().splitlines()
    source = np.array(
        [[float(x) for x in line.split()[1:4]] for line in source_text if line.startswith("v ")]
    )
    matrix = np.asarray(light["normalization"]["matrix"])
    moved = source @ matrix[:3, :3].T + matrix[:3, 3]
    # the GT mesh holds exactly the transformed source positions (split at UV seams)
    from scipy.spatial import cKDTree

    assert cKDTree(moved).query(mesh["v"])[0].max() < 1e-6
    assert cKDTree(mesh["v"]).query(moved)[0].max() < 1e-6
    alpha = read_image(scene / "gt" / "roughness.exr")[..., 0]
    perceptual = read_image(scene / "gt" / "perceptual_roughness.exr")[..., 0]
    np.testing.assert_allclose(alpha, perceptual**2, rtol=1e-6)
    low, high = light["config"]["roughness_range"]
    assert low**2 - 1e-6 <= alpha.min() and alpha.max() <= high**2 + 1e-6
    assert alpha.std() > 0.01  # spatially varying
    f0 = read_image(scene / "gt" / "specular_albedo.exr")
    np.testing.assert_allclose(f0, 0.04, rtol=1e-6)
    texture = read_image(Path(light["bsdf"]["texture"]))
    np.testing.assert_allclose(read_image(scene / "gt" / "diffuse_albedo.exr"), texture)
    assert light["intensity"] == pytest.approx(light["exposure"])


# ------------------------------------------------------------------------------ relighting
def test_relit_views_and_envmap_layout(scene: Path) -> None:
    from ironrender.data.envmap import sample_envmap
    from ironrender.data.mitsuba_backend import select_variant

    names = load_split(scene, "test").names
    for name in names:
        relit = read_image((scene / "gt" / "relit" / name).with_suffix(".exr"))
        coverage = _mask(scene, "test", name)
        # relit renders sample pixels differently: test the background away from the edge
        near = coverage > 0
        for axis in (0, 1):
            near = near | np.roll(near, 1, axis) | np.roll(near, -1, axis)
        assert (relit[~near] == 0).all()
        assert (relit[coverage == 1].max(-1) > 0).mean() > 0.99
        assert (relit[coverage >= 0.5].max(-1) >= 1).mean() < 0.01
    envmap = read_image(scene / "gt" / "envmap.exr")
    select_variant()
    import mitsuba as mi

    emitter = mi.load_dict({"type": "envmap", "bitmap": mi.Bitmap(envmap)})
    directions = np.random.default_rng(0).normal(size=(200, 3))
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    ours = sample_envmap(envmap, directions)
    si = mi.SurfaceInteraction3f()
    if mi.variant().startswith("scalar"):
        expected = []
        for direction in directions:
            si.wi = mi.Vector3f(*(float(-x) for x in direction))
            expected.append(np.array(emitter.eval(si)).reshape(-1))
        expected = np.stack(expected)
    else:  # JIT variants evaluate all directions in one kernel
        towards_scene = np.ascontiguousarray(-directions.T, dtype=np.float32)
        si.wi = mi.Vector3f(*towards_scene)
        expected = np.array(emitter.eval(si)).reshape(3, -1).T
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------ room, support
NUISANCE_RESOLUTION = 48
# 8-bit gamma values. At 128x128 the room's walls measure a median of about 27 and the table
# (albedo 0.35) about 80 (5th percentile 53); far below either means the feature is missing.
DARK_BUT_NOT_BLACK = (8, 60)
PLANE_MIN = 20
RING_RADIUS = 1.2  # on the plane, outside the object's bounding sphere, inside the table


def _nuisance_capture(tmp_path_factory, name: str, **options) -> Path:
    config = SynthConfig(
        views=4, test_views=2, resolution=NUISANCE_RESOLUTION, spp=16, relight=False, **options
    )
    return synthesize(config, tmp_path_factory.mktemp(name) / "capture", progress=False)


@pytest.fixture(scope="module")
def room_scene(tmp_path_factory) -> Path:
    return _nuisance_capture(tmp_path_factory, "room", room="dim")


@pytest.fixture(scope="module")
def plane_scene(tmp_path_factory) -> Path:
    return _nuisance_capture(tmp_path_factory, "plane", support_plane=True)


def _views(scene: Path):
    """(split, index, name, cameras, 8-bit gamma image's max channel) of every view."""
    for split in ("train", "test"):
        data = load_split(scene, split)
        for i, name in enumerate(data.names):
            image = np.asarray(Image.open(scene / split / "image" / name), dtype=np.float64)
            yield split, i, name, data.cameras, image.max(-1)


def _cameras(scene: Path):
    return [load_split(scene, split).cameras for split in ("train", "test")]


def _border(image: np.ndarray) -> np.ndarray:
    return np.concatenate([image[0], image[-1], image[1:-1, 0], image[1:-1, -1]])


def test_dim_room_lights_the_background_default_keeps_it_black(scene: Path, room_scene: Path):
    for *_, image in _views(scene):
        assert (_border(image) == 0).all()
    low, high = DARK_BUT_NOT_BLACK
    for split, _, name, _, image in _views(room_scene):
        border = _border(image)
        assert (border > 0).all(), f"{split}/{name}"
        assert low < np.median(border) < high, (split, name, np.median(border))
        assert border.std() > 1.0  # textured walls: the background has structure
    room = json.loads((room_scene / "gt" / "light.json").read_text())["scene"]["room"]
    cameras = np.concatenate([c.centers.double().numpy() for c in _cameras(room_scene)])
    bounds = np.asarray(room["bounds"])
    assert ((cameras > bounds[:, 0]) & (cameras < bounds[:, 1])).all()
    assert np.abs(bounds).min() > 2 * np.linalg.norm(cameras, axis=1).max()  # far: dim


def test_support_plane_under_the_object_cameras_above_it(plane_scene: Path) -> None:
    info = json.loads((plane_scene / "gt" / "light.json").read_text())["scene"]
    up = np.asarray(info["up"])
    assert up.tolist() == [0.0, 1.0, 0.0]
    height = info["support_plane"]["height"]
    lowest = (_read_obj(plane_scene / "gt" / "mesh.obj")["v"] @ up).min()
    assert height < lowest < height + 1e-3  # touching the object's lowest point
    for cameras in _cameras(plane_scene):
        centres = cameras.centers.double().numpy()
        assert (centres @ up > height).all()
        elevation = np.degrees(np.arcsin(centres @ up / np.linalg.norm(centres, axis=-1)))
        assert elevation.min() >= info["min_camera_elevation_degrees"] - 1e-6
    angles = np.linspace(0, 2 * math.pi, 64, endpoint=False)
    ring = np.stack(
        [RING_RADIUS * np.cos(angles), np.full(64, height), RING_RADIUS * np.sin(angles)]
    )
    ring = torch.from_numpy(ring.T).float()
    for split, i, name, cameras, image in _views(plane_scene):
        coverage = _mask(plane_scene, split, name)
        near_object = coverage > 0
        for axis in (0, 1):  # one pixel of margin: footprints mixing object and plane
            near_object = (
                near_object | np.roll(near_object, 1, axis) | np.roll(near_object, -1, axis)
            )
        # the plane around the object: its projected ring, where the object does not hide it
        uv, _ = cameras.project(ring, i)
        px, py = np.floor(uv.double().numpy()).astype(int).T
        inside = (px >= 0) & (px < NUISANCE_RESOLUTION) & (py >= 0) & (py < NUISANCE_RESOLUTION)
        px, py = px[inside], py[inside]
        visible = ~near_object[py, px]
        assert visible.sum() >= 8, f"{split}/{name}"
        assert (image[py[visible], px[visible]] >= PLANE_MIN).all(), f"{split}/{name}"
        # just below the object in the image: the first pixels clear of it show the table
        rows, cols = np.nonzero(coverage >= 0.5)
        column = int(np.median(cols[rows == rows.max()]))
        below = np.nonzero(~near_object[rows.max() :, column])[0][:2] + rows.max()
        assert len(below) > 0 and (image[below, column] >= PLANE_MIN).all(), f"{split}/{name}"


@pytest.mark.parametrize("capture", ["room_scene", "plane_scene"])
def test_masks_are_the_object_alone(capture: str, request) -> None:
    """The walls and the table cover every pixel the object does not; the masks must not."""
    _check_masks_match_projected_mesh(request.getfixturevalue(capture), NUISANCE_RESOLUTION)


def test_cameras_above_min_elevation_cover_the_cap() -> None:
    train, test = sample_poses(150, 50, 3.0, seed=0, min_elevation=15.0)
    centres = torch.cat([train, test]).inverse()[:, :3, 3].numpy()
    elevation = np.degrees(np.arcsin(centres[:, 1] / 3.0))
    assert elevation.min() >= 15.0 - 1e-9 and elevation.max() > 80.0
    middle = np.degrees(np.arcsin((math.sin(math.radians(15.0)) + 1) / 2))  # halves the area
    assert abs((elevation > middle).mean() - 0.5) < 0.05
    azimuth = np.arctan2(centres[:, 2], centres[:, 0])
    assert np.histogram(azimuth, bins=8, range=(-math.pi, math.pi))[0].min() > 10
    other, _ = sample_poses(150, 50, 3.0, seed=1, min_elevation=15.0)
    assert (other - train).abs().max() > 0.1


def test_nuisance_options_are_validated(tmp_path: Path) -> None:
    bad = [{"room": "bright"}, {"support_albedo": 0.9}, {"min_elevation": 90.0}]
    bad += [{"tone_curve": "log"}, {"flash_offset": (0.0, 0.0, 2.5)}, {"ambient": -0.1}]
    bad += [{"exposure_jitter": 1.0}, {"noise": -1.0}, {"jpeg_quality": 101}]
    for options in bad:
        # a choice outside its Literal is refused when the config is built, the rest by synthesize
        with pytest.raises((IronError, ValueError)):
            synthesize(SynthConfig(**options), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ backend, CLI
def test_llvm_version_parsing_and_variant() -> None:
    from ironrender.data.mitsuba_backend import (
        FALLBACK_VARIANT,
        FAST_VARIANT,
        LLVM_VERSION_PATTERN,
        horizontal_fov_degrees,
        select_variant,
    )

    names = {
        "libLLVM.so.19.1": 19,
        "libLLVM-19.so": 19,
        "libLLVM-14.0.6.so.1": 14,
        "libLLVM.so.22.1-rust-1.95.0-stable": 22,
    }
    for name, major in names.items():
        assert int(LLVM_VERSION_PATTERN.search(name).group(1)) == major
    assert LLVM_VERSION_PATTERN.search("libLLVM.so") is None
    import mitsuba as mi

    assert select_variant() in (FAST_VARIANT, FALLBACK_VARIANT)
    assert mi.variant() == select_variant()
    K = np.array([[50.0, 0, 32], [0, 50, 32], [0, 0, 1]])
    assert horizontal_fov_degrees(K, 64, 64) == pytest.approx(2 * math.degrees(math.atan(0.64)))
    with pytest.raises(ValueError):
        horizontal_fov_degrees(K + np.array([[0, 0, 3], [0, 0, 0], [0, 0, 0]]), 64, 64)


ONE_CPU_LOAD = """
import os, sys
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
import numpy as np
from ironrender.data.mitsuba_backend import select_variant
select_variant()
import mitsuba as mi
mi.Bitmap(np.full((4, 4, 1), 0.5, dtype=np.float32)).write(sys.argv[1])
bsdf = {"type": "diffuse", "reflectance": {"type": "bitmap", "filename": sys.argv[1]}}
mi.load_dict({"type": "scene", "s": {"type": "sphere", "bsdf": bsdf}})
print("loaded")
"""


def test_a_textured_scene_loads_on_one_cpu(tmp_path: Path) -> None:
    """With one CPU, Dr.Jit's one-thread pool deadlocked on loading a bitmap texture (``iron
    eval`` of every exported asset hung in a one-CPU container); select_variant prevents it."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", ONE_CPU_LOAD, str(tmp_path / "grey.exr")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "loaded" in result.stdout, result.stderr[-500:]


def _cli(argv: list[str]) -> None:
    from ironrender.cli import build_parser

    args = build_parser().parse_args(["synth", *argv])
    args.func(args)


def test_bad_inputs_raise_one_line_iron_errors(tmp_path: Path) -> None:
    import trimesh

    with pytest.raises(IronError, match="mesh file not found"):
        _cli([str(tmp_path / "a"), "--mesh", str(tmp_path / "missing.obj"), "--quiet"])
    no_uv = tmp_path / "box.obj"
    trimesh.creation.box().export(no_uv)
    with pytest.raises(IronError, match="no texture coordinates"):
        _cli([str(tmp_path / "b"), "--mesh", str(no_uv), "--quiet"])
    with pytest.raises(IronError, match="not found"):
        _cli([str(tmp_path / "c"), "--texture", str(tmp_path / "missing.png"), "--quiet"])
    with pytest.raises(IronError, match="roughness map not found"):
        _cli([str(tmp_path / "d"), "--roughness-map", str(tmp_path / "none.png"), "--quiet"])
    assert not (tmp_path / "b").exists()  # nothing written before the inputs are validated


# ------------------------------------------------------------------------------ camera and room
OFFSET_DEGREES = 8.0


@pytest.fixture(scope="module")
def offset_scene(tmp_path_factory) -> Path:
    from ironrender.data.synth import flash_offset_for_angle

    config = SynthConfig(
        views=4, test_views=N_TEST, resolution=RESOLUTION, spp=16, relight=False,
        flash_offset=flash_offset_for_angle(OFFSET_DEGREES, 3.0),
    )  # fmt: skip
    return synthesize(config, tmp_path_factory.mktemp("offset") / "spot", progress=False)


def _surface_samples(scene: Path, split: str):
    """Per view: (hit points, unit normals, uv, linear pixel values) at smooth interior pixels,
    found by our own ray-mesh intersection, and the split's cameras."""
    mesh = _read_obj(scene / "gt" / "mesh.obj")
    data = load_split(scene, split, linear=True)
    for i, name in enumerate(data.names):
        full = _mask(scene, split, name) == 1
        interior = full.copy()
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                interior &= np.roll(np.roll(full, dy, 0), dx, 1)
        js, is_ = np.nonzero(interior)
        pixels = torch.from_numpy(np.stack([is_ + 0.5, js + 0.5], -1)).float()
        rays = data.cameras.generate_rays(torch.full((len(pixels),), i), pixels)
        origins, directions = rays.origins.double().numpy(), rays.directions.double().numpy()
        tri_index, bary = _intersect(origins, directions, mesh)
        corners = mesh["f"][tri_index]
        hits = np.einsum("nk,nkd->nd", bary, mesh["v"][corners])
        normal = np.einsum("nk,nkd->nd", bary, mesh["vn"][corners])
        normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
        uv = np.einsum("nk,nkd->nd", bary, mesh["vt"][corners])
        yield i, data.cameras, hits, normal, uv, data.images[i].numpy()[js, is_]


def test_offset_flash_lights_from_where_the_camera_file_says(offset_scene: Path) -> None:
    """A flash 8 degrees above the lens: the pixels are the general point-light BRDF (validated
    against Mitsuba in test_brdf.py) lit from ``C2W flash``, not from the camera centre."""
    from ironrender.rendering.brdf import GGXMaterial, shade_point_light

    light = json.loads((offset_scene / "gt" / "light.json").read_text())
    base = read_image(offset_scene / "gt" / "diffuse_albedo.exr")
    alpha = read_image(offset_scene / "gt" / "roughness.exr")[..., :1]
    f0 = read_image(offset_scene / "gt" / "specular_albedo.exr")[..., :1]
    errors: dict[str, list] = {"flash": [], "centre": []}
    for i, cameras, hits, normal, uv, measured in _surface_samples(offset_scene, "test"):
        expected_flash = cameras.c2w[i, :3, :3] @ torch.tensor(light["camera_and_room"][
            "flash_offset_camera"]) + cameras.centers[i]  # fmt: skip
        torch.testing.assert_close(cameras.flash_positions[i], expected_flash)
        eye = cameras.centers[i].double()
        view = torch.nn.functional.normalize(eye - torch.from_numpy(hits), dim=-1)
        keep = (torch.from_numpy(normal) * view).sum(-1).numpy() > 0.3
        material = GGXMaterial(
            torch.from_numpy(_bilinear(base, uv[keep])),
            torch.from_numpy(_bilinear(f0, uv[keep])),
            torch.from_numpy(_bilinear(alpha, uv[keep])),
        )
        for name, position in (("flash", cameras.flash_positions[i]), ("centre", eye)):
            predicted = shade_point_light(
                material, torch.from_numpy(normal[keep]), torch.from_numpy(hits[keep]),
                position.double().expand(int(keep.sum()), 3), view[keep], light["intensity"],
                "burley",
            ).radiance.numpy()  # fmt: skip
            errors[name].append(np.abs(measured[keep] - predicted) / predicted)
    flash, centre = (np.median(np.concatenate(errors[k])) for k in ("flash", "centre"))
    print(f"median relative error: light at the flash {flash:.4f}, at the camera {centre:.4f}")
    assert flash < 0.01
    assert centre > 3 * flash  # the offset is visible in the pixels


@pytest.fixture(scope="module")
def camera_scenes(tmp_path_factory) -> tuple[Path, Path]:
    """The same capture developed by a clean camera and by an automatic phone camera."""
    root = tmp_path_factory.mktemp("camera")
    common = dict(
        views=6, test_views=2, resolution=RESOLUTION, spp=16, relight=False, ambient=0.05,
        tone_curve="srgb",
    )  # fmt: skip
    clean = synthesize(SynthConfig(**common), root / "clean", progress=False)
    phone = SynthConfig(**common, exposure_jitter=0.15, noise=0.02, jpeg_quality=90)
    return clean, synthesize(phone, root / "phone", progress=False)


def test_room_light_gains_noise_srgb_and_jpeg(camera_scenes) -> None:
    from ironrender.data.tone_curve import encode

    clean, phone = camera_scenes
    light = json.loads((phone / "gt" / "light.json").read_text())["camera_and_room"]
    assert not [p for p in check_dataset(phone) if p.fatal]
    # sRGB: the test PNGs are the sRGB encoding of their linear twins.
    for name in sorted((clean / "test" / "image").glob("*.png")):
        png = np.asarray(Image.open(name), dtype=np.float64)
        twin = read_image(name.with_suffix(".exr"))
        # equal on purpose: write_image encoded the PNG by this same numpy code from the same
        # float32 values the EXR twin holds
        np.testing.assert_array_equal(png, np.round(255 * encode(twin, "srgb")))
    # The room: uniform light of radiance L, visible where no surface is (the border).
    border = _border(read_image(clean / "test" / "image" / "000.exr")[..., 0])
    exposure = json.loads((clean / "gt" / "light.json").read_text())["exposure"]
    np.testing.assert_allclose(border, light["ambient_radiance"], rtol=1e-4)
    assert light["ambient_radiance"] == pytest.approx(
        0.05 * exposure / (math.pi * 3.0**2), rel=1e-6
    )
    # Gains and noise: each training photo is gain x clean, plus s sqrt(x) noise.
    gains = np.asarray(light["train_gains"])
    assert gains.shape == (6, 3) and np.ptp(gains) > 0.05 and np.abs(gains - 1).max() <= 0.15
    for i in range(6):
        truth = read_image(clean / "train" / "image" / f"{i:03d}.exr")
        developed = read_image(phone / "train" / "image" / f"{i:03d}.exr")
        expected = gains[i] * truth
        bright = truth > 0.05
        residual = (developed - expected)[bright] / np.sqrt(expected[bright])
        assert abs(residual.mean()) < 3 * 0.02 / np.sqrt(bright.sum())
        assert residual.std() == pytest.approx(0.02, rel=0.1)
        # JPEG at quality 90, decoded by sRGB: close to what was developed (PSNR > 30 dB).
        assert (phone / "train" / "image" / f"{i:03d}.jpg").read_bytes()[:2] == b"\xff\xd8"
        jpeg = read_image(phone / "train" / "image" / f"{i:03d}.jpg", curve="srgb")
        mse = np.mean((encode(jpeg, "srgb") - encode(developed, "srgb")) ** 2)
        assert 10 * np.log10(1 / mse) > 30


# ------------------------------------------------------------------------------ gilded material
@pytest.fixture(scope="module")
def gilded_scene(tmp_path_factory) -> Path:
    config = SynthConfig(
        views=4, test_views=N_TEST, resolution=RESOLUTION, spp=16, relight=False,
        material="gilded", bsdf="iron",
    )  # fmt: skip
    return synthesize(config, tmp_path_factory.mktemp("gilded") / "spot", progress=False)


def test_gilded_material_is_the_model_with_gold_f0(gilded_scene: Path) -> None:
    """Mitsuba's pixels of the gilt bronze = the model's Lambert + GGX (F = F0, coloured) from
    the ground-truth maps; gold's colour is in F0 (a grey F0 would miss the pixels), and the
    diffuse albedo is near black."""
    from ironrender.rendering.brdf import GGXMaterial, shade_point_light

    light = json.loads((gilded_scene / "gt" / "light.json").read_text())
    base = read_image(gilded_scene / "gt" / "diffuse_albedo.exr")
    alpha = read_image(gilded_scene / "gt" / "roughness.exr")[..., :1]
    f0 = read_image(gilded_scene / "gt" / "specular_albedo.exr")
    assert base.max() < 0.06 and light["bsdf"]["material"] == "gilded"
    gold = f0[alpha[..., 0] < 0.35]  # the gilding (the patina's alpha is 0.5)
    assert (gold[:, 0] > gold[:, 1]).all() and (gold[:, 1] > gold[:, 2]).all()
    errors: dict[str, list] = {"rgb": [], "grey": []}
    for i, cameras, hits, normal, uv, measured in _surface_samples(gilded_scene, "test"):
        eye = cameras.centers[i].double()
        view = torch.nn.functional.normalize(eye - torch.from_numpy(hits), dim=-1)
        keep = (torch.from_numpy(normal) * view).sum(-1).numpy() > 0.3
        specular = _bilinear(f0, uv[keep])
        for name, spec in (("rgb", specular), ("grey", specular.mean(-1, keepdims=True))):
            material = GGXMaterial(
                torch.from_numpy(_bilinear(base, uv[keep])),
                torch.from_numpy(spec),
                torch.from_numpy(_bilinear(alpha, uv[keep])),
            )
            predicted = shade_point_light(
                material, torch.from_numpy(normal[keep]), torch.from_numpy(hits[keep]),
                eye.expand(int(keep.sum()), 3), view[keep], light["intensity"], "lambert",
            ).radiance.numpy()  # fmt: skip
            errors[name].append(np.abs(measured[keep] - predicted) / predicted)
    rgb, grey = (np.median(np.concatenate(errors[k])) for k in ("rgb", "grey"))
    print(f"median relative error: gold F0 {rgb:.4f}, grey F0 {grey:.4f}")
    assert rgb < 0.01
    assert grey > 10 * rgb


def test_gilded_needs_the_iron_bsdf(tmp_path: Path) -> None:
    with pytest.raises(IronError, match="iron BSDF"):
        synthesize(SynthConfig(material="gilded"), tmp_path / "x", progress=False)
    with pytest.raises(IronError, match="patina"):
        synthesize(SynthConfig(material="gilded", bsdf="iron", patina=1.0), tmp_path / "y")
