"""The visible surface: which points the cameras see, checked against closed-form geometry,
and the visible-surface Chamfer, which must ignore exactly what no camera saw."""

from __future__ import annotations

import numpy as np
import trimesh

from ironrender.evaluation.metrics import mesh_metrics
from ironrender.evaluation.visibility import seen_by_cameras
from tests.conftest import ring_cameras

RADIUS = 0.5


def sphere(center=(0.0, 0.0, 0.0), radius: float = RADIUS) -> trimesh.Trimesh:
    mesh = trimesh.creation.icosphere(subdivisions=5, radius=radius)
    mesh.apply_translation(center)
    return mesh


def surface_samples(mesh: trimesh.Trimesh, count: int, seed: int = 0) -> np.ndarray:
    points, _ = trimesh.sample.sample_surface(mesh, count, seed=seed)
    return np.asarray(points)


def ray_meets_sphere(origins: np.ndarray, targets: np.ndarray, center, radius: float):
    """Whether the segment from each origin to its target passes through the sphere."""
    d = targets - origins
    f = origins - np.asarray(center)
    a, b, c = (d * d).sum(1), 2 * (f * d).sum(1), (f * f).sum(1) - radius**2
    disc = b * b - 4 * a * c
    root = np.sqrt(np.maximum(disc, 0.0))
    t0, t1 = (-b - root) / (2 * a), (-b + root) / (2 * a)
    return (disc > 0) & (t1 > 0) & (t0 < 1)


def test_a_sphere_shows_the_hemispheres_that_face_the_cameras():
    cameras = ring_cameras(6)
    points = surface_samples(sphere(), 4000)
    seen = seen_by_cameras(points, sphere(), cameras)
    # Closed form: a point of a convex body is seen from c iff n . (c - p) > 0 (all in frame).
    centers = cameras.centers.double().numpy()
    normals = points / np.linalg.norm(points, axis=1, keepdims=True)
    facing = np.einsum("pd,cpd->cp", normals, centers[:, None, :] - points[None]) > 0
    expected = facing.any(axis=0)
    assert 0.5 < expected.mean() < 0.95  # the cap under the ring is never seen
    assert (seen == expected).mean() > 0.99


def test_a_sphere_in_front_hides_what_lies_behind_it():
    cameras = ring_cameras(6)[0:1]
    eye = cameras.centers.double().numpy()[0]
    blocker_center = 0.45 * eye / np.linalg.norm(eye) * 2.0  # between the camera and the origin
    blocker_radius = 0.25
    scene = trimesh.util.concatenate([sphere(), sphere(blocker_center, blocker_radius)])
    points = surface_samples(sphere(), 4000, seed=1)
    seen = seen_by_cameras(points, scene, cameras)
    normals = points / RADIUS
    facing = (normals * (eye - points)).sum(1) > 0
    blocked = ray_meets_sphere(points, np.broadcast_to(eye, points.shape), blocker_center, 0.25)
    expected = facing & ~blocked
    assert blocked[facing].mean() > 0.05  # the blocker really covers part of the visible side
    assert (seen == expected).mean() > 0.99


def test_a_support_plane_hides_what_lies_below_it():
    cameras = ring_cameras(6)
    points = surface_samples(sphere(), 4000, seed=2)
    up = np.array([0.0, 1.0, 0.0])
    free = seen_by_cameras(points, sphere(), cameras)
    on_table = seen_by_cameras(points, sphere(), cameras, support=(up, 0.1))
    np.testing.assert_array_equal(on_table, free & (points[:, 1] >= 0.1))


def flattened_below(mesh: trimesh.Trimesh, height: float) -> trimesh.Trimesh:
    vertices = np.array(mesh.vertices)
    vertices[:, 1] = np.maximum(vertices[:, 1], height)
    return trimesh.Trimesh(vertices, mesh.faces, process=False)


def test_the_visible_chamfer_ignores_what_no_camera_saw_and_only_that():
    cameras = ring_cameras(6)

    def seen(points, mesh):
        return seen_by_cameras(points, mesh, cameras)

    gt = sphere()
    # The ring (elevation 22 degrees, 2.7 radii away) sees down to latitude -57 degrees only:
    # flattening the cap below -64 degrees changes nothing any camera sees.
    unseen_error = flattened_below(gt, -0.9 * RADIUS)
    both = mesh_metrics(unseen_error, gt, n_points=20000, seen=seen)
    assert both.chamfer > 5e-4
    assert both.chamfer_visible < 0.05 * both.chamfer
    assert 0.5 < both.seen_gt < 0.95

    # The same flattening at the top, which every camera sees, counts in full.
    vertices = np.array(gt.vertices)
    vertices[:, 1] = np.minimum(vertices[:, 1], 0.9 * RADIUS)
    seen_error = trimesh.Trimesh(vertices, gt.faces, process=False)
    top = mesh_metrics(seen_error, gt, n_points=20000, seen=seen)
    assert top.chamfer_visible > top.chamfer > 5e-4
