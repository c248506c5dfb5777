"""Budgets: the capture rule's counts (computed by hand from the rule as written), overrides
winning over it, and time-budgeted stages that train exactly as an unbudgeted run with the
planned step count (the timing probe leaves no trace) and keep their plan when resumed."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil

import pytest
import torch

from ironrender.budget import (
    BudgetConfig,
    CaptureSize,
    capture_size,
    stage_seconds,
)
from ironrender.data.camera_file import CAMERA_FILE, cameras_to_dict
from ironrender.data.cameras import Cameras, intrinsics_from_fov, look_at
from ironrender.errors import IronError
from ironrender.run_config import ConfigRequest, resolve_config, run_preset
from ironrender.training.time_budget import (
    MIN_STAGE1_STEPS,
    read_plan,
    scale_stage1_schedule,
    steps_for,
)


def capture(footprint: float) -> CaptureSize:
    return CaptureSize(views=100, width=512, height=512, footprint=footprint, test_pixels=10**6)


def test_footprint_is_the_unit_sphere_in_pixels(tmp_path):
    """2 f / d for cameras at distance d looking at the centre: with a 40-degree field of view
    across W pixels, f = W / (2 tan 20deg)."""
    distances = torch.tensor([2.0, 3.0, 4.0])
    eye = torch.stack([torch.zeros(3), torch.zeros(3), distances], -1)
    w2c = look_at(eye, torch.zeros(3), torch.tensor([0.0, 1.0, 0.0]))
    K = intrinsics_from_fov(200, 100, 40.0).repeat(3, 1, 1)
    cameras = Cameras(K, w2c, torch.tensor([[200, 100]] * 3))
    (tmp_path / "train").mkdir()
    entries = cameras_to_dict(["0.png", "1.png", "2.png"], cameras)
    (tmp_path / "train" / CAMERA_FILE).write_text(json.dumps(entries))
    size = capture_size(tmp_path)
    focal = 200 / (2 * math.tan(math.radians(20)))
    assert size.footprint == pytest.approx(2 * focal / 3.0, rel=1e-5)  # the median distance
    assert (size.views, size.width, size.height, size.test_pixels) == (3, 200, 100, 0)


def test_default_scene_keeps_the_preset():
    """At the default scene's footprint (130 px) the rule changes no count."""
    preset = run_preset("fast")
    scaled = resolve_config("fast", capture=capture(130.0))
    assert dataclasses.replace(scaled, budget=preset.budget) == preset
    assert scaled.budget.scale == 1.0 and scaled.budget.footprint == 130.0


@pytest.mark.parametrize(
    ("footprint", "grid", "steps", "iterations", "texture"),
    [
        # R = round16(D / 1.35) within [96, 192]; s = R / 96; stage 1 x s, stage 2 x sqrt(s);
        # textures: the power of two >= 2 D, at least the preset's 1024.
        (200.0, 144, 2250, round(1000 * math.sqrt(1.5)), 1024),
        (260.0, 192, 3000, round(1000 * math.sqrt(2)), 1024),
        (520.0, 192, 3000, round(1000 * math.sqrt(2)), 2048),
        (2100.0, 192, 3000, round(1000 * math.sqrt(2)), 4096),
        (60.0, 96, 1500, 1000, 1024),  # small captures keep the preset's floor
    ],
)
def test_rule_scales_the_counts(footprint, grid, steps, iterations, texture):
    config = resolve_config("fast", capture=capture(footprint))
    s = grid / 96
    assert config.stage1.sdf.grid.max_resolution == grid
    assert config.stage1.train.steps == steps
    assert config.stage1.train.anneal_end == round(500 * s)
    assert config.stage1.train.grid_ramp_steps == round(800 * s)
    assert config.stage1.train.proposal_cache_resolution == min(round(48 * s), 96)
    assert config.stage2.steps == iterations
    assert config.stage2.lr_sdf == pytest.approx(1e-4 / s**3)
    assert config.stage2.materials.grid.max_resolution == round(64 * s)
    assert config.export.resolution == max(192, min(2 * grid, 384))
    assert config.export.max_faces == round(20_000 * s * s)
    assert config.export.texture_size == texture
    assert config.budget.scale == pytest.approx(s)


