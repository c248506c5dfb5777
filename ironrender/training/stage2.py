"""Stage 2: edge-aware physically based surface rendering (IRON sections 3.2-3.3;
docs/architecture.md).

Starting from stage 1's SDF and radiance network, stage 2 jointly optimises the SDF, the
material fields (:mod:`ironrender.fields.materials`), the flash intensity and the photometric
models a run fits (:mod:`ironrender.training.photometric`), all held by one
:class:`~ironrender.training.stage2_model.Stage2Model`, so that images rendered by sphere
tracing with edge sampling (:func:`~ironrender.rendering.surface_renderer.render_patch`) and
the GGX BRDF under the flash match the photographs.

One step (:func:`~ironrender.training.stage2_step.training_step`):

1. pick a random training image and a random ``patch_size`` square crop of it
   (:meth:`Cameras.crop`), uniformly as IRON; ``object_patch_fraction`` centres that share of
   them on the object instead (where stage 1's surface is in low-resolution masks of the
   views). Off by default: on the real skull it changed no metric measurably (BENCHMARKS.md)
   and made steps slower (every patch then holds surface to shade);
2. render the crop: linear radiance, edge pixels blended (docs/architecture.md, edge
   sampling); rays that miss the object see the background: black (IRON, ``background =
   "black"``) or, by default, stage 1's model of the room, frozen (``"stage1"``; black too when
   stage 1 found the room black), so that a dim room is never explained by geometry;
3. compare in the photographs' encoding (:func:`ironrender.data.tone_curve.
   prediction_to_loss_domain`): for 8-bit captures ``(pred + 1e-6)^(1/2.2)`` against the
   encoded photograph (IRON's ``--gamma_pred``; sRGB's curve with ``tone_curve = "srgb"``), for
   EXR captures linear against linear;
4. loss = pyramid L2 + (1 - SSIM) + 0.1 eikonal + 0.1 roughness range, plus the photometric
   models' regularisers; the eikonal term uses ``patch pixels / 2`` random points in
   [-1, 1]^3 plus the gradients at the hits;
5. one step of each Adam (SDF, materials, light; photometric); constant rates as the
   reference, or a cosine decay to ``lr_alpha`` times them (``fast``).

Runs are resumable exactly: the checkpoint holds the model, the optimisers, the step and the
random generators, so an interrupted run continued with ``resume=True`` takes the same steps
as an uninterrupted one.

Where things are: the settings in :mod:`~ironrender.training.stage2_config`, the model in
:mod:`~ironrender.training.stage2_model`, one step in :mod:`~ironrender.training.stage2_step`,
whole-view renders, object masks and the light's starting value in
:mod:`~ironrender.training.stage2_views`; here the loop, checkpoints, previews and the entry
points (:func:`train_stage2`, :func:`fit_stage2`).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ironrender.config import to_dict
from ironrender.data.dataset import Split, load_split
from ironrender.data.tone_curve import target_to_loss_domain
from ironrender.errors import IronError
from ironrender.interrupts import StopRequests
from ironrender.rendering.surface_renderer import SurfaceRenderConfig
from ironrender.run_folder import FINAL_PREVIEW, PREVIEW_DIR, STAGE2_DIR, stage_checkpoint
from ironrender.training.checkpoint import load_checkpoint, save_checkpoint
from ironrender.training.runlog import RunLog, normal_image, write_panels
from ironrender.training.stage2_config import (
    STAGE2_PRESETS,
    Stage2Config,
    fast_stage2_config,
    paper_stage2_config,
)
from ironrender.training.stage2_model import Stage2Model, load_stage2, start_stage2
from ironrender.training.stage2_step import Stage2State, training_step
from ironrender.training.stage2_views import (
    downscale_factor,
    initial_light_intensity,
    object_masks,
    resize_image,
    scene_render_config,
)
from ironrender.training.time_budget import (
    MIN_STAGE2_STEPS,
    STAGE2_PROBE_STEPS,
    StagePlan,
    mean_step_seconds,
    read_plan,
    scale_stage2_schedule,
    steps_for,
)

__all__ = [  # the configuration and the model, re-exported: "stage 2" is where users look
    "STAGE2_PRESETS",
    "Stage2Config",
    "fast_stage2_config",
    "paper_stage2_config",
    "Stage2Model",
    "fit_stage2",
    "train_stage2",
    "load_stage2",
]


@dataclass
class Stage2Result:
    """Summary of a finished stage-2 run."""

    run_dir: Path | None
    steps: int
    loss: float
    light_intensity: float
    seconds: float
    skipped_steps: int
    history: list[dict[str, float]]


# ----------------------------------------------------------------------------- training
def fit_stage2(
    split: Split,
    model: Stage2Model,
    config: Stage2Config,
    run_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    masks: Tensor | None = None,
    stop_after: int | None = None,
) -> Stage2Result:
    """Optimise ``model`` (in place) on ``split``; see the module docstring.

    ``masks`` (N, h, w) where the object is (:func:`object_masks`) for patch sampling.
    ``stop_after`` ends the call after that many steps in all, as if killed after its
    checkpoint (tests); the schedule stays ``config.steps``'s.
    With ``run_dir``: checkpoints to ``run_dir/stage2/checkpoint.pt`` every
    ``checkpoint_every`` steps and at the end, previews and TensorBoard scalars under
    ``run_dir/stage2``; ``resume=True`` continues from the checkpoint there, exactly.
    The light intensity is NOT initialised here (see :func:`initial_light_intensity`).
    """
    stage_dir = Path(run_dir) / STAGE2_DIR if run_dir is not None else None
    checkpoint = stage_checkpoint(run_dir, STAGE2_DIR) if run_dir is not None else None
    if checkpoint is not None and not resume and checkpoint.exists():
        raise IronError(
            f"{checkpoint} exists: pass --resume to continue it, or choose a new run folder"
        )
    state = Stage2State.start(model, config)
    if resume:
        if checkpoint is None or not checkpoint.is_file():
            raise IronError(f"cannot resume stage 2: no {STAGE2_DIR} checkpoint in {run_dir}")
        state.load_state_dict(load_checkpoint(checkpoint, "cpu"))
    render = scene_render_config(config, split.cameras)
    logger = RunLog(
        stage_dir if stage_dir is not None else ".",
        config.steps,
        state.step,
        progress,
        tensorboard=stage_dir is not None,
        description="stage 2",
    )
    start = time.perf_counter()
    bad_in_a_row = 0
    last_loss = math.nan
    end = config.steps if stop_after is None else min(config.steps, stop_after)
    try:
        with StopRequests() as stop:
            while state.step < end:
                terms = training_step(state, split, config, render, masks)
                if terms is None:
                    bad_in_a_row += 1
                    if bad_in_a_row >= config.max_bad_steps:
                        raise IronError(
                            f"stage 2 diverged: {bad_in_a_row} non-finite steps in a row at step"
                            f" {state.step}; lower the learning rates"
                            " (--set stage2.lr_sdf=...)"
                        )
                else:
                    bad_in_a_row = 0
                    light = float(model.materials.light_intensity.detach())
                    values = terms.as_floats() | {"light": light}
                    last_loss = values["total"]
                    at = state.step
                    if at % config.log_every == 0 or at == config.steps:
                        state.history.append({"step": at} | values)
                    logger.step(at, values, write=at % config.log_every == 0)
                    if stage_dir is not None and at % config.preview_every == 0:
                        preview = stage_dir / PREVIEW_DIR / f"{at:06d}.png"
                        _write_preview(preview, model, split, config, render)
                if checkpoint is not None and (
                    (terms is not None and state.step % config.checkpoint_every == 0)
                    or stop.requested
                ):
                    save_checkpoint(checkpoint, _checkpoint(state, config))
                if stop.requested:
                    print(f"stage 2: stopped at step {state.step}; checkpoint saved")
                    stop.stop_now()
    finally:
        logger.close()
    if stage_dir is not None:
        save_checkpoint(checkpoint, _checkpoint(state, config))
        _write_preview(stage_dir / FINAL_PREVIEW, model, split, config, render)
    return Stage2Result(
        run_dir=Path(run_dir) if run_dir is not None else None,
        steps=state.step,
        loss=last_loss,
        light_intensity=float(model.materials.light_intensity.detach()),
        seconds=time.perf_counter() - start,
        skipped_steps=state.skipped_steps,
        history=state.history,
    )


def _checkpoint(state: Stage2State, config: Stage2Config) -> dict:
    return state.state_dict() | {"config": to_dict(config)}


def _write_preview(
    path: Path,
    model: Stage2Model,
    split: Split,
    config: Stage2Config,
    render: SurfaceRenderConfig,
) -> None:
    """Photograph | render | diffuse albedo | roughness | normals of training view 0.

    Images and albedo encoded for display; roughness as alpha itself (grey level).
    """
    factor = downscale_factor(split.cameras, config.preview_size)
    cameras = split.cameras.scaled(factor) if factor < 1 else split.cameras
    image = model.render_view(cameras, 0, render, edges=config.edges)
    target = resize_image(split.linear(split.images[0]), image.color.shape[:2])
    curve = split.tone_curve
    with torch.no_grad():  # as photograph 0 records it (gains, vignetting, response)
        color = model.develop(image.color, cameras, curve, view=0).clamp(0.0, 1.0)
    blank = image.color.new_zeros(*image.color.shape[:2], 1)  # a view without any hit
    albedo = image.extras.get("diffuse_albedo", blank)
    panels = [
        target_to_loss_domain(target, curve),
        color,
        target_to_loss_domain(albedo, "gamma2.2").expand(-1, -1, 3),
        image.extras.get("roughness", blank).expand(-1, -1, 3),
        normal_image(image.normals, image.mask.to(image.normals.dtype)),
    ]
    write_panels(path, panels)


# ----------------------------------------------------------------------------- entry points
def train_stage2(
    data_dir: str | Path,
    run_dir: str | Path,
    config: Stage2Config,
    device: torch.device | str,
    resume: bool = False,
    progress: bool = True,
    seconds: float | None = None,
    stop_after: int | None = None,
) -> Stage2Result:
    """``iron fit DATA RUN --stage 2``: load the capture and stage 1, initialise, optimise.

    ``resume`` continues ``RUN/stage2`` if it has a checkpoint, else starts it.
    ``stop_after``: as :func:`fit_stage2`'s.
    ``seconds``: a time budget for the optimisation; the step count is set from a measured
    step time (:mod:`~ironrender.training.time_budget`); a resumed run keeps its plan.
    """
    device = torch.device(device)
    stage_dir = Path(run_dir) / STAGE2_DIR
    resume = resume and stage_checkpoint(run_dir, STAGE2_DIR).exists()
    # decoded patch by patch
    split = load_split(data_dir, "train", device, keep_8bit=True, curve=config.tone_curve)
    model = start_stage2(run_dir, config, device, split)
    render = scene_render_config(config, split.cameras)
    masks = None  # from stage 1's surface, so that a resumed run draws the same patches
    if config.object_patch_fraction > 0:
        masks = object_masks(model.sdf, split.cameras, render, config.object_mask_size)
    if not resume:
        light = initial_light_intensity(model.sdf, model.materials, split, config, render)
        model.materials.set_light_intensity(light)
    plan = read_plan(stage_dir) if seconds is not None and resume else None
    if plan is not None:  # the plan made when this stage started
        config = dataclasses.replace(config, steps=plan.steps)
    elif seconds is not None:
        step_seconds = _step_seconds(split, model, config, render, masks)
        steps = steps_for(seconds, step_seconds, MIN_STAGE2_STEPS)
        config = scale_stage2_schedule(config, steps / config.steps)
        plan = StagePlan("stage 2", seconds, step_seconds, config.steps)
        stage_dir.mkdir(parents=True, exist_ok=True)
        plan.save(stage_dir)  # before training: a stage resumed after a kill keeps it
        print(plan.line())
    result = fit_stage2(split, model, config, run_dir, resume, progress, masks, stop_after)
    report = model.report(split.cameras)
    if report:
        print(f"stage 2: {report}")
    if plan is not None:
        plan.actual_seconds += result.seconds
        plan.save(stage_dir)
    return result


def _step_seconds(
    split: Split,
    model: Stage2Model,
    config: Stage2Config,
    render: SurfaceRenderConfig,
    masks: Tensor | None,
) -> float:
    """Mean time of a stage-2 step, measured on a throw-away copy of the model, optimisers
    and random generators (the run itself starts exactly as without the measurement)."""
    probe = Stage2State.start(copy.deepcopy(model), config)
    rng = torch.get_rng_state()
    seconds = mean_step_seconds(
        lambda: training_step(probe, split, config, render, masks), STAGE2_PROBE_STEPS
    )
    torch.set_rng_state(rng)
    return seconds
