"""Rendering a synthetic capture with Mitsuba 3: material, scene, views, exposure, relighting.

Mitsuba is an independent renderer: a dataset rendered here tests our whole pipeline against
physics we did not write. The image formation follows IRON's setting (Sec. 3 of the paper):

* **Material**: Mitsuba's ``principled`` BSDF, metallic 0, ``base_color`` = the texture (linear),
  spatially varying perceptual ``roughness``, ``specular`` level s (F0 = 0.08 s); or, with
  ``bsdf="iron"``, exactly stage 2's model (Lambert + GGX with F = F0).
* **Light**: one ``point`` emitter at each camera centre, nothing else, black background
  (unless a room is asked for: :mod:`ironrender.data.synth.nuisances`). Integrator ``direct``
  with emitter samples only: single-bounce light transport, exactly the image formation IRON
  models (IRON Eqs. 2-3, docs/architecture.md (A14)-(A15); no interreflection),

      L(x -> camera) = (I / d^2) * f_r(x; v, v) * (n . v),      d = |x - camera centre|.

  A point light is a delta emitter, so every sample is exact; the only Monte Carlo error is the
  average over each pixel's footprint (a box filter over [i, i+1) x [j, j+1), antialiasing
  silhouettes and texture edges). ``spp`` = 64 multi-jittered samples (8 x 8) give a converged
  image at 128^2 (59.5 dB PSNR against 1024 spp, measured).
* **Exposure**: the views are rendered with I = 1; a global exposure E (automatic: the
  ``exposure_percentile`` of object pixels maps to ``exposure_target``, so a few specular
  highlights clip at most) scales every image. Rendering is linear in I, so the dataset is
  exactly the image of a light of intensity ``I = E`` (``gt/light.json``).

Co-located ground truth in the project's parameterization (``gt/``, maps over the mesh UVs):
at a co-located light the half vector is the view direction, so Fresnel is exactly F0 and
Mitsuba's principled BSDF (times cos) at c = n . v is, measured against ``BSDF.eval``,

    specular: F0 * D_GGX(c; alpha) * G1(c; alpha)^2 / (4 c),    alpha = roughness^2,
    diffuse:  base / pi * c * [(1 - F/2)^2 + R (2 F + F^2 (R - 1))],
              F = (1 - c)^5,  R = 2 roughness.

The Disney diffuse factor in brackets is 1 at normal incidence and differs from Lambert towards
grazing angles (about +17 % at c = 0.3 for roughness 0.5); ``light.json`` repeats this.
Relit test views use a procedural HDR environment map (``gt/envmap.exr``, Mitsuba's lat-long
layout: :mod:`ironrender.data.envmap`) with the ``direct`` integrator (shadows, no
interreflection) and the emitter hidden (black background).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ironrender.data.cameras import Cameras
from ironrender.data.envmap import procedural_sky
from ironrender.data.images import write_image
from ironrender.data.mitsuba_backend import (
    horizontal_fov_degrees,
    mitsuba_to_world,
    multijitter_sample_count,
    perspective_sensor,
)
from ironrender.data.synth.assets import Materials
from ironrender.errors import IronError

# Intensity (W/sr) of the point light in the raw renders; the exposure scales it.
RENDER_INTENSITY = 1.0
# A pixel belongs to the object when at least half of its footprint hits the mesh.
COVERAGE_THRESHOLD = 0.5


def _bsdf(mi, materials: Materials, kind: str = "principled") -> dict:
    def bitmap(data: np.ndarray) -> dict:
        return {"type": "bitmap", "bitmap": mi.Bitmap(np.ascontiguousarray(data)), "raw": True}

    if kind == "iron":
        # 0.5 * diffuse(2 rho_d) + 0.5 * roughconductor(GGX, F = 1, 2 F0) is exactly our BRDF
        # (tests/test_brdf.py checks this blend against ironrender.rendering.brdf).
        return {
            "type": "twosided",
            "material": {
                "type": "blendbsdf",
                "weight": 0.5,
                "bsdf_0": {
                    "type": "diffuse",
                    "reflectance": bitmap((2 * materials.base_color).astype(np.float32)),
                },
                "bsdf_1": {
                    "type": "roughconductor",
                    "distribution": "ggx",
                    "alpha": bitmap(materials.alpha[..., None].astype(np.float32)),
                    "material": "none",
                    "specular_reflectance": (
                        bitmap(2 * materials.f0_map)
                        if materials.f0_map is not None
                        else {"type": "rgb", "value": [2 * materials.f0] * 3}
                    ),
                },
            },
        }
    principled = {
        "type": "principled",
        "base_color": bitmap(materials.base_color.astype(np.float32)),
        "roughness": bitmap(materials.perceptual_roughness[..., None].astype(np.float32)),
        "metallic": 0.0,
        "specular": float(materials.specular),
        "spec_tint": 0.0,
        "anisotropic": 0.0,
        "sheen": 0.0,
        "clearcoat": 0.0,
        "spec_trans": 0.0,
    }
    # Two-sided only guards against meshes with inverted faces; a closed, outward-oriented mesh
    # shows the cameras front faces only.
    return {"type": "twosided", "material": principled}


def build_scene(
    mi,
    mesh_file: Path,
    materials: Materials,
    sensor: dict,
    emitter: dict,
    integrator,
    bsdf: str,
    extra_shapes: dict | None = None,
):
    """The Mitsuba scene of the object (``mesh_file``), its light and ``extra_shapes``.

    ``emitter`` is named ``light`` and the sensor ``sensor``: :func:`render_views` moves them.
    """
    return mi.load_dict(
        {
            "type": "scene",
            "integrator": integrator,
            "sensor": sensor,
            "light": emitter,
            "object": {
                "type": "obj",
                "filename": str(mesh_file),
                "bsdf": _bsdf(mi, materials, bsdf),
            },
            **(extra_shapes or {}),
        }
    )


def render_views(mi, scene, cameras: Cameras, seeds: list[int], move_light: bool, bar=None):
    """Render every camera by moving the scene's sensor (and the point light to the view's
    flash: its centre, or where ``cameras.flash`` puts it)."""
    params = mi.traverse(scene)
    c2w = cameras.c2w.detach().cpu().double().numpy()
    K = cameras.intrinsics.detach().cpu().double().numpy()
    flash = np.zeros(3) if cameras.flash is None else cameras.flash.detach().cpu().double().numpy()
    lights = (c2w[:, :3, :3] @ flash.reshape(-1, 3, 1))[..., 0] + c2w[:, :3, 3]
    out = []
    for i, seed in enumerate(seeds):
        W, H = cameras.width(i), cameras.height(i)
        params["sensor.to_world"] = mi.ScalarTransform4f(mitsuba_to_world(c2w[i]).tolist())
        params["sensor.x_fov"] = horizontal_fov_degrees(K[i], W, H)
        if move_light:
            params["light.position"] = mi.Point3f(*(float(x) for x in lights[i]))
        params.update()
        out.append(np.array(mi.render(scene, seed=seed), dtype=np.float32))
        if bar is not None:
            bar.update(1)
    return np.stack(out)


def auto_exposure(images: np.ndarray, coverage: np.ndarray, percentile: float, target: float):
    """Scale mapping the ``percentile`` of object pixels' max channel to ``target``."""
    values = images.max(axis=-1)[coverage >= COVERAGE_THRESHOLD]
    if values.size == 0:
        raise IronError("the object is not visible in any view; check the mesh and cameras")
    level = float(np.percentile(values, percentile))
    if not level > 0:
        raise IronError("the rendered object is black; check the texture")
    return target / level


