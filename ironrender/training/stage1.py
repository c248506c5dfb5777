"""Stage 1 (IRON §3.1): fit a NeuS SDF and a radiance field to the flash photographs.

Loss (per step, a batch of rays from all training views)::

    L = mean |C(r) - C_gt(r)|_1  +  lambda_eik * mean (|grad S(x)| - 1)^2

over rendered rays and their samples (IRON: L1 colour + 0.1 eikonal, no masks).

**Loss domain.** IRON trains stage 1 directly on gamma-encoded PNG values. Our loader returns
linear radiance, so targets are re-encoded as ``clip(x, 0, 1)^(1/2.2)``
(:func:`ironrender.data.tone_curve.target_to_loss_domain`, the module both stages use). An
sRGB capture's files are decoded and re-encoded through the same curve, so stage 1 fits the
values in its files whatever their curve, and stage 2 decodes what it learnt with the right
one. HDR (EXR) data is encoded the same way by default, which is also what IRON's EXR fallback
does: the flash images' dynamic range is large and gamma encoding spreads the error over dark
and bright regions like a perceptual tonemap, while the radiance net's sigmoid bounds outputs
to [0, 1] anyway (stage 1 only has to produce geometry and an albedo initialisation). Set
``loss_domain = "linear"`` to fit linear values instead.

The settings and presets are in :mod:`~ironrender.training.stage1_config`. Run folder
(:mod:`ironrender.run_folder`): ``RUN/stage1/{checkpoint.pt, previews/, mesh.ply, tb/}``.
Checkpoints hold the model, the optimiser, the step, the proposal cache and every RNG state,
so ``resume`` continues bit-for-bit where a killed run stopped.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.profiler import record_function

from ironrender.config import from_dict, to_dict
from ironrender.data.cameras import Cameras
from ironrender.data.dataset import load_split
from ironrender.data.images import LINEAR_OF_8BIT
from ironrender.data.tone_curve import target_to_loss_domain, target_to_loss_domain_
from ironrender.errors import IronError
from ironrender.fields.radiance import RadianceField
from ironrender.fields.sdf import NeuralSDF, NeuSVariance
from ironrender.interrupts import StopRequests
from ironrender.rendering.samplers import SDFGridCache
from ironrender.rendering.volume import Background, choose_background, render_rays
from ironrender.run_folder import STAGE1_DIR, STAGE1_MESH, stage_checkpoint
from ironrender.training.checkpoint import load_checkpoint, save_checkpoint
from ironrender.training.pixel_batches import PixelSampler, PixelTargets, pixel_rays
from ironrender.training.runlog import RunLog, psnr
from ironrender.training.stage1_config import (
    LOSS_DOMAINS,
    PRESETS,
    LogConfig,
    Stage1Config,
    TrainConfig,
    fast_stage1_config,
    paper_stage1_config,
    stage1_preset,
)
from ironrender.training.stage1_outputs import write_mesh, write_previews
from ironrender.training.stage1_schedule import (
    apply_schedules,
    extend,
    extension_line,
    extension_of,
    floor_holds,
    schedule_of,
)
from ironrender.training.surface_check import check_and_save
from ironrender.training.time_budget import (
    MIN_STAGE1_STEPS,
    StagePlan,
    mean_step_seconds,
    read_plan,
    scale_stage1_schedule,
    steps_for,
)

__all__ = [  # the configuration, re-exported: "stage 1" is where a user looks for it
    "PRESETS",
    "LogConfig",
    "Stage1Config",
    "TrainConfig",
    "fast_stage1_config",
    "paper_stage1_config",
    "stage1_preset",
    "Stage1Model",
    "train_stage1",
    "load_stage1",
    "load_stage1_run",
    "write_mesh",
]

EIKONAL_RADIUS = 1.2  # eikonal on samples with |x| < 1.2 (IRON)


# ----------------------------------------------------------------------------- model
class Stage1Model(nn.Module):
    """Everything stage 1 learns: SDF, radiance, NeuS variance and the background.

    ``config.volume.background`` must be resolved (not ``auto``): see :func:`resolve_background`.
    """

    def __init__(self, config: Stage1Config):
        super().__init__()
        self.sdf = NeuralSDF(config.sdf)
        self.radiance = RadianceField(config.radiance, self.sdf.feature_dim)
        self.variance = NeuSVariance()
        self.background = Background(config.volume.background, config.volume.background_field)

    def parameter_groups(self, train: TrainConfig) -> list[dict]:
        grid = list(self.sdf.grid.parameters()) if self.sdf.grid is not None else []
        room = self.background.field
        if room is not None and room.config.use_grid:
            grid += list(room.encoding.parameters())
        grid_ids = {id(p) for p in grid}
        nets = [p for p in self.sdf.parameters() if id(p) not in grid_ids]
        nets += list(self.radiance.parameters())
        nets += [p for p in self.background.parameters() if id(p) not in grid_ids]
        groups = [
            {"name": "networks", "params": [p for p in nets if p.requires_grad], "lr": train.lr},
            {"name": "variance", "params": [self.variance.variance], "lr": train.variance_lr},
        ]
        if grid:
            groups.append({"name": "grid", "params": grid, "lr": train.grid_lr})
        for group in groups:
            group["base_lr"] = group["lr"]
        return groups


@dataclass
class Stage1Result:
    run_dir: Path
    checkpoint: Path
    mesh: Path | None
    steps: int
    loss: float
    psnr: float
    seconds: float  # wall time of this call (training, previews, mesh)
    losses: list[float] = field(default_factory=list)  # per step of this call


def loss_domain_curve(domain: str) -> str | None:
    """The tone curve of stage 1's ``train.loss_domain``: ``gamma`` fits the 8-bit files' own
    values (gamma 2.2, how the loader decoded them), ``linear`` linear radiance (None)."""
    if domain not in LOSS_DOMAINS:
        raise IronError(f"train.loss_domain must be one of {LOSS_DOMAINS}, got {domain!r}")
    return "gamma2.2" if domain == "gamma" else None


def loss_domain_targets(images: Tensor, domain: str) -> PixelTargets:
    """The photographs as stage 1's targets (:func:`loss_domain_curve`): uint8 photographs with
    the table of what the loss domain makes of each 8-bit value's linear radiance (the same
    float32 numbers as converting the decoded images), float32 ones in place."""
    curve = loss_domain_curve(domain)
    if images.dtype == torch.uint8:
        table = target_to_loss_domain(torch.from_numpy(LINEAR_OF_8BIT.copy()), curve)
        return PixelTargets(images, table)
    return PixelTargets(target_to_loss_domain_(images, curve))


# ----------------------------------------------------------------------------- training
@dataclass
class _State:
    """What a checkpoint restores."""

    step: int
    model: Stage1Model
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    cache: SDFGridCache | None


def train_stage1(
    data_dir: str | Path,
    run_dir: str | Path,
    config: Stage1Config,
    device: torch.device | str,
    resume: bool = False,
    stop_after: int | None = None,
    seconds: float | None = None,
) -> Stage1Result:
    """``iron fit DATA RUN --stage 1``: train, then write previews, the mesh and the checkpoint.

    ``resume`` continues from ``RUN/stage1/checkpoint.pt`` exactly. ``stop_after`` ends the call
    after that many total steps (as if killed after its checkpoint; used by tests).
    ``seconds``: a time budget for the training loop; the step count and the schedule's ramps
    are set from a measured step time (:mod:`~ironrender.training.time_budget`); a resumed
    run keeps the plan its checkpoint holds.
    """
    started = time.perf_counter()
    device = torch.device(device)
    stage_dir = Path(run_dir) / STAGE1_DIR
    checkpoint_path = stage_checkpoint(run_dir, STAGE1_DIR)
    mesh_file = stage_dir / STAGE1_MESH
    if checkpoint_path.exists() and not resume:
        raise IronError(
            f"{checkpoint_path} exists: pass --resume to continue it, or choose a new run folder"
        )
    train, log = config.train, config.log
    # 8-bit photographs stay uint8 (their values are the gamma-encoded loss domain), others
    # become the targets in place: one copy of the capture, never a linear and an encoded twin.
    split = load_split(data_dir, "train", device, keep_8bit=train.loss_domain == "gamma")
    config, reason = resolve_background(config, split.images)
    if log.progress:
        print(reason)
    targets = loss_domain_targets(split.images, train.loss_domain)
    state = _initial_state(config, device)
    checkpoint = (
        load_checkpoint(checkpoint_path, device) if resume and checkpoint_path.exists() else None
    )
    sampler = PixelSampler(targets, train.foreground_fraction, train.foreground_threshold)
    plan = None
    if seconds is not None and checkpoint is not None:  # the plan made when this run started
        config = schedule_of(config, checkpoint["config"])
        plan = read_plan(stage_dir)
    elif seconds is not None:
        config, plan = _plan(config, seconds, state, split.cameras, sampler, targets)
        print(plan.line())
    if checkpoint is not None:
        config = extension_of(config, checkpoint["config"])
        _restore(state, checkpoint, config)
    train = config.train
    end = train.steps if stop_after is None else min(train.steps, stop_after)
    loop_started = time.perf_counter()
    runlog = RunLog(stage_dir, train.steps, state.step, log.progress, log.tensorboard, "stage 1")
    loss_value, psnr_value = float("nan"), float("nan")
    losses: list[float] = []
    try:
        with StopRequests() as stop:
            while state.step < end:
                step = state.step
                metrics = _train_step(state, config, split.cameras, sampler, targets)
                state.step += 1
                loss_value, psnr_value = metrics["loss"], metrics["psnr"]
                losses.append(loss_value)
                runlog.step(step, metrics, write=step % log.scalars_every == 0)
                if state.step == train.anneal_end and floor_holds(state, train, seconds):
                    config = extend(config)
                    runlog.message(extension_line(config.train, float(state.model.variance.floor)))
                    train = config.train
                    end = train.steps if stop_after is None else min(train.steps, stop_after)
                    runlog.set_total(train.steps)
                if state.step % log.checkpoint_every == 0 or state.step == end or stop.requested:
                    save_checkpoint(checkpoint_path, _checkpoint(state, config))
                if stop.requested:
                    print(f"stage 1: stopped at step {state.step}; checkpoint saved")
                    stop.stop_now()
                if log.preview_every and state.step % log.preview_every == 0 and state.step < end:
                    write_previews(state, config, split, targets, stage_dir)
                if log.mesh_every and state.step % log.mesh_every == 0 and state.step < end:
                    write_mesh(state.model.sdf, mesh_file, log.mesh_resolution, device)
    finally:
        runlog.close()
    if plan is not None:
        plan.actual_seconds += time.perf_counter() - loop_started
        plan.save(stage_dir)

    mesh_path = None
    if state.step >= train.steps:
        write_previews(state, config, split, targets, stage_dir)
        mesh_path = write_mesh(state.model.sdf, mesh_file, log.mesh_resolution, device)
        check_and_save(state.model, state.cache, config.volume, split.cameras, sampler, stage_dir,
                       log.progress)  # fmt: skip
    wall = time.perf_counter() - started
    return Stage1Result(
        Path(run_dir), checkpoint_path, mesh_path, state.step, loss_value, psnr_value, wall, losses
    )


def resolve_background(config: Stage1Config, images: Tensor) -> tuple[Stage1Config, str]:
    """``config`` with ``volume.background = auto`` decided from the training photographs
    (linear, (N, H, W, 3)), and the one-line reason. The resolved mode is what the checkpoint
    saves, so stage 2, export and evaluation rebuild the same model."""
    mode, reason = choose_background(config.volume.background, images)
    volume = dataclasses.replace(config.volume, background=mode)
    return dataclasses.replace(config, volume=volume), reason


def _initial_state(config: Stage1Config, device: torch.device) -> _State:
    torch.manual_seed(config.train.seed)  # network initialisation
    model = Stage1Model(config).to(device)
    # fused: one pass over each tensor; for a 192^3 dense grid on 2 CPU cores 19 ms a step
    # instead of 156 ms (foreach), the same update to within float rounding (as stage 2's).
    optimizer = torch.optim.Adam(
        model.parameter_groups(config.train),
        betas=config.train.adam_betas,
        eps=config.train.adam_eps,
        fused=True,
    )
    generator = torch.Generator(device=device).manual_seed(config.train.seed)
    cache = None
    if config.train.proposal_cache_resolution > 0:
        cache = SDFGridCache(config.train.proposal_cache_resolution, 1.0, device)
    return _State(0, model, optimizer, generator, cache)


def _plan(
    config: Stage1Config,
    seconds: float,
    state: _State,
    cameras: Cameras,
    sampler: PixelSampler,
    targets: PixelTargets,
) -> tuple[Stage1Config, StagePlan]:
    """``config`` with as many steps as fit in ``seconds``, timed on a throw-away copy of
    ``state`` (the run's own state, RNGs included, is left untouched).

    A step costs more once the coarse-to-fine ramp has unlocked every grid level (twice as
    much with a 192^3 grid on 2 cores), so steps are timed at both ends of the ramp; the mean
    cost over the run is ``t_all (1 - r/2) + t_first r/2`` with ``r`` the ramp's share of the
    steps (the cost growing about linearly during the ramp), a share the planned schedule keeps.
    """
    model, optimizer, cache = copy.deepcopy((state.model, state.optimizer, state.cache))
    generator = torch.Generator(device=state.generator.device)
    generator.set_state(state.generator.get_state())
    probe = _State(state.step, model, optimizer, generator, cache)

    def step() -> None:
        _train_step(probe, config, cameras, sampler, targets)
        probe.step += 1

    rng = torch.get_rng_state()
    first = mean_step_seconds(step)
    train = config.train
    ramp = min(train.grid_ramp_steps / max(train.steps, 1), 1.0) if config.sdf.use_grid else 0.0
    probe.step = max(train.grid_ramp_steps, probe.step)  # every level active from here on
    every = mean_step_seconds(step) if ramp > 0 else first
    torch.set_rng_state(rng)
    step_seconds = every * (1 - ramp / 2) + first * ramp / 2
    steps = steps_for(seconds, step_seconds, MIN_STAGE1_STEPS)
    planned = scale_stage1_schedule(config, steps / config.train.steps)
    return planned, StagePlan("stage 1", seconds, step_seconds, planned.train.steps)


def _train_step(
    state: _State,
    config: Stage1Config,
    cameras: Cameras,
    sampler: PixelSampler,
    targets: PixelTargets,
) -> dict[str, float]:
    train = config.train
    anneal = apply_schedules(state, config)
    model = state.model
    if state.cache is not None and state.step % train.proposal_refresh_every == 0:
        with record_function("stage 1: refresh the proposal grid"):
            state.cache.refresh(model.sdf)
    with record_function("stage 1: draw rays"):
        flat = sampler.sample(train.batch_rays, state.generator)
        rays = pixel_rays(cameras, flat, sampler.shape)
    out = render_rays(
        rays,
        model.sdf,
        model.radiance,
        model.variance.inv_s(),
        model.background,
        config.volume,
        cos_anneal_ratio=anneal,
        proposal=state.cache,
        jitter=True,
        generator=state.generator,
    )
    with record_function("stage 1: loss"):
        target = targets.pixels(flat)
        color_loss = F.l1_loss(out.rgb, target)
        inside = out.points.norm(dim=-1) < EIKONAL_RADIUS
        eikonal = ((out.gradients.norm(dim=-1) - 1.0) ** 2)[inside].mean()
        loss = color_loss + train.eikonal_weight * eikonal
    if not torch.isfinite(loss):
        raise IronError(
            f"stage 1: the loss became {loss.item()} at step {state.step}; stopped, the last good"
            " checkpoint is kept (try a lower train.lr / train.grid_lr)"
        )
    state.optimizer.zero_grad(set_to_none=True)
    with record_function("stage 1: backward"):
        loss.backward()
    with record_function("stage 1: optimiser"):
        state.optimizer.step()
    with torch.no_grad():
        mse = F.mse_loss(out.rgb, target).item()
    return {
        "loss": loss.item(),
        "psnr": psnr(mse),
        "eikonal": eikonal.item(),
        "inv_s": model.variance.inv_s().item(),
    }


# ----------------------------------------------------------------------------- checkpoints
def _checkpoint(state: _State, config: Stage1Config) -> dict:
    return {
        "step": state.step,
        "config": to_dict(config),
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "generator": state.generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cache": state.cache.state_dict() if state.cache is not None else None,
    }


def _restore(state: _State, checkpoint: dict, config: Stage1Config) -> None:
    state.step = int(checkpoint["step"])
    state.model.load_state_dict(checkpoint["model"])
    state.optimizer.load_state_dict(checkpoint["optimizer"])
    for group, base in zip(
        state.optimizer.param_groups, state.model.parameter_groups(config.train), strict=True
    ):
        group["base_lr"] = base["base_lr"]  # a --set on resume may change the base rates
    state.generator.set_state(checkpoint["generator"].to("cpu"))
    torch.set_rng_state(checkpoint["torch_rng"].to("cpu"))
    if state.cache is not None and checkpoint.get("cache") is not None:
        state.cache.load_state_dict(checkpoint["cache"])


def load_stage1(run_dir: str | Path, device: torch.device | str = "cpu") -> Stage1Model:
    """The trained stage-1 model of a run (``.sdf``, ``.radiance``, ``.variance``), eval mode."""
    return load_stage1_run(run_dir, device)[0]


def load_stage1_run(
    run_dir: str | Path, device: torch.device | str = "cpu"
) -> tuple[Stage1Model, Stage1Config]:
    """The trained stage-1 model (eval mode) and the configuration it was trained with, from
    one read of its checkpoint."""
    path = stage_checkpoint(run_dir, STAGE1_DIR)
    if not path.is_file():
        raise IronError(f"{run_dir}: no stage-1 checkpoint ({path.relative_to(run_dir)})")
    checkpoint = load_checkpoint(path, device)
    config = from_dict(Stage1Config, checkpoint["config"], str(path))
    model = Stage1Model(config).to(device)
    model.load_state_dict(checkpoint["model"])
    model.sdf.set_active_levels(config.sdf.grid.levels)
    return model.eval(), config
