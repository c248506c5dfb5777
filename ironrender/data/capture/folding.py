"""Checks for a folded reconstruction (:func:`check_folding`).

A repetitive object can be reconstructed with its back folded onto its front, every image
registered and a small reprojection error. The checks look at the normalized cameras (the
object at the origin) and at the verified matches of photo pairs.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ironrender.data.cameras import Cameras
from ironrender.data.capture.messages import short


@dataclass
class FoldingConfig:
    """Thresholds of the folding checks (see :func:`check_folding`)."""

    # The object's centre must project inside this fraction of the half-width/height around
    # the image centre (a person centres the object; a folded view sees it off to the side).
    max_center_offset: float = 0.7
    # Cameras of a capture around an object spread over this many degrees of azimuth at least.
    min_azimuth_coverage_deg: float = 200.0
    # Azimuths need level cameras: mean squared sine of the right axes' tilt at most this
    # (0.1: about 18 degrees of roll, RMS).
    max_roll_spread: float = 0.1
    # Two-view check: pairs with this many verified matches are compared with the poses.
    min_pair_inliers: int = 50
    max_epipolar_error_px: float = 4.0  # a match "fits" the recovered poses within this
    max_pair_outlier_fraction: float = 0.5  # more misfits: the pair disagrees with the poses
    max_disagreeing_pairs_fraction: float = 0.05  # more disagreeing pairs: warn
    max_listed_views: int = 8


@dataclass
class FoldingReport:
    """Signs that the reconstruction folded opposite sides of the object onto each other."""

    off_center_views: list[str]
    azimuth_coverage_deg: float | None  # None: cameras have no common up direction
    pairs_checked: int
    disagreeing_pairs: list[tuple[str, str]]
    warnings: list[str]

    @property
    def suspicious(self) -> bool:
        return bool(self.warnings)


@dataclass
class PairCheck:
    """A matched photo pair and the fraction of its verified matches the poses do not fit."""

    name1: str
    name2: str
    num_matches: int
    outlier_fraction: float


def check_folding(
    cameras: Cameras,
    names: Sequence[str],
    pairs: Sequence[PairCheck],
    config: FoldingConfig,
) -> FoldingReport:
    """Look for a folded reconstruction in normalized cameras (object in the unit sphere).

    On an object whose texture repeats (front and back alike), SfM can register every photo
    yet place the back views on the front side, with a small reprojection error. Three signs:

    * **Off-centre views**: a person centres the object; the origin must project inside
      ``max_center_offset`` of each half-width/height around the image centre, in front of
      the camera.
    * **One-sided cameras**: azimuths of the camera centres around the up direction (the one
      orthogonal to the cameras' level right axes) must cover ``min_azimuth_coverage_deg``;
      a fold collapses them onto one side. (A capture from one side only is flagged too: the
      warning says so.)
    * **Two-view disagreement**: matches verified between two photos must fit the recovered
      relative pose (Sampson error below ``max_epipolar_error_px``); pairs whose matches
      mostly do not fit were pulled into a different geometry than their own images show.
    """
    warnings: list[str] = []
    off = off_center_views(cameras, config.max_center_offset)
    off_names = [names[i] for i in off]
    if off_names:
        warnings.append(
            f"{len(off_names)} view(s) do not see the object near their image centre"
            f" ({short(off_names, config.max_listed_views)}): they may be misplaced"
            " (a folded reconstruction); check them"
        )
    coverage = azimuth_coverage_degrees(
        cameras.centers.double().cpu().numpy(),
        cameras.w2c[:, 0, :3].double().cpu().numpy(),
        -cameras.w2c[:, 1, :3].double().cpu().numpy(),
        config.max_roll_spread,
    )
    if coverage is not None and coverage < config.min_azimuth_coverage_deg:
        warnings.append(
            f"the cameras cover only {coverage:.0f} degrees around the object: if you took"
            " photos all the way around it, SfM has probably folded its back onto its front"
            " (repetitive texture); see 'folding' in docs/capture-guide.md"
        )
    limit = config.max_pair_outlier_fraction
    disagreeing = [(p.name1, p.name2) for p in pairs if p.outlier_fraction > limit]
    if pairs and len(disagreeing) > config.max_disagreeing_pairs_fraction * len(pairs):
        views = Counter(n for pair in disagreeing for n in pair)
        worst = [n for n, _ in views.most_common(config.max_listed_views)]
        warnings.append(
            f"{len(disagreeing)} of {len(pairs)} matched photo pairs disagree with the recovered"
            " poses (their matches fit another relative pose): the reconstruction is probably"
            f" folded; most involved: {', '.join(worst)}"
        )
    return FoldingReport(off_names, coverage, len(pairs), disagreeing, warnings)


def off_center_views(cameras: Cameras, max_offset: float) -> list[int]:
    """Indices of cameras that do not see the world origin near their image centre."""
    w2c = cameras.w2c.double().cpu().numpy()
    K = cameras.intrinsics.double().cpu().numpy()
    sizes = cameras.sizes.cpu().numpy().astype(np.float64)
    origin_cam = w2c[:, :3, 3]  # the origin in camera coordinates
    z = origin_cam[:, 2]
    uv = np.einsum("nij,nj->ni", K, origin_cam)[:, :2] / np.where(z > 0, z, 1.0)[:, None]
    half = sizes / 2.0
    offset = np.abs(uv - half) / half
    bad = (z <= 0) | (offset.max(axis=1) > max_offset)
    return [int(i) for i in np.flatnonzero(bad)]


def azimuth_coverage_degrees(
    centers: np.ndarray, rights: np.ndarray, ups: np.ndarray, max_roll_spread: float
) -> float | None:
    """Degrees of azimuth around the object (at the origin) that the camera centres span.

    The world's up is the direction most orthogonal to every camera's right axis (photos are
    held level; a camera tilted down still has a level right axis): the eigenvector of
    ``sum_i r_i r_i^T`` with the smallest eigenvalue, signed like the cameras' mean up. The
    coverage is 360 minus the largest gap between the centres' azimuths around it. None when
    the right axes are not level enough (mean ``(r_i . up)^2`` above ``max_roll_spread``).
    """
    if len(centers) < 2:
        return None
    eigenvalues, eigenvectors = np.linalg.eigh(rights.T @ rights)
    if eigenvalues[0] / len(rights) > max_roll_spread:
        return None
    up = eigenvectors[:, 0] * (1.0 if eigenvectors[:, 0] @ ups.sum(0) >= 0 else -1.0)
    helper = np.eye(3)[int(np.argmin(np.abs(up)))]
    e1 = np.cross(up, helper)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    azimuth = np.sort(np.arctan2(centers @ e2, centers @ e1))
    gaps = np.diff(np.concatenate([azimuth, azimuth[:1] + 2.0 * math.pi]))
    return float(360.0 - math.degrees(gaps.max()))


def epipolar_errors_px(
    x1: np.ndarray, x2: np.ndarray, w2c1: np.ndarray, w2c2: np.ndarray, focal: float
) -> np.ndarray:
    """Sampson distances (pixels) of matches under the relative pose of two cameras.

    ``x1``, ``x2`` (M, 2) are normalized image coordinates (``K^-1`` applied, distortion
    removed). The relative pose ``cam2 = R cam1 + t`` (R = R2 R1^T, t = t2 - R t1) gives the
    essential matrix ``E = [t]_x R``, and ``x2^T E x1 = 0`` for a correct match; the Sampson
    distance is its first-order geometric error, scaled to pixels by ``focal``.
    """
    import pycolmap  # lazy: ~0.25 s, and `iron --help` loads this module (cli/import_photos)

    R = w2c2[:3, :3] @ w2c1[:3, :3].T
    t = w2c2[:3, 3] - R @ w2c1[:3, 3]
    t = t / max(np.linalg.norm(t), 1e-12)
    tx = np.array([[0.0, -t[2], t[1]], [t[2], 0.0, -t[0]], [-t[1], t[0], 0.0]])
    squared = pycolmap.compute_squared_sampson_error(
        np.ascontiguousarray(x1, dtype=np.float64), np.ascontiguousarray(x2, dtype=np.float64),
        tx @ R,
    )  # fmt: skip
    return np.sqrt(np.asarray(squared, dtype=np.float64)) * focal


def two_view_pairs(pycolmap, database: Path, model, config: FoldingConfig) -> list[PairCheck]:
    """Verified pairs of registered photos (from COLMAP's database) against the poses."""
    registered = {iid: im for iid, im in model.images.items() if im.has_pose}
    db = pycolmap.Database.open(database)
    try:
        pair_ids, geometries = db.read_two_view_geometries()
        usable = []
        for pair_id, geometry in zip(pair_ids, geometries, strict=True):
            id1, id2 = pycolmap.pair_id_to_image_pair(pair_id)
            matches = np.asarray(geometry.inlier_matches)
            if id1 in registered and id2 in registered and len(matches) >= config.min_pair_inliers:
                usable.append((id1, id2, matches))
        keypoints = {iid: np.asarray(db.read_keypoints(iid))[:, :2] for iid in registered}
    finally:
        db.close()
    checks = []
    for id1, id2, matches in usable:
        im1, im2 = registered[id1], registered[id2]
        x1 = im1.camera.cam_from_img(keypoints[id1][matches[:, 0]].astype(np.float64))
        x2 = im2.camera.cam_from_img(keypoints[id2][matches[:, 1]].astype(np.float64))
        w2c1, w2c2 = np.eye(4), np.eye(4)
        w2c1[:3] = im1.cam_from_world().matrix()
        w2c2[:3] = im2.cam_from_world().matrix()
        focal = 0.5 * (im1.camera.mean_focal_length() + im2.camera.mean_focal_length())
        errors = epipolar_errors_px(x1, x2, w2c1, w2c2, focal)
        fraction = float(np.mean(errors > config.max_epipolar_error_px))
        checks.append(PairCheck(Path(im1.name).name, Path(im2.name).name, len(matches), fraction))
    return checks