def test_overrides_and_files_win_over_the_rule(tmp_path):
    big = capture(520.0)
    config = resolve_config("fast", None, ["stage1.train.steps=77"], capture=big)
    assert config.stage1.train.steps == 77 and config.stage1.sdf.grid.max_resolution == 192
    config = resolve_config("fast", None, ["budget.max_grid_resolution=256"], capture=big)
    assert config.stage1.sdf.grid.max_resolution == 256  # round16(520 / 1.35) = 384 > 256
    file = tmp_path / "c.json"
    file.write_text(json.dumps({"export": {"texture_size": 512}}))
    assert resolve_config("fast", file, capture=big).export.texture_size == 512
    off = resolve_config("fast", None, ["budget.rule=preset"], capture=big)
    assert dataclasses.replace(off, budget=run_preset("fast").budget) == run_preset("fast")


def test_paper_preset_ignores_the_capture():
    paper = resolve_config("paper", capture=capture(900.0))
    assert paper == run_preset("paper")


def test_budget_options_are_checked():
    with pytest.raises(IronError, match="budget.rule: expected one of"):
        resolve_config("fast", None, ["budget.rule=fastest"])
    with pytest.raises(IronError, match="minutes must be a positive"):
        resolve_config("fast", minutes=-3)
    assert ConfigRequest(minutes=5).resolve().budget.minutes == 5.0


def test_time_split_between_stages():
    budget = BudgetConfig(minutes=10, stage1_share=0.4)
    both = ("stage1", "stage2", "export", "eval")
    assert stage_seconds(budget, "stage1", 0.0, 100.0, both) == pytest.approx(0.4 * 500)
    assert stage_seconds(budget, "stage2", 230.0, 100.0, both) == pytest.approx(270.0)
    assert stage_seconds(budget, "stage1", 0.0, 0.0, ("stage1",)) == pytest.approx(600.0)
    assert stage_seconds(budget, "stage2", 700.0, 0.0, both) == 0.0  # over: the minimum steps
    assert steps_for(0.0, 0.1, MIN_STAGE1_STEPS) == MIN_STAGE1_STEPS  # a spent budget still plans
    assert steps_for(30.0, 0.1, 1) == 300


def test_schedule_scales_in_proportion():
    config = scale_stage1_schedule(run_preset("fast").stage1, 0.2)
    train = config.train
    assert (train.steps, train.warmup_steps, train.anneal_end, train.grid_ramp_steps) == (
        300,
        20,
        100,
        160,
    )


