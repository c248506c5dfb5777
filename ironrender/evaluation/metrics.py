"""Evaluation metrics: images (PSNR, SSIM, LPIPS), geometry (Chamfer, F-score, normals), materials.

Image metrics follow IRON's protocol (IRON §4.2; ``evaluation/eval_image_folder.py`` in its code;
docs/architecture.md (A32)): images are (H, W, C) arrays in [0, 1] (IRON compares the
gamma-encoded PNGs; the caller decides which encoding it passes), data range 1.

* PSNR = 10 log10(1 / MSE), MSE over all pixels and channels (or the masked pixels); +inf when
  the images are identical.
* SSIM: skimage's ``structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1)`` per channel, then averaged. Computed with
  ``kornia.metrics.ssim`` (11-tap Gaussian window, sigma 1.5, C1 = 0.01^2, C2 = 0.03^2) with
  ``padding="valid"``: skimage also averages the SSIM map only over pixels whose window lies
  inside the image (it crops (11 - 1) / 2 pixels on each side), so the two agree (the tests check
  it against skimage). kornia rather than pytorch-msssim: it is a torch op on any device and
  already a dependency of the training losses.
* LPIPS (AlexNet): only when the ``lpips`` package is importable; otherwise ``None``.

Geometry metrics compare two meshes in the frame they are given in. Both surfaces are sampled
uniformly by area (``n_points`` each, seeded); each sample's distance to the *other surface*
(not to its samples) is the exact point-to-triangle distance, minimised over the
``CANDIDATE_FACES`` triangles whose centroids are nearest (a KD-tree; no rtree needed).

* Chamfer (IRON's definition, ``eval_mesh.py``): ``(mean d(A -> B) + mean d(B -> A)) / 2``, a
  distance in scene units. IRON measures from the *vertices*; uniform area samples make the
  score independent of the tessellation.
* F-score at ``threshold``: precision = fraction of A's samples within ``threshold`` of B,
  recall = the same from B to A, ``F = 2 P R / (P + R)``.
* Normal consistency: mean ``|n_A . n_B|`` between each sample's face normal and the normal of
  the closest triangle on the other mesh, averaged over both directions (orientation-agnostic,
  as in Occupancy Networks).
* Visible-surface Chamfer: the same mean over only the samples that the capture's cameras see
  on their own mesh (a test passed in: :mod:`ironrender.evaluation.visibility`), so that the
  surface no photograph shows (an underside on a table) does not decide the score.

Structure-from-motion points (real captures, no ground truth): :func:`sfm_point_distances` measures
each sparse point's exact distance to the reconstructed mesh (:func:`point_to_mesh`) in percent
of a reference diameter taken from the points alone, ``D = 2 P99(|p - median(p)|)`` (component-wise
median; the 99th percentile ignores the few stray points far from the object), so the scale does
not move with the reconstruction it judges. SfM points are noisy and include some background, so
the robust summaries are reported: the median, the 90th percentile and the share within 1 % of D.

Material metrics: :func:`aligned_albedo_psnr` removes the albedo/light scale ambiguity with a
per-channel least-squares scale; :func:`roughness_error` is the mean absolute error of the GGX
alpha (optionally of the perceptual roughness sqrt(alpha)).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import kornia
import numpy as np
import torch
import trimesh
from scipy.spatial import cKDTree
from torch import Tensor

ImageLike = np.ndarray | Tensor

#: Image metrics' data range (images in [0, 1]).
DATA_RANGE = 1.0
#: skimage / IRON SSIM window: Gaussian, sigma 1.5, truncated at 3.5 sigma -> 11 taps.
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
#: Triangles examined per sample point (nearest by centroid) for the point-to-mesh distance.
CANDIDATE_FACES = 16
#: Points per batch of the point-to-mesh query (bounds memory to ~50 MB).
DISTANCE_BATCH = 16384
DEFAULT_MESH_SAMPLES = 50_000
#: Default F-score threshold, in scene units (the object is inside the unit sphere).
DEFAULT_F_THRESHOLD = 0.01
#: SfM points farther than this from the origin are left out (the object is in the unit sphere).
SFM_BOUND = 1.0
#: Percentile of the points' distance from their median that sets the reference radius.
SFM_REFERENCE_PERCENTILE = 99.0
#: "Close" SfM point: within this percentage of the reference diameter.
SFM_CLOSE_PERCENT = 1.0


# ------------------------------------------------------------------------------------ images
def _as_tensor(image: ImageLike) -> Tensor:
    if isinstance(image, Tensor):
        return image.detach().to(torch.float64)
    return torch.as_tensor(np.asarray(image), dtype=torch.float64)


def _check_pair(pred: Tensor, gt: Tensor) -> None:
    if pred.shape != gt.shape:
        raise ValueError(f"image shapes differ: {tuple(pred.shape)} vs {tuple(gt.shape)}")


def psnr(pred: ImageLike, gt: ImageLike, mask: ImageLike | None = None) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(1 / MSE)``; +inf for identical images.

    ``mask`` (H, W) selects the pixels (all channels) over which the MSE is taken.
    """
    p, g = _as_tensor(pred), _as_tensor(gt)
    _check_pair(p, g)
    squared = (p - g).square()
    if mask is not None:
        m = _as_tensor(mask) > 0
        if not bool(m.any()):
            raise ValueError("psnr: the mask selects no pixel")
        squared = squared[m]
    mse = float(squared.mean())
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(DATA_RANGE**2 / mse)


