"""Stage-2 neural materials (paper §3.2): diffuse albedo, specular albedo, GGX roughness, light.

Four learnable parts, each a function of the surface point ``x``, its unit normal ``n`` and the
SDF feature ``f`` (not detached, so material gradients also shape the SDF, as in IRON):

* **diffuse albedo** ``rho_d = beta(x, n, -n, f)^k`` in [0, 1]: the stage-1 radiance network
  (:class:`~ironrender.fields.radiance.RadianceField`, the same class and weights) called with
  ``view_dir = -n``. Stage 1's flash-lit colour, shading baked in, is the starting albedo.
  IRON uses it as is (``k = 1``) although stage 1 learnt gamma-encoded colours; with
  ``decode_stage1_gamma`` the exponent is ``k = 2.2`` when stage 1 fit gamma-encoded values, so
  the starting albedo is the stage-1 colour in linear units (the BRDF's units), with its
  contrast intact rather than compressed by the encoding.
* **specular albedo** ``rho_s`` (= F0 of the project's GGX, :mod:`ironrender.rendering.brdf`):
  grey (one channel broadcast to RGB) unless ``metal=True`` (RGB, coloured metals).
* **roughness** ``alpha``: the GGX alpha itself (not squared), as IRON.
* **light intensity** ``I``: one grey scalar; the flash gives radiance ``I / d^2`` (Eq. 3).

Shading them under the flash is rendering's part (:mod:`ironrender.rendering.material_shader`).

Output mappings (``MaterialConfig.mapping``):

* ``"reference"``: IRON's ``rho_s = |0.1 (y + 0.4)|`` and ``alpha = |0.1 (y + 0.1)| + 0.01``.
  Unbounded above (the roughness-range loss, Eq. 13, keeps ``alpha`` small) and with a kink at
  zero where ``abs`` flips the gradient's sign.
* ``"bounded"`` (``fast`` default): ``rho_s = s_max sigmoid(y + b_s)`` and
  ``alpha = a_min + (a_max - a_min) sigmoid(y + b_a)``, with the last layer zero-initialised and
  ``b`` chosen so that step 0 returns exactly ``specular_init`` and ``roughness_init``. Smooth
  (no sign-flipping kink), physically bounded (``0 <= F0 <= 1``, ``a_min <= alpha <= a_max``)
  whatever the optimiser does, and the starting materials do not depend on the random init.

The light is stored as ``log I``: always positive, and Adam's roughly constant step size becomes a
constant *relative* step, which suits intensities that range over two orders of magnitude between
captures (IRON's learned values run from 1.2 to 136 in its code's logs and issues;
docs/architecture.md#light-intensity).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch
from torch import Tensor, nn

from ironrender.config import check_choices, option
from ironrender.data.tone_curve import DEFAULT_TONE_CURVE, GAMMA, decode
from ironrender.fields.base import SDFField
from ironrender.fields.encodings import GridConfig, PositionalEncoding, make_grid_encoding
from ironrender.fields.radiance import RadianceField
from ironrender.fields.sdf import MLP

RGB = 3
NORMAL_DIM = 3
# IRON's output mappings (its render_surface.py; docs/architecture.md#defaults-from-irons-code):
# rho_s = |scale (y + offset)|, alpha likewise + min.
REFERENCE_SCALE = 0.1
REFERENCE_SPECULAR_OFFSET = 0.4
REFERENCE_ROUGHNESS_OFFSET = 0.1
REFERENCE_ROUGHNESS_MIN = 0.01

#: The diffuse lobes the BRDF implements (:func:`ironrender.rendering.brdf.shade_flash`): IRON's
#: Lambert, or Burley's (Disney diffuse, as Mitsuba's principled BSDF).
DiffuseModel = Literal["lambert", "burley"]
DIFFUSE_MODELS = get_args(DiffuseModel)


@dataclass
class MaterialConfig:
    """Specular/roughness networks and the light. Defaults are the ``fast`` preset.

    The diffuse-albedo network is not configured here: it is the stage-1 radiance network.
    """

    use_grid: bool = option(True, "feed both networks a multi-resolution grid encoding of x")
    grid: GridConfig = option(
        factory=lambda: GridConfig(levels=6, features_per_level=2, max_resolution=64),
        help="that grid (fast: 6 dense levels, finest 64^3)",
    )
    pe_freqs: int = option(0, "NeRF frequencies on x fed to both networks (IRON: 6)")
    hidden_dim: int = option(32, "width of the specular and roughness networks' hidden layers")
    num_hidden: int = option(2, "their hidden layers")
    metal: bool = option(False, "RGB specular albedo (coloured metals); grey otherwise")
    mapping: Literal["bounded", "reference"] = option(
        "bounded", "network output to material: bounded (sigmoid ranges) or reference (IRON's abs)"
    )
    specular_init: float = option(0.04, "bounded: F0 at step 0, a common dielectric's (IOR ~1.5)")
    specular_max: float = option(1.0, "bounded: the largest specular albedo F0")
    roughness_init: float = option(0.3, "bounded: GGX alpha at step 0")
    roughness_min: float = option(0.01, "bounded: the smallest GGX alpha")
    roughness_max: float = option(1.0, "bounded: the largest GGX alpha")
    decode_stage1_gamma: bool = option(
        True, "albedo = beta^2.2 if stage 1 fit gamma-encoded colour (IRON: beta)"
    )
    light_init: Literal["least_squares", "reference"] = option(
        "least_squares", "the flash's starting intensity: least squares from stage 1, or IRON's"
    )
    init_light_scale: float = option(
        8.0, "reference light init: I0 = scale * median(|camera centre|)^2"
    )
    diffuse_model: DiffuseModel = option(
        "lambert", "lambert (IRON) or burley (Disney diffuse, as Mitsuba's principled; brdf.py)"
    )

    def __post_init__(self) -> None:
        check_choices(self)


def paper_material_config() -> MaterialConfig:
    """IRON's specular and roughness nets: PE-6 x, normal, feature; 4 x 256, no skip; abs maps."""
    return MaterialConfig(
        use_grid=False,
        pe_freqs=6,
        hidden_dim=256,
        num_hidden=4,
        mapping="reference",
        decode_stage1_gamma=False,
        light_init="reference",
        diffuse_model="lambert",
    )


