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
the ``lpips`` package is importable. A perfect prediction gives PSNR = inf (written as
``Infinity`` in JSON).

``psnr_object`` is the PSNR over the object's pixels only, because the background (black in a
synthetic capture, a dim room in a real one) inflates or muddies the full-image number. The
object is the ground-truth mask where the dataset has one (``DATA/gt/masks/test``, synthetic
captures), else the pixels the recovered geometry covers in the render itself (stage 2: a
sphere-traced hit or an edge pixel, ``RenderedImage.mask``; stage 1: volume opacity > 0.5);
``info["object_mask"]`` says which. A geometry mask favours a model that leaves out what it
renders badly, so compare it between runs only with the full-image numbers beside it.

**Resolution**: views whose longest side exceeds ``max_size`` are evaluated at a scale
``s = max_size / longest side``: the model renders the camera ``Cameras.scaled(s)`` (``K``
scaled by ``s``, sizes rounded), and the photograph (and a GT mask) is reduced to that size by
area averaging in linear radiance, output pixel ``a`` being the mean of the input over
``[a / s, (a + 1) / s)`` (:func:`area_downsample`), which is what the scaled camera's pixel sees.
Smaller views are evaluated as they are. ``info["resolution"]`` records the sizes.

**Structure-from-motion points** (``DATA/sparse_points_norm.npz``, or one level up; written by
``iron import``): a real capture has no GT mesh, but its SfM points lie on the object's surface.
Each point inside the unit sphere is measured against the reconstructed mesh
(``RUN/export/mesh.obj`` if present, else the marching-cubes mesh of the SDF as for geometry), in
percent of the points' own reference diameter ``D = 2 P99(|p - median(p)|)``
(:func:`ironrender.evaluation.metrics.sfm_point_distances`): ``sfm_median_percent``,
``sfm_p90_percent`` and ``sfm_within_1pct`` (the share within 1 % of D), ``sfm_diameter`` = D.

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
    "sfm_median_percent",
    "sfm_p90_percent",
    "sfm_within_1pct",
    "f_score",
    "normal_consistency",
    "albedo_psnr",
    "roughness_error",
    "light_ratio",
    "relight_psnr",
    "relight_psnr_scaled",
    "relight_scale",
)
#: ``metrics["info"]`` entries that say what the numbers were measured on (summary, report).
SUMMARY_NOTES = ("resolution", "object_mask", "sfm")


@dataclass
class EvalConfig:
    """What ``iron eval`` computes; defaults are quick on 2 CPU cores at 128x128."""

    max_views: int = 0  # 0: every test view
    edges: bool = True  # stage-2 renders with edge pixels blended (as trained)
    render_chunk_rows: int = 64
    max_size: int = 512  # longest side views are evaluated at (larger ones are scaled); 0: any
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
class ViewRender:
    """One rendered view: ``color`` (H, W, 3) linear radiance, ``mask`` (H, W) bool, the pixels
    the recovered object covers."""

    color: Tensor
    mask: Tensor


@dataclass
class TrainedModel:
    """What evaluation needs from a run, whatever stage produced it.

    ``render(cameras, index) -> ViewRender`` of one full view under the capture's flash;
    ``materials_fn(points, unit normals) -> {diffuse_albedo, specular_albedo, roughness}`` (GGX
    alpha); ``light_intensity`` the flash intensity I those materials go with.
    """

    sdf: SDFField
    render: Callable[[Cameras, int], ViewRender]
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
    at its stage-1 colour (``L = I / d^2 rho / pi``). A stage-2 view's object mask is
    ``RenderedImage.mask`` (hit or edge pixel), a stage-1 view's the pixels of opacity > 0.5.
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
        stage1_background,
    )

    sdf, materials = load_stage2(run_dir, device)
    path = run_dir / STAGE_DIR / CHECKPOINT_NAME
    config = from_dict(Stage2Config, load_checkpoint(path, "cpu")["config"], str(path))
    background = stage1_background(run_dir, config, device)  # what missed rays saw in training

    def render(cameras: Cameras, index: int) -> ViewRender:
        settings = scene_render_config(config, cameras)
        image = render_view(
            sdf, materials, cameras, index, settings, edges=edges and config.edges,
            chunk_rows=chunk_rows, background=background,
        )  # fmt: skip
        return ViewRender(image.color, image.mask)

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

    def render(cameras: Cameras, index: int) -> ViewRender:
        with torch.no_grad():
            out = render_image(
                cameras, index, model.sdf, model.radiance, model.variance.inv_s(),
                model.background, config.volume, chunk=config.log.render_chunk,
            )  # fmt: skip
        return ViewRender(to_linear(out.rgb), out.opacity > MASK_THRESHOLD)

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