def ssim(pred: ImageLike, gt: ImageLike) -> float:
    """Mean SSIM of (H, W, C) or (H, W) images, skimage/IRON settings (module docstring)."""
    p, g = _as_tensor(pred), _as_tensor(gt)
    _check_pair(p, g)
    if p.ndim == 2:
        p, g = p[..., None], g[..., None]
    if min(p.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f"ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels")
    # (H, W, C) -> (C, 1, H, W): every channel its own single-channel image, then the mean.
    p = p.permute(2, 0, 1)[:, None].float()
    g = g.permute(2, 0, 1)[:, None].float()
    ssim_map = kornia.metrics.ssim(p, g, SSIM_WINDOW, max_val=DATA_RANGE, padding="valid")
    return float(ssim_map.mean())


def lpips(pred: ImageLike, gt: ImageLike) -> float | None:
    """LPIPS-Alex (IRON's third image metric) if the ``lpips`` package is importable, else None."""
    try:
        import lpips as lpips_package  # lazy: an optional package, not a dependency
    except ImportError:
        return None
    model = _lpips_model(lpips_package)
    p, g = _as_tensor(pred).float(), _as_tensor(gt).float()
    _check_pair(p, g)
    # (H, W, 3) in [0, 1] -> (1, 3, H, W) in [-1, 1], as LPIPS expects.
    p = p.permute(2, 0, 1)[None] * 2 - 1
    g = g.permute(2, 0, 1)[None] * 2 - 1
    with torch.no_grad():
        return float(model(p, g).mean())


_LPIPS_CACHE: dict[str, object] = {}


def _lpips_model(package) -> torch.nn.Module:
    if "alex" not in _LPIPS_CACHE:
        _LPIPS_CACHE["alex"] = package.LPIPS(net="alex", verbose=False).eval()
    return _LPIPS_CACHE["alex"]


# ------------------------------------------------------------------------------------ materials
def aligned_albedo_psnr(pred: ImageLike, gt: ImageLike, mask: ImageLike | None = None) -> float:
    """PSNR after scaling each channel of ``pred`` by ``s_c = sum p g / sum p^2`` (masked).

    Albedo and light intensity are only determined up to a common scale (and, for colour, a
    per-channel one), so the prediction is first aligned by the least-squares scale. No clipping.
    """
    p, g = _as_tensor(pred), _as_tensor(gt)
    _check_pair(p, g)
    m = torch.ones(p.shape[:2], dtype=torch.bool) if mask is None else _as_tensor(mask) > 0
    pm, gm = p[m], g[m]  # (N, C)
    scale = (pm * gm).sum(0) / (pm.square().sum(0)).clamp_min(torch.finfo(torch.float64).tiny)
    return psnr(p * scale, g, m)


def roughness_error(
    pred_alpha: ImageLike,
    gt_alpha: ImageLike,
    mask: ImageLike | None = None,
    perceptual: bool = False,
) -> float:
    """Mean absolute error of the GGX alpha (or, with ``perceptual``, of sqrt(alpha))."""
    p, g = _as_tensor(pred_alpha), _as_tensor(gt_alpha)
    _check_pair(p, g)
    if perceptual:
        p, g = p.clamp_min(0).sqrt(), g.clamp_min(0).sqrt()
    error = (p - g).abs()
    if mask is not None:
        error = error[_as_tensor(mask) > 0]
    return float(error.mean())


# ------------------------------------------------------------------------------------ geometry
@dataclass
class PointToMesh:
    """Distances (N,) from points to a mesh, the closest points (N, 3) and their faces (N,)."""

    distance: np.ndarray
    closest: np.ndarray
    face: np.ndarray


