"""``iron export`` and ``iron eval``: the trained model on held-out views, against ground truth.

Everything here reads a run folder (``RUN/stage1``, ``RUN/stage2``, ``RUN/export``) and a dataset
folder (``DATA/test``, optionally ``DATA/gt`` from ``iron synth``) and writes ``RUN/eval``:

``views/<name>_gt.png, _pred.png, _error.png``
    Each held-out test view rendered by the trained model (stage 2: sphere tracing with edge
    sampling, :func:`ironrender.training.stage2.render_view`; stage 1 only: NeuS volume
    rendering of the radiance field), the photograph, and ``|pred - gt| x 4``.
``relight/<name>_gt.png, _pred.png, _scaled.png``, ``turntable/frame_XX.png``
    The exported asset rendered by Mitsuba 3 (:mod:`ironrender.evaluation.relight`).
``metrics.json``
    ``{"mean": {scalars}, "per_view": [...], "relight": {...}, "info": {...}}``; then
    :func:`ironrender.evaluation.report.build_report` writes ``RUN/report.html``.

**Image metrics** follow IRON's ``eval_image_folder.py`` (reference §6): prediction and
photograph are compared as the 8-bit gamma-encoded images written to disk,
``round(255 clip(x, 0, 1)^(1/2.2)) / 255``, over the full image (black background included),
PSNR ``10 log10(1 / MSE)`` and SSIM (skimage settings), averaged over views; LPIPS-Alex where
the ``lpips`` package is importable. ``psnr_object`` also reports PSNR over the pixels the
ground-truth mask covers (synthetic data), because the black background inflates the
full-image number. A perfect prediction gives PSNR = inf (written as ``Infinity`` in JSON).

**Geometry** (``DATA/gt/mesh.obj``): the zero level set of the trained SDF is extracted by
marching cubes (``mesh_resolution``, largest component, :func:`ironrender.export.mesh.
extract_mesh`) and compared with the GT mesh by area-uniform samples with exact point-to-triangle
distances (:func:`ironrender.evaluation.metrics.mesh_metrics`):

* ``chamfer`` = (mean d(pred -> gt) + mean d(gt -> pred)) / 2 (IRON's definition, scene units),
  ``chamfer_percent`` = 100 chamfer / D, D = diameter of the GT mesh's minimum bounding sphere;
* ``f_score`` at threshold ``f_threshold_fraction * D`` (default 1 % of D, reported as
  ``f_threshold``); ``normal_consistency`` = mean |n_pred . n_gt| at closest points.

**Materials** (``DATA/gt/{diffuse_albedo, specular_albedo, roughness}.exr`` over the GT mesh
UVs): ``material_samples`` points are drawn uniformly on the GT surface; their UVs give the GT
values (bilinear lookup). Each point is projected onto the predicted zero level set by Newton
steps ``x <- x - s(x) g / |g|^2`` (g = grad s) and the predicted materials are queried there
with the unit normal ``g / |g|``. ``albedo_psnr`` is the diffuse-albedo PSNR (linear values)
after the per-channel least-squares scale (albedo and light are only known up to a common
factor; :func:`~ironrender.evaluation.metrics.aligned_albedo_psnr`), ``albedo_psnr_raw``
without it; ``roughness_error`` is the mean absolute error of the GGX alpha
(``roughness_error_perceptual`` of sqrt(alpha)); ``specular_error`` the MAE of F0;
``light_ratio`` = predicted / GT flash intensity.

**Relighting** (``DATA/gt/envmap.exr`` and ``DATA/gt/relit/``): the exported asset (``RUN/export``;
exported first with the quick defaults if missing) under the environment map from the test
cameras, compared like the views. The asset's albedo inherits the albedo/light scale ambiguity:
only the product ``I rho`` is measured by flash photographs, while relighting needs ``rho``
itself. So two numbers: ``relight_psnr`` / ``relight_ssim`` **raw** (the asset as exported), and
``relight_psnr_scaled`` / ``relight_ssim_scaled`` after ONE global scale ``s`` (all views, all
channels, linear least squares ``s = sum p g / sum p^2``), reported as ``relight_scale``
(1 = the exported albedo scale was right).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ironrender.data.cameras import Cameras
from ironrender.data.images import GAMMA, read_image, write_data_png
from ironrender.errors import IronError
from ironrender.export.bake import MaterialsFn
from ironrender.fields.base import SDFField

GT_DIR = "gt"
EVAL_DIR = "eval"
EXPORT_DIR = "export"
VIEWS_DIR = "views"
RELIGHT_DIR = "relight"
TURNTABLE_DIR = "turntable"
METRICS_NAME = "metrics.json"
PROGRESS_FILE = "progress.json"  # written by ironrender.pipeline; records the data folder
CONFIG_FILE = "config.json"
#: 8-bit PNG levels: metrics compare the images exactly as written to disk (IRON).
PNG_LEVELS = 255.0
#: The stage-1 stand-in asset's specular albedo (F0 of a common dielectric) and GGX alpha.
STAND_IN_SPECULAR = 0.04
STAND_IN_ROUGHNESS = 0.3
#: Camera distance assumed for the stage-1 stand-in light when no dataset is known
#: (``iron synth``'s default).
FALLBACK_CAMERA_DISTANCE = 3.0
#: A mask pixel belongs to the object when at least half of its footprint is covered.
MASK_THRESHOLD = 0.5
#: Newton projection: gradients with a smaller squared norm leave the point where it is.
MIN_GRAD_NORM2 = 1e-8
#: Points per SDF / material query.
QUERY_CHUNK = 65536
SUMMARY_KEYS = (
    "psnr",
    "ssim",
    "lpips",
    "psnr_object",
    "chamfer_percent",
    "f_score",
    "normal_consistency",
    "albedo_psnr",
    "roughness_error",
    "light_ratio",
    "relight_psnr",
    "relight_psnr_scaled",
    "relight_scale",
)


@dataclass
class EvalConfig:
    """What ``iron eval`` computes; defaults are quick on 2 CPU cores at 128x128."""

    max_views: int = 0  # 0: every test view
    edges: bool = True  # stage-2 renders with edge pixels blended (as trained)
    render_chunk_rows: int = 64
    error_gain: float = 4.0  # the error images show |pred - gt| times this
    mesh_resolution: int = 192  # as the fast export: ~7M SDF queries
    mesh_samples: int = 50_000
    f_threshold_fraction: float = 0.01  # of the GT bounding-sphere diameter
    material_samples: int = 20_000
    projection_steps: int = 3
    relight: bool = True
    relight_spp: int = 64
    turntable_frames: int = 6
    turntable_spp: int = 64
    turntable_elevation_deg: float = 20.0
    export_if_missing: bool = True
    seed: int = 0
    progress: bool = True


# ----------------------------------------------------------------------------- the model
@dataclass
class TrainedModel:
    """What evaluation needs from a run, whatever stage produced it.

    ``render(cameras, index) -> (H, W, 3)`` linear radiance of one full view under the capture's
    flash; ``materials_fn(points, unit normals) -> {diffuse_albedo, specular_albedo,
    roughness}`` (GGX alpha); ``light_intensity`` the flash intensity I those materials go with.
    """

    sdf: SDFField
    render: Callable[[Cameras, int], Tensor]
    materials_fn: MaterialsFn | None = None
    light_intensity: float | None = None
    stage: str = "stage2"
    diffuse_model: str = "lambert"  # the diffuse lobe the materials go with (rendering/brdf.py)
    notice: str = ""


def load_trained_model(
    run_dir: str | Path,
    device: torch.device | str = "cpu",
    camera_distance: float | None = None,
    edges: bool = True,
    chunk_rows: int = 64,
) -> TrainedModel:
    """Stage 2 if ``RUN/stage2`` has a checkpoint, else stage 1 with a stand-in asset.

    Stage 1 only: the views are NeuS volume renderings of the radiance field; the materials are
    a stand-in (notice in ``TrainedModel.notice``): diffuse albedo = the radiance field seen
    along ``-n`` (decoded to linear), F0 = 0.04, alpha = 0.3, and the light ``I = pi d^2`` with
    ``d`` the typical camera distance, so that a frontal surface at the capture distance renders
    at its stage-1 colour (``L = I / d^2 rho / pi``).
    """
    run_dir = Path(run_dir)
    device = torch.device(device)
    if (run_dir / "stage2" / "checkpoint.pt").is_file():
        return _load_stage2_model(run_dir, device, edges, chunk_rows)
    if (run_dir / "stage1" / "checkpoint.pt").is_file():
        return _load_stage1_model(run_dir, device, camera_distance)
    raise IronError(f"{run_dir}: no stage-1 or stage-2 checkpoint; train it first (`iron run`)")


def _load_stage2_model(
    run_dir: Path, device: torch.device, edges: bool, chunk_rows: int
) -> TrainedModel:
    from ironrender.config import from_dict
    from ironrender.fields.materials import materials_function
    from ironrender.training.checkpoint import load_checkpoint
    from ironrender.training.stage2 import (
        CHECKPOINT_NAME,
        STAGE_DIR,
        Stage2Config,
        load_stage2,
        render_view,
        scene_render_config,
    )

    sdf, materials = load_stage2(run_dir, device)
    path = run_dir / STAGE_DIR / CHECKPOINT_NAME
    config = from_dict(Stage2Config, load_checkpoint(path, "cpu")["config"], str(path))

    def render(cameras: Cameras, index: int) -> Tensor:
        settings = scene_render_config(config, cameras)
        image = render_view(
            sdf, materials, cameras, index, settings, edges=edges and config.edges,
            chunk_rows=chunk_rows,
        )  # fmt: skip
        return image.color

    return TrainedModel(
        sdf=sdf,
        render=render,
        materials_fn=materials_function(sdf, materials),
        light_intensity=float(materials.light_intensity.detach()),
        stage="stage2",
        diffuse_model=config.materials.diffuse_model,
    )


def _load_stage1_model(
    run_dir: Path, device: torch.device, camera_distance: float | None
) -> TrainedModel:
    from ironrender.config import from_dict
    from ironrender.rendering.volume import render_image
    from ironrender.training.checkpoint import load_checkpoint
    from ironrender.training.stage1 import CHECKPOINT_NAME, STAGE_DIR, Stage1Config, load_stage1

    model = load_stage1(run_dir, device)
    path = run_dir / STAGE_DIR / CHECKPOINT_NAME
    config = from_dict(Stage1Config, load_checkpoint(path, "cpu")["config"], str(path))
    gamma_domain = config.train.loss_domain == "gamma"

    def to_linear(rgb: Tensor) -> Tensor:
        return rgb.clamp(0.0, 1.0) ** GAMMA if gamma_domain else rgb

    def render(cameras: Cameras, index: int) -> Tensor:
        with torch.no_grad():
            out = render_image(
                cameras, index, model.sdf, model.radiance, model.variance.inv_s(),
                model.background, config.volume, chunk=config.log.render_chunk,
            )  # fmt: skip
        return to_linear(out.rgb)

    def materials_fn(points: Tensor, normals: Tensor) -> dict[str, Tensor]:
        features = model.sdf(points).features
        albedo = to_linear(model.radiance(points, normals, -normals, features))
        ones = points.new_ones(len(points), 1)
        return {
            "diffuse_albedo": albedo,
            "specular_albedo": STAND_IN_SPECULAR * ones,
            "roughness": STAND_IN_ROUGHNESS * ones,
        }

    distance = camera_distance or FALLBACK_CAMERA_DISTANCE
    return TrainedModel(
        sdf=model.sdf,
        render=render,
        materials_fn=materials_fn,
        light_intensity=math.pi * distance**2,
        stage="stage1",
        notice=(
            "no stage-2 checkpoint: using stage 1 (views: volume rendering of the radiance"
            " field; materials: the radiance field as a view-independent albedo stand-in,"
            f" F0 {STAND_IN_SPECULAR}, alpha {STAND_IN_ROUGHNESS}, light pi d^2 at d ="
            f" {distance:.3g})"
        ),
    )


# ----------------------------------------------------------------------------- run folders
def resolve_data_dir(run_dir: str | Path, data_dir: str | Path | None) -> Path:
    """``data_dir`` if given, else the dataset recorded in ``RUN/progress.json`` (``iron run``)."""
    if data_dir is not None:
        path = Path(data_dir)
    else:
        path = None
        for name, key in ((PROGRESS_FILE, "data"), (CONFIG_FILE, "data")):
            record = Path(run_dir) / name
            if record.is_file():
                value = json.loads(record.read_text()).get(key)
                if value:
                    path = Path(value)
                    break
        if path is None:
            raise IronError(f"{run_dir} does not record its dataset; pass --data DATA")
    if not (path / "test").is_dir():
        raise IronError(f"{path}: no test/ split to evaluate on")
    return path


def median_camera_distance(data_dir: Path | None) -> float | None:
    """Median |camera centre| of the training split, or None when there is no dataset."""
    if data_dir is None:
        return None
    from ironrender.data.dataset import CAMERA_FILE, cameras_from_dict, read_camera_dict

    path = data_dir / "train" / CAMERA_FILE
    if not path.is_file():
        return None
    entries = read_camera_dict(path)
    cameras = cameras_from_dict(entries, list(entries))
    return float(cameras.centers.norm(dim=-1).median())


def export_run(
    run_dir: str | Path,
    config=None,
    device: torch.device | str = "cpu",
    data_dir: str | Path | None = None,
    model: TrainedModel | None = None,
):
    """Export the run's trained model to ``RUN/export`` (:func:`ironrender.export.export_asset`).

    ``config`` defaults to :func:`ironrender.pipeline.fast_export_config`. Returns the
    :class:`~ironrender.export.writers.ExportResult`.
    """
    from ironrender.export.writers import export_asset

    run_dir = Path(run_dir)
    if config is None:
        from ironrender.pipeline import fast_export_config

        config = fast_export_config()
    if model is None:
        try:
            data = resolve_data_dir(run_dir, data_dir)
        except IronError:
            data = None
        model = load_trained_model(run_dir, device, median_camera_distance(data))
        if model.notice:
            print(f"notice: {model.notice}")
    if model.materials_fn is None or model.light_intensity is None:
        raise IronError("the model has no materials to export")
    return export_asset(
        model.sdf,
        model.materials_fn,
        model.light_intensity,
        run_dir / EXPORT_DIR,
        config,
        device,
        model.diffuse_model,
    )


# ----------------------------------------------------------------------------- images
def encode_8bit(linear: np.ndarray | Tensor) -> np.ndarray:
    """Linear radiance -> the gamma-encoded 8-bit values a PNG stores, as floats in [0, 1]."""
    if isinstance(linear, Tensor):
        linear = linear.detach().cpu().numpy()
    encoded = np.clip(np.asarray(linear, dtype=np.float64), 0.0, 1.0) ** (1.0 / GAMMA)
    return np.round(encoded * PNG_LEVELS) / PNG_LEVELS


def image_scores(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> dict:
    """PSNR, SSIM (and LPIPS if available, PSNR over ``mask`` if given) of encoded images."""
    from ironrender.evaluation import metrics

    scores = {"psnr": metrics.psnr(pred, gt), "ssim": metrics.ssim(pred, gt)}
    perceptual = metrics.lpips(pred, gt)
    if perceptual is not None:
        scores["lpips"] = perceptual
    if mask is not None and mask.any():
        scores["psnr_object"] = metrics.psnr(pred, gt, mask)
    return scores


def _write_triplet(folder: Path, stem: str, pred: np.ndarray, gt: np.ndarray, gain: float):
    write_data_png(folder / f"{stem}_gt.png", gt)
    write_data_png(folder / f"{stem}_pred.png", pred)
    write_data_png(folder / f"{stem}_error.png", np.abs(pred - gt) * gain)


def _mean(rows: list[dict], key: str) -> float | None:
    values = [row[key] for row in rows if key in row]
    return float(np.mean(values)) if values else None


def evaluate_views(
    model: TrainedModel,
    cameras: Cameras,
    images: Tensor,
    names: list[str],
    out_dir: Path,
    config: EvalConfig,
    masks: list[np.ndarray | None] | None = None,
) -> list[dict]:
    """Render each view, write the image triplet, return per-view scores."""
    from tqdm.auto import tqdm

    rows = []
    for i in tqdm(range(len(names)), desc="eval views", unit="view", disable=not config.progress):
        pred = encode_8bit(model.render(cameras, i))
        gt = encode_8bit(images[i])
        stem = Path(names[i]).stem
        _write_triplet(out_dir, stem, pred, gt, config.error_gain)
        mask = masks[i] if masks is not None else None
        rows.append({"view": stem} | image_scores(pred, gt, mask))
    return rows


def _read_masks(gt_dir: Path, names: list[str]) -> list[np.ndarray | None] | None:
    folder = gt_dir / "masks" / "test"
    if not folder.is_dir():
        return None
    from PIL import Image

    masks: list[np.ndarray | None] = []
    for name in names:
        path = folder / name
        if not path.is_file():
            masks.append(None)
            continue
        with Image.open(path) as image:
            masks.append(np.asarray(image.convert("L"), dtype=np.float64) / 255.0 >= MASK_THRESHOLD)
    return masks


# ----------------------------------------------------------------------------- geometry
def bounding_diameter(mesh) -> float:
    """Diameter of the minimum bounding sphere of a mesh's vertices."""
    import trimesh

    _, radius = trimesh.nsphere.minimum_nsphere(np.asarray(mesh.vertices))
    return 2.0 * float(radius)