def split_cameras(data_dir: Path | None, split: str) -> Cameras | None:
    """The cameras of ``DATA/<split>/cam_dict_norm.json`` (no images read), or None."""
    if data_dir is None:
        return None
    from ironrender.data.dataset import CAMERA_FILE, cameras_from_dict, read_camera_dict

    path = data_dir / split / CAMERA_FILE
    if not path.is_file():
        return None
    entries = read_camera_dict(path)
    return cameras_from_dict(entries, list(entries))


def median_camera_distance(data_dir: Path | None) -> float | None:
    """Median |camera centre| of the training split, or None when there is no dataset."""
    cameras = split_cameras(data_dir, "train")
    return None if cameras is None else float(cameras.centers.norm(dim=-1).median())


def dataset_up(data_dir: Path) -> np.ndarray:
    """The capture's up direction from all its cameras, train and test
    (:func:`ironrender.evaluation.relight.capture_up`)."""
    from ironrender.evaluation.relight import capture_up

    parts = [c for split in ("train", "test") if (c := split_cameras(data_dir, split)) is not None]
    w2c = torch.cat([c.w2c.double() for c in parts])
    intrinsics = torch.cat([c.intrinsics.double() for c in parts])
    return capture_up(Cameras(intrinsics, w2c, torch.cat([c.sizes for c in parts])))


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
    try:
        data = resolve_data_dir(run_dir, data_dir)
    except IronError:
        data = None
    if model is None:
        model = load_trained_model(run_dir, device, median_camera_distance(data))
        if model.notice:
            print(f"notice: {model.notice}")
    if model.materials_fn is None or model.light_intensity is None:
        raise IronError("the model has no materials to export")
    # The capture's up tells the object selection which side of a support plane is the object.
    up = dataset_up(data) if data is not None else None
    result = export_asset(
        model.sdf,
        model.materials_fn,
        model.light_intensity,
        run_dir / EXPORT_DIR,
        config,
        device,
        model.diffuse_model,
        up=up,
    )
    if result.selection is not None:
        print(result.selection.summary())
    return result


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


def evaluation_scale(width: int, height: int, max_size: int) -> float:
    """``max_size / longest side`` for a view larger than ``max_size`` (> 0), else 1."""
    longest = max(width, height)
    return max_size / longest if 0 < max_size < longest else 1.0


def _area_weights(n_in: int, n_out: int, scale: float, device: torch.device) -> Tensor:
    """(n_out, n_in): output pixel ``a`` covers ``[a / s, (a + 1) / s)`` of the input, clipped to
    ``[0, n_in)``; its weight on input pixel ``[k, k + 1)`` is the overlap, rows summing to 1."""
    edges = (torch.arange(n_out + 1, dtype=torch.float64, device=device) / scale).clamp(max=n_in)
    k = torch.arange(n_in, dtype=torch.float64, device=device)
    overlap = torch.minimum(edges[1:, None], k + 1) - torch.maximum(edges[:-1, None], k)
    overlap = overlap.clamp_min(0.0)
    return overlap / overlap.sum(dim=1, keepdim=True)


def area_downsample(image: Tensor | np.ndarray, scale: float, size: tuple[int, int]) -> Tensor:
    """An (H, W, C) or (H, W) image reduced to ``size = (w, h)`` by area averaging (float64).

    Output pixel ``(a, b)`` is the mean of the input over ``[b / s, (b + 1) / s) x
    [a / s, (a + 1) / s)`` (``x`` then ``y``; partial pixels weighted by their overlap): the
    radiance a camera scaled by ``s`` (``Cameras.scaled``) integrates over its pixel.
    """
    image = torch.as_tensor(image).to(torch.float64)
    flat = image if image.ndim == 3 else image[..., None]
    rows = _area_weights(flat.shape[0], size[1], scale, flat.device)
    cols = _area_weights(flat.shape[1], size[0], scale, flat.device)
    out = torch.einsum("ah,hwc,bw->abc", rows, flat, cols)
    return out if image.ndim == 3 else out[..., 0]


