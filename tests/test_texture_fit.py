"""The texture stage (export/texture_fit.py): photo-resolution maps on the fixed exported mesh.

The capture is rendered independently of the code under test: the project's own unwrapped
sphere carries a known high-frequency albedo (a 3-D checkerboard, cells of about three texels,
baked at the texture's resolution), written as an asset and rendered by Mitsuba 3's path
tracer under a point light at each camera (box-filtered pixels), then developed through known
per-photograph gains. The fit starts from that texture blurred (what a coarse material grid
holds) and must bring back the checkerboard, through stage 2's light and camera model.
Budget: about 20 s on 2 cores (the whole file, with a tiny `iron run` and a shadow check).
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import trimesh
from scipy.ndimage import gaussian_filter

from ironrender.data.cameras import Cameras, intrinsics_from_fov, look_at
from ironrender.data.dataset import Split
from ironrender.data.images import read_image
from ironrender.export.asset import ExportConfig, write_asset
from ironrender.export.bake import BakedTextures, fill_gutters, rasterize_uv
from ironrender.export.mesh import decimate
from ironrender.export.texture_fit import (
    TextureFitConfig,
    fit_textures,
    lookup,
    seam_mismatch,
    seam_samples,
)
from ironrender.export.uv import unwrap
from ironrender.fields.base import SphereSDF
from ironrender.fields.level_set import extract_mesh
from ironrender.fields.materials import MaterialConfig, MaterialFields
from ironrender.fields.radiance import RadianceConfig, RadianceField
from ironrender.training.photometric import CameraGains
from ironrender.training.stage2_model import Stage2Model

RADIUS = 0.6
TEXTURE = 64
CELL = 0.13  # checkerboard cell, scene units: about three texels of the 64^2 atlas
COLOURS = np.array([[0.75, 0.35, 0.15], [0.15, 0.45, 0.7]], dtype=np.float32)
SPECULAR, ALPHA = 0.04, 0.3
LIGHT = 6.0
SIZE, VIEWS, SPP = 96, 10, 32
GAINS = np.exp(np.linspace(-0.12, 0.12, VIEWS))[[4, 0, 7, 2, 9, 1, 6, 3, 8, 5]]


FIT = TextureFitConfig(steps=300, batch_pixels=8192)


def checkerboard(points: np.ndarray) -> np.ndarray:
    """One of two colours by the parity of the point's cell in a 3-D grid of side CELL."""
    parity = np.floor(points / CELL).astype(np.int64).sum(-1) % 2
    return COLOURS[parity]


def smooth_colours(points: np.ndarray) -> np.ndarray:
    return 0.45 + 0.3 * np.sin(6.0 * points + np.array([0.0, 1.0, 2.0]))


def capture_cameras() -> Cameras:
    """Ten views on two rings (above and below the equator), looking at the origin."""
    azimuth = np.arange(VIEWS) * 2 * math.pi / 5 + np.where(np.arange(VIEWS) < 5, 0.0, 0.6)
    height = np.where(np.arange(VIEWS) < 5, 0.9, -0.9)
    eye = torch.tensor(
        np.stack([2.0 * np.cos(azimuth), height, 2.0 * np.sin(azimuth)], -1), dtype=torch.float32
    )
    w2c = look_at(eye, torch.zeros(3), torch.tensor([0.0, 1.0, 0.0]))
    K = intrinsics_from_fov(SIZE, SIZE, 45.0).repeat(VIEWS, 1, 1)
    return Cameras(K, w2c, torch.tensor([[SIZE, SIZE]] * VIEWS))


