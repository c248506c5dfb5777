"""Stage 1's settings: :class:`Stage1Config` (fields, volume rendering, training, logging) and
the ``fast`` and ``paper`` presets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from ironrender.config import check_choices, option
from ironrender.errors import IronError
from ironrender.fields.background import paper_background_config
from ironrender.fields.radiance import RadianceConfig, paper_radiance_config
from ironrender.fields.sdf import SDFConfig, paper_sdf_config
from ironrender.rendering.volume import VolumeConfig

LossDomain = Literal["gamma", "linear"]
"""``TrainConfig.loss_domain``: fit the photographs' encoded values (IRON) or linear radiance."""
LOSS_DOMAINS = get_args(LossDomain)


@dataclass
class TrainConfig:
    """Optimisation. Defaults are the ``fast`` preset."""

    steps: int = option(1500, "training steps, one batch of rays each")
    batch_rays: int = option(384, "rays per step, drawn from all training views")
    lr: float = option(5e-3, "learning rate of the networks (Adam)")
    grid_lr: float = option(
        2e-2, "learning rate of grid features (Instant-NGP-style grids want larger steps)"
    )
    variance_lr: float = option(5e-3, "learning rate of NeuS's sharpness s (inv_s = exp(10 v))")
    adam_betas: tuple[float, float] = option((0.9, 0.99), "Adam's beta1 and beta2")
    adam_eps: float = option(1e-15, "Adam's epsilon")
    warmup_steps: int = option(100, "steps of the linear learning-rate warm-up")
    lr_alpha: float = option(0.05, "cosine decay to this fraction of the rate")
    eikonal_weight: float = option(0.1, "weight of the eikonal loss (|grad S| - 1)^2")
    anneal_end: int = option(500, "steps of NeuS's cos annealing ramp")
    min_inv_s: float = option(
        200.0,
        "> 0: from min_inv_s_from of the anneal on, hold inv_s at least at a floor rising"
        " geometrically from min_inv_s_start to this at the last step, so that shiny and dark"
        " objects end as a surface, not fog (runs that form one learn more and never touch it);"
        " 0: NeuS's learnt inv_s alone (IRON)",
    )
    min_inv_s_start: float = option(30.0, "the sharpness floor's value where it starts")
    min_inv_s_from: float = option(
        0.5, "where the floor starts, as a fraction of the anneal (1: at its end)"
    )
    floor_extension: float = option(
        1.0,
        "when the floor, not the photographs, holds inv_s at the anneal's end (a shiny or dark"
        " object), train this many times the remaining steps more, the rest of the schedule"
        " stretched over them (not under --minutes); 0: never",
    )
    extended_from: int = option(
        0, "set by training: the planned step count before a floor extension (0: none)"
    )
    foreground_fraction: float = option(
        0.75, "share of rays drawn from pixels brighter than foreground_threshold"
    )
    foreground_threshold: float = option(
        0.02, "brightness in the loss domain; the rest of the rays: any pixel"
    )
    grid_initial_levels: int = option(4, "coarse-to-fine: grid levels active at step 0")
    grid_ramp_steps: int = option(800, "all grid levels active after this many steps")
    proposal_cache_resolution: int = option(
        48, "vertices per axis of the cached SDF grid that places the samples; 0: use the network"
    )
    proposal_refresh_every: int = option(16, "steps between two refreshes of that cached grid")
    loss_domain: LossDomain = option(
        "gamma", "what the loss compares: the files' encoded values (IRON), or linear radiance"
    )
    seed: int = option(0, "seed of the network initialisation and the ray draws")

    def __post_init__(self) -> None:
        check_choices(self)
        if not 0 <= self.min_inv_s_from <= 1:
            raise IronError(
                f"stage1.train.min_inv_s_from must lie in [0, 1], not {self.min_inv_s_from:g}"
            )
        if self.floor_extension < 0:
            raise IronError(
                f"stage1.train.floor_extension must be >= 0, not {self.floor_extension:g}"
            )
        if self.min_inv_s > 0 and not 0 < self.min_inv_s_start <= self.min_inv_s:
            raise IronError(
                f"stage1.train.min_inv_s_start must lie in (0, min_inv_s = {self.min_inv_s:g}],"
                f" not {self.min_inv_s_start:g}"
            )


@dataclass
class LogConfig:
    """What stage 1 reports and writes while it trains."""

    progress: bool = option(True, "a progress bar and messages on the terminal")
    tensorboard: bool = option(True, "write TensorBoard scalars into RUN/stage1/tb")
    scalars_every: int = option(25, "steps between two TensorBoard scalar writes")
    checkpoint_every: int = option(250, "steps between two checkpoints")
    preview_every: int = option(1000, "steps between two preview renders; 0: only at the end")
    preview_scale: float = option(0.5, "previews render at this fraction of the image size ...")
    preview_max_size: int = option(320, "... and at most this many pixels on their longest side")
    preview_views: tuple[int, ...] = option((0,), "training views rendered as previews")
    mesh_resolution: int = option(192, "marching-cubes grid of stage 1's mesh, per axis")
    mesh_every: int = option(0, "steps between two intermediate meshes; 0: only the final mesh")
    render_chunk: int = option(4096, "rays per batch when whole views are rendered")


@dataclass
class Stage1Config:
    """Stage 1's settings. Defaults are the ``fast`` preset; see ``paper_stage1_config``."""

    sdf: SDFConfig = option(factory=SDFConfig, help="the neural signed distance field")
    radiance: RadianceConfig = option(
        factory=RadianceConfig, help="the radiance network (stage 2's diffuse albedo)"
    )
    volume: VolumeConfig = option(
        factory=lambda: VolumeConfig(
            n_coarse=64, n_importance=32, up_sample_steps=2, render_coarse=False, background="auto"
        ),
        help="NeuS volume rendering: samples per ray and what lies beyond the unit sphere",
    )
    train: TrainConfig = option(factory=TrainConfig, help="optimisation")
    log: LogConfig = option(factory=LogConfig, help="progress, previews, checkpoints, meshes")


def fast_stage1_config() -> Stage1Config:
    """Designed for 2 CPU cores and 128x128 captures: grid SDF, 32 rendered samples per ray
    placed by a cached-grid proposal, a few thousand steps."""
    return Stage1Config()


def paper_stage1_config() -> Stage1Config:
    """IRON's ``confs/womask_iron.conf`` (docs/architecture.md#defaults-from-irons-code): 8x256
    MLPs, 64 + 4x16 samples, 512 rays, lr 5e-4 with 5k warm-up and cosine decay to 0.05x, anneal
    to 50k, 100k steps."""
    return Stage1Config(
        sdf=paper_sdf_config(),
        radiance=paper_radiance_config(),
        volume=VolumeConfig(background="field", background_field=paper_background_config()),
        train=TrainConfig(
            steps=100_000,
            batch_rays=512,
            lr=5e-4,
            grid_lr=5e-4,
            variance_lr=5e-4,
            adam_betas=(0.9, 0.999),
            adam_eps=1e-8,
            warmup_steps=5000,
            anneal_end=50_000,
            min_inv_s=0.0,
            foreground_fraction=0.0,
            proposal_cache_resolution=0,
        ),
        log=LogConfig(
            checkpoint_every=10_000, preview_every=2500, mesh_every=5000, mesh_resolution=256
        ),
    )


PRESETS = {"fast": fast_stage1_config, "paper": paper_stage1_config}


def stage1_preset(name: str) -> Stage1Config:
    if name not in PRESETS:
        raise IronError(f"unknown stage-1 preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]()
