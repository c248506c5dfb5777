"""The GGX microfacet BRDF under a point light: IRON's co-located flash (IRON §3.2, Eqs. 1-3),
and a light anywhere else (a flash beside the lens). docs/architecture.md#shading, (A14)-(A16);
the off-lens light (A39), the Burley lobe (A36).

With the flash at the camera centre ``o`` the light and view directions coincide,
``omega_i = omega_o = v``, so the half-vector is ``h = v`` and the only angle left is

    c = n . v            (cosine between the shading normal and the direction to the camera).

The project's parameterisation (fixed for the whole team; the synthetic ground truth uses it):

    f_r = rho_d / pi + rho_s * D(c; alpha) * G1(c; alpha)^2 / (4 c^2)

* ``D`` is the GGX / Trowbridge-Reitz normal distribution evaluated at ``n . h = c``:
  ``D(c) = alpha^2 / (pi * (c^2 (alpha^2 - 1) + 1)^2)``; it is normalised so that the integral
  of ``D(h) (n . h)`` over the hemisphere is 1.
* ``G1`` is Smith's masking function for GGX, ``G1(c) = 2 / (1 + sqrt(1 + alpha^2 tan^2 theta))``
  with ``tan^2 theta = (1 - c^2) / c^2``; the shadowing-masking term is the *separable* product
  ``G1(omega_i) G1(omega_o) = G1(c)^2`` (Mitsuba's ``roughconductor``/``roughplastic`` use the same
  separable form).
* ``rho_d`` is the diffuse albedo (RGB). ``rho_s`` is the specular albedo, the Fresnel
  reflectance at normal incidence ``F0`` (RGB or grey): because ``h = v``, the Fresnel factor is
  evaluated at ``omega_i . h = 1`` and is exactly ``F0`` for Schlick's or the exact formula.
* ``alpha`` is the GGX alpha itself (not perceptual roughness; IRON feeds its roughness network
  straight into alpha).

Optional diffuse lobe (``diffuse_model="burley"``, not in IRON): Burley's Disney diffuse, the
diffuse lobe of Mitsuba's ``principled`` BSDF, Blender's Principled BSDF and most game engines.
Measured rough surfaces are brighter towards grazing angles than Lambert (retro-reflection).
At the co-located light ``theta_l = theta_v`` and ``theta_d = 0``, so it reduces to

    rho_d / pi * [(1 - F/2)^2 + R (2 F + F^2 (R - 1))],    F = (1 - c)^5,  R = 2 sqrt(alpha)

(``R = 2 roughness cos^2 theta_d`` with perceptual roughness ``sqrt(alpha)``): 1 at normal
incidence, up to ``1 + 2R``-ish towards grazing angles for rough surfaces, below 1 for smooth ones.

Radiance leaving the surface towards the camera (IRON Eqs. 2-3):

    L = I / d^2 * f_r * c,      d = |x - o| (distance to the light = camera centre).

**A light off the camera** (:func:`shade_point_light`; a phone's LED 1 cm from its lens, a
hot-shoe flash above it). With ``l`` the unit direction to the light, ``v`` to the camera,
``h = (l + v) / |l + v|``:

    f_r = rho_d / pi * B + F(l . h; rho_s) * D(n . h; alpha) * G1(n . l) G1(n . v) / (4 (n.l)(n.v))

    L = I / d_l^2 * f_r * (n . l),      d_l = |x - light|,

with ``F`` the Fresnel reflectance of a dielectric whose reflectance at normal incidence is
``rho_s``: index ``eta = (1 + sqrt(rho_s)) / (1 - sqrt(rho_s))`` and the exact unpolarised
formula (Mitsuba's ``principled`` with metallic 0 uses the same), and ``B`` Burley's general
factor ``(1 - F_l/2)(1 - F_v/2) + R (F_l + F_v + F_l F_v (R - 1))``, ``F_x = (1 - n.x)^5``,
``R = 2 sqrt(alpha) (l . h)^2`` (1 for Lambert). With ``l = v`` every factor takes its
co-located value (``h = v``, ``F = rho_s``, ``G1(n.l) G1(n.v) = G1(c)^2``), so the two
forms agree; stage 2 uses the short one whenever the light is in the lens, so IRON's case is
computed exactly as before.

Clamps (named below): ``c`` is clamped to [COS_EPS, 1] -- back-facing or grazing points get a
tiny positive cosine, so their radiance tends to 0 instead of dividing by zero (the specular
term behaves like ``rho_s c / pi`` as ``c -> 0``, so it stays finite); ``alpha`` is clamped to at
least ``ALPHA_MIN`` (Mitsuba's own lower bound) so that ``D`` stays finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ironrender.fields.materials import DIFFUSE_MODELS
from ironrender.rendering.surface import SurfaceHit

COS_EPS = 1e-5  # smallest n.v used in shading (IRON clamps to [1e-5, 0.99999])
ALPHA_MIN = 1e-4  # smallest GGX alpha (IRON's and Mitsuba's lower bound)


@dataclass
class GGXMaterial:
    """Material parameters per shading point.

    ``diffuse_albedo`` (..., 3) rho_d; ``specular_albedo`` (..., 3) or (..., 1) rho_s = F0;
    ``alpha`` (..., 1) or (...,) GGX alpha.
    """

    diffuse_albedo: Tensor
    specular_albedo: Tensor
    alpha: Tensor


@dataclass
class FlashShading:
    """Shaded radiance (..., 3) split into its diffuse and specular parts (both include I/d^2 c)."""

    diffuse: Tensor
    specular: Tensor

    @property
    def radiance(self) -> Tensor:
        return self.diffuse + self.specular


def ggx_distribution(cos_h: Tensor, alpha: Tensor) -> Tensor:
    """GGX normal distribution ``D = alpha^2 / (pi (c^2 (alpha^2 - 1) + 1)^2)`` at ``n.h = c``."""
    alpha2 = alpha.clamp_min(ALPHA_MIN) ** 2
    c2 = cos_h**2
    return alpha2 / (math.pi * (c2 * (alpha2 - 1.0) + 1.0) ** 2)


def smith_g1(cos_theta: Tensor, alpha: Tensor) -> Tensor:
    """Smith masking for GGX, ``2 / (1 + sqrt(1 + alpha^2 tan^2 theta))``, in (0, 1]."""
    c2 = cos_theta.clamp(COS_EPS, 1.0) ** 2
    tan2 = (1.0 - c2) / c2
    alpha2 = alpha.clamp_min(ALPHA_MIN) ** 2
    return 2.0 / (1.0 + torch.sqrt(1.0 + alpha2 * tan2))


def colocated_brdf_terms(cos_nv: Tensor, alpha: Tensor) -> Tensor:
    """The geometric part of the specular lobe, ``D G1^2 / (4 c^2)`` (...), with ``c`` clamped."""
    c = cos_nv.clamp(COS_EPS, 1.0)
    return ggx_distribution(c, alpha) * smith_g1(c, alpha) ** 2 / (4.0 * c**2)


def burley_colocated_factor(cos_nv: Tensor, alpha: Tensor) -> Tensor:
    """Burley's diffuse relative to Lambert at a co-located light (module docstring), (...)."""
    c = cos_nv.clamp(COS_EPS, 1.0)
    f = (1.0 - c) ** 5
    r = 2.0 * alpha.clamp_min(ALPHA_MIN).sqrt()
    return (1.0 - 0.5 * f) ** 2 + r * (2.0 * f + f * f * (r - 1.0))


