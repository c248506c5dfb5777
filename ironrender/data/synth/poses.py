"""Cameras of a synthetic capture: poses around the object and a field of view that frames it.

Every camera centre lies ``camera_distance`` from the origin and looks at it; the poses come
from an evenly spread lattice of directions (on the whole sphere, or on the cap above a support
plane), and one field of view, shared by all views, keeps the object inside every image.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ironrender.data.cameras import Cameras, intrinsics_from_fov, look_at
from ironrender.data.synth.config import WORLD_UP
from ironrender.errors import IronError

# Cameras whose viewing direction is this close to +-up use +Z as their up vector instead.
POLE_COS = 0.99


def sample_poses(
    n_train: int,
    n_test: int,
    distance: float,
    seed: int,
    min_elevation: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint train and test world-to-camera matrices (float64) looking at the origin.

    A Fibonacci lattice of ``n_train + n_test`` directions (even coverage), rotated by a random
    rotation drawn from ``seed``; a seeded random subset is the test set, so test views lie
    between training views. The image's up is world +Y (+Z for views along +-Y).

    ``min_elevation`` (degrees) restricts the lattice to the cap of directions at least that
    far above the horizontal plane (normal ``WORLD_UP``), evenly in area (heights uniform), and
    the random rotation to one about the up axis, so the cap stays above: a capture of an
    object on a table. None keeps the whole sphere (and the exact poses of earlier versions).
    """
    # Lazy: scipy costs ~0.5 s, and this module is loaded by `iron --help` (cli/synth).
    from scipy.spatial.transform import Rotation

    n = n_train + n_test
    k = np.arange(n) + 0.5
    phi = math.pi * (3.0 - math.sqrt(5.0)) * k  # golden angle
    rng = np.random.default_rng(seed)
    if min_elevation is None:
        z = 1.0 - 2.0 * k / n
        r = np.sqrt(1.0 - z**2)
        points = np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=-1)
        points = Rotation.random(random_state=rng).apply(points)
    else:
        up = np.asarray(WORLD_UP)
        lowest = math.sin(math.radians(min_elevation))
        height = 1.0 - (1.0 - lowest) * k / n  # uniform in height = uniform in area on the cap
        r = np.sqrt(1.0 - height**2)
        across = np.stack([np.cos(phi), np.zeros(n), np.sin(phi)], axis=-1)  # horizontal: +Y up
        points = r[:, None] * across + height[:, None] * up
        points = Rotation.from_rotvec(rng.uniform(0.0, 2.0 * math.pi) * up).apply(points)
    order = rng.permutation(n)
    test_index, train_index = np.sort(order[:n_test]), np.sort(order[n_test:])

    def make(index: np.ndarray) -> torch.Tensor:
        eye = torch.from_numpy(distance * points[index])
        up = torch.tensor(WORLD_UP, dtype=torch.float64).expand_as(eye).clone()
        near_pole = (eye @ up[0]).abs() / distance > POLE_COS
        up[near_pole] = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
        return look_at(eye, torch.zeros_like(eye), up)

    return make(train_index), make(test_index)


def fit_field_of_view(vertices: np.ndarray, w2c: torch.Tensor, fill: float) -> float:
    """Field of view (degrees, square images) in which the object's widest view spans ``fill``.

    For every camera and vertex, tan of the angle off the optical axis along x or y is
    max(|x|, |y|) / z in camera coordinates; the largest one must reach ``fill`` of tan(fov/2),
    so the object touches no image border in any view (margin (1 - fill) / 2 at least).
    """
    w2c = w2c.detach().cpu().double().numpy()
    p = np.einsum("nij,vj->nvi", w2c[:, :3, :3], vertices) + w2c[:, None, :3, 3]
    if (p[..., 2] <= 0).any():
        raise IronError("a camera is inside the object; increase the camera distance")
    tan_max = float((np.abs(p[..., :2]).max(-1) / p[..., 2]).max())
    return math.degrees(2.0 * math.atan(tan_max / fill))


def cameras_from_poses(w2c: torch.Tensor, resolution: int, fov_degrees: float) -> Cameras:
    """Square pinhole cameras with a centred principal point (float64, CPU)."""
    K = intrinsics_from_fov(resolution, resolution, fov_degrees).to(torch.float64)
    sizes = torch.tensor([[resolution, resolution]]).expand(len(w2c), 2).clone()
    return Cameras(K.expand(len(w2c), 3, 3).clone(), w2c, sizes)
