"""``synthesize``: a synthetic capture from its config to ``train/``, ``test/`` and ``gt/``.

Validates the config, loads the object (:mod:`~ironrender.data.synth.assets`), samples the
cameras (:mod:`~ironrender.data.synth.poses`), adds the nuisances asked for
(:mod:`~ironrender.data.synth.nuisances`), renders the flash views, their coverage masks and the
relit test views (:mod:`~ironrender.data.synth.render`), and writes the dataset with its ground
truth and ``gt/light.json`` (everything needed to read the capture's numbers).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ironrender.data.capture_file import CaptureDescription, write_capture
from ironrender.data.dataset import save_split
from ironrender.data.images import write_data_png
from ironrender.data.mitsuba_backend import (
    multijitter_sample_count,
    perspective_sensor,
    select_variant,
)
from ironrender.data.synth.assets import (
    DEFAULT_MESH,
    DEFAULT_TEXTURE,
    Materials,
    gilded_materials,
    load_roughness_map,
    load_texture,
    load_textured_mesh,
    normalize_mesh,
    procedural_roughness,
    write_materials,
    write_mtl,
    write_obj,
)
from ironrender.data.synth.config import BSDFS, ROOMS, SynthConfig
from ironrender.data.synth.nuisances import (
    SUPPORT_CONTRAST,
    check_nuisances_cannot_occlude,
    nuisance_shapes,
)
from ironrender.data.synth.photometric import (
    ambient_emitter,
    ambient_radiance,
    camera_gains,
    develop,
    has_flash_offset,
    photometric_info,
)
from ironrender.data.synth.poses import cameras_from_poses, fit_field_of_view, sample_poses
from ironrender.data.synth.render import (
    RENDER_INTENSITY,
    auto_exposure,
    build_scene,
    render_relit_views,
    render_views,
)
from ironrender.data.tone_curve import TONE_CURVES
from ironrender.errors import IronError

# Distinct Mitsuba seeds per view: seed * SEED_STRIDE + view counter.
SEED_STRIDE = 100_003
AMBIENT_SEED_OFFSET = 50_000  # the ambient pass's seeds, apart from every other pass's


def synthesize(
    config: SynthConfig, out_dir: str | Path, progress: bool = True, overwrite: bool = False
) -> Path:
    """Render a synthetic IRON dataset with ground truth into ``out_dir``; returns it.

    Writes ``train/``, ``test/`` (gamma PNG + linear EXR twin, ``cam_dict_norm.json``) and
    ``gt/`` (mesh, material maps, ``light.json``, masks, environment map, relit test views).
    ``overwrite`` replaces those three folders if they exist; otherwise existing ones are an
    error.
    """
    start = time.perf_counter()
    _validate(config)
    out = Path(out_dir)
    mesh_path = Path(config.mesh) if config.mesh else DEFAULT_MESH
    texture_path = Path(config.texture) if config.texture else DEFAULT_TEXTURE
    mesh, normalization = normalize_mesh(load_textured_mesh(mesh_path), config.bounding_radius)
    base_color = load_texture(texture_path)
    if config.material == "gilded":
        materials = gilded_materials(base_color, config.patina)
    else:
        if config.roughness_map:
            roughness = load_roughness_map(config.roughness_map)
        else:
            roughness = procedural_roughness(base_color, *config.roughness_range)
        materials = Materials(base_color, roughness, config.specular)

    _prepare_output(out, overwrite)
    gt = out / "gt"
    gt.mkdir(parents=True)
    write_obj(gt / "mesh.obj", mesh, "mesh.mtl")
    write_mtl(gt / "mesh.mtl", "diffuse_albedo.png")
    write_materials(gt, materials)

    min_elevation = config.min_elevation if config.support_plane else None
    train_w2c, test_w2c = sample_poses(
        config.views, config.test_views, config.camera_distance, config.seed, min_elevation
    )
    all_w2c = torch.cat([train_w2c, test_w2c])
    fov = fit_field_of_view(mesh.vertices, all_w2c, config.frame_fill)
    train = cameras_from_poses(train_w2c, config.resolution, fov)
    test = cameras_from_poses(test_w2c, config.resolution, fov)
    if has_flash_offset(config):
        offset = torch.tensor(config.flash_offset, dtype=train.w2c.dtype)
        train.flash, test.flash = offset.expand(len(train), 3), offset.expand(len(test), 3)
    variant = select_variant(config.prefer_fast_variant)
    import mitsuba as mi  # lazy: select_variant() sets DRJIT_LIBLLVM_PATH before its first import

    passes = 2 if config.ambient > 0 else 1  # the room's light is rendered apart
    n_renders = passes * (len(train) + len(test)) + (len(test) if config.relight else 0)
    bar = tqdm(total=n_renders, desc="iron synth", unit="view", disable=not progress)
    seed0 = config.seed * SEED_STRIDE

    # Flash views: unit-intensity point light at the camera centre.
    flash_sensor = perspective_sensor(
        train.intrinsics[0].numpy(), train.c2w[0].numpy(), config.resolution,
        config.resolution, config.spp, pixel_format="rgba",
    )  # fmt: skip
    point = {"type": "point", "position": [0.0, 0.0, 0.0], "intensity": {"type": "uniform",
             "value": RENDER_INTENSITY}}  # fmt: skip
    direct_flash = {"type": "direct", "emitter_samples": 1, "bsdf_samples": 0}
    nuisances, scene_info = nuisance_shapes(mi, config, mesh)
    check_nuisances_cannot_occlude(torch.cat([train.centers, test.centers]).numpy(), scene_info)
    scene = build_scene(
        mi, gt / "mesh.obj", materials, flash_sensor, point, direct_flash, config.bsdf, nuisances
    )
    t_flash = time.perf_counter()
    train_seeds = [seed0 + i for i in range(len(train))]
    test_seeds = [seed0 + len(train) + i for i in range(len(test))]
    train_rgba = render_views(mi, scene, train, train_seeds, True, bar)
    test_rgba = render_views(mi, scene, test, test_seeds, True, bar)
    if nuisances:
        # Alpha now covers the room and plane too: the object's own coverage comes from the
        # object alone, with the same seeds, hence the same pixel samples (the depth integrator
        # traces camera rays only; its alpha equals the flash render's).
        coverage_scene = build_scene(
            mi, gt / "mesh.obj", materials, flash_sensor, point, {"type": "depth"}, config.bsdf
        )
        train_coverage = render_views(mi, coverage_scene, train, train_seeds, False)[..., 3]
        test_coverage = render_views(mi, coverage_scene, test, test_seeds, False)[..., 3]
    else:
        train_coverage, test_coverage = train_rgba[..., 3], test_rgba[..., 3]
    ambient = ambient_emitter(config, RENDER_INTENSITY)
    if ambient is not None:
        # The room's light in a pass of its own (module docstring of .photometric), added.
        ambient_scene = build_scene(
            mi, gt / "mesh.obj", materials, flash_sensor, ambient, {"type": "direct"},
            config.bsdf, nuisances,
        )  # fmt: skip
        first = seed0 + AMBIENT_SEED_OFFSET
        for rgba, cameras, seeds in (
            (train_rgba, train, train_seeds),
            (test_rgba, test, test_seeds),
        ):
            seeds = [first + s for s in seeds]
            rgba[..., :3] += render_views(mi, ambient_scene, cameras, seeds, False, bar)[..., :3]
    t_flash = time.perf_counter() - t_flash

    all_rgba = np.concatenate([train_rgba, test_rgba])
    exposure = config.exposure or auto_exposure(
        all_rgba[..., :3],
        np.concatenate([train_coverage, test_coverage]),
        config.exposure_percentile,
        config.exposure_target,
    )
    intensity = exposure * RENDER_INTENSITY
    train_suffix = ".jpg" if config.jpeg_quality > 0 else ".png"
    names = {"train": _names(len(train), train_suffix), "test": _names(len(test))}
    gains = camera_gains(config, len(train), config.seed)
    train_photos = develop(exposure * train_rgba[..., :3], gains, config.noise, config.seed)
    splits = (
        ("train", train_photos, train_coverage, train, config.jpeg_quality or 75),
        ("test", exposure * test_rgba[..., :3], test_coverage, test, 75),
    )
    for split, photos, coverage, cameras, quality in splits:
        save_split(out, split, names[split], photos, cameras, True, config.tone_curve, quality)
        for name, mask in zip(names[split], coverage, strict=True):
            write_data_png((gt / "masks" / split / name).with_suffix(".png"), mask)
    write_capture(out, synthetic_description(config))
    flash_saturated = float(np.mean(exposure * all_rgba[..., :3].max(-1) >= 1.0))

    relight_info = None
    t_relight = 0.0
    if config.relight:
        t_relight = time.perf_counter()
        relight_info = render_relit_views(
            mi, config, gt, materials, test, names["test"], seed0, bar
        )
        t_relight = time.perf_counter() - t_relight
    bar.close()

    light = {
        "intensity": intensity,
        "exposure": exposure,
        "model": "radiance = (intensity / d^2) * f_r * cos(n, v); d = |x - camera centre|",
        "note_exposure": (
            "views rendered with a point light of intensity 1 W/sr at the camera centre, then"
            " multiplied by the exposure (rendering is linear in intensity): the dataset is"
            " exactly the image of a light of `intensity` = exposure"
        ),
        "flash_saturated_fraction": flash_saturated,
        "normalization": {
            "source_mesh": str(mesh_path),
            "center": normalization.center.tolist(),
            "scale": normalization.scale,
            "matrix": normalization.matrix.tolist(),
            "formula": "x_normalized = scale * (x_source - center)",
            "bounding_radius": config.bounding_radius,
        },
        "bsdf": {
            "mitsuba": (
                "principled (in twosided), metallic 0, no sheen/clearcoat/transmission"
                if config.bsdf == "principled"
                else "blendbsdf 0.5: diffuse(2 base) + roughconductor(ggx, material none, 2 F0)"
            ),
            "texture": str(texture_path),
            "material": config.material,
            "specular": config.specular,
            "f0": materials.f0 if materials.f0_map is None else "map (specular_albedo.exr)",
            "maps": {
                "diffuse_albedo": "base colour, linear (.exr); .png gamma 2.2",
                "specular_albedo": "F0 = 0.08 * specular (Fresnel at a co-located light)",
                "roughness": "GGX alpha = perceptual_roughness^2 (.png: alpha as raw data)",
                "perceptual_roughness": "Mitsuba's principled `roughness` input",
                "uv": "OBJ convention: v = 0 is the bottom row of a map",
            },
            "colocated_formula": {
                "specular": "F0 * D_GGX(c; alpha) * G1(c; alpha)^2 / (4 c)",
                "diffuse": (
                    "base / pi * c * [(1 - F/2)^2 + R (2F + F^2 (R - 1))],"
                    " F = (1 - c)^5, R = 2 perceptual_roughness; c = n . v"
                ),
            },
            "note": (
                "principled's Disney diffuse equals Lambert (base/pi) only at normal incidence;"
                " it is brighter towards grazing angles (about +17% at n.v = 0.3, roughness 0.5)"
            ),
        },
        "render": {
            "mitsuba_variant": variant,
            "integrator": "direct, emitter samples only (single bounce, no interreflection)",
            "spp": multijitter_sample_count(config.spp),
            "sampler": "multijitter",
            "reconstruction_filter": "box (pixel = mean over its footprint)",
            "field_of_view_x_degrees": fov,
            "camera_distance": config.camera_distance,
        },
        "relight": relight_info,
        "scene": scene_info,
        "camera_and_room": photometric_info(
            config, gains, ambient_radiance(config, RENDER_INTENSITY) * exposure
        ),
        "timing_seconds": {
            "flash_views": t_flash,
            "relit_views": t_relight,
            "total": time.perf_counter() - start,
        },
        "config": _config_dict(config),
    }
    (gt / "light.json").write_text(json.dumps(light, indent=1))
    return out


def _names(n: int, suffix: str = ".png") -> list[str]:
    return [f"{i:03d}{suffix}" for i in range(n)]


def _config_dict(config: SynthConfig) -> dict:
    return dataclasses.asdict(config)


def _validate(config: SynthConfig) -> None:
    if config.views < 1 or config.test_views < 1:
        raise IronError("need at least one training and one test view")
    if config.resolution < 8:
        raise IronError(f"resolution {config.resolution} is too small (at least 8)")
    if config.spp < 1 or config.relight_spp < 1:
        raise IronError("samples per pixel must be positive")
    if config.bsdf not in BSDFS:
        raise IronError(f"bsdf must be one of {BSDFS}, not {config.bsdf!r}")
    if not 0 < config.bounding_radius < 1:
        raise IronError("bounding_radius must lie in (0, 1): the object must fit the unit sphere")
    if config.camera_distance <= 1:
        raise IronError("camera_distance must exceed 1: cameras lie outside the unit sphere")
    if not 0 < config.frame_fill <= 1:
        raise IronError("frame_fill must lie in (0, 1]")
    if config.exposure is not None and not config.exposure > 0:
        raise IronError("exposure must be positive")
    if not 0 <= config.specular <= 1:
        raise IronError("specular must lie in [0, 1]")
    if config.material == "gilded" and config.bsdf != "iron":
        raise IronError(
            "a gilded material is rendered with the iron BSDF (--bsdf iron): principled has no"
            " coloured F0 for a dielectric, and metallic 1 has no diffuse patina"
        )
    if not 0 <= config.patina < 1:
        raise IronError("patina must lie in [0, 1): the fraction of the surface under patina")
    low, high = config.roughness_range
    if not 0 <= low <= high <= 1:
        raise IronError("roughness_range must satisfy 0 <= low <= high <= 1")
    if config.room not in ROOMS:
        raise IronError(f"room must be one of {ROOMS}, not {config.room!r}")
    if not 0 < config.support_albedo * (1 + SUPPORT_CONTRAST) <= 1:
        limit = 1 / (1 + SUPPORT_CONTRAST)
        raise IronError(f"support_albedo must lie in (0, {limit:.3g}]: its texture stays <= 1")
    if not 0 <= config.min_elevation < 90:
        raise IronError("min_elevation must lie in [0, 90) degrees")
    if config.tone_curve not in TONE_CURVES:
        raise IronError(f"tone curve must be one of {TONE_CURVES}, not {config.tone_curve!r}")
    if not all(math.isfinite(x) for x in config.flash_offset) or len(config.flash_offset) != 3:
        raise IronError("flash offset must be three finite numbers (camera coordinates)")
    # The object's centre sits at (0, 0, d) in every camera's coordinates.
    if math.dist(config.flash_offset, (0.0, 0.0, config.camera_distance)) <= 1.0:
        raise IronError("the flash offset puts the light inside the unit sphere around the object")
    if not config.ambient >= 0:
        raise IronError("ambient must be a fraction >= 0 of the flash's irradiance")
    if not (0 <= config.exposure_jitter < 1 and 0 <= config.white_balance_jitter < 1):
        raise IronError("exposure and white-balance jitter must lie in [0, 1)")
    if not config.noise >= 0:
        raise IronError("noise must be >= 0")
    if not 0 <= config.jpeg_quality <= 100:
        raise IronError("JPEG quality must lie in 1-100 (0: PNG)")


def _prepare_output(out: Path, overwrite: bool) -> None:
    owned = [out / "train", out / "test", out / "gt"]
    existing = [p for p in owned if p.exists()]
    if existing and not overwrite:
        raise IronError(f"{existing[0]} already exists; choose a new folder or overwrite (--force)")
    for path in existing:
        shutil.rmtree(path)
    out.mkdir(parents=True, exist_ok=True)


def synthetic_description(config: SynthConfig) -> CaptureDescription:
    """What the renders are (``DATA/capture.json``): encoded by ``tone_curve``, exposure and
    white balance varying where jittered, no lens vignetting and no camera curve of their own."""
    return CaptureDescription(
        source="synthetic",
        encoding=config.tone_curve,
        exposure="varies" if config.exposure_jitter > 0 else "fixed",
        white_balance="varies" if config.white_balance_jitter > 0 else "fixed",
        flash_fired=True,
        vignetting=False,
    )
