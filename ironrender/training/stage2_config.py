"""Stage 2's settings: :class:`Stage2Config` and the ``fast`` and ``paper`` presets."""

from __future__ import annotations

from dataclasses import dataclass, field

from ironrender.data.tone_curve import DEFAULT_TONE_CURVE, check_curve
from ironrender.fields.materials import MaterialConfig, paper_material_config
from ironrender.rendering.edges import EdgeConfig
from ironrender.rendering.surface_renderer import SurfaceRenderConfig
from ironrender.training.losses import LossWeights

STAGE2_BACKGROUNDS = ("stage1", "black")
FLASH_MODES = ("dataset", "learn")
"""``Stage2Config.flash``: where the camera file puts it (absent: in the lens), or learnt
(:mod:`ironrender.training.flash_offset`) when the camera file says nothing."""
AMBIENT_MODES = ("off", "sh2", "auto")
"""``Stage2Config.ambient``: no room light (IRON), spherical-harmonic irradiance
(:mod:`ironrender.fields.ambient`), or the latter when the photographs' room is not dark."""


@dataclass
class Stage2Config:
    """Stage-2 optimisation settings. Defaults are the ``fast`` preset (2 CPU cores, 128x128).

    ``paper_stage2_config`` gives the reference's values (128x128 patches, 50k steps,
    learning rates 1e-5 / 1e-4 / 1e-2, loss weights 1 / 1 / 0.1 / 0.1).
    """

    steps: int = 1000  # 0.25-0.3 s per 64x64 patch on 2 idle cores: 4.6 min in all
    patch_size: int = 64
    lr_sdf: float = 1e-4
    lr_materials: float = 1e-3
    lr_light: float = 1e-2  # on log I (see fields/materials.py)
    grid_lr_factor: float = 10.0  # dense-grid features (SDF, materials) learn this much faster
    lr_alpha: float = 1.0  # cosine decay of every rate to this fraction at the end; 1 = constant
    weights: LossWeights = field(default_factory=LossWeights)
    edges: bool = True  # False: the IDR-style ``--no-edges`` baseline
    background: str = "stage1"  # what missed rays see: stage 1's background model, or black
    object_patch_fraction: float = 0.0  # share of patches centred on the object (0: IRON)
    object_mask_size: int = 64  # longest side of the per-view object masks that guide them
    # What the photographs hold besides the flash's light (beyond IRON; all off in `paper`):
    tone_curve: str = DEFAULT_TONE_CURVE  # how the 8-bit files encode radiance: gamma2.2, srgb
    ambient: str = "off"  # room light on the object: off, sh2, auto (sh2 if the room is lit)
    exposure_gains: bool = False  # fit RGB gains per photograph (auto exposure/white balance)
    gains_weight: float = 0.01  # weight of mean(log gain^2), which holds the gains near 1
    lr_ambient: float = 1e-3  # the nine SH coefficients (1e-2 overshot: 18 % for 5 %)
    lr_gains: float = 2e-3  # the log gains (each photograph's are seen by few patches)
    flash: str = "dataset"  # the camera file's flash positions, or "learn" one when it has none
    lr_flash: float = 1e-3  # the learnt offset, scene units per step
    eikonal_points: int = 0  # random points per step; 0 = half the patch's pixels (reference)
    # Burley diffuse in `fast` (measured better on the default capture; BENCHMARKS.md), Lambert in
    # `paper` (IRON's model).
    materials: MaterialConfig = field(
        default_factory=lambda: MaterialConfig(diffuse_model="burley")
    )
    render: SurfaceRenderConfig = field(default_factory=SurfaceRenderConfig)
    edge_step_pixels: float = 0.25  # walk step in pixels at the object; 0 = render.edges as is
    light_init_views: int = 8  # training views rendered for the least-squares light
    light_init_size: int = 64  # their longest side, pixels (downscaled)
    log_every: int = 10
    preview_every: int = 200
    checkpoint_every: int = 100
    preview_size: int = 128  # longest side of preview renders
    max_bad_steps: int = 20  # consecutive non-finite steps before giving up
    seed: int = 0

    def __post_init__(self) -> None:
        # Checked here, not when stage 2 starts: a typo must not cost a whole stage 1 first.
        if self.background not in STAGE2_BACKGROUNDS:
            raise ValueError(
                f"background must be one of {STAGE2_BACKGROUNDS}, not {self.background!r}"
            )
        if self.flash not in FLASH_MODES:
            raise ValueError(f"flash must be one of {FLASH_MODES}, not {self.flash!r}")
        if self.ambient not in AMBIENT_MODES:
            raise ValueError(f"ambient must be one of {AMBIENT_MODES}, not {self.ambient!r}")
        check_curve(self.tone_curve)


def fast_stage2_config() -> Stage2Config:
    return Stage2Config()


def paper_stage2_config() -> Stage2Config:
    """The reference schedule (train_scene.sh): 50k steps of one 128x128 patch each."""
    return Stage2Config(
        steps=50_000,
        patch_size=128,
        lr_sdf=1e-5,
        lr_materials=1e-4,
        lr_light=1e-2,
        grid_lr_factor=1.0,
        materials=paper_material_config(),
        # The paper's Algorithm 1 and area-weighted blend (eq. 13) without our gap filling. The
        # reference code's clamp (centre outside the edge -> w = 0.5) is available as
        # footprint="reference", but it gives a third of the true silhouette gradient
        # (tests/test_edges.py), so the paper preset follows the paper, not that quirk.
        render=SurfaceRenderConfig(edges=EdgeConfig(footprint="circle", fill_gaps=False)),
        edge_step_pixels=0.0,
        background="black",  # IRON's stage 2 renders misses black
        object_patch_fraction=0.0,  # and draws its patches uniformly
        preview_every=500,
        checkpoint_every=1000,
    )


STAGE2_PRESETS = {"fast": fast_stage2_config, "paper": paper_stage2_config}
