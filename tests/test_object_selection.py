"""What is the object at export: support planes, crop box, cut plane, boundary-touching clutter.

Analytic SDFs on small grids (80^3, cell 0.025), meshed with ``mesh_from_grid`` and compared with
the analytic sphere by ``compare_surfaces`` (area samples, exact point-to-triangle distances).
Budget: a few seconds on two CPU cores.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh

from ironrender import config as cfg
from ironrender.errors import IronError
from ironrender.evaluation.metrics import chamfer_from, compare_surfaces
from ironrender.export.select import (
    check_object_options,
    cut_by_plane,
    select_object,
)
from ironrender.fields.level_set import grid_spacing, mesh_from_grid

RESOLUTION = 80
SPACING = grid_spacing(RESOLUTION)
RADIUS = 0.4  # the object: a sphere at the origin
TABLE_THICKNESS = 0.04
SAMPLES = 5000
# What each case is held to, with the analytic sphere as ground truth (diameter 0.8):
CHAMFER_OK = 0.005  # 0.6 % of the diameter; marching cubes alone gives ~0.0002
ON_SPHERE = SPACING  # every kept point lies on the sphere: nothing of the clutter is left
CLUTTER = 0.5  # a point this far from the sphere belongs to the table, stick or blob


def grid_points(resolution: int = RESOLUTION) -> np.ndarray:
    axis = np.linspace(-1.0, 1.0, resolution)
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1)


def sphere(x: np.ndarray) -> np.ndarray:
    return np.linalg.norm(x, axis=-1) - RADIUS


def table(x: np.ndarray, normal=(0.0, 0.0, 1.0), clip_to_sphere: bool = True) -> np.ndarray:
    """A slab under the sphere, its top touching the sphere's lowest point along ``normal``;
    clipped to the unit sphere (a table top reaching its edge) or running out of the grid."""
    height = x @ np.asarray(normal) + RADIUS + TABLE_THICKNESS / 2
    slab = np.abs(height) - TABLE_THICKNESS / 2
    return np.maximum(slab, np.linalg.norm(x, axis=-1) - 1.0) if clip_to_sphere else slab


def stick(x: np.ndarray) -> np.ndarray:
    """A rod of radius 0.05 along -z from inside the sphere out of the grid's bottom face."""
    return np.maximum(np.hypot(x[..., 0], x[..., 1]) - 0.05, x[..., 2] + 0.2)


def mesh_of(sdf) -> trimesh.Trimesh:
    return mesh_from_grid(sdf(grid_points()).astype(np.float32))


def against_sphere(mesh: trimesh.Trimesh) -> tuple[float, float, float]:
    """Chamfer, and the Hausdorff distances mesh -> sphere and sphere -> mesh."""
    truth = trimesh.creation.icosphere(subdivisions=5, radius=RADIUS)
    comparison = compare_surfaces(mesh, truth, SAMPLES)
    return chamfer_from(comparison), comparison.a_to_b.max(), comparison.b_to_a.max()


def tilted(degrees: float) -> np.ndarray:
    angle = math.radians(degrees)
    return np.array([0.0, -math.sin(angle), math.cos(angle)])


def rough_table(x: np.ndarray, sigma: float = 0.01) -> np.ndarray:
    """``table`` (z up) whose height varies smoothly by ``sigma`` (a cloth); grid points only."""
    from scipy.ndimage import gaussian_filter

    noise = gaussian_filter(np.random.default_rng(0).normal(size=x.shape[:2]), 3.0)
    noise *= sigma / noise.std()
    x = x.copy()
    x[..., 2] -= noise[..., None]
    return table(x)


# ------------------------------------------------------------------------------ support plane
TABLE_CASES = {
    "table clipped at the unit sphere, no up": (lambda x: table(x), None),
    "slab leaving the grid (open cuts), up": (lambda x: table(x, clip_to_sphere=False), (0, 0, 1)),
    "table tilted 25 degrees, up": (lambda x: table(x, tilted(25)), tuple(tilted(25))),
    "rough cloth, height noise 0.01, up": (rough_table, (0, 0, 1)),
}


