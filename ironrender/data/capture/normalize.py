"""Normalization: the similarity that puts the object inside IRON's unit sphere.

The object is found among the sparse points (:func:`estimate_normalization`) and
``x_n = (x - center) / scale`` puts it in the unit sphere; a camera becomes
``W2C_n = [R | (R center + t) / scale]`` (camera coordinates shrink by ``scale``, which a
pinhole projection does not see).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ironrender.errors import IronError


@dataclass
class NormalizationConfig:
    """How the object is found among the sparse points (see :func:`estimate_normalization`)."""

    min_track_length: int = 3  # points seen by fewer images are too uncertain to use
    # Points farther from the cameras' look-at point than this fraction of the median camera
    # distance are background (walls, table far away).
    trim_ratio: float = 0.75
    bounds_percentile: float = 2.0  # per-axis bounding box from the [p, 100 - p] percentiles
    radius_percentile: float = 99.0  # radius covers this percentile of object points
    radius_margin: float = 1.15  # ... times this margin (parts with few points poke out)
    # Every camera must stay this factor outside the unit sphere (IRON samples in front of it).
    min_camera_distance: float = 1.2


@dataclass
class Normalization:
    """The similarity into IRON's frame: ``x_normalized = (x_colmap - center) / scale``."""

    center: np.ndarray
    scale: float
    look_at: np.ndarray  # the cameras' common look-at point (COLMAP frame), for the record
    num_object_points: int

    @property
    def matrix(self) -> np.ndarray:
        """4x4 normalized-from-COLMAP transform."""
        m = np.eye(4)
        m[:3, :3] /= self.scale
        m[:3, 3] = -np.asarray(self.center) / self.scale
        return m

    def apply(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points) - self.center) / self.scale

    def apply_to_w2c(self, w2c: np.ndarray) -> np.ndarray:
        """``W2C_n = [R | (R center + t) / scale]`` for (..., 4, 4) rigid W2C matrices."""
        out = np.array(w2c, dtype=np.float64, copy=True)
        R, t = out[..., :3, :3], out[..., :3, 3]
        out[..., :3, 3] = (np.einsum("...ij,j->...i", R, self.center) + t) / self.scale
        return out

    def to_json(self) -> dict:
        return {
            "formula": "x_normalized = (x_colmap - center) / scale",
            "center": np.asarray(self.center).tolist(),
            "scale": float(self.scale),
            "normalized_from_colmap": self.matrix.tolist(),
            "look_at": np.asarray(self.look_at).tolist(),
            "num_object_points": int(self.num_object_points),
        }


def look_at_point(w2c: np.ndarray) -> np.ndarray | None:
    """The point closest to every optical axis in the least-squares sense.

    Minimizes ``sum_i |(I - d_i d_i^T)(p - c_i)|^2`` over p (c_i the centres, d_i the unit
    axes): ``[sum_i (I - d_i d_i^T)] p = sum_i (I - d_i d_i^T) c_i``. None when the axes are
    (nearly) parallel, e.g. a forward-facing capture, where no such point exists.
    """
    R, t = w2c[:, :3, :3], w2c[:, :3, 3]
    centers = -np.einsum("nji,nj->ni", R, t)
    axes = R[:, 2, :]
    projectors = np.eye(3)[None] - axes[:, :, None] * axes[:, None, :]
    A = projectors.sum(0)
    b = np.einsum("nij,nj->i", projectors, centers)
    eigenvalues = np.linalg.eigvalsh(A)
    if eigenvalues[0] < 1e-3 * eigenvalues[-1]:
        return None
    return np.linalg.solve(A, b)


def estimate_normalization(
    w2c: np.ndarray,
    points: np.ndarray,
    track_lengths: np.ndarray,
    config: NormalizationConfig,
    warnings: list[str] | None = None,
) -> Normalization:
    """Find the object among the sparse points and fit a sphere around it.

    1. ``p*`` = the cameras' common look-at point (:func:`look_at_point`); a person aims at
       the object, so stray background points far from ``p*`` are not the object.
    2. Object points: seen by at least ``min_track_length`` images and within
       ``trim_ratio * median |c_i - p*|`` of ``p*``.
    3. Centre: the middle of their per-axis [p, 100 - p] percentile box; radius: the
       ``radius_percentile`` of their distances to it, times ``radius_margin``.
    4. Cameras stay outside the unit sphere: the radius is capped at
       ``min_i |c_i - centre| / min_camera_distance`` (with a warning).
    """
    warnings = warnings if warnings is not None else []
    R, t = w2c[:, :3, :3], w2c[:, :3, 3]
    centers = -np.einsum("nji,nj->ni", R, t)
    target = look_at_point(w2c)
    reliable = points[track_lengths >= config.min_track_length]
    if target is None:
        if len(reliable) == 0:
            raise IronError("the reconstruction has no reliable 3D points to place the object")
        target = np.median(reliable, axis=0)
        warnings.append(
            "the cameras' optical axes do not converge (forward-facing capture?); the object"
            " was placed at the median of the sparse points"
        )
    camera_distance = float(np.median(np.linalg.norm(centers - target, axis=1)))
    near = reliable[np.linalg.norm(reliable - target, axis=1) < config.trim_ratio * camera_distance]
    if len(near) < 4:
        raise IronError(
            f"only {len(near)} reliable sparse points near the cameras' look-at point: cannot"
            " find the object (is it textured, and centred in the photos?)"
        )
    low = np.percentile(near, config.bounds_percentile, axis=0)
    high = np.percentile(near, 100.0 - config.bounds_percentile, axis=0)
    center = 0.5 * (low + high)
    radius = config.radius_margin * float(
        np.percentile(np.linalg.norm(near - center, axis=1), config.radius_percentile)
    )
    closest = float(np.linalg.norm(centers - center, axis=1).min())
    if radius * config.min_camera_distance > closest:
        warnings.append(
            f"the object's sphere (radius {radius:.3g}) would reach the nearest camera"
            f" ({closest:.3g} away); shrunk to keep the cameras outside it"
        )
        radius = closest / config.min_camera_distance
    return Normalization(center, radius, target, len(near))
