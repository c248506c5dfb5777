"""Export: marching cubes on analytic SDFs, decimation, UVs, baking, writers.

Budget: well under 60 s on two CPU cores (grids of 64^3 to 96^3, textures of 256^2).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import trimesh

from ironrender.errors import IronError
from ironrender.export.mesh import decimate
from ironrender.fields.level_set import extract_mesh, mesh_from_grid, sdf_grid

SPHERE_RADIUS = 0.6
TORUS_MAJOR = 0.55
TORUS_MINOR = 0.2


def sphere_sdf(points: torch.Tensor) -> torch.Tensor:
    return points.norm(dim=-1) - SPHERE_RADIUS


def torus_sdf(points: torch.Tensor) -> torch.Tensor:
    """Torus around the z axis: distance to the core circle minus the tube radius."""
    ring = points[:, :2].norm(dim=-1) - TORUS_MAJOR
    return torch.stack([ring, points[:, 2]], dim=-1).norm(dim=-1) - TORUS_MINOR


def test_sphere_mesh_is_watertight_on_the_sphere_with_outward_normals():
    resolution, bound = 64, 1.0
    mesh = extract_mesh(sphere_sdf, resolution=resolution, bound=bound, chunk=10_000)
    spacing = 2 * bound / (resolution - 1)
    assert mesh.is_watertight
    assert mesh.euler_number == 2
    radii = np.linalg.norm(mesh.vertices, axis=1)
    # Linear interpolation along grid edges of an exact SDF: error far below one cell.
    assert np.abs(radii - SPHERE_RADIUS).max() < 0.1 * spacing
    # Outward faces: face normals agree with the radial direction, and the volume is positive.
    centres = mesh.triangles_center
    radial = centres / np.linalg.norm(centres, axis=1, keepdims=True)
    assert np.all(np.sum(mesh.face_normals * radial, axis=1) > 0.9)
    assert mesh.volume == pytest.approx(4 / 3 * np.pi * SPHERE_RADIUS**3, rel=0.01)


def test_torus_has_genus_one_and_points_on_the_surface():
    mesh = extract_mesh(torus_sdf, resolution=80, keep_largest_component=True)
    assert mesh.is_watertight
    assert mesh.euler_number == 0  # genus 1
    distance = torus_sdf(torch.as_tensor(mesh.vertices, dtype=torch.float32)).numpy()
    assert np.abs(distance).max() < 0.1 * (2 / 79)
    assert mesh.volume == pytest.approx(2 * np.pi**2 * TORUS_MAJOR * TORUS_MINOR**2, rel=0.02)


@pytest.mark.parametrize("slope", [1.0, 3.0])
def test_narrow_band_grid_gives_the_full_grids_mesh_and_asks_far_fewer_points(slope):
    """Blocks far from the surface are skipped; with a slope of 3 (the skip rule assumes at
    most 2) some are skipped wrongly at first, and the sign-change repair must ask them."""
    asked = []

    def steep_torus(points: torch.Tensor) -> torch.Tensor:
        asked.append(len(points))
        return slope * torus_sdf(points)

    band = sdf_grid(steep_torus, 97, chunk=20_000, narrow_band=True)
    band_points, asked[:] = sum(asked), []
    full = sdf_grid(steep_torus, 97, chunk=20_000, narrow_band=False)
    assert sum(asked) == 97**3 and band_points < 0.6 * 97**3
    np.testing.assert_array_equal(band < 0, full < 0)
    crossing = np.zeros(full.shape, dtype=bool)  # nodes on an edge marching cubes cuts
    for axis in range(3):
        change = np.diff(full < 0, axis=axis)
        crossing |= np.pad(change, [(0, 1) if a == axis else (0, 0) for a in range(3)])
        crossing |= np.pad(change, [(1, 0) if a == axis else (0, 0) for a in range(3)])
    np.testing.assert_array_equal(band[crossing], full[crossing])
    a, b = mesh_from_grid(band), mesh_from_grid(full)
    np.testing.assert_allclose(a.vertices, b.vertices, atol=1e-6)


def test_keep_largest_component_drops_the_small_sphere():
    def two_spheres(points: torch.Tensor) -> torch.Tensor:
        big = (points - torch.tensor([-0.4, 0.0, 0.0])).norm(dim=-1) - 0.4
        small = (points - torch.tensor([0.6, 0.0, 0.0])).norm(dim=-1) - 0.15
        return torch.minimum(big, small)

    both = extract_mesh(two_spheres, resolution=64)
    kept = extract_mesh(two_spheres, resolution=64, keep_largest_component=True)
    assert len(both.split(only_watertight=False)) == 2
    assert len(kept.split(only_watertight=False)) == 1
    assert np.all(kept.vertices[:, 0] < 0.05)


def test_no_zero_crossing_is_a_user_error():
    with pytest.raises(IronError, match="no zero crossing"):
        extract_mesh(lambda p: p.norm(dim=-1) + 0.1, resolution=16)
    with pytest.raises(IronError, match="no zero crossing"):
        extract_mesh(lambda p: p.norm(dim=-1) - 5.0, resolution=16)


def test_decimate_respects_budget_and_keeps_shape():
    mesh = extract_mesh(sphere_sdf, resolution=64)
    small = decimate(mesh, 2000)
    assert len(small.faces) <= 2000
    assert small.is_watertight
    radii = np.linalg.norm(small.vertices, axis=1)
    assert np.abs(radii - SPHERE_RADIUS).max() < 0.02
    assert decimate(small, 10**6) is small


# --------------------------------------------------------------------------- UVs and baking
PATTERN_FREQ = 3.0
PATTERN_PHASE = torch.tensor([0.0, 1.0, 2.0])


def pattern(points: torch.Tensor) -> torch.Tensor:
    """A smooth colour field, 0.5 + 0.5 sin(3 x + phase), one phase per channel."""
    return 0.5 + 0.5 * torch.sin(PATTERN_FREQ * points + PATTERN_PHASE)


def lookup(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear texture lookup at OBJ-convention UVs (v up), independent of the baker."""
    from scipy.ndimage import map_coordinates

    height, width, channels = texture.shape
    coords = np.stack([(1.0 - uv[:, 1]) * height - 0.5, uv[:, 0] * width - 0.5])
    return np.stack(
        [
            map_coordinates(texture[..., c], coords, order=1, mode="nearest")
            for c in range(channels)
        ],
        axis=-1,
    )