@pytest.mark.parametrize("case", list(TABLE_CASES))
def test_auto_cuts_the_table_away_where_largest_keeps_it(case):
    clutter, up = TABLE_CASES[case]
    mesh = mesh_of(lambda x: np.minimum(sphere(x), clutter(x)))

    largest, _ = select_object(mesh, "largest", spacing=SPACING)
    chamfer, to_sphere, _ = against_sphere(largest)
    assert chamfer > 0.05 and to_sphere > CLUTTER  # the table is exported: the remedy matters

    kept, selection = select_object(mesh, "auto", up=up, spacing=SPACING)
    chamfer, to_sphere, from_sphere = against_sphere(kept)
    assert chamfer < CHAMFER_OK
    assert to_sphere < ON_SPHERE
    # Only the contact cap under the band (height ~2 cells) is missing: sqrt(2 R h) ~ 0.16.
    assert from_sphere < 0.2
    assert len(selection.supports) == 1
    normal = selection.supports[0].normal
    expected = np.asarray(up if up is not None else (0, 0, 1), dtype=float)
    assert normal @ expected / np.linalg.norm(expected) > math.cos(math.radians(2))
    assert "support plane found" in selection.summary()
    assert selection.removed_fraction > 0.5


# ------------------------------------------------------------------------------ no false plane
FLAT_OBJECTS = {
    "sphere": sphere,
    # A disc of radius 0.85: flat, large, but it does not reach the edge of the unit sphere.
    "disc": lambda x: np.maximum(np.hypot(x[..., 0], x[..., 1]) - 0.85, np.abs(x[..., 2]) - 0.1),
    "box": lambda x: np.abs(x).max(axis=-1) - 0.5,
}


@pytest.mark.parametrize("name", list(FLAT_OBJECTS))
def test_auto_leaves_an_object_without_support_unchanged(name):
    mesh = mesh_of(FLAT_OBJECTS[name])
    # Without up, each flat face is oriented towards the origin: only "reaching the boundary"
    # (and, for the sphere, "large" and "flat") tell it from a support.
    kept, selection = select_object(mesh, "auto", spacing=SPACING)
    assert selection.supports == []
    assert "no support plane" in selection.summary()
    assert np.array_equal(kept.faces, mesh.faces)
    assert np.array_equal(kept.vertices, mesh.vertices)


# ------------------------------------------------------------------------------ explicit controls
def test_cut_plane_and_crop_box_remove_the_stick():
    mesh = mesh_of(lambda x: np.minimum(sphere(x), stick(x)))
    for mode in ("largest", "auto"):  # the stick is part of the object's component: it stays
        kept, _ = select_object(mesh, mode, spacing=SPACING)
        assert against_sphere(kept)[1] > CLUTTER

    level = -0.38  # just above the sphere's bottom, where the stick joins it
    controls = {
        "cut plane": {"cut_plane": (0.0, 0.0, 1.0, -level)},
        "cut plane, unnormalised": {"cut_plane": (0.0, 0.0, 2.0, -2 * level)},
        "crop box": {"crop_min": (-1.0, -1.0, level), "crop_max": (1.0, 1.0, 1.0)},
    }
    for name, control in controls.items():
        kept, selection = select_object(mesh, "largest", spacing=SPACING, **control)
        chamfer, to_sphere, from_sphere = against_sphere(kept)
        assert kept.vertices[:, 2].min() >= level - 1e-9, name
        assert chamfer < CHAMFER_OK and to_sphere < ON_SPHERE, name
        assert from_sphere < 0.15, name  # the cap below the cut: sqrt(0.4^2 - 0.38^2) = 0.125
        assert selection.steps[0].startswith(name.split(",")[0]), selection.steps


def test_cut_by_plane_splits_triangles_exactly():
    mesh = mesh_of(sphere)
    level = 0.1
    cap = cut_by_plane(mesh, np.array([0.0, 0.0, 1.0]), -level)
    assert cap.vertices[:, 2].min() == pytest.approx(level, abs=1e-9)
    assert len(cap.split(only_watertight=False)) == 1  # vertices on the cut are shared
    assert cap.area == pytest.approx(2 * math.pi * RADIUS * (RADIUS - level), rel=0.01)
    radial = cap.triangles_center / np.linalg.norm(cap.triangles_center, axis=1, keepdims=True)
    assert np.all(np.sum(cap.face_normals * radial, axis=1) > 0.9)  # winding kept: outwards