def evaluate_views(
    model: TrainedModel,
    cameras: Cameras,
    images: Tensor,
    names: list[str],
    out_dir: Path,
    config: EvalConfig,
    masks: list[np.ndarray | None] | None = None,
) -> list[dict]:
    """Render each view, write the image triplet, return per-view scores.

    A view larger than ``config.max_size`` is rendered at ``Cameras.scaled(s)`` and compared with
    its photograph (and GT mask) reduced by :func:`area_downsample`. ``psnr_object`` takes the GT
    mask ``masks[i]`` where there is one, else the render's own object mask.
    """
    from tqdm.auto import tqdm

    rows = []
    for i in tqdm(range(len(names)), desc="eval views", unit="view", disable=not config.progress):
        gt_mask = masks[i] if masks is not None else None
        scale = evaluation_scale(cameras.width(i), cameras.height(i), config.max_size)
        if scale == 1.0:
            view = model.render(cameras, i)
            photo = images[i]
        else:
            scaled = cameras.scaled(scale)
            size = (scaled.width(i), scaled.height(i))
            view = model.render(scaled, i)
            photo = area_downsample(images[i], scale, size)
            if gt_mask is not None:
                gt_mask = area_downsample(gt_mask, scale, size).cpu().numpy() >= MASK_THRESHOLD
        pred = encode_8bit(view.color)
        gt = encode_8bit(photo)
        stem = Path(names[i]).stem
        _write_triplet(out_dir, stem, pred, gt, config.error_gain)
        mask = gt_mask if gt_mask is not None else view.mask.detach().cpu().numpy()
        rows.append({"view": stem} | image_scores(pred, gt, mask))
    return rows


def resolution_note(cameras: Cameras, max_size: int) -> str:
    """The sizes the views were evaluated at, for ``info["resolution"]`` and the report."""
    notes = []
    for i in range(len(cameras)):
        width, height = cameras.width(i), cameras.height(i)
        scale = evaluation_scale(width, height, max_size)
        if scale == 1.0:
            notes.append(f"{width}x{height}, the photographs' size")
        else:
            small = cameras[i].scaled(scale)
            notes.append(
                f"{small.width()}x{small.height()}: photographs of {width}x{height} area-averaged"
                f" and cameras scaled by {scale:.4g} (max_size {max_size})"
            )
    return "; ".join(dict.fromkeys(notes))


def object_mask_note(masks: list[np.ndarray | None] | None, count: int) -> str:
    """Which mask ``psnr_object`` used, for ``info["object_mask"]`` and the report."""
    with_gt = 0 if masks is None else sum(m is not None for m in masks)
    parts = []
    if with_gt:
        parts.append(f"{with_gt} view(s): ground-truth mask (gt/masks/test)")
    if count - with_gt:
        parts.append(
            f"{count - with_gt} view(s): no ground-truth mask, the pixels the recovered geometry"
            " covers in the render (stage 2: sphere-traced hit or edge pixel; stage 1: opacity"
            f" > {MASK_THRESHOLD})"
        )
    return "psnr_object over " + "; ".join(parts)


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


def marching_cubes_mesh(sdf: SDFField, config: EvalConfig, device: torch.device | str):
    """The zero level set at ``config.mesh_resolution`` inside the unit cube, largest component."""
    from ironrender.export.mesh import extract_mesh

    return extract_mesh(sdf, config.mesh_resolution, 1.0, QUERY_CHUNK, device, True)


def geometry_metrics(
    sdf: SDFField, gt_mesh, config: EvalConfig, device: torch.device | str
) -> dict[str, float]:
    """Chamfer (and % of the GT diameter), F-score and normal consistency; module docstring."""
    from ironrender.evaluation.metrics import mesh_metrics

    pred = marching_cubes_mesh(sdf, config, device)
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