def shade_flash(
    material: GGXMaterial,
    normals: Tensor,
    points: Tensor,
    light_positions: Tensor,
    light_intensity: Tensor | float,
    diffuse_model: str = "lambert",
) -> FlashShading:
    """Radiance towards a camera whose centre holds a point light (IRON Eqs. 2-3).

    ``normals`` (..., 3) unit shading normals; ``points`` (..., 3); ``light_positions`` (..., 3)
    the camera centres; ``light_intensity`` a scalar (grey) or (..., 3) radiant intensity ``I``.
    ``diffuse_model``: ``"lambert"`` (IRON) or ``"burley"`` (module docstring).
    Returns ``I / d^2 * f_r * c`` split into diffuse and specular parts.
    """
    to_light = light_positions - points
    d2 = (to_light**2).sum(-1, keepdim=True)
    v = to_light / d2.sqrt()
    c = (normals * v).sum(-1, keepdim=True).clamp(COS_EPS, 1.0)
    alpha = material.alpha if material.alpha.ndim == c.ndim else material.alpha.unsqueeze(-1)
    irradiance = light_intensity / d2 * c  # I / d^2 * (n . omega_i)
    diffuse = material.diffuse_albedo / math.pi * irradiance
    if diffuse_model == "burley":
        diffuse = diffuse * burley_colocated_factor(c, alpha)
    elif diffuse_model != "lambert":
        raise ValueError(f"diffuse_model must be one of {DIFFUSE_MODELS}, not {diffuse_model!r}")
    specular = material.specular_albedo * colocated_brdf_terms(c, alpha) * irradiance
    return FlashShading(diffuse=diffuse, specular=specular)


#: Largest F0 turned into an index of refraction (F0 -> 1 makes eta infinite).
F0_MAX = 0.999


