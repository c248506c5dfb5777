"""Geometry against ground truth: a GT mesh (synthetic captures) or the SfM points (real ones).

**GT mesh** (``DATA/gt/mesh.obj``): the zero level set of the trained SDF is extracted by marching
cubes (``mesh_resolution``, largest component, :func:`ironrender.fields.level_set.extract_mesh`)
and compared with the GT mesh by area-uniform samples with exact point-to-triangle distances
(:func:`ironrender.evaluation.metrics.mesh_metrics`): ``chamfer`` = (mean d(pred -> gt) + mean
d(gt -> pred)) / 2 (IRON's definition), ``chamfer_percent`` = 100 chamfer / D with D the diameter
of the GT mesh's minimum bounding sphere, ``f_score`` at ``f_threshold_fraction * D`` and
``normal_consistency`` = mean |n_pred . n_gt| at closest points. Given the training cameras,
also ``chamfer_visible_percent``: the same Chamfer over only the samples some training camera
sees on its own mesh, the support plane of ``gt/light.json`` hiding what lies below it
(:mod:`ironrender.evaluation.visibility`), and ``seen_share_gt``, the share of the true surface
that the photographs show.

**Structure-from-motion points** (``DATA/sparse_points_norm.npz``, or one level up; written by
``iron import``): a real capture has no GT mesh, but its SfM points lie on the object's surface.
Each point inside the unit sphere is measured against the mesh a user gets (``RUN/export/
mesh.obj``, else the marching-cubes mesh) in percent of the points' own reference diameter
``D = 2 P99(|p - median(p)|)`` (:func:`ironrender.evaluation.metrics.sfm_point_distances`).
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import torch
import trimesh

from ironrender.data.cameras import Cameras
from ironrender.data.capture.files import SPARSE_POINTS_FILE
from ironrender.errors import IronError
from ironrender.evaluation.config import EvalConfig
from ironrender.evaluation.metrics import mesh_metrics, sfm_point_distances
from ironrender.evaluation.visibility import seen_by_cameras
from ironrender.export.writers import OBJ_NAME
from ironrender.fields.base import SDFField
from ironrender.fields.level_set import extract_mesh
from ironrender.run_folder import EXPORT_DIR
from ironrender.training.trained_model import TrainedModel

#: Points per SDF query.
QUERY_CHUNK = 65536


def bounding_diameter(mesh) -> float:
    """Diameter of the minimum bounding sphere of a mesh's vertices."""
    _, radius = trimesh.nsphere.minimum_nsphere(np.asarray(mesh.vertices))
    return 2.0 * float(radius)


def load_gt_mesh(gt_dir: Path):
    return trimesh.load(gt_dir / "mesh.obj", force="mesh", process=False)


def marching_cubes_mesh(sdf: SDFField, config: EvalConfig, device: torch.device | str):
    """The zero level set at ``config.mesh_resolution`` inside the unit cube, largest component."""
    return extract_mesh(sdf, config.mesh_resolution, 1.0, QUERY_CHUNK, device, True)


def support_plane(gt_dir: Path) -> tuple[np.ndarray, float] | None:
    """``(up, height)`` of the plane the synthetic object stands on (``gt/light.json``), or None."""
    path = gt_dir / "light.json"
    if not path.is_file():
        return None
    plane = (json.loads(path.read_text()).get("scene") or {}).get("support_plane")
    if not plane:
        return None
    return np.asarray(plane["normal"], dtype=np.float64), float(plane["height"])


def geometry_metrics(
    sdf: SDFField,
    gt_mesh,
    config: EvalConfig,
    device: torch.device | str,
    cameras: Cameras | None = None,
    support: tuple[np.ndarray, float] | None = None,
) -> dict[str, float]:
    """Chamfer (and % of the GT diameter), F-score and normal consistency; with the training
    ``cameras``, the visible-surface Chamfer too (module docstring)."""
    pred = marching_cubes_mesh(sdf, config, device)
    diameter = bounding_diameter(gt_mesh)
    threshold = config.f_threshold_fraction * diameter
    seen = None if cameras is None else partial(seen_by_cameras, cameras=cameras, support=support)
    result = mesh_metrics(pred, gt_mesh, threshold, config.mesh_samples, config.seed, seen)
    metrics = {
        "chamfer": result.chamfer,
        "chamfer_percent": 100.0 * result.chamfer / diameter,
        "f_score": result.f_score,
        "f_threshold": threshold,
        "normal_consistency": result.normal_consistency,
        "gt_diameter": diameter,
    }
    if result.chamfer_visible is not None:
        metrics["chamfer_visible_percent"] = 100.0 * result.chamfer_visible / diameter
        metrics["seen_share_gt"] = result.seen_gt
        metrics["seen_share_pred"] = result.seen_pred
    return metrics


def find_sparse_points(data_dir: Path) -> Path | None:
    """``DATA/sparse_points_norm.npz``, else the same file one level up (a capture folder that
    holds the dataset beside its SfM output), else None."""
    for folder in (data_dir, data_dir.parent):
        if (folder / SPARSE_POINTS_FILE).is_file():
            return folder / SPARSE_POINTS_FILE
    return None


def read_sparse_points(path: Path) -> np.ndarray:
    """The (N, 3) ``points`` of a sparse-points file (normalised frame)."""
    try:
        with np.load(path) as data:
            points = np.asarray(data["points"], dtype=np.float64)
    except (OSError, ValueError, KeyError) as exc:
        raise IronError(f"{path}: not a sparse-points file ({exc})") from exc
    if points.ndim != 2 or points.shape[1] != 3:
        raise IronError(f"{path}: points of shape {points.shape}, expected (N, 3)")
    return points


def reconstructed_mesh(
    model: TrainedModel, export_dir: Path, config: EvalConfig, device: torch.device | str
):
    """The mesh a user gets (``export/mesh.obj``) if present, else the SDF's marching-cubes mesh.

    Returns ``(mesh, description)``.
    """
    path = export_dir / OBJ_NAME
    if path.is_file():
        mesh = trimesh.load(path, force="mesh", process=False, skip_materials=True)
        return mesh, f"{EXPORT_DIR}/{OBJ_NAME} ({len(mesh.faces)} faces)"
    mesh = marching_cubes_mesh(model.sdf, config, device)
    return mesh, f"marching cubes of the SDF at {config.mesh_resolution}^3, largest component"


def sfm_metrics(points: np.ndarray, mesh) -> tuple[dict[str, float], int]:
    """Distances of the SfM points inside the unit sphere to ``mesh`` (module docstring).

    Returns the ``mean`` entries and the number of points measured.
    """
    try:
        result = sfm_point_distances(points, mesh)
    except ValueError as exc:
        raise IronError(str(exc)) from exc
    scores = {
        "sfm_median_percent": result.median_percent,
        "sfm_p90_percent": result.p90_percent,
        "sfm_within_1pct": result.within_close,
        "sfm_diameter": result.diameter,
    }
    return scores, len(result.percent)
