"""Which part of a surface the capture's cameras saw: the surface geometry is judged on.

IRON's Chamfer distance compares whole meshes, but no method can recover what no photograph
shows: the underside of a statuette between its legs, seen by no camera above the table, is
filled by whatever the field's smoothness prefers. The *visible-surface* Chamfer (DTU's
protocol of observed points; issue 21's target) keeps only the samples of each mesh that at
least one training camera sees, each mesh under its own occlusion: a membrane that a
reconstruction stretches between two legs is seen, so it counts, while the true underside that
no camera saw does not.

A surface point ``p`` is seen by camera ``c`` when it projects inside the image in front of the
camera and the segment from ``p`` to the camera's centre leaves the mesh without meeting it again
(Mitsuba 3's ``ray_test`` from ``p + eps d``, ``d`` the unit direction to the centre; a point on a
face turned away from the camera is hidden by the mesh it belongs to). A support plane the object
stands on hides what lies below it and nothing above it: the cameras are above the plane, so the
segment from a camera to a point above it stays above it
(:func:`ironrender.data.synth.nuisances.check_nuisances_cannot_occlude`).
"""

from __future__ import annotations

import numpy as np
import torch
import trimesh

from ironrender.data.cameras import Cameras
from ironrender.data.mitsuba_backend import mesh_scene, ray_batch

#: How far along the ray to the camera a visibility ray starts (scene units: the object fits in
#: the unit sphere), so that it does not hit the face it starts on.
RAY_OFFSET = 1e-4


def seen_by_cameras(
    points: np.ndarray,
    mesh: trimesh.Trimesh,
    cameras: Cameras,
    min_views: int = 1,
    support: tuple[np.ndarray, float] | None = None,
) -> np.ndarray:
    """(N,) bool: which of ``points`` (on ``mesh``) at least ``min_views`` cameras see.

    ``support``: ``(up, height)`` of a plane the object stands on; points with
    ``up . p < height`` are hidden (module docstring).
    """
    mi, scene = mesh_scene(mesh.vertices, mesh.faces, "the visible-surface Chamfer")
    points = np.asarray(points, dtype=np.float64)
    cameras = cameras.to("cpu")
    world = torch.as_tensor(points, dtype=cameras.w2c.dtype)
    centers = cameras.centers.double().numpy()
    views = np.zeros(len(points), dtype=np.int64)
    for i in range(len(cameras)):
        pixel, depth = cameras.project(world, i)
        width, height = (float(s) for s in cameras.sizes[i])
        u, v = pixel[:, 0].numpy(), pixel[:, 1].numpy()
        in_image = (depth.numpy() > 0) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
        to_camera = centers[i] - points
        distance = np.linalg.norm(to_camera, axis=1)
        direction = to_camera / distance[:, None]
        origin = points + RAY_OFFSET * direction
        rays = ray_batch(mi, origin, direction)
        rays.maxt = mi.Float((distance - 2 * RAY_OFFSET).astype(np.float32))
        hidden = np.asarray(scene.ray_test(rays), dtype=bool)
        views += in_image & ~hidden
    seen = views >= min_views
    if support is not None:
        up, level = support
        seen &= points @ np.asarray(up, dtype=np.float64) >= level
    return seen
