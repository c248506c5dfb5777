"""The stage-2 shader: neural materials (:mod:`ironrender.fields.materials`) under the flash.

For each sphere-traced hit, ``L = I / d^2 * f_r * c`` (IRON Eqs. 2-3;
docs/architecture.md#shading): the materials are queried at the reparameterised point, its unit
normal and SDF feature, and shaded by the GGX BRDF
(:func:`ironrender.rendering.brdf.shade_flash` for IRON's flash in the lens,
:func:`~ironrender.rendering.brdf.shade_point_light` for a flash beside it).
"""

from __future__ import annotations

from typing import Protocol

from torch import Tensor

from ironrender.fields.materials import MaterialFields
from ironrender.rendering.brdf import GGXMaterial, shade_hits
from ironrender.rendering.surface import SurfaceHit
from ironrender.rendering.surface_renderer import ShadeResult


class SurfaceLight(Protocol):
    """Light besides the flash on the diffuse lobe: what a point of albedo ``rho_d`` facing
    ``n`` sends to any camera (:class:`~ironrender.fields.ambient.AmbientLight`)."""

    def radiance(self, diffuse_albedo: Tensor, normals: Tensor) -> Tensor: ...


class MaterialShader:
    """The stage-2 :data:`~ironrender.rendering.surface_renderer.ShadeFn`: materials + GGX flash.

    For each hit, ``L = I / d^2 * f_r * c`` (IRON Eqs. 2-3) with the materials queried at the
    reparameterised point, its unit normal and SDF feature, plus the room's light on the diffuse
    lobe when an ``ambient`` light is given (:mod:`ironrender.fields.ambient`).
    ``unit_light=True`` renders the flash alone with ``I = 1`` (the least-squares light
    initialisation). Extras: ``diffuse_albedo`` and
    ``specular_albedo`` (3), ``roughness`` (1), per pixel for the range loss and evaluation.
    """

    def __init__(
        self,
        materials: MaterialFields,
        unit_light: bool = False,
        ambient: SurfaceLight | None = None,
    ):
        self.materials = materials
        self.unit_light = unit_light
        self.ambient = ambient

    def __call__(self, hit: SurfaceHit, light_positions: Tensor, colocated: bool) -> ShadeResult:
        sample = self.materials(hit.points, hit.normals, hit.features)
        intensity = 1.0 if self.unit_light else sample.light_intensity
        material = GGXMaterial(sample.diffuse_albedo, sample.specular_albedo, sample.roughness)
        model = self.materials.config.diffuse_model
        radiance = shade_hits(material, hit, light_positions, colocated, intensity, model)
        if self.ambient is not None and not self.unit_light:
            radiance = radiance + self.ambient.radiance(sample.diffuse_albedo, hit.normals)
        if len(hit) == 0:
            # No hits: no per-hit extras (the renderer cannot reshape an empty (0, C) map).
            return ShadeResult(radiance, {})
        extras = {
            "diffuse_albedo": sample.diffuse_albedo,
            "specular_albedo": sample.specular_albedo,
            "roughness": sample.roughness,
        }
        return ShadeResult(radiance, extras)