def render_photographs(asset_dir, cameras: Cameras) -> np.ndarray:
    """Mitsuba's path tracer on the written asset (OBJ + the writer's x2 maps in a blend, as
    ``scene.xml``), a point light of intensity LIGHT at each camera: linear (N, H, W, 3)."""
    from ironrender.data.mitsuba_backend import perspective_sensor, select_variant

    select_variant()
    import mitsuba as mi

    def bitmap(name: str) -> dict:
        return {"type": "bitmap", "filename": str(asset_dir / name), "raw": True}

    bsdf = {
        "type": "blendbsdf",
        "weight": 0.5,
        "diffuse": {"type": "diffuse", "reflectance": bitmap("mitsuba_diffuse_x2.exr")},
        "specular": {
            "type": "roughconductor",
            "material": "none",
            "distribution": "ggx",
            "alpha": bitmap("roughness.exr"),
            "specular_reflectance": bitmap("mitsuba_specular_x2.exr"),
        },
    }
    images = []
    for i in range(len(cameras)):
        centre = cameras.centers[i].double().numpy()
        scene = mi.load_dict(
            {
                "type": "scene",
                "integrator": {"type": "path", "max_depth": 2},
                "sensor": perspective_sensor(
                    cameras.intrinsics[i].numpy(), cameras.c2w[i].numpy(), SIZE, SIZE, SPP
                ),
                "light": {
                    "type": "point",
                    "position": centre.tolist(),
                    "intensity": {"type": "rgb", "value": LIGHT},
                },
                "asset": {"type": "obj", "filename": str(asset_dir / "mesh.obj"), "bsdf": bsdf},
            }
        )
        images.append(np.asarray(mi.render(scene, seed=i), dtype=np.float32))
    return np.stack(images)


def capture_model() -> Stage2Model:
    """Stage 2's light and camera as the capture had them: intensity LIGHT in the lens, the
    photographs' gains; the neural fields are placeholders the texture stage never asks."""
    diffuse = RadianceField(RadianceConfig(pos_freqs=0, dir_freqs=0, hidden_dim=8), 0)
    config = MaterialConfig(use_grid=False, hidden_dim=8, num_hidden=1)
    materials = MaterialFields(diffuse, config, feature_dim=0, light_intensity=LIGHT)
    gains = CameraGains(VIEWS)
    with torch.no_grad():
        gains.log_gains.copy_(torch.tensor(np.log(GAINS), dtype=torch.float32)[:, None])
    return Stage2Model(SphereSDF(RADIUS), materials, photometric=[gains]).eval()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One thread: these tensors are small, and two threads on a busy 2-core machine are
    slower than one (measured 7 ms against 0.06 ms for one gather). Module-scoped, so that it
    is in place before the module's fixtures fit anything."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def scene():
    """The project's own mesh and atlas of the sphere, and each texel's surface point."""
    mesh = decimate(extract_mesh(lambda p: p.norm(dim=-1) - RADIUS, resolution=48), 1500)
    uv_mesh = unwrap(mesh, TEXTURE, padding=2)
    return uv_mesh, rasterize_uv(uv_mesh, TEXTURE)


def photographed(scene, albedo_of, folder) -> tuple[dict[str, np.ndarray], Split]:
    """The true maps (``albedo_of(points)`` baked per texel, grey F0, constant alpha) and
    their photographs: Mitsuba renders of the written asset, times each photograph's gain."""
    uv_mesh, texels = scene
    albedo = np.zeros((TEXTURE, TEXTURE, 3), dtype=np.float32)
    albedo[texels.rows, texels.cols] = albedo_of(texels.points)
    full = np.ones((TEXTURE, TEXTURE, 1), dtype=np.float32)
    truth = {
        "diffuse_albedo": fill_gutters(albedo, texels.mask),
        "specular_albedo": SPECULAR * full,
        "roughness": ALPHA * full,
    }
    config = ExportConfig(write_glb=False, progress=False)
    write_asset(uv_mesh, BakedTextures(truth, texels.mask), LIGHT, folder, config)
    cameras = capture_cameras()
    linear = render_photographs(folder, cameras) * GAINS[:, None, None, None]
    assert 0.3 < linear.max() < 1.0  # nothing clipped in the 8-bit-like loss domain
    split = Split([f"{i}.png" for i in range(VIEWS)], torch.from_numpy(linear), cameras, False)
    return truth, split


@pytest.fixture(scope="module")
def checkers(scene, tmp_path_factory):
    """A checkerboard capture, and a bake that holds it blurred (what a coarse grid holds)."""
    truth, split = photographed(scene, checkerboard, tmp_path_factory.mktemp("checkers"))
    blurred = gaussian_filter(truth["diffuse_albedo"], (2.5, 2.5, 0))
    bake = BakedTextures({**truth, "diffuse_albedo": blurred}, scene[1].mask)
    return truth, bake, split


@pytest.fixture(scope="module")
def fitted(scene, checkers):
    _, bake, split = checkers
    return fit_textures(scene[0], bake, split, capture_model(), FIT)


def albedo_psnr(texture: np.ndarray, truth: np.ndarray, where: np.ndarray) -> float:
    return -10.0 * math.log10(float(((texture - truth)[where] ** 2).mean()))