@dataclass
class MaterialSample:
    """Materials at surface points: albedos (..., 3), GGX alpha (..., 1), light intensity ()."""

    diffuse_albedo: Tensor
    specular_albedo: Tensor
    roughness: Tensor
    light_intensity: Tensor


class MaterialHead(nn.Module):
    """``(x, n, f) -> y``: an MLP on an encoding of ``x`` (PE and/or grid), ``n`` and ``f``."""

    def __init__(self, config: MaterialConfig, feature_dim: int, out_dim: int):
        super().__init__()
        self.pe = PositionalEncoding(config.pe_freqs)
        self.grid = make_grid_encoding(config.grid) if config.use_grid else None
        encoded = self.pe.out_dim + (self.grid.out_dim if self.grid is not None else 0)
        self.mlp = MLP(
            encoded + NORMAL_DIM + feature_dim, config.hidden_dim, config.num_hidden, out_dim
        )

    def forward(self, points: Tensor, normals: Tensor, features: Tensor) -> Tensor:
        parts = [self.pe(points)]
        if self.grid is not None:
            parts.append(self.grid(points))
        return self.mlp(torch.cat([*parts, normals, features], dim=-1))

    def zero_last_layer(self) -> None:
        last = self.mlp.layers[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


class MaterialFields(nn.Module):
    """Diffuse albedo, specular albedo, roughness and light intensity (module docstring)."""

    def __init__(
        self,
        diffuse: RadianceField | nn.Module,
        config: MaterialConfig,
        feature_dim: int,
        light_intensity: float = 1.0,
        diffuse_exponent: float = 1.0,
    ):
        super().__init__()
        self.config = config
        self.feature_dim = feature_dim
        self.diffuse = diffuse
        specular_channels = RGB if config.metal else 1
        self.specular = MaterialHead(config, feature_dim, specular_channels)
        self.roughness = MaterialHead(config, feature_dim, 1)
        if config.mapping == "bounded":
            self.specular.zero_last_layer()
            self.roughness.zero_last_layer()
        self.log_light = nn.Parameter(torch.tensor(math.log(light_intensity)))
        # in the state dict, so a saved model keeps the exponent it was trained with
        self.register_buffer("diffuse_exponent", torch.tensor(float(diffuse_exponent)))
        self.diffuse_curve: str | None = None  # a tone curve decoding beta (sRGB captures)

    @classmethod
    def from_stage1(
        cls,
        radiance: RadianceField,
        config: MaterialConfig,
        light_intensity: float = 1.0,
        stage1_gamma_encoded: bool = False,
        curve: str = DEFAULT_TONE_CURVE,
    ) -> MaterialFields:
        """Materials whose diffuse albedo starts as a copy of the stage-1 radiance network.

        ``stage1_gamma_encoded``: stage 1 fit encoded colours; with
        ``config.decode_stage1_gamma`` the albedo is then ``beta^2.2`` (module docstring), or
        ``beta`` decoded by the sRGB curve when the photographs' ``curve`` is ``srgb``.
        """
        device = next(radiance.parameters()).device
        diffuse = RadianceField(radiance.config, radiance.feature_dim)
        diffuse.load_state_dict(radiance.state_dict())
        decoded = stage1_gamma_encoded and config.decode_stage1_gamma
        exponent = GAMMA if decoded and curve == DEFAULT_TONE_CURVE else 1.0
        materials = cls(diffuse, config, radiance.feature_dim, light_intensity, exponent)
        materials.diffuse_curve = curve if decoded and curve != DEFAULT_TONE_CURVE else None
        return materials.to(device)

    # ----------------------------------------------------------------------------- parameters
    def material_parameters(self) -> list[nn.Parameter]:
        """Every parameter except the light (its own optimiser, as in IRON's code)."""
        return [p for name, p in self.named_parameters() if name != "log_light"]

    @property
    def light_intensity(self) -> Tensor:
        return self.log_light.exp()

    @torch.no_grad()
    def set_light_intensity(self, value: float) -> None:
        if not value > 0 or not math.isfinite(value):
            raise ValueError(f"light intensity must be positive and finite, got {value}")
        self.log_light.fill_(math.log(value))

    # ----------------------------------------------------------------------------- queries
    def diffuse_albedo(self, points: Tensor, normals: Tensor, features: Tensor) -> Tensor:
        """``beta(x, n, -n, f)^k`` in [0, 1] (..., 3): view dependence removed by ``v = -n``."""
        albedo = self.diffuse(points, normals, -normals, features)
        if self.diffuse_curve is not None:
            return decode(albedo, self.diffuse_curve)
        if float(self.diffuse_exponent) == 1.0:
            return albedo
        return albedo**self.diffuse_exponent

    def specular_albedo(self, points: Tensor, normals: Tensor, features: Tensor) -> Tensor:
        """F0 (..., 3); grey materials broadcast one channel to RGB."""
        y = self.specular(points, normals, features)
        c = self.config
        if c.mapping == "reference":
            value = (REFERENCE_SCALE * (y + REFERENCE_SPECULAR_OFFSET)).abs()
        else:
            value = c.specular_max * torch.sigmoid(y + _logit(c.specular_init / c.specular_max))
        return value.expand(*value.shape[:-1], RGB)

    def roughness_alpha(self, points: Tensor, normals: Tensor, features: Tensor) -> Tensor:
        """GGX alpha (..., 1)."""
        y = self.roughness(points, normals, features)
        c = self.config
        if c.mapping == "reference":
            return (REFERENCE_SCALE * (y + REFERENCE_ROUGHNESS_OFFSET)).abs() + (
                REFERENCE_ROUGHNESS_MIN
            )
        span = c.roughness_max - c.roughness_min
        bias = _logit((c.roughness_init - c.roughness_min) / span)
        return c.roughness_min + span * torch.sigmoid(y + bias)

    def forward(self, points: Tensor, normals: Tensor, features: Tensor) -> MaterialSample:
        """All materials at surface points (..., 3) with unit normals and SDF features (..., F)."""
        return MaterialSample(
            self.diffuse_albedo(points, normals, features),
            self.specular_albedo(points, normals, features),
            self.roughness_alpha(points, normals, features),
            self.light_intensity,
        )


def reference_light_init(camera_centers: Tensor, scale: float) -> float:
    """IRON's start: ``I0 = scale * median(|o|)^2`` (docs/architecture.md (A28); ``scale`` = 8)."""
    return float(scale * camera_centers.norm(dim=-1).median() ** 2)


def least_squares_light(unit_light: Tensor, target: Tensor, weights: Tensor | None = None) -> float:
    """The intensity ``I`` minimising ``sum w (I p - t)^2``: ``I = sum w p t / sum w p^2``.

    ``unit_light`` are the linear predictions rendered with ``I = 1`` (rendering is linear in
    ``I``), ``target`` the linear observations and ``weights`` (e.g. hit and unsaturated pixels)
    select where they are compared. With everything else fixed this is the exact minimiser of
    the L2 image loss over ``I``, so stage 2 starts at the right exposure instead of a heuristic.
    """
    if weights is None:
        weights = torch.ones_like(unit_light)
    weights = weights.expand_as(unit_light)
    denominator = (weights * unit_light.square()).sum()
    if not denominator > 0:
        raise ValueError("least-squares light: no lit pixel to fit the intensity to")
    return float((weights * unit_light * target).sum() / denominator)


#: A material function: surface points (P, 3) and unit normals (P, 3), torch tensors on one
#: device, to named per-point values (P, C) (tensors or arrays): ``diffuse_albedo``,
#: ``specular_albedo``, ``roughness`` (GGX alpha). What export bakes and evaluation queries, from
#: any model (stage 2's fields, stage 1's stand-in).
MaterialsFn = Callable[[Tensor, Tensor], Mapping[str, "Tensor | np.ndarray"]]


def materials_function(sdf: SDFField, materials: MaterialFields) -> MaterialsFn:
    """``(points, unit normals) -> {diffuse_albedo, specular_albedo, roughness}`` for export.

    Features are read from ``sdf`` at the points; call under ``torch.no_grad()``.
    """

    def query(points: Tensor, normals: Tensor) -> Mapping[str, Tensor | np.ndarray]:
        features = sdf(points).features
        sample = materials(points, normals, features)
        return {
            "diffuse_albedo": sample.diffuse_albedo,
            "specular_albedo": sample.specular_albedo,
            "roughness": sample.roughness,
        }

    return query