def point_to_mesh(points: np.ndarray, mesh: trimesh.Trimesh) -> PointToMesh:
    """Exact point-to-triangle distances, minimised over the nearest candidate triangles."""
    k = min(CANDIDATE_FACES, len(mesh.faces))
    tree = cKDTree(mesh.triangles_center)
    triangles = np.asarray(mesh.triangles)
    distance = np.empty(len(points))
    closest = np.empty((len(points), 3))
    face = np.empty(len(points), dtype=np.int64)
    for start in range(0, len(points), DISTANCE_BATCH):
        batch = points[start : start + DISTANCE_BATCH]
        _, candidates = tree.query(batch, k)
        candidates = candidates.reshape(len(batch), k)
        repeated = np.repeat(batch, k, axis=0)
        on_tri = trimesh.triangles.closest_point(triangles[candidates.ravel()], repeated)
        d = np.linalg.norm(on_tri - repeated, axis=1).reshape(len(batch), k)
        best = d.argmin(axis=1)
        rows = np.arange(len(batch))
        distance[start : start + len(batch)] = d[rows, best]
        closest[start : start + len(batch)] = on_tri.reshape(len(batch), k, 3)[rows, best]
        face[start : start + len(batch)] = candidates[rows, best]
    return PointToMesh(distance, closest, face)


@dataclass
class SurfaceComparison:
    """Directed distances and normal cosines between area-uniform samples of two meshes
    (``a_points`` on A, ``b_points`` on B)."""

    a_to_b: np.ndarray
    b_to_a: np.ndarray
    normal_cos_a_to_b: np.ndarray
    normal_cos_b_to_a: np.ndarray
    a_points: np.ndarray
    b_points: np.ndarray


def compare_surfaces(
    mesh_a: trimesh.Trimesh,
    mesh_b: trimesh.Trimesh,
    n_points: int = DEFAULT_MESH_SAMPLES,
    seed: int = 0,
) -> SurfaceComparison:
    """Sample ``n_points`` on each mesh; distances and |normal cosines| to the other mesh."""

    def directed(src: trimesh.Trimesh, dst: trimesh.Trimesh, rng_seed: int):
        points, face = trimesh.sample.sample_surface(src, n_points, seed=rng_seed)
        query = point_to_mesh(np.asarray(points), dst)
        cosine = np.abs(np.sum(src.face_normals[face] * dst.face_normals[query.face], axis=1))
        return query.distance, cosine, np.asarray(points)

    a_to_b, cos_ab, a_points = directed(mesh_a, mesh_b, seed)
    b_to_a, cos_ba, b_points = directed(mesh_b, mesh_a, seed + 1)
    return SurfaceComparison(a_to_b, b_to_a, cos_ab, cos_ba, a_points, b_points)


def chamfer(
    mesh_a: trimesh.Trimesh,
    mesh_b: trimesh.Trimesh,
    n_points: int = DEFAULT_MESH_SAMPLES,
    seed: int = 0,
) -> float:
    """IRON's Chamfer distance: the mean of the two directed mean point-to-surface distances."""
    comparison = compare_surfaces(mesh_a, mesh_b, n_points, seed)
    return chamfer_from(comparison)


def chamfer_from(comparison: SurfaceComparison) -> float:
    return 0.5 * float(comparison.a_to_b.mean() + comparison.b_to_a.mean())


def visible_chamfer_from(
    comparison: SurfaceComparison, seen_a: np.ndarray, seen_b: np.ndarray
) -> float:
    """The Chamfer distance over the samples each mesh shows (``seen_*``: bool per sample,
    :func:`ironrender.evaluation.visibility.seen_by_cameras`); NaN when a side shows none."""
    if not seen_a.any() or not seen_b.any():
        return float("nan")
    return 0.5 * float(comparison.a_to_b[seen_a].mean() + comparison.b_to_a[seen_b].mean())


def f_score(
    pred: trimesh.Trimesh,
    gt: trimesh.Trimesh,
    threshold: float = DEFAULT_F_THRESHOLD,
    n_points: int = DEFAULT_MESH_SAMPLES,
    seed: int = 0,
) -> float:
    """F-score at ``threshold``: harmonic mean of precision (pred -> gt) and recall (gt -> pred)."""
    return f_score_from(compare_surfaces(pred, gt, n_points, seed), threshold)