def load_gt_mesh(gt_dir: Path):
    import trimesh

    return trimesh.load(gt_dir / "mesh.obj", force="mesh", process=False)


def geometry_metrics(
    sdf: SDFField, gt_mesh, config: EvalConfig, device: torch.device | str
) -> dict[str, float]:
    """Chamfer (and % of the GT diameter), F-score and normal consistency; module docstring."""
    from ironrender.evaluation.metrics import mesh_metrics
    from ironrender.export.mesh import extract_mesh

    pred = extract_mesh(sdf, config.mesh_resolution, 1.0, QUERY_CHUNK, device, True)
    diameter = bounding_diameter(gt_mesh)
    threshold = config.f_threshold_fraction * diameter
    result = mesh_metrics(pred, gt_mesh, threshold, config.mesh_samples, config.seed)
    return {
        "chamfer": result.chamfer,
        "chamfer_percent": 100.0 * result.chamfer / diameter,
        "f_score": result.f_score,
        "f_threshold": threshold,
        "normal_consistency": result.normal_consistency,
        "gt_diameter": diameter,
    }


# ----------------------------------------------------------------------------- materials
def sample_texture(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup of a (H, W, C) map at (N, 2) UVs, clamped at the borders.

    Texel convention (export and ``iron synth`` alike): row ``r``, column ``c`` has its centre at
    ``(u, v) = ((c + 0.5) / W, 1 - (r + 0.5) / H)``.
    """
    height, width = texture.shape[:2]
    x = np.clip(uv[:, 0] * width - 0.5, 0.0, width - 1.0)
    y = np.clip((1.0 - uv[:, 1]) * height - 0.5, 0.0, height - 1.0)
    x0 = np.minimum(np.floor(x).astype(np.int64), width - 2) if width > 1 else np.zeros_like(x, int)
    y0 = (
        np.minimum(np.floor(y).astype(np.int64), height - 2)
        if height > 1
        else np.zeros_like(y, int)
    )
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    wx, wy = (x - x0)[:, None], (y - y0)[:, None]
    top = (1 - wx) * texture[y0, x0] + wx * texture[y0, x1]
    bottom = (1 - wx) * texture[y1, x0] + wx * texture[y1, x1]
    return (1 - wy) * top + wy * bottom


@dataclass
class SurfaceMaterials:
    """GT on the GT surface: points (N, 3), diffuse (N, 3), specular (N, 3), alpha (N, 1)."""

    points: np.ndarray
    diffuse_albedo: np.ndarray
    specular_albedo: np.ndarray
    roughness: np.ndarray


def sample_gt_materials(gt_dir: Path, gt_mesh, count: int, seed: int) -> SurfaceMaterials:
    """Area-uniform points on the GT mesh and the GT maps looked up at their UVs."""
    import trimesh

    uv = getattr(gt_mesh.visual, "uv", None)
    if uv is None or len(uv) != len(gt_mesh.vertices):
        raise IronError(f"{gt_dir / 'mesh.obj'}: the GT mesh has no UVs; no material metrics")
    points, face = trimesh.sample.sample_surface(gt_mesh, count, seed=seed)
    bary = trimesh.triangles.points_to_barycentric(gt_mesh.triangles[face], points)
    point_uv = np.einsum("nk,nkd->nd", bary, np.asarray(uv)[gt_mesh.faces[face]])
    maps = {
        name: read_image(gt_dir / f"{name}.exr")
        for name in ("diffuse_albedo", "specular_albedo", "roughness")
    }
    return SurfaceMaterials(
        points=np.asarray(points),
        diffuse_albedo=sample_texture(maps["diffuse_albedo"], point_uv),
        specular_albedo=sample_texture(maps["specular_albedo"], point_uv),
        roughness=sample_texture(maps["roughness"], point_uv)[:, :1],
    )


def project_to_surface(sdf: SDFField, points: Tensor, steps: int) -> tuple[Tensor, Tensor, Tensor]:
    """Newton steps onto the zero level set, ``x <- x - s(x) g / |g|^2``.

    Returns the projected points, their unit normals ``g / |g|`` and the remaining ``|s|``.
    """
    out_points, out_normals, out_residual = [], [], []
    for start in range(0, len(points), QUERY_CHUNK):
        x = points[start : start + QUERY_CHUNK]
        for _ in range(steps):
            sample = sdf.with_gradients(x, create_graph=False)
            g = sample.gradients
            norm2 = (g * g).sum(-1, keepdim=True)
            step = torch.where(norm2 > MIN_GRAD_NORM2, sample.sdf[..., None] * g / norm2, 0.0)
            x = (x - step).detach()
        sample = sdf.with_gradients(x, create_graph=False)
        normals = torch.nn.functional.normalize(sample.gradients, dim=-1)
        out_points.append(x)
        out_normals.append(normals)
        out_residual.append(sample.sdf.abs())
    return torch.cat(out_points), torch.cat(out_normals), torch.cat(out_residual)


def _query_materials(fn: MaterialsFn, points: Tensor, normals: Tensor) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {}
    with torch.no_grad():
        for start in range(0, len(points), QUERY_CHUNK):
            values = fn(points[start : start + QUERY_CHUNK], normals[start : start + QUERY_CHUNK])
            for name, value in values.items():
                array = value.detach().cpu().numpy() if isinstance(value, Tensor) else value
                parts.setdefault(name, []).append(np.asarray(array, dtype=np.float64))
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def material_metrics(
    model: TrainedModel,
    gt: SurfaceMaterials,
    config: EvalConfig,
    device: torch.device | str,
    gt_light: float | None = None,
) -> dict[str, float]:
    """Albedo PSNR (aligned and raw), roughness and specular errors, light ratio."""
    from ironrender.evaluation.metrics import aligned_albedo_psnr, psnr, roughness_error

    if model.materials_fn is None:
        return {}
    points = torch.as_tensor(gt.points, dtype=torch.float32, device=device)
    projected, normals, residual = project_to_surface(model.sdf, points, config.projection_steps)
    pred = _query_materials(model.materials_fn, projected, normals)
    albedo, specular = pred["diffuse_albedo"], pred["specular_albedo"]
    specular = np.broadcast_to(specular, (len(specular), 3))  # grey (N, 1) or RGB (N, 3)
    result = {
        "albedo_psnr": aligned_albedo_psnr(albedo[:, None], gt.diffuse_albedo[:, None]),
        "albedo_psnr_raw": psnr(albedo, gt.diffuse_albedo),
        "roughness_error": roughness_error(pred["roughness"][:, :1], gt.roughness),
        "roughness_error_perceptual": roughness_error(
            pred["roughness"][:, :1], gt.roughness, perceptual=True
        ),
        "specular_error": float(np.abs(specular - gt.specular_albedo).mean()),
        "projection_residual": float(residual.mean()),
    }
    if gt_light is not None and model.light_intensity is not None:
        result["light_ratio"] = model.light_intensity / gt_light
    return result


# ----------------------------------------------------------------------------- relighting
def _relit_ground_truth(gt_dir: Path, stem: str) -> np.ndarray | None:
    for suffix in (".exr", ".png"):
        path = gt_dir / "relit" / f"{stem}{suffix}"
        if path.is_file():
            return read_image(path)
    return None


def fit_global_scale(preds: np.ndarray, gts: np.ndarray) -> float:
    """The one scale ``s`` minimising ``sum (s p - g)^2`` over all views, pixels and channels."""
    p, g = np.asarray(preds, np.float64), np.asarray(gts, np.float64)
    denominator = float((p * p).sum())
    return float((p * g).sum() / denominator) if denominator > 0 else 1.0


def relight_metrics(
    export_dir: Path,
    gt_dir: Path,
    cameras: Cameras,
    names: list[str],
    out_dir: Path,
    config: EvalConfig,
) -> dict | None:
    """Relit test views of the exported asset vs ``gt/relit`` (raw and one global scale)."""
    from ironrender.evaluation.relight import render_relit

    envmap_path = gt_dir / "envmap.exr"
    stems = [Path(n).stem for n in names]
    gts = [_relit_ground_truth(gt_dir, s) for s in stems]
    keep = [i for i, g in enumerate(gts) if g is not None]
    if not envmap_path.is_file() or not keep:
        return None
    cameras = cameras[torch.as_tensor(keep, device=cameras.device)]
    gt_images = np.stack([gts[i] for i in keep])
    try:
        preds = render_relit(export_dir, read_image(envmap_path), cameras, config.relight_spp)
    except ValueError as exc:  # e.g. an off-centre principal point (Mitsuba's sensor lacks it)
        print(f"warning: no relighting: {exc}")
        return None
    scale = fit_global_scale(preds, gt_images)
    rows = []
    for k, i in enumerate(keep):
        gt = encode_8bit(gt_images[k])
        raw = encode_8bit(preds[k])
        scaled = encode_8bit(scale * preds[k])
        write_data_png(out_dir / f"{stems[i]}_gt.png", gt)
        write_data_png(out_dir / f"{stems[i]}_pred.png", raw)
        write_data_png(out_dir / f"{stems[i]}_scaled.png", scaled)
        raw_scores = image_scores(raw, gt)
        scaled_scores = image_scores(scaled, gt)
        rows.append(
            {"view": stems[i]}
            | {k2: v for k2, v in raw_scores.items()}
            | {f"{k2}_scaled": v for k2, v in scaled_scores.items()}
        )
    keys = [k for k in rows[0] if k != "view"]
    return {
        "mean": {key: _mean(rows, key) for key in keys},
        "scale": scale,
        "per_view": rows,
        "note": (
            "raw: the exported asset as is; *_scaled: after one global least-squares scale of"
            " the rendered radiance (all views, linear) = `scale`. Images compared as 8-bit"
            " gamma-2.2 PNGs, full image. Renders: Mitsuba 3 direct illumination under"
            " gt/envmap.exr, emitter hidden."
        ),
    }


def write_turntable(export_dir: Path, out_dir: Path, distance: float, fov: float, size: int,
                    config: EvalConfig) -> list[Path]:  # fmt: skip
    """``config.turntable_frames`` flash-lit frames of the exported asset (PNG)."""
    from ironrender.data.images import write_image
    from ironrender.evaluation.relight import TurntableConfig, render_turntable

    turntable = TurntableConfig(
        frames=config.turntable_frames,
        size=size,
        spp=config.turntable_spp,
        elevation_deg=config.turntable_elevation_deg,
        distance=distance,
        fov_deg=fov,
    )
    frames = render_turntable(export_dir, turntable, seed=config.seed)
    paths = []
    for k, frame in enumerate(frames):
        path = out_dir / f"frame_{k:02d}.png"
        write_image(path, frame)
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------- driver
def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def evaluate_run(
    run_dir: str | Path,
    data_dir: str | Path | None = None,
    device: torch.device | str = "cpu",
    config: EvalConfig | None = None,
    model: TrainedModel | None = None,
) -> dict:
    """Evaluate a run on its dataset's test split (module docstring); returns ``metrics.json``.

    ``data_dir`` defaults to the dataset recorded by ``iron run``. ``model`` overrides the one
    loaded from the run's checkpoints (tests, other pipelines).
    """
    from ironrender.data.dataset import load_split
    from ironrender.evaluation.report import build_report

    config = config or EvalConfig()
    run_dir, device = Path(run_dir), torch.device(device)
    data = resolve_data_dir(run_dir, data_dir)
    gt_dir = data / GT_DIR
    eval_dir = run_dir / EVAL_DIR
    timings: dict[str, float] = {}

    if model is None:
        model = load_trained_model(
            run_dir, device, median_camera_distance(data), config.edges, config.render_chunk_rows
        )
    if model.notice:
        print(f"notice: {model.notice}")
    split = load_split(data, "test", device)
    for folder in (VIEWS_DIR, RELIGHT_DIR, TURNTABLE_DIR):  # no stale images from earlier evals
        shutil.rmtree(eval_dir / folder, ignore_errors=True)
    count = len(split) if config.max_views <= 0 else min(config.max_views, len(split))
    names = split.names[:count]
    cameras = split.cameras[:count]

    start = time.perf_counter()
    masks = _read_masks(gt_dir, names) if gt_dir.is_dir() else None
    per_view = evaluate_views(
        model, cameras, split.images[:count], names, eval_dir / VIEWS_DIR, config, masks
    )
    timings["views"] = time.perf_counter() - start
    mean: dict[str, float] = {
        key: value
        for key in ("psnr", "ssim", "lpips", "psnr_object")
        if (value := _mean(per_view, key)) is not None
    }

    gt_mesh = None
    if (gt_dir / "mesh.obj").is_file():
        start = time.perf_counter()
        gt_mesh = load_gt_mesh(gt_dir)
        try:
            mean |= geometry_metrics(model.sdf, gt_mesh, config, device)
        except IronError as exc:  # e.g. the SDF has no zero crossing: the reconstruction failed
            print(f"warning: no geometry metrics: {exc}")
        timings["geometry"] = time.perf_counter() - start
        start = time.perf_counter()
        gt_light = _gt_light(gt_dir)
        try:
            surface = sample_gt_materials(gt_dir, gt_mesh, config.material_samples, config.seed)
            mean |= material_metrics(model, surface, config, device, gt_light)
        except IronError as exc:
            print(f"warning: no material metrics: {exc}")
        timings["materials"] = time.perf_counter() - start

    relight = None
    export_dir = run_dir / EXPORT_DIR
    wants_asset = config.relight or config.turntable_frames > 0
    if wants_asset and not (export_dir / "scene.xml").is_file() and config.export_if_missing:
        print(f"exporting the asset first ({export_dir}; `iron export` sets its options)")
        start = time.perf_counter()
        from ironrender.pipeline import fast_export_config

        quick = dataclasses.replace(fast_export_config(), progress=config.progress)
        export_run(run_dir, quick, device, data, model)
        timings["export"] = time.perf_counter() - start
    if config.relight and (export_dir / "scene.xml").is_file() and gt_dir.is_dir():
        start = time.perf_counter()
        relight = relight_metrics(
            export_dir, gt_dir, cameras, names, eval_dir / RELIGHT_DIR, config
        )
        if relight is not None:
            mean["relight_psnr"] = relight["mean"]["psnr"]
            mean["relight_ssim"] = relight["mean"]["ssim"]
            mean["relight_psnr_scaled"] = relight["mean"]["psnr_scaled"]
            mean["relight_ssim_scaled"] = relight["mean"]["ssim_scaled"]
            mean["relight_scale"] = relight["scale"]
        timings["relight"] = time.perf_counter() - start
    if config.turntable_frames > 0 and (export_dir / "scene.xml").is_file():
        start = time.perf_counter()
        distance = float(cameras.centers.norm(dim=-1).median())
        K = cameras.intrinsics[0]
        fov = math.degrees(2.0 * math.atan(cameras.width(0) / (2.0 * float(K[0, 0]))))
        size = cameras.width(0)
        write_turntable(export_dir, eval_dir / TURNTABLE_DIR, distance, fov, size, config)
        timings["turntable"] = time.perf_counter() - start

    metrics = {
        "mean": mean,
        "per_view": per_view,
        "relight": relight,
        "info": {
            "model": model.stage,
            "notice": model.notice,
            "data": str(data),
            "views": count,
            "image_metrics": "8-bit gamma-2.2 images as written, full image (IRON)",
            "f_threshold": "f_threshold_fraction of the GT bounding-sphere diameter",
            "config": {k: v for k, v in vars(config).items()},
            "seconds": timings,
        },
    }
    eval_dir.mkdir(parents=True, exist_ok=True)
    from ironrender.training.checkpoint import atomic_write_text

    atomic_write_text(
        eval_dir / METRICS_NAME, json.dumps(metrics, indent=2, default=_json_default) + "\n"
    )
    build_report(run_dir)
    return metrics


def _gt_light(gt_dir: Path) -> float | None:
    path = gt_dir / "light.json"
    if not path.is_file():
        return None
    value = json.loads(path.read_text()).get("intensity")
    return float(value) if value is not None else None


def format_summary(metrics: dict) -> str:
    """A short two-column table of the headline metrics."""
    mean = metrics.get("mean", {})
    rows = [(key, mean[key]) for key in SUMMARY_KEYS if mean.get(key) is not None]
    width = max((len(key) for key, _ in rows), default=0)
    lines = [f"{key:<{width}}  {value:.4g}" for key, value in rows]
    info = metrics.get("info", {})
    if info:
        lines.insert(0, f"model: {info.get('model')}  views: {info.get('views')}")
    return "\n".join(lines)


__all__ = [
    "EvalConfig",
    "TrainedModel",
    "encode_8bit",
    "evaluate_run",
    "export_run",
    "format_summary",
    "load_trained_model",
    "project_to_surface",
    "resolve_data_dir",
    "sample_texture",
]