def fresnel_dielectric(cos_i: Tensor, f0: Tensor) -> Tensor:
    """Unpolarised Fresnel reflectance at ``cos_i`` of a dielectric with normal reflectance
    ``f0`` (its index ``eta = (1 + sqrt f0) / (1 - sqrt f0)``, light arriving from outside).

    ``(r_s^2 + r_p^2) / 2`` with ``r_s = (c_i - eta c_t) / (c_i + eta c_t)`` and
    ``r_p = (eta c_i - c_t) / (eta c_i + c_t)``, ``c_t^2 = 1 - (1 - c_i^2) / eta^2``: equal to
    ``f0`` at ``cos_i = 1``, rising to 1 at grazing incidence.
    """
    root = f0.clamp(0.0, F0_MAX).sqrt()
    eta = (1.0 + root) / (1.0 - root)
    c_i = cos_i.clamp(COS_EPS, 1.0)
    c_t = (1.0 - (1.0 - c_i**2) / eta**2).clamp_min(0.0).sqrt()
    r_s = (c_i - eta * c_t) / (c_i + eta * c_t)
    r_p = (eta * c_i - c_t) / (eta * c_i + c_t)
    return 0.5 * (r_s**2 + r_p**2)


def burley_factor(cos_nl: Tensor, cos_nv: Tensor, cos_lh: Tensor, alpha: Tensor) -> Tensor:
    """Burley's diffuse relative to Lambert for any light and view (module docstring), (...)."""
    f_l = (1.0 - cos_nl.clamp(COS_EPS, 1.0)) ** 5
    f_v = (1.0 - cos_nv.clamp(COS_EPS, 1.0)) ** 5
    r = 2.0 * alpha.clamp_min(ALPHA_MIN).sqrt() * cos_lh**2
    return (1.0 - 0.5 * f_l) * (1.0 - 0.5 * f_v) + r * (f_l + f_v + f_l * f_v * (r - 1.0))


def shade_point_light(
    material: GGXMaterial,
    normals: Tensor,
    points: Tensor,
    light_positions: Tensor,
    view_dirs: Tensor,
    light_intensity: Tensor | float,
    diffuse_model: str = "lambert",
) -> FlashShading:
    """Radiance towards the camera from a point light anywhere (module docstring).

    ``view_dirs`` (..., 3) unit directions point -> camera; the rest as :func:`shade_flash`.
    Points that face away from the light get (almost) nothing: ``n . l`` is clamped to
    ``COS_EPS`` as ``n . v`` is.
    """
    to_light = light_positions - points
    d2 = (to_light**2).sum(-1, keepdim=True)
    l = to_light / d2.sqrt()  # noqa: E741 (the light direction's usual name)
    h = torch.nn.functional.normalize(l + view_dirs, dim=-1)
    cos_nl = (normals * l).sum(-1, keepdim=True).clamp(COS_EPS, 1.0)
    cos_nv = (normals * view_dirs).sum(-1, keepdim=True).clamp(COS_EPS, 1.0)
    cos_nh = (normals * h).sum(-1, keepdim=True).clamp(0.0, 1.0)
    cos_lh = (l * h).sum(-1, keepdim=True).clamp(COS_EPS, 1.0)
    alpha = material.alpha if material.alpha.ndim == cos_nl.ndim else material.alpha.unsqueeze(-1)
    irradiance = light_intensity / d2 * cos_nl  # I / d_l^2 * (n . l)
    diffuse = material.diffuse_albedo / math.pi * irradiance
    if diffuse_model == "burley":
        diffuse = diffuse * burley_factor(cos_nl, cos_nv, cos_lh, alpha)
    elif diffuse_model != "lambert":
        raise ValueError(f"diffuse_model must be one of {DIFFUSE_MODELS}, not {diffuse_model!r}")
    lobe = ggx_distribution(cos_nh, alpha) * smith_g1(cos_nl, alpha) * smith_g1(cos_nv, alpha)
    fresnel = fresnel_dielectric(cos_lh, material.specular_albedo)
    specular = fresnel * lobe / (4.0 * cos_nl * cos_nv) * irradiance
    return FlashShading(diffuse=diffuse, specular=specular)


def shade_hits(
    material: GGXMaterial,
    hit: SurfaceHit,
    light_positions: Tensor,
    colocated: bool,
    light_intensity: Tensor | float,
    diffuse_model: str = "lambert",
) -> Tensor:
    """Radiance (R, 3) of surface hits under their view's flash: the short form when the light
    is in the lens (:func:`shade_flash`, IRON's case computed as it always was), the general one
    beside it (:func:`shade_point_light`), times the hits' shadow-ray visibility where traced."""
    if colocated:
        shading = shade_flash(
            material, hit.normals, hit.points, light_positions, light_intensity, diffuse_model
        )
    else:
        shading = shade_point_light(
            material, hit.normals, hit.points, light_positions, hit.view_dirs, light_intensity,
            diffuse_model,
        )  # fmt: skip
    if hit.light_visibility is None:
        return shading.radiance
    return shading.radiance * hit.light_visibility