def f_score_from(comparison: SurfaceComparison, threshold: float) -> float:
    precision = float((comparison.a_to_b < threshold).mean())
    recall = float((comparison.b_to_a < threshold).mean())
    if precision + recall == 0.0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall)


def normal_consistency(
    mesh_a: trimesh.Trimesh,
    mesh_b: trimesh.Trimesh,
    n_points: int = DEFAULT_MESH_SAMPLES,
    seed: int = 0,
) -> float:
    """Mean |n_A . n_B| at closest points, averaged over both directions (1 = identical)."""
    return normal_consistency_from(compare_surfaces(mesh_a, mesh_b, n_points, seed))


def normal_consistency_from(comparison: SurfaceComparison) -> float:
    return 0.5 * float(comparison.normal_cos_a_to_b.mean() + comparison.normal_cos_b_to_a.mean())


@dataclass
class MeshMetrics:
    """Chamfer (scene units), F-score at ``f_threshold`` and normal consistency; with a
    visibility test, the Chamfer over the seen surface and the shares of each mesh's samples
    seen (None without one)."""

    chamfer: float
    f_score: float
    f_threshold: float
    normal_consistency: float
    chamfer_visible: float | None = None
    seen_pred: float | None = None
    seen_gt: float | None = None


#: ``seen(points, mesh) -> (N,) bool``: which sample points on ``mesh`` the capture showed.
SeenTest = Callable[[np.ndarray, trimesh.Trimesh], np.ndarray]


def mesh_metrics(
    pred: trimesh.Trimesh,
    gt: trimesh.Trimesh,
    f_threshold: float = DEFAULT_F_THRESHOLD,
    n_points: int = DEFAULT_MESH_SAMPLES,
    seed: int = 0,
    seen: SeenTest | None = None,
) -> MeshMetrics:
    """All geometry metrics from one sampling of both meshes; the visible-surface Chamfer too
    when ``seen`` is given."""
    comparison = compare_surfaces(pred, gt, n_points, seed)
    metrics = MeshMetrics(
        chamfer=chamfer_from(comparison),
        f_score=f_score_from(comparison, f_threshold),
        f_threshold=f_threshold,
        normal_consistency=normal_consistency_from(comparison),
    )
    if seen is not None:
        seen_pred, seen_gt = seen(comparison.a_points, pred), seen(comparison.b_points, gt)
        metrics.chamfer_visible = visible_chamfer_from(comparison, seen_pred, seen_gt)
        metrics.seen_pred, metrics.seen_gt = float(seen_pred.mean()), float(seen_gt.mean())
    return metrics


# ------------------------------------------------------------------------------------ SfM points
def sfm_reference_diameter(points: np.ndarray) -> float:
    """``D = 2 P99(|p - median(p)|)``: the points' own size, independent of any reconstruction."""
    points = np.asarray(points, dtype=np.float64)
    center = np.median(points, axis=0)
    radius = np.percentile(np.linalg.norm(points - center, axis=1), SFM_REFERENCE_PERCENTILE)
    return 2.0 * float(radius)


@dataclass
class SfMDistances:
    """Distances of the SfM points inside ``SFM_BOUND`` to a mesh, in % of ``diameter``."""

    percent: np.ndarray  # (N,) 100 d(p, mesh) / diameter
    diameter: float  # reference diameter D (scene units), sfm_reference_diameter
    points_total: int  # points given, before the unit-sphere cut

    @property
    def median_percent(self) -> float:
        return float(np.median(self.percent))

    @property
    def p90_percent(self) -> float:
        return float(np.percentile(self.percent, 90.0))

    @property
    def within_close(self) -> float:
        """Share of the points within ``SFM_CLOSE_PERCENT`` % of D (0 to 1)."""
        return float((self.percent <= SFM_CLOSE_PERCENT).mean())


def sfm_point_distances(points: np.ndarray, mesh: trimesh.Trimesh) -> SfMDistances:
    """Each point with ``|p| < SFM_BOUND`` to ``mesh``: ``100 d(p, mesh) / D`` (module docstring).

    Raises ValueError when no point lies inside the bound or the points have no extent.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    inside = points[np.linalg.norm(points, axis=1) < SFM_BOUND]
    if len(inside) == 0:
        raise ValueError(f"none of the {len(points)} SfM points lies inside the unit sphere")
    diameter = sfm_reference_diameter(inside)
    if diameter <= 0.0:
        raise ValueError("the SfM points inside the unit sphere have no extent")
    distance = point_to_mesh(inside, mesh).distance
    return SfMDistances(100.0 * distance / diameter, diameter, len(points))