def render_relit_views(mi, config, gt, materials, test: Cameras, names, seed0, bar) -> dict:
    """Render the test cameras under the procedural environment map (emitter hidden).

    The object alone, whatever room or support the flash views had: relit views are the ground
    truth of relighting the *object* (what a reconstruction exports), and a room or table would
    shadow and occlude the environment differently from the scene an exported asset is put in.
    """
    sky = procedural_sky(config.sky)
    sensor = perspective_sensor(
        test.intrinsics[0].numpy(), test.c2w[0].numpy(), config.resolution, config.resolution,
        config.relight_spp, pixel_format="rgba",
    )  # fmt: skip
    emitter = {"type": "envmap", "bitmap": mi.Bitmap(sky), "scale": 1.0}
    integrator = {"type": "direct", "hide_emitters": True}
    scene = build_scene(mi, gt / "mesh.obj", materials, sensor, emitter, integrator, config.bsdf)
    first = seed0 + 2 * len(test) + config.views  # after the seeds of the flash views
    seeds = [first + i for i in range(len(test))]
    rgba = render_views(mi, scene, test, seeds, False, bar)
    scale = config.relight_exposure or auto_exposure(
        rgba[..., :3], rgba[..., 3], config.exposure_percentile, config.exposure_target
    )
    write_image(gt / "envmap.exr", scale * sky)
    for name, image in zip(names, rgba, strict=True):
        write_image((gt / "relit" / name).with_suffix(".exr"), scale * image[..., :3])
        write_image(gt / "relit" / name, scale * image[..., :3])
    return {
        "envmap": "envmap.exr",
        "envmap_scale": scale,
        "envmap_layout": (
            "Mitsuba 3 lat-long, +Y up, identity to_world: u = atan2(x, -z) / 2pi,"
            " v = acos(y) / pi; column i at u = (i + 0.5) / W, row j at v = j / (H - 1)"
        ),
        "integrator": "direct (MIS: emitter + BSDF samples, shadows, no interreflection),"
        " emitter hidden (black background)",
        "scene": "the object alone (no room, no support plane, even if the flash views have them)",
        "spp": multijitter_sample_count(config.relight_spp),
        "views": "the test cameras; gt/relit/<name>.exr (linear) and .png (gamma 2.2)",
    }