def test_texture_stage_recovers_a_checkerboard_the_bake_blurred(checkers, fitted):
    truth, bake, _ = checkers
    # Well seen texels: covered by a triangle and under several photograph pixels.
    seen = bake.coverage & (fitted.observed > 2.0)
    assert seen.sum() > 0.9 * bake.coverage.sum()
    before = albedo_psnr(bake.maps["diffuse_albedo"], truth["diffuse_albedo"], seen)
    after = albedo_psnr(fitted.textures.maps["diffuse_albedo"], truth["diffuse_albedo"], seen)
    print(f"\nalbedo PSNR {before:.1f} -> {after:.1f} dB; {fitted.summary()}")
    assert before < 15.0 and after > 26.0
    assert fitted.error_after < 0.05 * fitted.error_before
    # The poorly observed maps stay near the (here true) bake, and keep their shapes.
    maps = fitted.textures.maps
    assert maps["specular_albedo"].shape == bake.maps["specular_albedo"].shape
    assert np.abs(maps["specular_albedo"][seen] - SPECULAR).mean() < 0.015
    assert np.abs(maps["roughness"][seen] - ALPHA).mean() < 0.01


def test_the_photographs_gains_reach_the_shading(scene, checkers, fitted):
    """A control: the same fit with the camera model's gains set to 1 explains the
    photographs (gains 0.89-1.13) worse (measured: twice the error): the fit develops its
    renders as stage 2 does."""
    _, bake, split = checkers
    model = capture_model()
    with torch.no_grad():
        model.photometric["gains"].log_gains.zero_()
    blind = fit_textures(scene[0], bake, split, model, FIT)
    print(f"\nwithout the gains: {blind.summary()}")
    assert blind.error_after > 1.5 * fitted.error_after


def test_seams_do_not_crack(scene, tmp_path_factory):
    """A smooth albedo, fitted from a constant start: both sides of every seam read the same
    value (far closer than the true maps' own two texel grids do), and clearly closer than a
    fit without the seam term; the albedo itself is recovered either way."""
    uv_mesh, texels = scene
    truth, split = photographed(scene, smooth_colours, tmp_path_factory.mktemp("smooth"))
    flat = {**truth, "diffuse_albedo": np.full_like(truth["diffuse_albedo"], 0.45)}
    bake = BakedTextures(flat, texels.mask)
    seams = seam_samples(uv_mesh, TEXTURE)
    assert len(seams.uv_a) > 300
    gaps = {}
    for weight in (FIT.seam_weight, 0.0):
        config = dataclasses.replace(FIT, seam_weight=weight)
        result = fit_textures(uv_mesh, bake, split, capture_model(), config)
        fitted = result.textures.maps["diffuse_albedo"]
        gaps[weight] = seam_mismatch(fitted, seams).max(-1)
        seen = texels.mask & (result.observed > 2.0)
        assert albedo_psnr(fitted, truth["diffuse_albedo"], seen) > 38.0
    mine, loose = gaps[FIT.seam_weight], gaps[0.0]
    reference = seam_mismatch(truth["diffuse_albedo"], seams).max(-1)
    print(
        f"\nseam gap mean/max: fit {mine.mean():.4f}/{mine.max():.4f}, without the seam term"
        f" {loose.mean():.4f}/{loose.max():.4f}, true maps {reference.mean():.4f}"
    )
    assert mine.mean() < 0.01 and mine.max() < 0.04
    assert loose.mean() > 3.0 * mine.mean()


def test_lookup_follows_the_texel_convention():
    """Texel (r, c) of an H x W map is read exactly at (u, v) = ((c + .5)/W, 1 - (r + .5)/H)."""
    texture = torch.arange(12, dtype=torch.float32).reshape(1, 1, 3, 4)
    rows, cols = np.meshgrid(np.arange(3), np.arange(4), indexing="ij")
    uv = np.stack([(cols.ravel() + 0.5) / 4, 1.0 - (rows.ravel() + 0.5) / 3], -1)
    values = lookup(texture, torch.tensor(uv, dtype=torch.float32))[:, 0]
    torch.testing.assert_close(values, torch.arange(12, dtype=torch.float32))


def test_a_fit_without_steps_keeps_the_bake(scene, checkers):
    _, bake, split = checkers
    config = dataclasses.replace(FIT, steps=0)
    result = fit_textures(scene[0], bake, split, capture_model(), config)
    assert result.steps == 0
    np.testing.assert_allclose(
        result.textures.maps["diffuse_albedo"][bake.coverage],
        bake.maps["diffuse_albedo"][bake.coverage],
        atol=1e-4,
    )
    assert result.error_after == pytest.approx(result.error_before, rel=1e-3)