def _weights(module: torch.nn.Module) -> dict:
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_timed_stage1_trains_as_its_plan_says(tmp_path, monkeypatch):
    """A stage 1 given seconds trains exactly as one given the planned steps outright (the probe
    runs on copies); a resumed run keeps the plan even when offered other seconds."""
    from ironrender.training import stage1

    monkeypatch.setattr(stage1, "MIN_STAGE1_STEPS", 20)  # keeps the test short
    from ironrender.data.dataset import save_split
    from ironrender.training.stage1 import load_stage1, train_stage1
    from tests.test_stage1 import render_sphere_scene, small_config, sphere_cameras

    data = tmp_path / "data"
    cameras = sphere_cameras(n=8, size=24)
    save_split(data, "train", [f"{i}.png" for i in range(8)], render_sphere_scene(cameras), cameras)
    config = small_config(steps=1000)
    config = dataclasses.replace(config, log=dataclasses.replace(config.log, mesh_resolution=32))

    timed = train_stage1(data, tmp_path / "timed", config, "cpu", seconds=0.5)
    plan = read_plan(tmp_path / "timed" / "stage1")
    assert plan is not None and plan.steps == timed.steps >= 20
    assert plan.steps == max(int(0.5 / plan.step_seconds), 20)
    assert plan.actual_seconds > 0

    planned = scale_stage1_schedule(config, plan.steps / config.train.steps)
    plain = train_stage1(data, tmp_path / "plain", planned, "cpu")
    assert plain.steps == timed.steps
    a, b = _weights(load_stage1(tmp_path / "timed")), _weights(load_stage1(tmp_path / "plain"))
    # bit-equal on purpose: the same training, run twice in this process
    assert all(torch.equal(a[k], b[k]) for k in a)

    # A budget already spent (0 s left) still plans: the minimum, not the preset's count.
    spent = train_stage1(data, tmp_path / "spent", config, "cpu", seconds=0.0)
    assert spent.steps == 20

    # Killed half-way and resumed with a different budget: the first plan is kept, and the
    # plan's actual time adds both calls' training loops.
    partial = tmp_path / "partial"
    first = train_stage1(data, partial, config, "cpu", seconds=0.5, stop_after=10)
    first_plan = read_plan(partial / "stage1")
    assert first.steps == 10
    again = train_stage1(data, partial, config, "cpu", resume=True, seconds=60.0)
    assert again.steps == first_plan.steps  # not 60 s worth of steps
    assert read_plan(partial / "stage1").actual_seconds > first_plan.actual_seconds


@pytest.mark.slow
def test_run_with_minutes_plans_both_stages(tmp_path, monkeypatch):
    """``--minutes`` end to end: each stage writes its plan, the summary reports planned
    against actual time, and stage 2 trained exactly as an unbudgeted stage 2 with the planned
    iteration count (its probe, too, leaves no trace)."""
    from ironrender.data.synth import SynthConfig, synthesize
    from ironrender.pipeline import format_summary, run_pipeline
    from ironrender.training import stage1, stage2
    from tests.test_pipeline import TINY

    monkeypatch.setattr(stage1, "MIN_STAGE1_STEPS", 20)
    monkeypatch.setattr(stage2, "MIN_STAGE2_STEPS", 4)
    data = synthesize(
        SynthConfig(views=8, test_views=2, resolution=32, spp=4, relight_spp=4),
        tmp_path / "data",
        progress=False,
    )
    run = tmp_path / "run"
    summary = run_pipeline(data, run, ConfigRequest(overrides=tuple(TINY), minutes=0.4), "cpu")
    saved = json.loads((run / "config.json").read_text())
    assert saved["budget"]["minutes"] == 0.4
    plans = [read_plan(run / stage) for stage in ("stage1", "stage2")]
    assert all(plan is not None and plan.steps > 0 for plan in plans)
    assert "time budget 24 s" in format_summary(summary)
    assert "stage2 planned" in format_summary(summary)

    from ironrender.config import from_dict
    from ironrender.run_config import RunConfig
    from ironrender.training.stage2 import load_stage2, train_stage2

    config = from_dict(RunConfig, saved)
    other = tmp_path / "other"
    shutil.copytree(run / "stage1", other / "stage1")
    planned = dataclasses.replace(config.stage2, steps=plans[1].steps)
    train_stage2(data, other, planned, "cpu", progress=False)
    a = _weights(load_stage2(run, "cpu")[0])
    b = _weights(load_stage2(other, "cpu")[0])
    # bit-equal on purpose: the same stage 2 from the same stage 1, run twice in this process
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_minutes_option_is_checked_and_explained(tmp_path):
    import subprocess
    import sys

    command = [sys.executable, "-m", "ironrender", "run", str(tmp_path), str(tmp_path / "r")]
    result = subprocess.run([*command, "--minutes", "0"], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        line for line in result.stderr.strip().splitlines() if "--minutes must be" in line
    ]
    helped = subprocess.run([*command[:4], "--help"], capture_output=True, text=True)
    assert "--minutes N" in helped.stdout and "capture rule" in helped.stdout
