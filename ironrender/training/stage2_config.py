"""Stage 2's settings: :class:`Stage2Config` and the ``fast`` and ``paper`` presets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from ironrender.config import check_choices, option
from ironrender.data.tone_curve import DEFAULT_TONE_CURVE, ToneCurve
from ironrender.fields.materials import MaterialConfig, paper_material_config
from ironrender.rendering.edges import EdgeConfig
from ironrender.rendering.surface import SphereTraceConfig
from ironrender.rendering.surface_renderer import SurfaceRenderConfig
from ironrender.training.losses import LossWeights

Stage2Background = Literal["stage1", "black"]
"""``Stage2Config.background``: what rays that miss the object see."""
STAGE2_BACKGROUNDS = get_args(Stage2Background)
FlashMode = Literal["dataset", "learn"]
"""``Stage2Config.flash``: where the camera file puts it (absent: in the lens), or learnt
(:class:`ironrender.training.photometric.FlashOffset`) when the camera file says nothing."""
AmbientMode = Literal["off", "sh2", "auto"]
"""``Stage2Config.ambient``: no room light (IRON), spherical-harmonic irradiance
(:mod:`ironrender.fields.ambient`), or the latter when the photographs' room is not dark."""


@dataclass
class Stage2Config:
    """Stage-2 optimisation settings. Defaults are the ``fast`` preset (2 CPU cores, 128x128).

    ``paper_stage2_config`` gives the reference's values (128x128 patches, 50k steps,
    learning rates 1e-5 / 1e-4 / 1e-2, loss weights 1 / 1 / 0.1 / 0.1).
    """

    steps: int = option(
        1000,
        "training steps, one patch each (0.25-0.3 s per 64x64 patch on 2 idle cores: 4.6 min)",
        aliases=("iterations",),
    )
    patch_size: int = option(64, "side in pixels of the square patch each step renders")
    lr_sdf: float = option(1e-4, "learning rate of the SDF network (Adam)")
    lr_materials: float = option(1e-3, "learning rate of the material networks")
    lr_light: float = option(1e-2, "learning rate of log I, the flash's intensity (materials.py)")
    grid_lr_factor: float = option(
        10.0, "dense-grid features (SDF, materials) learn this much faster than the networks"
    )
    lr_alpha: float = option(
        1.0, "cosine decay of every rate to this fraction at the end; 1 = constant"
    )
    weights: LossWeights = option(factory=LossWeights, help="weights of the four loss terms")
    edges: bool = option(True, "edge sampling; false: the IDR-style --no-edges baseline")
    background: Stage2Background = option(
        "stage1", "what missed rays see: stage 1's background model, or black (IRON)"
    )
    object_patch_fraction: float = option(
        0.0, "share of patches centred on the object (0: uniform, as IRON)"
    )
    object_mask_size: int = option(
        64, "longest side of the per-view object masks that centre those patches"
    )
    # What the photographs hold besides the flash's light (beyond IRON; all off in `paper`):
    tone_curve: ToneCurve = option(
        DEFAULT_TONE_CURVE, "how the 8-bit files encode radiance: gamma2.2 (IRON) or srgb"
    )
    ambient: AmbientMode = option(
        "off", "room light on the object: off (IRON), sh2 (SH irradiance), auto (sh2 if lit)"
    )
    exposure_gains: bool = option(
        False, "fit RGB gains per photograph (auto exposure/white balance)"
    )
    gains_weight: float = option(0.01, "weight of mean(log gain^2), which holds the gains near 1")
    lr_ambient: float = option(
        1e-3, "learning rate of the nine SH coefficients (1e-2 overshot: 18 % for 5 %)"
    )
    lr_gains: float = option(
        2e-3, "learning rate of the log gains (each photograph's are seen by few patches)"
    )
    vignetting: bool = option(
        False, "fit the lens's vignetting (and the flash's off-axis fall-off): 1 + a r^2 + ..."
    )
    vignetting_weight: float = option(1e-4, "weight of mean(a^2), which holds V near 1")
    lr_vignetting: float = option(2e-3, "learning rate of the vignetting coefficients")
    response_curve: bool = option(
        False, "fit the camera's own tone curve as a monotone correction of tone_curve"
    )
    response_weight: float = option(
        1e-4, "weight of the response curve's pull towards the identity and smoothness"
    )
    lr_response: float = option(2e-3, "learning rate of the response curve's slope logits")
    flash: FlashMode = option(
        "dataset", "the camera file's flash positions (none: in the lens), or learn one offset"
    )
    lr_flash: float = option(1e-3, "learning rate of the learnt flash offset, scene units per step")
    eikonal_points: int = option(
        0, "random eikonal points per step; 0 = half the patch's pixels (reference)"
    )
    materials: MaterialConfig = option(
        factory=lambda: MaterialConfig(diffuse_model="burley"),
        help="material networks and light; Burley diffuse in fast (measured better on the"
        " default capture; BENCHMARKS.md), Lambert in paper (IRON's model)",
    )
    render: SurfaceRenderConfig = option(
        factory=SurfaceRenderConfig, help="sphere tracing, edge sampling and shadow rays"
    )
    edge_step_pixels: float = option(
        0.25, "edge-walk step in pixels at the object; 0 = render.edges.step_size as is"
    )
    light_init_views: int = option(8, "training views rendered for the least-squares light")
    light_init_size: int = option(64, "their longest side, pixels (downscaled)")
    log_every: int = option(10, "steps between two TensorBoard scalar writes")
    preview_every: int = option(200, "steps between two preview renders")
    checkpoint_every: int = option(100, "steps between two checkpoints")
    preview_size: int = option(128, "longest side of preview renders, pixels")
    max_bad_steps: int = option(20, "consecutive non-finite steps before giving up")
    seed: int = option(0, "seed of the patch draws and of the new networks' initialisation")

    def __post_init__(self) -> None:
        # Checked here, not when stage 2 starts: a typo must not cost a whole stage 1 first.
        check_choices(self)


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
        # The paper's Algorithm 1 and area-weighted blend (IRON Eqs. 7-9, docs/architecture.md
        # (A21)-(A23)) without our gap filling. The reference code's clamp (centre outside the
        # edge -> w = 0.5) is available as footprint="reference", but it gives a third of the
        # true silhouette gradient (tests/test_edges.py), so the paper preset follows the paper,
        # not that quirk.
        render=SurfaceRenderConfig(
            trace=SphereTraceConfig(max_iterations=16),  # IRON's RayTracer; ours march 64
            edges=EdgeConfig(footprint="circle", fill_gaps=False),
        ),
        edge_step_pixels=0.0,
        background="black",  # IRON's stage 2 renders misses black
        object_patch_fraction=0.0,  # and draws its patches uniformly
        preview_every=500,
        checkpoint_every=1000,
    )


STAGE2_PRESETS = {"fast": fast_stage2_config, "paper": paper_stage2_config}
