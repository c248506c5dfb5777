"""Stage-1 training on a tiny scene rendered here in closed form (an independent renderer):
the loss falls, the mesh is closed and lies on the true sphere, and resume is exact."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import trimesh

from ironrender.data.cameras import Cameras, intrinsics_from_fov, look_at
from ironrender.data.dataset import save_split
from ironrender.errors import IronError
from ironrender.fields.encodings import GridConfig
from ironrender.training.stage1 import (
    LogConfig,
    fast_stage1_config,
    load_stage1,
    train_stage1,
)
from ironrender.training.surface_check import read_surface_check

CENTER = torch.tensor([0.1, 0.05, -0.05])
RADIUS = 0.35
ALBEDO = torch.tensor([0.8, 0.6, 0.4])


def render_sphere_scene(cameras) -> np.ndarray:
    """Lambertian sphere under a flash at the camera: ``albedo * cos(theta)``, black elsewhere."""
    images = []
    for i in range(len(cameras)):
        rays = cameras.image_rays(i)
        oc = rays.origins - CENTER
        b = (oc * rays.directions).sum(-1)
        disc = b**2 - ((oc**2).sum(-1) - RADIUS**2)
        t = -b - torch.sqrt(disc.clamp(min=0))
        normal = torch.nn.functional.normalize(oc + rays.directions * t[..., None], dim=-1)
        cos = (-rays.directions * normal).sum(-1).clamp(min=0)
        images.append(torch.where((disc > 0)[..., None], ALBEDO * cos[..., None], 0.0))
    return torch.stack(images).numpy()


def sphere_cameras(n: int = 16, size: int = 32, distance: float = 2.5) -> Cameras:
    """``n`` cameras spread evenly over a sphere (Fibonacci lattice), so every side is seen."""
    i = torch.arange(n, dtype=torch.float32) + 0.5
    y = 1 - 2 * i / n
    phi = i * math.pi * (3 - math.sqrt(5))
    ring = torch.sqrt(1 - y**2)
    eye = distance * torch.stack([ring * torch.cos(phi), y, ring * torch.sin(phi)], -1)
    w2c = look_at(eye, torch.zeros(3), torch.tensor([0.0, 1.0, 0.0]))
    K = intrinsics_from_fov(size, size, 40.0).repeat(n, 1, 1)
    return Cameras(K, w2c, torch.tensor([[size, size]] * n))


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("sphere_scene")
    cameras = sphere_cameras()
    images = render_sphere_scene(cameras)
    save_split(root, "train", [f"{i}.png" for i in range(len(cameras))], images, cameras)
    return root


def small_config(steps: int):
    config = fast_stage1_config()
    return dataclasses.replace(
        config,
        sdf=dataclasses.replace(
            config.sdf, grid=GridConfig(levels=4, base_resolution=8, max_resolution=32)
        ),
        train=dataclasses.replace(
            config.train,
            steps=steps,
            batch_rays=256,
            warmup_steps=20,
            anneal_end=100,
            grid_initial_levels=2,
            grid_ramp_steps=100,
            proposal_cache_resolution=32,
            min_inv_s=0.0,  # NeuS's own sharpness: the floor has its own test
        ),
        log=LogConfig(
            progress=False,
            tensorboard=False,
            checkpoint_every=5,
            preview_every=0,
            mesh_resolution=64,
        ),
    )


def test_training_recovers_the_sphere(scene, tmp_path):
    config = small_config(steps=150)
    config = dataclasses.replace(config, log=dataclasses.replace(config.log, checkpoint_every=100))
    result = train_stage1(scene, tmp_path / "run", config, "cpu")
    assert np.mean(result.losses[-20:]) < 0.5 * np.mean(result.losses[:20])
    mesh = trimesh.load(result.mesh)
    assert mesh.is_watertight
    distance = np.abs(np.linalg.norm(mesh.vertices - CENTER.numpy(), axis=-1) - RADIUS)
    # 32x32 views: one pixel spans about 0.06 at the object.
    assert np.median(distance) < 0.02 and distance.mean() < 0.04, distance.mean()
    assert mesh.volume == pytest.approx(4 / 3 * math.pi * RADIUS**3, rel=0.15)
    assert list((tmp_path / "run" / "stage1" / "previews").glob("*.png"))
    check = read_surface_check(tmp_path / "run" / "stage1")  # the fog alarm stays quiet
    assert check.formed and check.opaque_rays > 0.9, check.line()
    model = load_stage1(tmp_path / "run")
    with torch.no_grad():
        on_surface = model.sdf.sdf(CENTER[None] + torch.tensor([[RADIUS, 0.0, 0.0]]))
    assert abs(on_surface.item()) < 0.03


def test_resume_reproduces_the_uninterrupted_run(scene, tmp_path):
    config = small_config(steps=12)
    config = dataclasses.replace(
        config, train=dataclasses.replace(config.train, proposal_refresh_every=3)
    )
    train_stage1(scene, tmp_path / "straight", config, "cpu")
    train_stage1(scene, tmp_path / "killed", config, "cpu", stop_after=7)  # checkpoint at 7
    with pytest.raises(IronError, match="--resume"):
        train_stage1(scene, tmp_path / "killed", config, "cpu")
    train_stage1(scene, tmp_path / "killed", config, "cpu", resume=True)
    straight = torch.load(tmp_path / "straight/stage1/checkpoint.pt", weights_only=False)
    resumed = torch.load(tmp_path / "killed/stage1/checkpoint.pt", weights_only=False)
    assert straight["step"] == resumed["step"] == 12
    for name, value in straight["model"].items():
        torch.testing.assert_close(resumed["model"][name], value, atol=1e-6, rtol=0)


def test_a_floored_run_lengthens_itself_and_resumes_as_it_would_have_gone_on(scene, tmp_path):
    """A floor far above what the sphere learns in 6 steps holds inv_s at the anneal's end, so
    the run lengthens itself by its remaining steps (12 -> 18, the schedule after step 6
    stretched); killed before or after that decision, it resumes to the same 18-step result."""
    config = small_config(steps=12)
    train = dataclasses.replace(
        config.train, anneal_end=6, min_inv_s=300.0, min_inv_s_start=100.0, min_inv_s_from=0.0
    )
    config = dataclasses.replace(config, train=train)
    straight = train_stage1(scene, tmp_path / "straight", config, "cpu")
    assert straight.steps == 18
    for name, stop in (("before", 4), ("after", 9)):
        train_stage1(scene, tmp_path / name, config, "cpu", stop_after=stop)
        assert train_stage1(scene, tmp_path / name, config, "cpu", resume=True).steps == 18
    weights = {
        name: torch.load(tmp_path / name / "stage1/checkpoint.pt", weights_only=False)
        for name in ("straight", "before", "after")
    }
    assert weights["straight"]["config"]["train"]["extended_from"] == 12
    for name in ("before", "after"):
        for key, value in weights["straight"]["model"].items():
            torch.testing.assert_close(weights[name]["model"][key], value, atol=1e-6, rtol=0)
    # the floor ends at its planned value on the last step, as it would have without the stretch
    assert weights["straight"]["model"]["variance.floor"].item() == pytest.approx(300.0)
    # without the floor nothing lengthens
    unfloored = dataclasses.replace(config, train=dataclasses.replace(train, min_inv_s=0.0))
    assert train_stage1(scene, tmp_path / "plain", unfloored, "cpu").steps == 12


def test_nan_loss_stops_with_a_clear_message(scene, tmp_path):
    config = small_config(steps=5)
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, lr=float("nan")))
    with pytest.raises(IronError, match="loss became nan"):
        train_stage1(scene, tmp_path / "nan", config, "cpu")


def test_schedules_follow_warmup_cosine_and_anneal():
    from ironrender.training.schedules import (
        active_levels,
        cos_anneal_ratio,
        learning_rate_factor,
        sharpness_floor,
        stretched_step,
    )

    assert learning_rate_factor(0, 10, 110, 0.05) == pytest.approx(0.1)
    assert learning_rate_factor(10, 10, 110, 0.05) == pytest.approx(1.0)
    assert learning_rate_factor(60, 10, 110, 0.05) == pytest.approx(0.5 * 0.95 + 0.05)
    assert learning_rate_factor(110, 10, 110, 0.05) == pytest.approx(0.05)
    assert cos_anneal_ratio(25, 100) == 0.25 and cos_anneal_ratio(500, 100) == 1.0
    assert active_levels(0, 4, 8, 100) == 4 and active_levels(100, 4, 8, 100) == 8
    # the sharpness floor: none before its first step, then 20 -> 200 geometrically to the last
    assert sharpness_floor(99, 100, 301, 20.0, 200.0) == 0.0
    assert sharpness_floor(100, 100, 301, 20.0, 200.0) == pytest.approx(20.0)
    assert sharpness_floor(200, 100, 301, 20.0, 200.0) == pytest.approx(math.sqrt(20.0 * 200.0))
    assert sharpness_floor(300, 100, 301, 20.0, 200.0) == pytest.approx(200.0)
    assert sharpness_floor(300, 100, 301, 20.0, 0.0) == 0.0  # off
    # a schedule planned for 300 steps, stretched after step 100 over 500: the same up to the
    # pivot, then half as fast, ending where the plan ended; not stretched: the step itself
    assert [stretched_step(s, 100, 300, 500) for s in (50, 100, 300, 500)] == [50, 100, 200, 300]
    assert stretched_step(400, 100, 300, 300) == 400
    train = fast_stage1_config().train
    with pytest.raises(IronError, match="min_inv_s_from"):
        dataclasses.replace(train, min_inv_s_from=1.5)
    with pytest.raises(IronError, match="min_inv_s_start"):
        dataclasses.replace(train, min_inv_s_start=500.0)


def test_pixel_sampler_finds_the_foreground_chunk_by_chunk(monkeypatch):
    """The foreground is every pixel whose brightest channel exceeds the threshold, in order,
    whatever the chunking (chunks of 7 pixels here, not dividing the count)."""
    from ironrender.training import pixel_batches

    targets = torch.rand(3, 5, 11, 3, generator=torch.Generator().manual_seed(0))
    expected = torch.nonzero(targets.reshape(-1, 3).amax(-1) > 0.8).squeeze(-1)
    monkeypatch.setattr(pixel_batches, "SAMPLER_CHUNK", 7)
    sampler = pixel_batches.PixelSampler(
        pixel_batches.PixelTargets(targets), fraction=1.0, threshold=0.8
    )
    assert sampler.foreground.dtype == torch.int32
    assert torch.equal(sampler.foreground.long(), expected)
    picks = sampler.sample(64, torch.Generator().manual_seed(1))
    assert picks.dtype == torch.int64 and bool(torch.isin(picks, expected).all())

    # 8-bit targets: the threshold applies to the decoded values (v / 255 here)
    codes = (targets * 255).round().to(torch.uint8)
    table = torch.arange(256, dtype=torch.float32) / 255
    expected = torch.nonzero(codes.reshape(-1, 3).amax(-1).float() / 255 > 0.8).squeeze(-1)
    stored = pixel_batches.PixelTargets(codes, table)
    sampler = pixel_batches.PixelSampler(stored, fraction=1.0, threshold=0.8)
    assert torch.equal(sampler.foreground.long(), expected)