def test_no_surface_left_is_a_user_error():
    mesh = mesh_of(sphere)
    with pytest.raises(IronError, match="no surface is left inside the crop box"):
        select_object(mesh, crop_min=(0.5, 0.5, 0.5), crop_max=(1.0, 1.0, 1.0))


# ------------------------------------------------------------------------------ components
def test_auto_prefers_the_component_away_from_the_boundary():
    # A curved blob in the grid's corner (open where it leaves the grid), larger than the object.
    def blob(x):
        return (
            np.linalg.norm(x - np.array([1.0, 1.0, -1.0]), axis=-1) - 1.25
        )  # 0.08 from the sphere

    mesh = mesh_of(lambda x: np.minimum(sphere(x), blob(x)))
    largest, _ = select_object(mesh, "largest", spacing=SPACING)
    assert against_sphere(largest)[1] > CLUTTER
    kept, selection = select_object(mesh, "auto", spacing=SPACING)
    chamfer, to_sphere, from_sphere = against_sphere(kept)
    assert chamfer < CHAMFER_OK and to_sphere < ON_SPHERE and from_sphere < ON_SPHERE
    assert "away from the boundary" in selection.summary()


# ------------------------------------------------------------------------------ options, wiring
def test_invalid_options_are_one_line_errors():
    from ironrender.cli import build_parser
    from ironrender.cli.export import object_options
    from ironrender.export.asset import ExportConfig

    for bad in (
        {"mode": "biggest"},
        {"mode": "auto", "crop_min": (0, 0, 0), "crop_max": (1, -1, 1)},
        {"mode": "auto", "cut_plane": (0, 0, 0, 1)},
        {"mode": "auto", "cut_plane": (0, 0, 1)},
    ):
        with pytest.raises(IronError):
            check_object_options(**bad)
    with pytest.raises(ValueError, match="object: expected one of"):
        ExportConfig(object="biggest")
    with pytest.raises(IronError, match="export: cut_plane"):
        cfg.merge(ExportConfig(), {"cut_plane": [0, 0, 0, 1]}, "export")

    parser = build_parser()
    for argv, message in (
        (["--crop", "0", "0", "0", "1", "-1", "1"], "each minimum must be below its maximum"),
        (["--cut-plane", "0", "0", "0", "0.5"], "must not be zero"),
        (["--cut-plane", "nan", "0", "1", "0.5"], "finite"),
        (["--object", "auto", "--keep-all-components"], "contradicts"),
    ):
        with pytest.raises(IronError, match=message) as info:
            object_options(parser.parse_args(["export", "RUN", *argv]))
        assert "\n" not in str(info.value)
    args = parser.parse_args(
        ["export", "RUN", "--object", "auto", "--crop", "-1", "-1", "-.5", "1", "1", "1"]
    )
    assert object_options(args) == {
        "object": "auto",
        "crop_min": (-1.0, -1.0, -0.5),
        "crop_max": (1.0, 1.0, 1.0),
    }


def test_export_asset_reports_the_selection_and_exports_the_object_only(tmp_path):
    from ironrender.export.asset import ExportConfig, export_asset

    def sdf(points: torch.Tensor) -> torch.Tensor:
        x = points.double().numpy()
        return torch.from_numpy(np.minimum(sphere(x), table(x))).float()

    def grey(points: torch.Tensor, normals: torch.Tensor) -> dict[str, torch.Tensor]:
        count = len(points)
        return {
            "diffuse_albedo": torch.full((count, 3), 0.5),
            "specular_albedo": torch.full((count, 1), 0.04),
            "roughness": torch.full((count, 1), 0.3),
        }

    config = ExportConfig(
        resolution=64, max_faces=3000, texture_size=64, write_glb=False, write_mitsuba=False,
        progress=False, object="auto",
    )  # fmt: skip
    saved = cfg.from_dict(ExportConfig, cfg.to_dict(config))
    assert saved == config  # the new fields survive config.json
    result = export_asset(sdf, grey, 1.0, tmp_path, config, up=np.array([0.0, 0.0, 1.0]))
    assert result.selection is not None and len(result.selection.supports) == 1
    assert "object" in result.timings
    exported = trimesh.load(result.obj, process=False, force="mesh")
    radii = np.linalg.norm(exported.vertices, axis=1)
    assert radii.max() < RADIUS + 0.01 and radii.min() > RADIUS - 0.02