def surface_samples(uv_mesh, count: int, seed: int = 0):
    """Random surface points of the unwrapped mesh and their interpolated UVs."""
    mesh = uv_mesh.to_trimesh()
    points, face = trimesh.sample.sample_surface(mesh, count, seed=seed)
    bary = trimesh.triangles.points_to_barycentric(mesh.triangles[face], points)
    uv = np.einsum("nk,nkd->nd", bary, uv_mesh.uvs[uv_mesh.faces[face]])
    return points, uv


@pytest.fixture(scope="module")
def sphere_uv_mesh():
    from ironrender.export.uv import unwrap

    return unwrap(decimate(extract_mesh(sphere_sdf, resolution=64), 3000), 256, padding=4)


def test_unwrap_gives_uvs_in_the_unit_square_and_keeps_the_surface(sphere_uv_mesh):
    uv_mesh = sphere_uv_mesh
    assert uv_mesh.uvs.min() >= 0 and uv_mesh.uvs.max() <= 1
    assert len(uv_mesh.faces) == 3000
    # Seam copies sit exactly where the original vertices were.
    np.testing.assert_allclose(np.linalg.norm(uv_mesh.vertices, axis=1), SPHERE_RADIUS, atol=0.02)
    # No two triangles overlap in UV space: total UV area <= 1 and charts are not degenerate.
    tri = uv_mesh.uvs[uv_mesh.faces]
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    area = 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
    assert 0.3 < area.sum() <= 1.0


def test_baked_texture_reproduces_an_analytic_colour_field(sphere_uv_mesh):
    from ironrender.export.bake import bake_textures

    baked = bake_textures(
        sphere_uv_mesh, lambda p, n: {"diffuse_albedo": pattern(p), "normal": n}, 256
    )
    points, uv = surface_samples(sphere_uv_mesh, 4000)
    want = pattern(torch.as_tensor(points, dtype=torch.float32)).numpy()
    error = np.abs(lookup(baked.maps["diffuse_albedo"], uv) - want)
    assert error.mean() < 1e-3 and error.max() < 0.03
    # The normals given to the material function are the outward sphere normals.
    normals = lookup(baked.maps["normal"], uv)
    cosine = np.sum(normals * points, axis=1) / np.linalg.norm(points, axis=1)
    assert np.percentile(cosine, 1) > 0.99


