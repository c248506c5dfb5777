"""Stage 1 (IRON §3.1): fit a NeuS SDF and a radiance field to the flash photographs.

Loss (per step, a batch of rays from all training views)::

    L = mean |C(r) - C_gt(r)|_1  +  lambda_eik * mean (|grad S(x)| - 1)^2

over rendered rays and their samples (IRON: L1 colour + 0.1 eikonal, no masks).

**Loss domain.** IRON trains stage 1 directly on gamma-encoded PNG values. Our loader returns
linear radiance, so targets are re-encoded as ``clip(x, 0, 1)^(1/2.2)``. HDR (EXR) data is
encoded the same way by default, which is also what IRON's EXR fallback does: the flash
images' dynamic range is large and gamma encoding spreads the error over dark and bright
regions like a perceptual tonemap, while the radiance net's sigmoid bounds outputs to [0, 1]
anyway (stage 1 only has to produce geometry and an albedo initialisation). Set
``loss_domain = "linear"`` to fit linear values instead.

The settings and presets are in :mod:`~ironrender.training.stage1_config`. Run folder:
``RUN/stage1/{checkpoint.pt, previews/, mesh.ply, tb/}``. Checkpoints hold the
model, the optimiser, the step, the proposal cache and every RNG state, so ``resume`` continues
bit-for-bit where a killed run stopped.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ironrender.config import from_dict, to_dict
from ironrender.data.cameras import Cameras
from ironrender.data.dataset import Split, load_split
from ironrender.data.images import GAMMA
from ironrender.errors import IronError
from ironrender.fields.encodings import GridConfig
from ironrender.fields.radiance import RadianceField
from ironrender.fields.sdf import NeuralSDF, NeuSVariance
from ironrender.interrupts import StopRequests
from ironrender.rendering.samplers import SDFGridCache
from ironrender.rendering.volume import (
    Background,
    choose_background,
    render_image,
    render_rays,
)
from ironrender.training.checkpoint import load_checkpoint, save_checkpoint
from ironrender.training.pixel_batches import PixelSampler, pixel_rays
from ironrender.training.runlog import RunLog, normal_image, psnr, write_panels
from ironrender.training.schedules import active_levels, cos_anneal_ratio, learning_rate_factor
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
    "write_mesh",
]

STAGE_DIR = "stage1"
CHECKPOINT_NAME = "checkpoint.pt"
MESH_NAME = "mesh.ply"
PREVIEW_DIR = "previews"
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


def to_loss_domain(linear: Tensor, domain: str) -> Tensor:
    """Targets in the domain the loss compares: ``clip(x, 0, 1)^(1/2.2)`` or linear."""
    if domain == "gamma":
        return linear.clamp(0.0, 1.0) ** (1.0 / GAMMA)
    if domain == "linear":
        return linear
    raise IronError(f"train.loss_domain must be one of {LOSS_DOMAINS}, got {domain!r}")


def to_loss_domain_(linear: Tensor, domain: str) -> Tensor:
    """:func:`to_loss_domain` in place (the same values, computed elementwise by the same ops):
    ``linear`` is overwritten and returned."""
    if domain == "gamma":
        return linear.clamp_(0.0, 1.0).pow_(1.0 / GAMMA)
    return to_loss_domain(linear, domain)


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
) -> Stage1Result:
    """``iron fit DATA RUN --stage 1``: train, then write previews, the mesh and the checkpoint.

    ``resume`` continues from ``RUN/stage1/checkpoint.pt`` exactly. ``stop_after`` ends the call
    after that many total steps (as if killed after its checkpoint; used by tests).
    """
    started = time.perf_counter()
    device = torch.device(device)
    stage_dir = Path(run_dir) / STAGE_DIR
    checkpoint_path = stage_dir / CHECKPOINT_NAME
    if checkpoint_path.exists() and not resume:
        raise IronError(
            f"{checkpoint_path} exists: pass --resume to continue it, or choose a new run folder"
        )
    train, log = config.train, config.log
    split = load_split(data_dir, "train", device)
    config, reason = resolve_background(config, split.images)
    if log.progress:
        print(reason)
    # The photographs become the targets in place: training holds one float32 copy of the
    # capture, not the linear images and their gamma-encoded twin (2x the memory).
    targets = to_loss_domain_(split.images, train.loss_domain)
    state = _initial_state(config, device)
    if resume and checkpoint_path.exists():
        _restore(state, load_checkpoint(checkpoint_path, device), config)
    end = train.steps if stop_after is None else min(train.steps, stop_after)

    sampler = PixelSampler(targets, train.foreground_fraction, train.foreground_threshold)
    flat_targets = targets.reshape(-1, 3)
    runlog = RunLog(stage_dir, train.steps, state.step, log.progress, log.tensorboard, "stage 1")
    loss_value, psnr_value = float("nan"), float("nan")
    losses: list[float] = []
    try:
        with StopRequests() as stop:
            while state.step < end:
                step = state.step
                metrics = _train_step(state, config, split.cameras, sampler, flat_targets)
                state.step += 1
                loss_value, psnr_value = metrics["loss"], metrics["psnr"]
                losses.append(loss_value)
                runlog.step(step, metrics, write=step % log.scalars_every == 0)
                if state.step % log.checkpoint_every == 0 or state.step == end or stop.requested:
                    save_checkpoint(checkpoint_path, _checkpoint(state, config))
                if stop.requested:
                    print(f"stage 1: stopped at step {state.step}; checkpoint saved")
                    stop.stop_now()
                if log.preview_every and state.step % log.preview_every == 0 and state.step < end:
                    _write_previews(state, config, split, targets, stage_dir)
                if log.mesh_every and state.step % log.mesh_every == 0 and state.step < end:
                    write_mesh(state.model.sdf, stage_dir / MESH_NAME, log.mesh_resolution, device)
    finally:
        runlog.close()

    mesh_path = None
    if state.step >= train.steps:
        _write_previews(state, config, split, targets, stage_dir)
        mesh_path = write_mesh(state.model.sdf, stage_dir / MESH_NAME, log.mesh_resolution, device)
    return Stage1Result(
        Path(run_dir),
        checkpoint_path,
        mesh_path,
        state.step,
        loss_value,
        psnr_value,
        time.perf_counter() - started,
        losses,
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
    optimizer = torch.optim.Adam(
        model.parameter_groups(config.train),
        betas=config.train.adam_betas,
        eps=config.train.adam_eps,
    )
    generator = torch.Generator(device=device).manual_seed(config.train.seed)
    cache = None
    if config.train.proposal_cache_resolution > 0:
        cache = SDFGridCache(config.train.proposal_cache_resolution, 1.0, device)
    return _State(0, model, optimizer, generator, cache)


def _apply_schedules(state: _State, config: Stage1Config) -> float:
    """Set the learning rates and grid levels for ``state.step``; returns the anneal ratio."""
    train = config.train
    factor = learning_rate_factor(state.step, train.warmup_steps, train.steps, train.lr_alpha)
    for group in state.optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
    if config.sdf.use_grid:
        levels = active_levels(
            state.step, train.grid_initial_levels, config.sdf.grid.levels, train.grid_ramp_steps
        )
        state.model.sdf.set_active_levels(levels)
    return cos_anneal_ratio(state.step, train.anneal_end)


def _train_step(
    state: _State, config: Stage1Config, cameras: Cameras, sampler: PixelSampler, targets: Tensor
) -> dict[str, float]:
    train = config.train
    anneal = _apply_schedules(state, config)
    model = state.model
    if state.cache is not None and state.step % train.proposal_refresh_every == 0:
        state.cache.refresh(model.sdf)
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
    target = targets[flat]
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
    loss.backward()
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
    path = Path(run_dir) / STAGE_DIR / CHECKPOINT_NAME
    if not path.is_file():
        raise IronError(f"{run_dir}: no stage-1 checkpoint ({STAGE_DIR}/{CHECKPOINT_NAME})")
    checkpoint = load_checkpoint(path, device)
    config = from_dict(Stage1Config, checkpoint["config"], str(path))
    model = Stage1Model(config).to(device)
    model.load_state_dict(checkpoint["model"])
    model.sdf.set_active_levels(config.sdf.grid.levels)
    return model.eval()


# ----------------------------------------------------------------------------- outputs
@torch.no_grad()
def _write_previews(
    state: _State, config: Stage1Config, split: Split, targets: Tensor, stage_dir: Path
) -> None:
    """``previews/step_XXXXXX_view_Y.png``: ground truth | rendering | normals."""
    # At half the size of a 1 MP photo a preview renders 190k rays, the forward pass of ~500
    # training steps of 384 rays; 320 px keeps it to a few dozen.
    longest = int(split.cameras.sizes.max())
    scale = min(config.log.preview_scale, config.log.preview_max_size / longest)
    cameras = split.cameras.scaled(scale) if scale != 1.0 else split.cameras
    model = state.model
    for view in config.log.preview_views:
        if view >= len(split):
            continue
        out = render_image(
            cameras,
            view,
            model.sdf,
            model.radiance,
            model.variance.inv_s(),
            model.background,
            config.volume,
            chunk=config.log.render_chunk,
            proposal=state.cache,
        )
        height, width = out.rgb.shape[:2]
        gt = F.interpolate(targets[view].permute(2, 0, 1)[None], size=(height, width), mode="area")[
            0
        ].permute(1, 2, 0)
        rgb = out.rgb if config.train.loss_domain == "gamma" else to_loss_domain(out.rgb, "gamma")
        gt = gt if config.train.loss_domain == "gamma" else to_loss_domain(gt, "gamma")
        name = f"step_{state.step:06d}_view_{view}.png"
        write_panels(
            stage_dir / PREVIEW_DIR / name, [gt, rgb, normal_image(out.normal, out.opacity)]
        )


def write_mesh(sdf: NeuralSDF, path: Path, resolution: int, device: torch.device) -> Path:
    """Marching cubes on the SDF (largest component kept, as IRON's export) to ``path``."""
    from ironrender.fields.level_set import extract_mesh

    mesh = extract_mesh(sdf.sdf, resolution, bound=1.0, device=device, keep_largest_component=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    mesh.export(path)
    return path


__all__ = [
    "GridConfig",
    "LogConfig",
    "Stage1Config",
    "Stage1Model",
    "Stage1Result",
    "TrainConfig",
    "fast_stage1_config",
    "load_stage1",
    "paper_stage1_config",
    "stage1_preset",
    "train_stage1",
]
