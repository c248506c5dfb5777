"""``iron import``: SfM poses from photos alone, checked against the cameras that rendered them.

A textured object (spot's shape with a procedural high-frequency texture: spot's own texture is
too sparse for SIFT) is rendered by Mitsuba under a co-located flash from cameras in rings at
three elevations, as a person walks around an object. The cameras are thrown away; the import
recovers them from the images. After a similarity alignment of the camera centres (Umeyama,
written here independently of the code under test) rotations must agree within 1 degree and
centres within 1 % of the camera distance, and true mesh points must project to the same pixels
through the imported and the true cameras. Some photos carry an EXIF rotation and a few files
are broken, as in a real folder.

Budget: about 2 minutes on 2 cores (rendering ~45 s, SfM ~45 s, the rest seconds). The larger
capture is ``@pytest.mark.benchmark``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from ironrender.data.cameras import Cameras, intrinsics_from_fov, look_at
from ironrender.data.capture import FoldingConfig, ImportConfig, import_photos
from ironrender.data.capture.folding import (
    azimuth_coverage_degrees,
    check_folding,
    epipolar_errors_px,
    off_center_views,
)
from ironrender.data.capture.importer import split_indices
from ironrender.data.capture_file import DARK_ROOM_LEVEL, read_capture
from ironrender.data.check import check_dataset
from ironrender.data.dataset import load_split
from ironrender.errors import IronError

pytest.importorskip("pycolmap")

ROTATION_TOLERANCE_DEG = 1.0
CENTER_TOLERANCE = 0.01  # of the camera distance
REPROJECTION_TOLERANCE_PX = 1.0  # median over points, per view, at the dataset resolution
MIN_REGISTERED_FRACTION = 0.9
EXIF_ROTATE_EVERY = 3  # every third photo is stored rotated, with EXIF orientation 6


# --------------------------------------------------------------------------------- capture
@dataclass
class Capture:
    """Rendered photos and the truth about them."""

    photos: Path
    names: list[str]  # photo file names, in the order of w2c
    w2c: np.ndarray  # (N, 4, 4) OpenCV axes
    K: np.ndarray  # (3, 3) at (width, height)
    width: int
    height: int
    vertices: np.ndarray  # the object's mesh vertices (world)
    faces: np.ndarray


def procedural_texture(size: int, seed: int) -> np.ndarray:
    """Colourful multi-scale noise with sharp contrast: blobs SIFT can find at many scales."""
    generator = torch.Generator().manual_seed(seed)
    total = torch.zeros(3, size, size)
    for cells, weight in ((16, 0.5), (48, 0.8), (128, 1.0), (320, 0.8)):
        noise = torch.rand(1, 3, cells, cells, generator=generator)
        total += (
            weight
            * torch.nn.functional.interpolate(
                noise, size=(size, size), mode="bicubic", align_corners=False
            )[0]
        )
    total = (total - total.mean()) / total.std()
    return (0.1 + 0.8 * torch.sigmoid(5.0 * total)).permute(1, 2, 0).numpy().astype(np.float32)


def ring_poses(rings: tuple[tuple[float, int], ...], distance: float, seed: int) -> np.ndarray:
    """World-to-camera matrices on rings (elevation degrees, count) around +Y, hand-held jitter.

    Each view's distance varies by +-5 % and its aim by a few centimetres, as a person's would.
    """
    rng = np.random.default_rng(seed)
    eyes, targets = [], []
    for ring, (elevation, count) in enumerate(rings):
        for k in range(count):
            azimuth = 2.0 * math.pi * (k + 0.37 * ring) / count
            radius = distance * (1.0 + rng.uniform(-0.05, 0.05))
            e = math.radians(elevation)
            eyes.append([radius * math.cos(e) * math.cos(azimuth), radius * math.sin(e),
                         radius * math.cos(e) * math.sin(azimuth)])  # fmt: skip
            targets.append(rng.uniform(-0.04, 0.04, size=3))
    eye = torch.tensor(eyes, dtype=torch.float64)
    up = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64).expand_as(eye)
    return look_at(eye, torch.tensor(np.array(targets)), up).numpy()


def render_capture(
    folder: Path,
    rings: tuple[tuple[float, int], ...] = ((-10.0, 16), (20.0, 18), (45.0, 14)),
    size: tuple[int, int] = (384, 288),
    fov_x: float = 40.0,
    distance: float = 2.7,
    spp: int = 8,
    seed: int = 0,
) -> Capture:
    """Render flash photos of a textured spot with Mitsuba (through the synth module's parts)."""
    from PIL import Image

    from ironrender.data.mitsuba_backend import mitsuba_to_world, perspective_sensor, select_variant
    from ironrender.data.synth import DEFAULT_MESH, load_textured_mesh, normalize_mesh, write_obj
    from ironrender.data.tone_curve import encode

    select_variant()
    import mitsuba as mi

    folder.mkdir(parents=True)
    mesh, _ = normalize_mesh(load_textured_mesh(DEFAULT_MESH), 0.85)
    mesh_file = folder.parent / "object.obj"
    write_obj(mesh_file, mesh)
    width, height = size
    K = intrinsics_from_fov(width, height, fov_x).double().numpy()
    w2c = ring_poses(rings, distance, seed)
    c2w = np.linalg.inv(w2c)
    texture = mi.Bitmap(procedural_texture(1024, seed))
    scene = mi.load_dict({
        "type": "scene",
        "integrator": {"type": "direct", "emitter_samples": 1, "bsdf_samples": 0},
        "sensor": perspective_sensor(K, c2w[0], width, height, spp),
        "light": {"type": "point", "position": [0.0, 0.0, 0.0], "intensity": 1.0},
        "object": {"type": "obj", "filename": str(mesh_file), "bsdf": {
            "type": "principled", "roughness": 0.5,
            "base_color": {"type": "bitmap", "bitmap": texture, "raw": True}}},
    })  # fmt: skip
    params = mi.traverse(scene)
    renders = []
    for i in range(len(w2c)):
        params["sensor.to_world"] = mi.ScalarTransform4f(mitsuba_to_world(c2w[i]).tolist())
        params["light.position"] = mi.Point3f(*(float(x) for x in c2w[i, :3, 3]))
        params.update()
        renders.append(np.array(mi.render(scene, seed=seed * 1000 + i), dtype=np.float32))
    exposure = 0.9 / np.percentile(np.stack(renders).max(-1), 99.5)

    names = []
    for i, linear in enumerate(renders):
        encoded = np.round(255 * encode(exposure * linear)).astype(np.uint8)
        upright = Image.fromarray(encoded)
        if i % EXIF_ROTATE_EVERY == 1:
            # Stored lying on its side; EXIF orientation 6 says "rotate 90 degrees clockwise".
            name = f"IMG_{i:04d}.jpg"
            exif = Image.Exif()
            exif[0x0112] = 6
            upright.transpose(Image.Transpose.ROTATE_90).save(
                folder / name, quality=95, exif=exif.tobytes()
            )
        else:
            name = f"IMG_{i:04d}.png"
            upright.save(folder / name)
        names.append(name)
    return Capture(folder, names, w2c, K, width, height, mesh.vertices, mesh.faces)


# --------------------------------------------------------------------------------- comparison
def umeyama(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (s, R, t) minimizing sum |target - (s R source + t)|^2 (Umeyama 1991)."""
    mu_s, mu_t = source.mean(0), target.mean(0)
    a, b = source - mu_s, target - mu_t
    U, S, Vt = np.linalg.svd(b.T @ a / len(source))
    D = np.eye(3)
    if np.linalg.det(U @ Vt) < 0:
        D[2, 2] = -1.0
    R = U @ D @ Vt
    s = float(np.trace(np.diag(S) @ D) / (a**2).sum(1).mean())
    return s, R, mu_t - s * R @ mu_s


@dataclass
class Comparison:
    rotation_deg: np.ndarray
    center_error: np.ndarray  # relative to each true camera distance
    reprojection_px: np.ndarray  # median per view
    vertices_normalized: np.ndarray  # true mesh vertices mapped into the imported frame


def compare(capture: Capture, data: Path, out_size: tuple[int, int]) -> Comparison:
    """Imported cameras (both splits) against the truth, after aligning camera centres."""
    report = json.loads((data / "import_report.json").read_text())
    photo_of = {v: k for k, v in report["dataset_name_of_photo"].items()}
    imported_w2c, imported_K, truth = [], [], []
    for split in ("train", "test"):
        cams = json.loads((data / split / "cam_dict_norm.json").read_text())
        for name, entry in cams.items():
            assert entry["img_size"] == list(out_size)
            imported_w2c.append(np.array(entry["W2C"]).reshape(4, 4))
            imported_K.append(np.array(entry["K"]).reshape(4, 4)[:3, :3])
            truth.append(capture.names.index(photo_of[name]))
    w2c_i, K_i, w2c_t = np.array(imported_w2c), np.array(imported_K), capture.w2c[truth]

    def centers(w2c):
        return -np.einsum("nji,nj->ni", w2c[:, :3, :3], w2c[:, :3, 3])

    c_t = centers(w2c_t)
    s, R, t = umeyama(centers(w2c_i), c_t)
    aligned = (s * (R @ centers(w2c_i).T)).T + t
    center_error = np.linalg.norm(aligned - c_t, axis=1) / np.linalg.norm(c_t, axis=1)
    # A world point x_true = s R x_imported + t: camera rotation R_imported R^T in the true frame.
    rotation = [
        Rotation.from_matrix(w2c_t[k, :3, :3] @ (w2c_i[k, :3, :3] @ R.T).T).magnitude()
        for k in range(len(truth))
    ]
    vertices = (R.T @ (capture.vertices - t).T).T / s
    factor = np.diag([out_size[0] / capture.width, out_size[1] / capture.height, 1.0])
    cameras_i = Cameras(
        torch.tensor(K_i), torch.tensor(w2c_i), torch.tensor([out_size] * len(truth))
    )
    K_t = torch.tensor(factor @ capture.K).expand(len(truth), 3, 3)
    cameras_t = Cameras(K_t, torch.tensor(w2c_t), torch.tensor([out_size] * len(truth)))
    sample = torch.tensor(capture.vertices[:: max(1, len(capture.vertices) // 300)])
    sample_i = torch.tensor(vertices[:: max(1, len(capture.vertices) // 300)])
    reprojection = []
    for k in range(len(truth)):
        uv_t, _ = cameras_t.project(sample, k)
        uv_i, _ = cameras_i.project(sample_i, k)
        reprojection.append(float((uv_t - uv_i).norm(dim=-1).median()))
    return Comparison(np.degrees(rotation), center_error, np.array(reprojection), vertices)


# --------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def capture(tmp_path_factory) -> Capture:
    capture = render_capture(tmp_path_factory.mktemp("capture") / "photos")
    (capture.photos / "broken.jpg").write_bytes(b"this is not a JPEG")
    good = (capture.photos / capture.names[0]).read_bytes()
    (capture.photos / "truncated.png").write_bytes(good[: len(good) // 3])
    return capture


@pytest.fixture(scope="module")
def imported(capture, tmp_path_factory):
    data = tmp_path_factory.mktemp("imported") / "data"
    config = ImportConfig(resolution=320, test_fraction=0.1, seed=0)
    return data, import_photos(capture.photos, data, config)


# --------------------------------------------------------------------------------- end to end
def test_import_recovers_the_true_cameras(capture, imported):
    data, report = imported
    assert len(report.registered) >= MIN_REGISTERED_FRACTION * len(capture.names)
    assert sorted(report.skipped) == ["broken.jpg", "truncated.png"]
    assert report.image_size == (320, 240)
    result = compare(capture, data, (320, 240))
    assert result.rotation_deg.max() < ROTATION_TOLERANCE_DEG, result.rotation_deg
    assert result.center_error.max() < CENTER_TOLERANCE, result.center_error
    assert np.median(result.reprojection_px) < 0.5 * REPROJECTION_TOLERANCE_PX
    assert result.reprojection_px.max() < REPROJECTION_TOLERANCE_PX, result.reprojection_px


def test_import_puts_the_object_in_the_unit_sphere(capture, imported):
    data, _ = imported
    radii = np.linalg.norm(compare(capture, data, (320, 240)).vertices_normalized, axis=1)
    assert np.mean(radii <= 1.0) > 0.995  # the object is inside ...
    assert radii.max() < 1.05
    assert radii.max() > 0.6  # ... and fills the sphere (the bounding sphere is not huge)
    normalization = json.loads((data / "normalization.json").read_text())
    assert normalization["scale"] > 0 and len(normalization["center"]) == 3


def test_imported_dataset_is_valid_and_split(capture, imported):
    data, report = imported
    assert [p for p in check_dataset(data) if p.fatal] == []
    train, test = load_split(data, "train"), load_split(data, "test")
    assert len(test) == round(0.1 * len(report.registered))
    assert set(train.names).isdisjoint(test.names)
    assert len(train) + len(test) == len(report.registered)
    assert train.images.shape[1:] == (240, 320, 3)
    # what the files say (no camera EXIF here) and the room around the object (black renders)
    described = read_capture(data)
    assert (described.source, described.encoding, described.camera) == ("photographs", "srgb", None)
    assert described.room_level is not None and described.room_level <= DARK_ROOM_LEVEL
    assert report.capture == described


def test_correct_capture_raises_no_folding_warning(imported):
    _, report = imported
    assert not report.folding.suspicious, report.folding.warnings
    assert report.folding.pairs_checked > 50
    assert report.folding.azimuth_coverage_deg > 300


def test_import_from_an_existing_colmap_model(capture, imported, tmp_path):
    data, _ = imported
    config = ImportConfig(resolution=320, colmap_model=str(data / "colmap" / "sparse" / "0"))
    report = import_photos(capture.photos, tmp_path / "again", config)
    assert len(report.registered) >= MIN_REGISTERED_FRACTION * len(capture.names)
    result = compare(capture, tmp_path / "again", (320, 240))
    assert result.rotation_deg.max() < ROTATION_TOLERANCE_DEG
    assert result.center_error.max() < CENTER_TOLERANCE
    assert result.reprojection_px.max() < REPROJECTION_TOLERANCE_PX


# --------------------------------------------------------------------------------- user errors
def _write_pngs(folder: Path, sizes: list[tuple[int, int]]) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / f"{i}.png")


def test_empty_folder_is_a_one_line_error(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(IronError, match="no photos found"):
        import_photos(tmp_path / "photos", tmp_path / "data")


def test_too_few_photos_is_an_error(tmp_path):
    _write_pngs(tmp_path / "photos", [(64, 48)] * 5)
    with pytest.raises(IronError, match="only 5 photos.*at least 10"):
        import_photos(tmp_path / "photos", tmp_path / "data")


def test_only_unreadable_files_is_an_error(tmp_path):
    (tmp_path / "photos").mkdir()
    for i in range(3):
        (tmp_path / "photos" / f"{i}.jpg").write_bytes(b"garbage")
    with pytest.raises(IronError, match="none of the 3 image files could be read"):
        import_photos(tmp_path / "photos", tmp_path / "data")


def test_mixed_sizes_with_a_shared_camera_is_an_error(tmp_path):
    _write_pngs(tmp_path / "photos", [(64, 48)] * 11 + [(48, 64)])
    with pytest.raises(IronError, match="mixed sizes"):
        import_photos(tmp_path / "photos", tmp_path / "data")


def test_unrelated_photos_give_a_clear_sfm_error(tmp_path):
    _write_pngs(tmp_path / "photos", [(96, 72)] * 12)  # independent noise: nothing matches
    with pytest.raises(IronError, match="SfM found no pair|could be placed"):
        import_photos(tmp_path / "photos", tmp_path / "data")


def test_split_is_seeded_and_disjoint():
    train, test = split_indices(50, 0.2, seed=3)
    again_train, again_test = split_indices(50, 0.2, seed=3)
    assert np.array_equal(test, again_test) and np.array_equal(train, again_train)
    assert len(test) == 10 and set(train).isdisjoint(test) and len(train) + len(test) == 50
    assert not np.array_equal(split_indices(50, 0.2, seed=4)[1], test)


# --------------------------------------------------------------------------------- folding checks
def _ring(azimuths_deg: np.ndarray, elevation_deg: float = 20.0, distance: float = 3.0):
    a, e = np.radians(azimuths_deg), math.radians(elevation_deg)
    eye = np.stack([np.cos(e) * np.cos(a), np.full_like(a, math.sin(e)), np.cos(e) * np.sin(a)])
    eye = torch.tensor(distance * eye.T)
    up = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64).expand_as(eye)
    w2c = look_at(eye, torch.zeros_like(eye), up)
    K = intrinsics_from_fov(320, 240, 40.0).double().expand(len(eye), 3, 3)
    return Cameras(K.clone(), w2c, torch.tensor([[320, 240]] * len(eye)))


def test_folding_checks_pass_a_capture_all_around():
    cameras = _ring(np.arange(0, 360, 15.0))
    report = check_folding(cameras, [str(i) for i in range(len(cameras))], [], FoldingConfig())
    assert report.warnings == []
    assert report.azimuth_coverage_deg == pytest.approx(345.0, abs=1e-6)


def test_folding_checks_flag_cameras_collapsed_onto_one_side():
    # The back half (azimuth 180..360) mirrored onto the front, as a fold does.
    azimuths = np.arange(0, 360, 15.0)
    folded = np.where(azimuths >= 180, 360 - azimuths, azimuths)
    cameras = _ring(folded)
    report = check_folding(cameras, [str(i) for i in range(len(cameras))], [], FoldingConfig())
    assert report.azimuth_coverage_deg == pytest.approx(180.0, abs=1e-6)
    assert any("folded" in w for w in report.warnings)


def test_off_center_check_flags_a_camera_aimed_away():
    cameras = _ring(np.arange(0, 360, 30.0))
    turn = torch.eye(4, dtype=torch.float64)
    turn[:3, :3] = torch.tensor(Rotation.from_euler("y", 25, degrees=True).as_matrix())
    cameras.w2c[3] = turn @ cameras.w2c[3]  # rotate camera 3 about its own y axis
    cameras.w2c[7] = (
        torch.diag(torch.tensor([-1.0, 1.0, -1.0, 1.0], dtype=torch.float64)) @ cameras.w2c[7]
    )
    assert off_center_views(cameras, 0.7) == [3, 7]  # 7 now looks away: origin behind it


def test_azimuth_coverage_is_none_when_cameras_roll_freely():
    rng = np.random.default_rng(0)
    rights = Rotation.random(20, random_state=rng).as_matrix()[:, 0]
    centers = rng.normal(size=(20, 3))
    assert azimuth_coverage_degrees(centers, rights, -rights, 0.1) is None


def test_epipolar_errors_zero_for_true_poses_large_for_folded_ones():
    cameras = _ring(np.array([0.0, 40.0, 140.0]))
    w2c = cameras.w2c.numpy()
    points = np.random.default_rng(0).uniform(-0.5, 0.5, size=(200, 3))

    def normalized(i):
        p = points @ w2c[i, :3, :3].T + w2c[i, :3, 3]
        return p[:, :2] / p[:, 2:]

    focal = float(cameras.intrinsics[0, 0, 0])
    assert epipolar_errors_px(normalized(0), normalized(1), w2c[0], w2c[1], focal).max() < 1e-6
    # Camera 2 (azimuth 140) folded onto azimuth 40's mirror side: its matches no longer fit.
    folded = _ring(np.array([360.0 - 140.0])).w2c[0].numpy()
    errors = epipolar_errors_px(normalized(0), normalized(2), w2c[0], folded, focal)
    assert np.mean(errors > 4.0) > 0.5


# --------------------------------------------------------------------------------- benchmark
@pytest.mark.benchmark
def test_large_capture_benchmark(tmp_path):
    """120 views at 512x384 through the full default import (a few minutes)."""
    capture = render_capture(
        tmp_path / "photos", rings=((-10.0, 36), (15.0, 40), (40.0, 30), (65.0, 14)),
        size=(512, 384), distance=2.6,
    )  # fmt: skip
    report = import_photos(capture.photos, tmp_path / "data", ImportConfig(resolution=512))
    assert len(report.registered) >= MIN_REGISTERED_FRACTION * len(capture.names)
    result = compare(capture, tmp_path / "data", (512, 384))
    assert result.rotation_deg.max() < ROTATION_TOLERANCE_DEG
    assert result.center_error.max() < CENTER_TOLERANCE
    assert not report.folding.suspicious


def test_flash_offset_in_metres_becomes_scene_units():
    """``--flash-offset`` (metres) scaled by the camera distance: cameras 2 units from the
    object's centre that stood 0.4 m away make 10 cm half a unit; validation needs the distance."""
    from ironrender.data.capture.config import validate
    from ironrender.data.capture.importer import flash_in_scene_units

    eyes = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 2.0], [0.0, 2.0, 0.1]])
    w2c = look_at(eyes, torch.zeros(3), torch.tensor([0.0, 1.0, 0.0])).double().numpy()
    config = ImportConfig(flash_offset=(0.0, -0.1, 0.02), object_distance=0.4)
    validate(config)
    flash = flash_in_scene_units(config, w2c, 5)
    torch.testing.assert_close(flash, torch.tensor([[0.0, -0.5, 0.1]]).expand(5, 3))
    assert flash_in_scene_units(ImportConfig(), w2c, 5) is None
    with pytest.raises(IronError, match="object-distance"):
        validate(ImportConfig(flash_offset=(0.0, 0.01, 0.0)))
