"""Export: marching cubes on analytic SDFs, decimation, UVs, baking, writers.

Budget: well under 60 s on two CPU cores (grids of 64^3 to 96^3, textures of 256^2).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ironrender.errors import IronError
from ironrender.export.mesh import decimate, extract_mesh

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