# ----------------------------------------------------------------------------- SfM points
def find_sparse_points(data_dir: Path) -> Path | None:
    """``DATA/sparse_points_norm.npz``, else the same file one level up (a capture folder that
    holds the dataset beside its SfM output), else None."""
    from ironrender.data.capture import SPARSE_POINTS_FILE

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
    import trimesh

    from ironrender.export.writers import OBJ_NAME

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
    from ironrender.evaluation.metrics import sfm_point_distances

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


def write_turntable(export_dir: Path, out_dir: Path, up: np.ndarray, distance: float, fov: float,
                    size: int, config: EvalConfig) -> list[Path]:  # fmt: skip
    """``config.turntable_frames`` flash-lit frames of the exported asset (PNG), the cameras
    circling the capture's up direction ``up``."""
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
    frames = render_turntable(export_dir, up, turntable, seed=config.seed)
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
    export_dir = run_dir / EXPORT_DIR
    timings: dict[str, float] = {}
    notes: dict[str, str] = {}

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
    wants_asset = config.relight or config.turntable_frames > 0
    if wants_asset and not (export_dir / "scene.xml").is_file() and config.export_if_missing:
        print(f"exporting the asset first ({export_dir}; `iron export` sets its options)")
        start = time.perf_counter()
        from ironrender.pipeline import fast_export_config

        quick = dataclasses.replace(fast_export_config(), progress=config.progress)
        export_run(run_dir, quick, device, data, model)
        timings["export"] = time.perf_counter() - start
    sparse_points = find_sparse_points(data)
    if sparse_points is not None:
        start = time.perf_counter()
        try:
            mesh, source = reconstructed_mesh(model, export_dir, config, device)
            scores, measured = sfm_metrics(read_sparse_points(sparse_points), mesh)
            mean |= scores
            notes["sfm"] = (
                f"{measured} SfM points of {sparse_points} inside the unit sphere vs {source}:"
                " distance to the mesh in % of D = 2 x the 99th percentile of the points'"
                " distance from their median (sfm_diameter); median, 90th percentile, share"
                " within 1 % of D"
            )
        except IronError as exc:  # e.g. the SDF has no zero crossing
            print(f"warning: no SfM-point metrics: {exc}")
        timings["sfm"] = time.perf_counter() - start
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
        up = dataset_up(data)
        distance = float(cameras.centers.norm(dim=-1).median())
        K = cameras.intrinsics[0]
        fov = math.degrees(2.0 * math.atan(cameras.width(0) / (2.0 * float(K[0, 0]))))
        size = cameras.width(0)  # square frames as wide as the views, within max_size
        size = min(size, config.max_size) if config.max_size > 0 else size
        write_turntable(export_dir, eval_dir / TURNTABLE_DIR, up, distance, fov, size, config)
        notes["turntable"] = (
            f"{size}x{size}, cameras circling the capture's up direction"
            f" ({', '.join(f'{x:.3f}' for x in up)}: the mean of the cameras' up vectors)"
        )
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
            "resolution": resolution_note(cameras, config.max_size),
            "object_mask": object_mask_note(masks, count),
            **notes,
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
    """A short two-column table of the headline metrics, then what they were measured on
    (``info``'s ``SUMMARY_NOTES``: resolution, object mask, SfM-point definition)."""
    mean = metrics.get("mean", {})
    rows = [(key, mean[key]) for key in SUMMARY_KEYS if mean.get(key) is not None]
    width = max((len(key) for key, _ in rows), default=0)
    lines = [f"{key:<{width}}  {value:.4g}" for key, value in rows]
    info = metrics.get("info", {})
    if info:
        lines.insert(0, f"model: {info.get('model')}  views: {info.get('views')}")
        lines += [f"{key}: {info[key]}" for key in SUMMARY_NOTES if info.get(key)]
    return "\n".join(lines)


__all__ = [
    "EvalConfig",
    "TrainedModel",
    "ViewRender",
    "area_downsample",
    "encode_8bit",
    "evaluate_run",
    "export_run",
    "format_summary",
    "load_trained_model",
    "project_to_surface",
    "resolve_data_dir",
    "sample_texture",
    "sfm_metrics",
]
