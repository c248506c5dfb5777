"""What defines a synthetic capture: :class:`SynthConfig`, its choices, the world's up axis.

The lowest module of the package: every other one may import it, it imports none of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ironrender.data.envmap import SkyConfig

WORLD_UP = (0.0, 1.0, 0.0)  # spot stands on +Y; Mitsuba's envmap also has +Y up

BSDFS = ("principled", "iron")
"""``SynthConfig.bsdf``: Mitsuba's principled, or exactly stage 2's model (see the field)."""

ROOMS = ("none", "dim")
"""``SynthConfig.room``: black background, or a dim box room lit only by the flash."""


@dataclass
class SynthConfig:
    """Everything that defines a synthetic capture (saved into ``gt/light.json``)."""

    mesh: str | None = None  # an OBJ/PLY/GLB with UVs; None: the built-in spot cow
    texture: str | None = None  # base colour image over the UVs; None: spot's texture
    roughness_map: str | None = None  # perceptual roughness in [0, 1]; None: procedural
    views: int = 64
    test_views: int = 16
    resolution: int = 128
    # Direct light from a point light is exact per sample; spp only antialiases edges and texture:
    # 64 multi-jittered samples give 59.5 dB PSNR against a 1024-spp render (16 spp: 52 dB).
    spp: int = 64
    relight: bool = True
    # Environment lighting is noisier (light *and* BSDF samples, MIS): 64 spp gives about
    # 43 dB PSNR between two renders' gamma-encoded object pixels (46 dB at 128 for 2x time).
    relight_spp: int = 64
    seed: int = 0
    bounding_radius: float = 0.85  # radius of the object's bounding sphere after normalization
    camera_distance: float = 3.0  # distance of every camera centre from the origin
    frame_fill: float = 0.9  # the object's widest view spans this fraction of the image
    exposure: float | None = None  # None: automatic (percentile -> target)
    exposure_percentile: float = 99.9
    exposure_target: float = 0.9
    relight_exposure: float | None = None  # scale of the environment map; None: automatic
    specular: float = 0.5  # principled `specular`; F0 = 0.08 * specular
    # "principled" (a real-world-like material the model only approximates: Disney diffuse) or
    # "iron": exactly stage 2's model, Lambert + GGX with F = F0 (to isolate model mismatch)
    bsdf: str = "principled"
    roughness_range: tuple[float, float] = (0.3, 0.8)  # perceptual, procedural map only
    sky: SkyConfig = field(default_factory=SkyConfig)
    prefer_fast_variant: bool = True
    # Nuisances of real captures (:mod:`.nuisances`); ground truth stays the object's.
    room: str = "none"  # "dim": textured walls lit only by the flash, dim but not black
    support_plane: bool = False  # a textured table top touching the object's lowest point
    support_albedo: float = 0.35  # its mean diffuse albedo (0.04: a black cloth)
    # With a support plane, cameras lie at least this high (degrees above the horizontal plane
    # through the origin, so higher still over the plane itself, which lies below the origin).
    min_elevation: float = 10.0
    # What a real camera and room add (:mod:`.photometric`); all off by default.
    flash_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)  # light in camera coordinates
    ambient: float = 0.0  # uniform room light's irradiance / the flash's at the object
    exposure_jitter: float = 0.0  # per training photo, gain in [1 - j, 1 + j]
    white_balance_jitter: float = 0.0  # per training photo and channel, in [1 - w, 1 + w]
    noise: float = 0.0  # shot noise std at full scale (s sqrt(x) at linear x)
    tone_curve: str = "gamma2.2"  # how the 8-bit files encode radiance: gamma2.2 or srgb
    jpeg_quality: int = 0  # training photos as JPEG of this quality (1-100); 0 = PNG