def test_gutter_fill_keeps_mip_levels_free_of_seams(sphere_uv_mesh):
    from ironrender.export.bake import bake_textures

    size, factor = 256, 4
    baked = bake_textures(sphere_uv_mesh, lambda p, n: {"c": pattern(p)}, size)
    assert 0.3 < baked.coverage.mean() < 1.0  # there are gutters to fill
    points, uv = surface_samples(sphere_uv_mesh, 4000, seed=1)
    want = pattern(torch.as_tensor(points, dtype=torch.float32)).numpy()

    def mip_error(texture: np.ndarray) -> float:
        small = texture.reshape(size // factor, factor, size // factor, factor, 3).mean((1, 3))
        return float(np.abs(lookup(small, uv) - want).max())

    unfilled = np.where(baked.coverage[..., None], baked.maps["c"], 0.0)
    assert mip_error(baked.maps["c"]) < 0.06
    assert mip_error(unfilled) > 0.2  # control: without the fill, gutters darken the mip level


# --------------------------------------------------------------------------- writers
LIGHT = 5.0
KD = torch.tensor([0.6, 0.0, 0.0])  # diffuse only in red
KS = torch.tensor([0.0, 0.0, 1.0])  # specular only in blue
ALPHA = 0.3


def graded_materials(points: torch.Tensor, normals: torch.Tensor) -> dict[str, torch.Tensor]:
    """Red diffuse albedo growing with height y (tests the UV orientation), blue specular."""
    count = len(points)
    scale = 0.5 + 0.5 * points[:, 1:2] / SPHERE_RADIUS
    return {
        "diffuse_albedo": KD * scale,
        "specular_albedo": KS.expand(count, 3),
        "roughness": torch.full((count, 1), ALPHA),
    }


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from ironrender.export.asset import ExportConfig, export_asset

    config = ExportConfig(resolution=64, max_faces=4000, texture_size=256, progress=False)
    out = tmp_path_factory.mktemp("export")
    return export_asset(sphere_sdf, graded_materials, LIGHT, out, config)


def png_values(path) -> np.ndarray:
    """Raw 8-bit PNG values in [0, 1] (no gamma decoding)."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image, dtype=np.float64) / 255.0


def read_exr(path) -> np.ndarray:
    from ironrender.data.images import read_image

    return read_image(path)


def test_obj_mtl_reload_with_uvs_and_all_maps(exported):
    from ironrender.data.images import read_image

    assert "mtllib mesh.mtl" in exported.obj.read_text().splitlines()[:3]
    mesh = trimesh.load(exported.obj, process=False)
    assert mesh.visual.uv.shape == (exported.num_vertices, 2)
    assert mesh.visual.material.image.size == (256, 256)
    mtl = {
        line.split()[0]: line.split()[1]
        for line in exported.mtl.read_text().splitlines()
        if line and not line.startswith("#")
    }
    for key in ("map_Kd", "map_Ks", "map_Pr"):
        assert (exported.out_dir / mtl[key]).is_file()
    # Maps hold the materials: gamma-encoded colour PNG, linear roughness, sqrt for perceptual.
    points, face = trimesh.sample.sample_surface(mesh, 2000, seed=2)
    bary = trimesh.triangles.points_to_barycentric(mesh.triangles[face], points)
    uv = np.einsum("nk,nkd->nd", bary, mesh.visual.uv[mesh.faces[face]])
    red = lookup(read_image(exported.out_dir / mtl["map_Kd"]), uv)[:, 0]
    want = graded_materials(torch.as_tensor(points, dtype=torch.float32), None)["diffuse_albedo"]
    assert np.abs(red - want[:, 0].numpy()).max() < 0.02
    perceptual = png_values(exported.out_dir / mtl["map_Pr"])
    assert np.abs(perceptual - np.sqrt(ALPHA)).max() <= 0.5 / 255 + 1e-6
    np.testing.assert_allclose(read_exr(exported.out_dir / "roughness.exr"), ALPHA, rtol=1e-6)
    assert json.loads(exported.light.read_text())["light_intensity"] == LIGHT


def test_glb_reloads_with_pbr_textures(exported):
    scene = trimesh.load(exported.glb)
    (mesh,) = scene.geometry.values()
    assert mesh.visual.uv.shape == (exported.num_vertices, 2)
    material = mesh.visual.material
    assert material.baseColorTexture.size == (256, 256)
    packed = np.asarray(material.metallicRoughnessTexture, dtype=np.float64) / 255.0
    assert np.abs(packed[..., 1] - np.sqrt(ALPHA)).max() <= 0.5 / 255 + 1e-6  # perceptual
    assert packed[..., 2].max() == 0.0  # metallic 0
    # Same UVs as the OBJ (trimesh flips v for glTF on export and back on import).
    obj = trimesh.load(exported.obj, process=False)
    np.testing.assert_allclose(mesh.visual.uv, obj.visual.uv, atol=1e-5)


def _mitsuba():
    try:
        from ironrender.data.mitsuba_backend import select_variant

        select_variant()
        import mitsuba as mi
    except ImportError:  # pragma: no cover - the backend module belongs to another engineer
        import mitsuba as mi

        mi.set_variant("scalar_rgb")
    return mi


def _check_centre_column(scene_file, diffuse_factor, min_cosine: float) -> int:
    """Render the exported scene; compare the central image column with the closed form.

    Along the column x = 0 the camera ray hits the sphere at a known point; there the project's
    BRDF gives red = I/d^2 rho_d(y)/pi c * diffuse_factor(c) and blue = I/d^2 rho_s D G1^2 /
    (4 c) (GGX). Returns the number of rows checked.
    """
    from ironrender.export import writers

    mi = _mitsuba()
    size, spp, sub = 63, 64, 8
    scene = mi.load_file(str(scene_file), width=size, height=size, spp=spp)
    image = np.asarray(mi.render(scene), dtype=np.float64)
    assert np.isfinite(image).all() and image.max() > 0

    eye = np.array([0.0, 0.0, writers.MITSUBA_CAMERA_DISTANCE])
    tan_half = np.tan(np.radians(writers.MITSUBA_FOV_DEG) / 2)
    column = size // 2
    checked = 0
    for row in range(size):
        # Average the closed form over a sub-pixel grid (the box filter's footprint).
        offsets = (np.arange(sub) + 0.5) / sub
        sx, sy = np.meshgrid(column + offsets, row + offsets)
        directions = np.stack(
            [(2 * sx / size - 1) * tan_half, (1 - 2 * sy / size) * tan_half, -np.ones_like(sx)], -1
        ).reshape(-1, 3)
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        b = directions @ eye
        disc = b**2 - (eye @ eye - SPHERE_RADIUS**2)
        if disc.min() <= 0.02:  # skip rows at or near the silhouette
            continue
        t = -b - np.sqrt(disc)
        hit = eye + t[:, None] * directions
        cosine = np.sum(hit / SPHERE_RADIUS * -directions, axis=1)
        if cosine.min() < min_cosine:
            continue
        irradiance = LIGHT / t**2
        albedo = graded_materials(torch.as_tensor(hit, dtype=torch.float32), None)
        red = irradiance * albedo["diffuse_albedo"][:, 0].numpy() / np.pi * cosine
        red = red * diffuse_factor(cosine)
        tan2 = (1 - cosine**2) / cosine**2
        ggx_d = 1 / (np.pi * ALPHA**2 * (cosine**2 + (1 - cosine**2) / ALPHA**2) ** 2)
        g1 = 2 / (1 + np.sqrt(1 + ALPHA**2 * tan2))
        blue = irradiance * ggx_d * g1**2 / (4 * cosine)
        np.testing.assert_allclose(image[row, column, 0], red.mean(), rtol=0.03, atol=2e-3)
        np.testing.assert_allclose(image[row, column, 2], blue.mean(), rtol=0.05, atol=5e-3)
        checked += 1
    return checked


def test_mitsuba_scene_renders_the_ggx_model(exported):
    assert _check_centre_column(exported.scene, lambda c: 1.0, min_cosine=0.5) > 10


def test_mitsuba_scene_of_a_burley_run_renders_burley_diffuse(exported, tmp_path):
    """``diffuse_model="burley"`` swaps the scene's diffuse lobe for principled's, whose
    co-located value is Burley's closed form (written out here, independently of brdf.py). Down
    to n.v = 0.2, where Burley is ~40 % brighter than Lambert, so the wrong lobe cannot pass."""
    from ironrender.export.asset import ExportConfig, export_asset

    config = ExportConfig(resolution=64, max_faces=4000, texture_size=256, progress=False)
    result = export_asset(sphere_sdf, graded_materials, LIGHT, tmp_path, config, "cpu", "burley")

    def burley(c):
        f = (1 - c) ** 5
        r = 2 * np.sqrt(ALPHA)
        return (1 - f / 2) ** 2 + r * (2 * f + f * f * (r - 1))

    assert burley(0.2) > 1.3
    assert _check_centre_column(result.scene, burley, min_cosine=0.2) > 10
    with pytest.raises(AssertionError):
        _check_centre_column(result.scene, lambda c: 1.0, min_cosine=0.2)


def test_an_sdf_field_can_be_passed_directly():
    from ironrender.fields.base import SphereSDF

    field = SphereSDF(radius=SPHERE_RADIUS)
    mesh = extract_mesh(field, resolution=32)
    assert mesh.is_watertight
    assert np.abs(np.linalg.norm(mesh.vertices, axis=1) - SPHERE_RADIUS).max() < 0.01


def test_preview_camera_stands_the_asset_upright_for_the_capture_up():
    """The Mitsuba scene's preview camera looks at the origin with the capture's up as its up:
    +Y keeps the old camera at (0, 0, d); a capture whose up is -Y (the skull) gets -Y."""
    from ironrender.export.writers import mitsuba_scene_xml, preview_camera

    eye, up = preview_camera(None, 3.0)
    np.testing.assert_allclose(eye, [0.0, 0.0, 3.0])
    np.testing.assert_allclose(up, [0.0, 1.0, 0.0])
    tilted = np.array([0.3, -0.9, 0.1])
    eye, up = preview_camera(tilted, 3.0)
    assert abs(float(eye @ up)) < 1e-9 and np.linalg.norm(eye) == pytest.approx(3.0)
    np.testing.assert_allclose(up, tilted / np.linalg.norm(tilted))
    xml = mitsuba_scene_xml(1.0, "lambert", np.array([0.0, -1.0, 0.0]))
    assert 'up="0, -1, 0"' in xml


def test_iron_export_defaults_to_the_runs_own_export_settings(tmp_path):
    """``iron export RUN`` without options exports as ``iron run`` did: with the preset the run
    was started with (``paper``: 2048 textures, largest component), not the quick defaults."""
    import json

    from ironrender.config import to_dict
    from ironrender.errors import IronError
    from ironrender.export.asset import fast_export_config
    from ironrender.export.run import export_config_of
    from ironrender.pipeline import resolve_config

    assert export_config_of(tmp_path) == fast_export_config()  # no config.json: quick defaults
    paper = resolve_config("paper", None, ["export.texture_size=512"])
    (tmp_path / "config.json").write_text(json.dumps(to_dict(paper)))
    got = export_config_of(tmp_path)
    assert got == paper.export and got.texture_size == 512 and got != fast_export_config()
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(IronError, match="not a run configuration"):
        export_config_of(tmp_path)


def test_vertices_of_zero_area_faces_get_a_valid_normal_and_mitsuba_loads_the_obj(tmp_path):
    """A sliver (three collinear vertices) beside a good triangle: its vertices have no
    normal of their own; unwrapped and written, every normal is a finite unit vector, the good
    triangle's are its face normal, and Mitsuba loads the OBJ (it refuses invalid normals)."""
    from ironrender.data.mitsuba_backend import select_variant
    from ironrender.export.uv import unwrap, valid_vertex_normals

    vertices = np.array(
        [[0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 2, 2], [3, 3, 3], [4, 4, 4]], dtype=np.float64
    )
    mesh = trimesh.Trimesh(vertices, np.array([[0, 1, 2], [3, 4, 5]]), process=False)
    normals = valid_vertex_normals(mesh)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=-1), 1.0)
    np.testing.assert_allclose(normals[:3], [[0, 0, 1]] * 3, atol=1e-12)
    uv_mesh = unwrap(mesh, texture_size=64)
    assert np.isfinite(uv_mesh.normals).all()
    lines = [f"v {x} {y} {z}" for x, y, z in uv_mesh.vertices]
    lines += [f"vn {x} {y} {z}" for x, y, z in uv_mesh.normals]
    lines += [f"f {a + 1}//{a + 1} {b + 1}//{b + 1} {c + 1}//{c + 1}" for a, b, c in uv_mesh.faces]
    (tmp_path / "m.obj").write_text("\n".join(lines) + "\n")
    select_variant()
    import mitsuba as mi

    shape = mi.load_dict({"type": "obj", "filename": str(tmp_path / "m.obj")})
    assert shape.face_count() == 2
