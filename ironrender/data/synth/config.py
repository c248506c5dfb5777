"""What defines a synthetic capture: :class:`SynthConfig`, its choices, the world's up axis.

The lowest module of the package: every other one may import it, it imports none of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from ironrender.config import check_choices, option
from ironrender.data.envmap import SkyConfig
from ironrender.data.tone_curve import ToneCurve

WORLD_UP = (0.0, 1.0, 0.0)  # spot stands on +Y; Mitsuba's envmap also has +Y up

Bsdf = Literal["principled", "iron"]
"""``SynthConfig.bsdf``: Mitsuba's principled, or exactly stage 2's model (see the field)."""
BSDFS = get_args(Bsdf)

Material = Literal["texture", "gilded"]
"""``SynthConfig.material``: the texture as a dielectric's base colour, or a gilt bronze."""
MATERIALS = get_args(Material)

Room = Literal["none", "dim"]
"""``SynthConfig.room``: black background, or a dim box room lit only by the flash."""
ROOMS = get_args(Room)


@dataclass
class SynthConfig:
    """Everything that defines a synthetic capture (saved into ``gt/light.json``)."""

    mesh: str | None = option(None, "an OBJ/PLY/GLB with UVs; None: the built-in spot cow")
    texture: str | None = option(None, "base colour image over the UVs; None: spot's texture")
    roughness_map: str | None = option(None, "perceptual roughness in [0, 1]; None: procedural")
    views: int = option(64, "training views")
    test_views: int = option(16, "held-out test views")
    resolution: int = option(128, "width and height of every view, pixels")
    # Direct light from a point light is exact per sample; spp only antialiases edges and texture:
    # 64 multi-jittered samples give 59.5 dB PSNR against a 1024-spp render (16 spp: 52 dB).
    spp: int = option(64, "samples per pixel of the flash views (64: 59.5 dB against 1024 spp)")
    relight: bool = option(True, "also render the test views under an environment map")
    # Environment lighting is noisier (light *and* BSDF samples, MIS): 64 spp gives about
    # 43 dB PSNR between two renders' gamma-encoded object pixels (46 dB at 128 for 2x time).
    relight_spp: int = option(64, "samples per pixel of the relit views (64: about 43 dB)")
    seed: int = option(0, "seed of the poses, the renders, the textures and the noise")
    bounding_radius: float = option(
        0.85, "radius of the object's bounding sphere after normalization"
    )
    camera_distance: float = option(3.0, "distance of every camera centre from the origin")
    frame_fill: float = option(0.9, "the object's widest view spans this fraction of the image")
    exposure: float | None = option(
        None, "E, the flash's intensity (it scales every view); None: automatic"
    )
    exposure_percentile: float = option(99.9, "automatic E: this percentile of object pixels ...")
    exposure_target: float = option(0.9, "... is mapped to this value")
    relight_exposure: float | None = option(None, "scale of the environment map; None: automatic")
    specular: float = option(0.5, "principled `specular`; F0 = 0.08 * specular")
    bsdf: Bsdf = option(
        "principled",
        "principled (Disney diffuse, which the model only approximates) or iron (exactly"
        " stage 2's model, Lambert + GGX with F = F0: isolates model mismatch)",
    )
    material: Material = option(
        "texture",
        "texture: the texture is the base colour of a dielectric (principled or iron); gilded: a"
        " gilt bronze (gold's coloured F0, near-black diffuse, rough dark patina in the texture's"
        " darkest places), rendered with the iron BSDF",
    )
    patina: float = option(0.3, "gilded: the fraction of the surface under patina (0: all gold)")
    roughness_range: tuple[float, float] = option(
        (0.3, 0.8), "perceptual roughness range, procedural map only"
    )
    sky: SkyConfig = option(factory=SkyConfig, help="the procedural environment map")
    prefer_fast_variant: bool = option(
        True, "use Mitsuba's llvm_ad_rgb when it works, else scalar_rgb"
    )
    # Nuisances of real captures (:mod:`.nuisances`); ground truth stays the object's.
    room: Room = option(
        "none", "none (black) or dim: textured walls lit only by the flash, dim but not black"
    )
    support_plane: bool = option(False, "a textured table top touching the object's lowest point")
    support_albedo: float = option(0.35, "its mean diffuse albedo (0.04: a black cloth)")
    # With a support plane, cameras lie at least this high (degrees above the horizontal plane
    # through the origin, so higher still over the plane itself, which lies below the origin).
    min_elevation: float = option(
        10.0, "with a support plane, the cameras' lowest elevation, degrees above the origin"
    )
    # What a real camera and room add (:mod:`.photometric`); all off by default.
    flash_offset: tuple[float, float, float] = option(
        (0.0, 0.0, 0.0), "light position in camera coordinates"
    )
    ambient: float = option(0.0, "uniform room light's irradiance / the flash's at the object")
    exposure_jitter: float = option(0.0, "per training photo, gain in [1 - j, 1 + j]")
    white_balance_jitter: float = option(
        0.0, "per training photo and channel, gain in [1 - w, 1 + w]"
    )
    noise: float = option(0.0, "shot noise std at full scale (s sqrt(x) at linear x)")
    tone_curve: ToneCurve = option(
        "gamma2.2", "how the 8-bit files encode radiance: gamma2.2 or srgb"
    )
    jpeg_quality: int = option(0, "training photos as JPEG of this quality (1-100); 0 = PNG")

    def __post_init__(self) -> None:
        check_choices(self)
