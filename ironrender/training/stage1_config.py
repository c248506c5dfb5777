"""Stage 1's settings: :class:`Stage1Config` (fields, volume rendering, training, logging) and
the ``fast`` and ``paper`` presets."""

from __future__ import annotations

from dataclasses import dataclass, field

from ironrender.errors import IronError
from ironrender.fields.background import paper_background_config
from ironrender.fields.radiance import RadianceConfig, paper_radiance_config
from ironrender.fields.sdf import SDFConfig, paper_sdf_config
from ironrender.rendering.volume import VolumeConfig

LOSS_DOMAINS = ("gamma", "linear")


@dataclass
class TrainConfig:
    """Optimisation. Defaults are the ``fast`` preset."""

    steps: int = 1500
    batch_rays: int = 384
    lr: float = 5e-3  # networks
    grid_lr: float = 2e-2  # grid features (Instant-NGP-style grids want larger steps)
    variance_lr: float = 5e-3
    adam_betas: tuple[float, float] = (0.9, 0.99)
    adam_eps: float = 1e-15
    warmup_steps: int = 100
    lr_alpha: float = 0.05  # cosine decay to this fraction of the rate
    eikonal_weight: float = 0.1
    anneal_end: int = 500  # NeuS cos annealing ramp
    foreground_fraction: float = 0.75  # share of rays drawn from pixels brighter than below
    foreground_threshold: float = 0.02  # in the loss domain; rest of the rays: any pixel
    grid_initial_levels: int = 4  # coarse-to-fine: levels active at step 0
    grid_ramp_steps: int = 800  # all levels active after this many steps
    proposal_cache_resolution: int = 48  # 0: importance sampling queries the network
    proposal_refresh_every: int = 16
    loss_domain: str = "gamma"
    seed: int = 0


@dataclass
class LogConfig:
    progress: bool = True
    tensorboard: bool = True
    scalars_every: int = 25
    checkpoint_every: int = 250
    preview_every: int = 1000  # 0: only at the end
    preview_scale: float = 0.5  # previews render at this fraction of the image size ...
    preview_max_size: int = 320  # ... and at most this many pixels on their longest side
    preview_views: tuple[int, ...] = (0,)
    mesh_resolution: int = 192
    mesh_every: int = 0  # 0: only the final mesh
    render_chunk: int = 4096


@dataclass
class Stage1Config:
    sdf: SDFConfig = field(default_factory=SDFConfig)
    radiance: RadianceConfig = field(default_factory=RadianceConfig)
    volume: VolumeConfig = field(
        default_factory=lambda: VolumeConfig(
            n_coarse=64, n_importance=32, up_sample_steps=2, render_coarse=False, background="auto"
        )
    )
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)


def fast_stage1_config() -> Stage1Config:
    """Designed for 2 CPU cores and 128x128 captures: grid SDF, 32 rendered samples per ray
    placed by a cached-grid proposal, a few thousand steps."""
    return Stage1Config()


def paper_stage1_config() -> Stage1Config:
    """IRON's ``womask_iron.conf`` (reference §2-3): 8x256 MLPs, 64 + 4x16 samples, 512 rays,
    lr 5e-4 with 5k warm-up and cosine decay to 0.05x, anneal to 50k, 100k steps."""
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
