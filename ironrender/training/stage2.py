"""Stage 2: edge-aware physics-based surface rendering (paper §3.2-3.3, reference §4).

Starting from stage 1's SDF and radiance network, stage 2 jointly optimises the SDF, the
material fields (:mod:`ironrender.fields.materials`) and the flash intensity so that images
rendered by sphere tracing with edge sampling (:func:`~ironrender.rendering.surface_renderer.
render_patch`) and the co-located GGX BRDF match the photographs.

One iteration (reference §4):

1. pick a random training image and a random ``patch_size`` square crop of it
   (:meth:`Cameras.crop`), uniformly as IRON; ``object_patch_fraction`` centres that share of
   them on the object instead (where stage 1's surface is in low-resolution masks of the
   views). Off by default: on the real skull it changed no metric measurably (BENCHMARKS.md)
   and made steps slower (every patch then holds surface to shade);
2. render the crop: linear radiance, edge pixels blended (seed Eqs. 4-9); rays that miss the
   object see the background: black (IRON, ``background = "black"``) or, by default, stage 1's
   model of the room, frozen (``"stage1"``; black too when stage 1 found the room black), so
   that a dim room is never explained by geometry;
3. compare in the data's domain: for LDR (gamma-encoded 8-bit) captures
   ``(pred + 1e-6)^(1/2.2)`` against the gamma-encoded photograph (IRON's ``--gamma_pred``),
   for EXR captures linear against linear;
4. loss = pyramid L2 + (1 - SSIM) + 0.1 eikonal + 0.1 roughness range (Eqs. 10-13); the eikonal
   term uses ``patch pixels / 2`` random points in [-1, 1]^3 plus the gradients at the hits;
5. one step of three Adams (SDF, materials, light); constant rates as the reference, or a
   cosine decay to ``lr_alpha`` times them (``fast``).

Runs are resumable exactly: the checkpoint holds the networks, the optimisers, the iteration and
the random generators, so an interrupted run continued with ``resume=True`` takes the same
steps as an uninterrupted one.

Where things are: the settings in :mod:`~ironrender.training.stage2_config`, one iteration (the
five steps above) in :mod:`~ironrender.training.stage2_step`, whole-view renders, object masks
and the light's starting value in :mod:`~ironrender.training.stage2_views`; here the loop,
checkpoints, previews and the entry points (:func:`train_stage2`, :func:`load_stage2`).
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

from ironrender.data.dataset import Split, load_split
from ironrender.data.tone_curve import decode
from ironrender.errors import IronError
from ironrender.fields.ambient import AmbientLight
from ironrender.fields.base import SDFField
from ironrender.fields.materials import MaterialFields
from ironrender.interrupts import StopRequests
from ironrender.rendering.surface_renderer import BackgroundFn, SurfaceRenderConfig
from ironrender.training.camera_gains import CameraGains
from ironrender.training.checkpoint import load_checkpoint, save_checkpoint
from ironrender.training.flash_offset import FlashOffset
from ironrender.training.runlog import RunLog, normal_image, write_panels
from ironrender.training.stage2_config import (
    STAGE2_BACKGROUNDS,
    STAGE2_PRESETS,
    Stage2Config,
    fast_stage2_config,
    paper_stage2_config,
)
from ironrender.training.stage2_photometric import (
    learned_flash,
    photometric_models,
    photometric_report,
)
from ironrender.training.stage2_step import (
    Stage2State,
    make_optimizers,
    target_to_loss_domain,
    training_step,
)
from ironrender.training.stage2_views import (
    downscale_factor,
    initial_light_intensity,
    object_masks,
    render_view,
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

__all__ = [  # the configuration, re-exported: "stage 2" is where a user looks for it
    "STAGE2_BACKGROUNDS",
    "STAGE2_PRESETS",
    "Stage2Config",
    "fast_stage2_config",
    "paper_stage2_config",
    "fit_stage2",
    "train_stage2",
    "load_stage2",
    "stage1_background",
]

STAGE_DIR = "stage2"
CHECKPOINT_NAME = "checkpoint.pt"
PREVIEW_DIR = "previews"
FINAL_PREVIEW = "final_preview.png"


# ----------------------------------------------------------------------------- configuration
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
    sdf: SDFField,
    materials: MaterialFields,
    config: Stage2Config,
    run_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    background: BackgroundFn | None = None,
    masks: Tensor | None = None,
    ambient: AmbientLight | None = None,
    gains: CameraGains | None = None,
    flash: FlashOffset | None = None,
) -> Stage2Result:
    """Optimise ``sdf`` and ``materials`` (in place) on ``split``; see the module docstring.

    ``background`` colours the rays that miss (:func:`stage1_background`); None: black.
    ``masks`` (N, h, w) where the object is (:func:`object_masks`) for patch sampling.
    ``ambient`` (the room's light) and ``gains`` (one per photograph) are fitted with the
    materials when given (:func:`photometric_models`), and so is a ``flash`` offset
    (:func:`~ironrender.training.stage2_photometric.learned_flash`).
    With ``run_dir``: checkpoints to ``run_dir/stage2/checkpoint.pt`` every
    ``checkpoint_every`` steps and at the end, previews and TensorBoard scalars under
    ``run_dir/stage2``; ``resume=True`` continues from the checkpoint there, exactly.
    The light intensity is NOT initialised here (see :func:`initial_light_intensity`).
    """
    stage_dir = Path(run_dir) / STAGE_DIR if run_dir is not None else None
    if stage_dir is not None and not resume and (stage_dir / CHECKPOINT_NAME).exists():
        raise IronError(
            f"{stage_dir / CHECKPOINT_NAME} exists: pass --resume to continue it, or choose a"
            " new run folder"
        )
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    optimizers = make_optimizers(sdf, materials, config, ambient, gains, flash)
    state = Stage2State(
        sdf, materials, optimizers, generator, ambient=ambient, gains=gains, flash=flash
    )
    if resume:
        if stage_dir is None or not (stage_dir / CHECKPOINT_NAME).is_file():
            raise IronError(f"cannot resume stage 2: no {STAGE_DIR}/{CHECKPOINT_NAME} in {run_dir}")
        state.load_state_dict(load_checkpoint(stage_dir / CHECKPOINT_NAME, "cpu"))
    render = scene_render_config(config, split.cameras)
    logger = RunLog(
        stage_dir if stage_dir is not None else ".",
        config.steps,
        state.iteration,
        progress,
        tensorboard=stage_dir is not None,
        description="stage 2",
    )
    start = time.perf_counter()
    bad_in_a_row = 0
    last_loss = math.nan
    try:
        with StopRequests() as stop:
            while state.iteration < config.steps:
                terms = training_step(state, split, config, render, background, masks)
                if terms is None:
                    bad_in_a_row += 1
                    if bad_in_a_row >= config.max_bad_steps:
                        raise IronError(
                            f"stage 2 diverged: {bad_in_a_row} non-finite steps in a row at step"
                            f" {state.iteration}; lower the learning rates"
                            " (--set stage2.lr_sdf=...)"
                        )
                else:
                    bad_in_a_row = 0
                    light = float(materials.light_intensity.detach())
                    values = terms.as_floats() | {"light": light}
                    last_loss = values["total"]
                    at = state.iteration
                    if at % config.log_every == 0 or at == config.steps:
                        state.history.append({"iteration": at} | values)
                    logger.step(at, values, write=at % config.log_every == 0)
                    if stage_dir is not None and at % config.preview_every == 0:
                        preview = stage_dir / PREVIEW_DIR / f"{at:06d}.png"
                        _write_preview(preview, state, split, config, render, background)
                if stage_dir is not None and (
                    (terms is not None and state.iteration % config.checkpoint_every == 0)
                    or stop.requested
                ):
                    save_checkpoint(stage_dir / CHECKPOINT_NAME, _checkpoint(state, config))
                if stop.requested:
                    print(f"stage 2: stopped at step {state.iteration}; checkpoint saved")
                    stop.stop_now()
    finally:
        logger.close()
    if stage_dir is not None:
        save_checkpoint(stage_dir / CHECKPOINT_NAME, _checkpoint(state, config))
        _write_preview(stage_dir / FINAL_PREVIEW, state, split, config, render, background)
    return Stage2Result(
        run_dir=Path(run_dir) if run_dir is not None else None,
        steps=state.iteration,
        loss=last_loss,
        light_intensity=float(materials.light_intensity.detach()),
        seconds=time.perf_counter() - start,
        skipped_steps=state.skipped_steps,
        history=state.history,
    )


def _checkpoint(state: Stage2State, config: Stage2Config) -> dict:
    return state.state_dict() | {"config": dataclasses.asdict(config)}


def _write_preview(
    path: Path,
    state: Stage2State,
    split: Split,
    config: Stage2Config,
    render: SurfaceRenderConfig,
    background: BackgroundFn | None = None,
) -> None:
    """Photograph | render | diffuse albedo | roughness | normals of training view 0.

    Images and albedo gamma-encoded for display; roughness as alpha itself (grey level).
    """
    factor = downscale_factor(split.cameras, config.preview_size)
    cameras = split.cameras.scaled(factor) if factor < 1 else split.cameras
    cameras = cameras if state.flash is None else state.flash.place(cameras)
    image = render_view(
        state.sdf, state.materials, cameras, 0, render, edges=config.edges,
        background=background, ambient=state.ambient,
    )  # fmt: skip
    target = resize_image(split.linear(split.images[0]), image.color.shape[:2])
    color = image.color if state.gains is None else image.color * state.gains(0).detach()
    blank = image.color.new_zeros(*image.color.shape[:2], 1)  # a view without any hit
    curve = split.tone_curve
    panels = [
        target_to_loss_domain(target, False, curve),
        target_to_loss_domain(color, False, curve),
        target_to_loss_domain(image.extras.get("diffuse_albedo", blank), False).expand(-1, -1, 3),
        image.extras.get("roughness", blank).expand(-1, -1, 3),
        normal_image(image.normals, image.mask.to(image.normals.dtype)),
    ]
    write_panels(path, panels)


# ----------------------------------------------------------------------------- entry points
def build_stage2(
    run_dir: str | Path, config: Stage2Config, device: torch.device | str
) -> tuple[SDFField, MaterialFields]:
    """Stage 1's SDF and materials whose diffuse albedo is stage 1's radiance net (copied).

    The new networks (specular, roughness) are initialised from ``config.seed`` alone, not from
    whatever the process drew before: a run resumed in a fresh process after stage 1 (or
    after a kill before stage 2's first checkpoint) starts stage 2 exactly as an uninterrupted
    one does.
    """
    from ironrender.training.stage1 import load_stage1

    torch.manual_seed(config.seed)

    stage1 = load_stage1(run_dir, device)
    sdf = copy.deepcopy(stage1.sdf)
    encoded = _stage1_gamma_encoded(run_dir)
    materials = MaterialFields.from_stage1(
        stage1.radiance, config.materials, stage1_gamma_encoded=encoded, curve=config.tone_curve
    )
    return sdf.train(), materials.train()


def stage1_background(
    run_dir: str | Path, config: Stage2Config, device: torch.device | str
) -> BackgroundFn | None:
    """What missed rays see in stage 2: stage 1's background, frozen, as linear radiance.

    None (black) when ``config.background`` is ``black`` or stage 1's background was black.
    Stage 1 fits the photographs' encoded values by default, so its background ``B`` is decoded
    to linear radiance here (``B^2.2``, or sRGB's curve: ``stage2.tone_curve``), the domain
    stage 2 renders in.
    """
    if config.background == "black":
        return None
    if config.background != "stage1":
        raise IronError(f"stage2.background must be stage1 or black, not {config.background!r}")
    from ironrender.training.stage1 import load_stage1

    model = load_stage1(run_dir, device).background
    if model.mode == "black":
        return None
    model.requires_grad_(False)
    encoded = _stage1_gamma_encoded(run_dir)

    def colour(origins: Tensor, directions: Tensor) -> Tensor:
        with torch.no_grad():
            value = model(origins, directions)
        return decode(value, config.tone_curve) if encoded else value

    return colour


def _stage1_gamma_encoded(run_dir: str | Path) -> bool:
    """Did stage 1 fit gamma-encoded colours (its ``train.loss_domain``)?"""
    from ironrender.training import stage1

    path = Path(run_dir) / stage1.STAGE_DIR / stage1.CHECKPOINT_NAME
    saved = load_checkpoint(path, "cpu")["config"]
    return saved.get("train", {}).get("loss_domain", "gamma") == "gamma"


def train_stage2(
    data_dir: str | Path,
    run_dir: str | Path,
    config: Stage2Config,
    device: torch.device | str,
    resume: bool = False,
    progress: bool = True,
    seconds: float | None = None,
) -> Stage2Result:
    """``iron fit DATA RUN --stage 2``: load the capture and stage 1, initialise, optimise.

    ``seconds``: a time budget for the optimisation; the iteration count is set from a measured
    step time (:mod:`~ironrender.training.time_budget`); a resumed run keeps its plan.
    """
    device = torch.device(device)
    checkpoint = Path(run_dir) / STAGE_DIR / CHECKPOINT_NAME
    resume = resume and checkpoint.exists()  # as stage 1: resuming a run not yet here starts it
    if checkpoint.exists() and not resume:
        raise IronError(
            f"{checkpoint} exists: pass --resume to continue it, or choose a new run folder"
        )
    # decoded patch by patch
    split = load_split(data_dir, "train", device, keep_8bit=True, curve=config.tone_curve)
    sdf, materials = build_stage2(run_dir, config, device)
    background = stage1_background(run_dir, config, device)
    ambient, gains = photometric_models(config, len(split), background is not None, device)
    flash = learned_flash(config, split, device)
    render = scene_render_config(config, split.cameras)
    masks = None  # from stage 1's surface, so that a resumed run draws the same patches
    if config.object_patch_fraction > 0:
        masks = object_masks(sdf, split.cameras, render, config.object_mask_size)
    if not resume:
        materials.set_light_intensity(
            initial_light_intensity(sdf, materials, split, config, render)
        )
    plan = None
    if seconds is not None and resume:  # the plan made when this stage started
        saved = load_checkpoint(checkpoint, "cpu")["config"]
        config = dataclasses.replace(config, steps=int(saved.get("steps", saved.get("iterations"))))
        plan = read_plan(Path(run_dir) / STAGE_DIR)
    elif seconds is not None:
        models = (ambient, gains, flash)
        step_seconds = _step_seconds(
            split, sdf, materials, config, render, background, masks, models
        )
        steps = steps_for(seconds, step_seconds, MIN_STAGE2_STEPS)
        config = scale_stage2_schedule(config, steps / config.steps)
        plan = StagePlan("stage 2", seconds, step_seconds, config.steps)
        print(plan.line())
    result = fit_stage2(
        split, sdf, materials, config, run_dir, resume, progress, background, masks,
        ambient, gains, flash,
    )  # fmt: skip
    report = photometric_report(ambient, gains, materials, split, flash)
    if report:
        print(f"stage 2: {report}")
    if plan is not None:
        plan.actual_seconds += result.seconds
        plan.save(Path(run_dir) / STAGE_DIR)
    return result


def _step_seconds(
    split: Split,
    sdf: SDFField,
    materials: MaterialFields,
    config: Stage2Config,
    render: SurfaceRenderConfig,
    background: BackgroundFn | None,
    masks: Tensor | None,
    models: tuple[AmbientLight | None, CameraGains | None, FlashOffset | None] = (None,) * 3,
) -> float:
    """Mean time of a stage-2 step, measured on throw-away copies of the fields, optimisers
    and random generators (the run itself starts exactly as without the measurement)."""
    sdf, materials, (ambient, gains, flash) = copy.deepcopy((sdf, materials, models))
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    optimizers = make_optimizers(sdf, materials, config, ambient, gains, flash)
    probe = Stage2State(
        sdf, materials, optimizers, generator, ambient=ambient, gains=gains, flash=flash
    )
    rng = torch.get_rng_state()
    seconds = mean_step_seconds(
        lambda: training_step(probe, split, config, render, background, masks), STAGE2_PROBE_STEPS
    )
    torch.set_rng_state(rng)
    return seconds


def load_stage2(run_dir: str | Path, device: torch.device | str) -> tuple[SDFField, MaterialFields]:
    """The trained SDF and materials of a run (export, evaluation), in eval mode."""
    path = Path(run_dir) / STAGE_DIR / CHECKPOINT_NAME
    if not path.is_file():
        raise IronError(
            f"{run_dir}: no stage-2 checkpoint ({STAGE_DIR}/{CHECKPOINT_NAME}); run stage 2 first"
        )
    state = load_checkpoint(path, device)
    from ironrender.config import from_dict

    config = from_dict(Stage2Config, state["config"], str(path))
    sdf, materials = build_stage2(run_dir, config, device)
    sdf.load_state_dict(state["sdf"])
    materials.load_state_dict(state["materials"])
    return sdf.eval(), materials.eval()
