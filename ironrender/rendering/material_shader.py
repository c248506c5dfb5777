"""The stage-2 shader: neural materials (:mod:`ironrender.fields.materials`) under the flash.

For each sphere-traced hit, ``L = I / d^2 * f_r * c`` (seed Eqs. 2-3): the materials are queried at
the reparameterised point, its unit normal and SDF feature, and shaded by the GGX BRDF
(:func:`ironrender.rendering.brdf.shade_flash`).
"""

from __future__ import annotations

from torch import Tensor

from ironrender.fields.materials import MaterialFields
from ironrender.rendering.brdf import GGXMaterial, shade_flash
from ironrender.rendering.surface import SurfaceHit
from ironrender.rendering.surface_renderer import ShadeResult


class MaterialShader:
    """The stage-2 :data:`~ironrender.rendering.surface_renderer.ShadeFn`: materials + GGX flash.

    For each hit, ``L = I / d^2 * f_r * c`` (seed Eqs. 2-3) with the materials queried at the
    reparameterised point, its unit normal and SDF feature. ``unit_light=True`` renders with
    ``I = 1`` (the least-squares light initialisation). Extras: ``diffuse_albedo`` and
    ``specular_albedo`` (3), ``roughness`` (1), per pixel for the range loss and evaluation.
    """

    def __init__(self, materials: MaterialFields, unit_light: bool = False):
        self.materials = materials
        self.unit_light = unit_light

    def __call__(self, hit: SurfaceHit, light_positions: Tensor, view_dirs: Tensor) -> ShadeResult:
        sample = self.materials(hit.points, hit.normals, hit.features)
        intensity = 1.0 if self.unit_light else sample.light_intensity
        material = GGXMaterial(sample.diffuse_albedo, sample.specular_albedo, sample.roughness)
        shading = shade_flash(
            material,
            hit.normals,
            hit.points,
            light_positions,
            intensity,
            self.materials.config.diffuse_model,
        )
        if len(hit) == 0:
            # No hits: no per-hit extras (the renderer cannot reshape an empty (0, C) map).
            return ShadeResult(shading.radiance, {})
        extras = {
            "diffuse_albedo": sample.diffuse_albedo,
            "specular_albedo": sample.specular_albedo,
            "roughness": sample.roughness,
        }
        return ShadeResult(shading.radiance, extras)