def test_iron_run_and_iron_export_run_the_texture_stage(tmp_path, capsys, monkeypatch):
    """``--set export.texture.steps=N`` fits the maps inside the export step (the bake kept as
    ``*_baked``, one summary line), and ``iron export --texture-steps`` does the same."""
    from ironrender.cli import main
    from ironrender.pipeline import ConfigRequest, run_pipeline
    from tests.tiny_runs import TINY, tiny_capture

    monkeypatch.setenv("IRON_NO_TCMALLOC", "1")  # main() would re-execute the process
    data, run = tiny_capture(tmp_path / "data"), tmp_path / "run"
    request = ConfigRequest(overrides=(*TINY, "export.texture.steps=20"))
    run_pipeline(data, run, request, "cpu", steps=("stage1", "stage2", "export"))
    out = capsys.readouterr().out
    assert "[texture] photometric error" in out
    saved = json.loads((run / "config.json").read_text())
    assert saved["export"]["texture"]["steps"] == 20
    export = run / "export"
    fitted, baked = (
        read_image(export / "diffuse_albedo.exr"),
        read_image(export / "diffuse_albedo_baked.exr"),
    )
    assert fitted.shape == baked.shape and np.abs(fitted - baked).max() > 1e-3
    for name in ("model.glb", "scene.xml", "mitsuba_diffuse_x2.exr", "roughness_baked.png"):
        assert (export / name).is_file(), name
    np.testing.assert_allclose(read_image(export / "mitsuba_diffuse_x2.exr"), 2 * fitted, rtol=1e-3)

    assert main(["export", str(run), "--texture-steps", "0", "--quiet"]) == 0
    assert "[texture]" not in capsys.readouterr().out
    assert main(["export", str(run), "--texture-steps", "5", "--quiet"]) == 0
    assert "5 steps" in capsys.readouterr().out


def test_shadow_rays_find_what_hides_the_flash():
    """A flash beside the lens: a small sphere between it and a big one casts a shadow the
    camera sees. Each kept pixel's visibility agrees with the segment-sphere test written out
    here, and the shadow is there (some pixels dark, most lit)."""
    from ironrender.export.photo_hits import trace_photographs

    big = trimesh.creation.icosphere(subdivisions=4, radius=0.5)
    small = trimesh.creation.icosphere(subdivisions=3, radius=0.15)
    small.apply_translation([0.0, 0.0, 0.8])
    uv_mesh = unwrap(trimesh.util.concatenate([big, small]), 256, padding=2)
    eye = torch.tensor([[0.0, 0.0, 3.0]])
    w2c = look_at(eye, torch.zeros(3), torch.tensor([0.0, 1.0, 0.0]))
    K = intrinsics_from_fov(64, 64, 35.0)[None]
    flash = torch.tensor([[1.5, 0.0, 0.0]])  # 1.5 to the right (world +x): shadow to the left
    cameras = Cameras(K, w2c, torch.tensor([[64, 64]]), flash)
    split = Split(["0.png"], torch.full((1, 64, 64, 3), 0.5), cameras, False)
    hits = trace_photographs(uv_mesh, split, cameras, shadows=True)
    light = cameras.flash_positions[0].double().numpy()
    points = hits.points.double().numpy()
    # The segment point -> light against the small sphere (its chord, not its mesh).
    centre, radius = np.array([0.0, 0.0, 0.8]), 0.15
    to_light = light - points
    length = np.linalg.norm(to_light, axis=-1)
    direction = to_light / length[:, None]
    b = ((points - centre) * direction).sum(-1)
    c = ((points - centre) ** 2).sum(-1) - radius**2
    root = np.sqrt(np.maximum(b * b - c, 0.0))
    blocked = (b * b - c > 0) & (-b + root > 1e-3) & (-b - root < length)
    on_big = np.linalg.norm(points, axis=-1) < 0.51
    lit = hits.visibility[:, 0].numpy() > 0.5
    print(f"\nshadowed {np.mean(~lit[on_big]):.3f} of the big sphere's pixels")
    assert 0.02 < np.mean(~lit[on_big]) < 0.5
    assert np.mean(lit[on_big] == ~blocked[on_big]) > 0.98
