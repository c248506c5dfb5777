"""``iron eval``: the trained model on held-out views, against ground truth.

Everything here reads a run folder (``RUN/stage1``, ``RUN/stage2``, ``RUN/export``) and a dataset
folder (``DATA/test``, optionally ``DATA/gt`` from ``iron synth``) and writes ``RUN/eval``:

``views/<name>_gt.png, _pred.png, _error.png``
    Each held-out test view rendered by the trained model (stage 2: sphere tracing with edge
    sampling, :func:`ironrender.training.stage2_views.render_view`; stage 1 only: NeuS volume
    rendering of the radiance field), the photograph, and ``|pred - gt| x 4``.
``relight/<name>_gt.png, _pred.png, _scaled.png``, ``turntable/frame_XX.png``
    The exported asset rendered by Mitsuba 3 (:mod:`ironrender.evaluation.relight`).
``metrics.json``
    ``{"mean": {scalars}, "per_view": [...], "relight": {...}, "info": {...}}``; then
    :func:`ironrender.evaluation.report.build_report` writes ``RUN/report.html``.

What each number means is stated where it is computed: held-out views and image metrics in
:mod:`ironrender.evaluation.views`, geometry (GT mesh, SfM points) in
:mod:`ironrender.evaluation.geometry`, materials in :mod:`ironrender.evaluation.materials`,
relighting and the turntable in :mod:`ironrender.evaluation.relight`; the metric functions
themselves in :mod:`ironrender.evaluation.metrics`. The model comes from
:func:`ironrender.training.trained_model.load_trained_model`; an asset missing for relighting is
exported with :func:`ironrender.export.run.export_run` and the quick defaults.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from ironrender.data.camera_file import dataset_up, median_camera_distance, split_cameras
from ironrender.data.dataset import load_split
from ironrender.errors import IronError
from ironrender.evaluation.camera_gains import (
    NEAREST_VIEWS,
    nearest_view_gains,
    training_cameras,
)
from ironrender.evaluation.config import EvalConfig
from ironrender.evaluation.geometry import (
    find_sparse_points,
    geometry_metrics,
    load_gt_mesh,
    read_sparse_points,
    reconstructed_mesh,
    sfm_metrics,
    support_plane,
)
from ironrender.evaluation.materials import (
    gt_light_intensity,
    material_metrics,
    sample_gt_materials,
)
from ironrender.evaluation.relight import relight_metrics, write_turntable
from ironrender.evaluation.report import build_report
from ironrender.evaluation.views import (
    evaluate_views,
    mean_of,
    object_mask_note,
    read_masks,
    resolution_note,
)
from ironrender.export.asset import fast_export_config
from ironrender.export.run import export_run
from ironrender.run_folder import EVAL_DIR, EXPORT_DIR, resolve_data_dir
from ironrender.storage import atomic_write_text
from ironrender.training.trained_model import TrainedModel, load_trained_model

GT_DIR = "gt"
VIEWS_DIR = "views"
RELIGHT_DIR = "relight"
TURNTABLE_DIR = "turntable"
METRICS_NAME = "metrics.json"
SUMMARY_KEYS = (
    "psnr",
    "ssim",
    "lpips",
    "psnr_object",
    "chamfer_percent",
    "chamfer_visible_percent",
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
    split = load_split(data, "test", device, curve=model.tone_curve)
    for folder in (VIEWS_DIR, RELIGHT_DIR, TURNTABLE_DIR):  # no stale images from earlier evals
        shutil.rmtree(eval_dir / folder, ignore_errors=True)
    count = len(split) if config.max_views <= 0 else min(config.max_views, len(split))
    names = split.names[:count]
    cameras = split.cameras[:count]

    start = time.perf_counter()
    masks = read_masks(gt_dir, names) if gt_dir.is_dir() else None
    view_gains = None
    if model.train_gains is not None:
        train = training_cameras(data)
        gains = model.train_gains.cpu()
        centers = train.centers.cpu()
        view_gains = torch.stack(
            [nearest_view_gains(centers, gains, c) for c in cameras.centers.cpu()]
        )
        notes["gains"] = (
            f"held-out photographs at the gains of the {NEAREST_VIEWS} nearest training"
            " photographs (inverse-distance weighted geometric mean: psnr, ssim, psnr_object);"
            " *_gain1: at gain 1; *_halves: gains fitted on one half of the photograph score"
            " the other (NeRF in the Wild)"
        )
    per_view = evaluate_views(
        model, cameras, split.images[:count], names, eval_dir / VIEWS_DIR, config, masks,
        view_gains,
    )  # fmt: skip
    timings["views"] = time.perf_counter() - start
    keys = ("psnr", "ssim", "lpips", "psnr_object")
    keys += tuple(k + s for s in ("_gain1", "_halves") for k in ("psnr", "psnr_object"))
    mean: dict[str, float] = {
        key: value for key in keys if (value := mean_of(per_view, key)) is not None
    }

    gt_mesh = None
    if (gt_dir / "mesh.obj").is_file():
        start = time.perf_counter()
        gt_mesh = load_gt_mesh(gt_dir)
        try:
            train = split_cameras(data, "train")
            support = support_plane(gt_dir)
            mean |= geometry_metrics(model.sdf, gt_mesh, config, device, train, support)
        except IronError as exc:  # e.g. the SDF has no zero crossing: the reconstruction failed
            print(f"warning: no geometry metrics: {exc}")
        timings["geometry"] = time.perf_counter() - start
        start = time.perf_counter()
        gt_light = gt_light_intensity(gt_dir)
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
            "image_metrics": f"8-bit {model.tone_curve} images as written, full image (IRON)",
            "tone_curve": model.tone_curve,
            "resolution": resolution_note(cameras, config.max_size),
            "object_mask": object_mask_note(masks, count),
            **notes,
            "f_threshold": "f_threshold_fraction of the GT bounding-sphere diameter",
            "config": {k: v for k, v in vars(config).items()},
            "seconds": timings,
        },
    }
    eval_dir.mkdir(parents=True, exist_ok=True)

    atomic_write_text(
        eval_dir / METRICS_NAME, json.dumps(metrics, indent=2, default=_json_default) + "\n"
    )
    build_report(run_dir)
    return metrics


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
