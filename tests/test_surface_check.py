"""The fog alarm (ironrender.training.surface_check): its concentration measure against the
logistic's closed form, and the alarm on a stage 1 that formed a surface and on one that did
not, through the log, the run summary and report.html."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import trimesh

from ironrender.budget import footprint_pixels
from ironrender.data.dataset import load_split
from ironrender.evaluation.report import build_report
from ironrender.fields.base import SDFField, SDFSample
from ironrender.pipeline import RunSummary, format_summary
from ironrender.rendering.volume import composite_weights, neus_alpha
from ironrender.training.pixel_batches import PixelSampler, PixelTargets
from ironrender.training.stage1 import Stage1Model, train_stage1
from ironrender.training.surface_check import (
    BAND,
    SURFACE_FILE,
    check_surface,
    judge,
    read_surface_check,
    required_inv_s,
    weight_concentration,
)
from tests.test_stage1 import (  # noqa: F401  (scene: the fixture)
    CENTER,
    RADIUS,
    scene,
    small_config,
    sphere_cameras,
)


def _ray_weights(inv_s: float, samples: int = 1600) -> tuple[torch.Tensor, torch.Tensor]:
    """NeuS weights along one ray crossing a plane head-on at depth 2 (S = 2 - t), long enough
    on both sides for the logistic's tails (sigmoid(-2 s) < 5e-5)."""
    t = torch.linspace(0.0, 4.0, samples + 1, dtype=torch.float64)
    dists = t[1:] - t[:-1]
    mid = (t[1:] + t[:-1]) / 2
    sdf = 2.0 - mid
    alpha = neus_alpha(sdf[None], -torch.ones(1, samples, dtype=torch.float64), dists[None], inv_s)
    return composite_weights(alpha), mid[None]


@pytest.mark.parametrize("inv_s", [5.0, 20.0, 50.0, 300.0])
def test_concentration_is_the_logistic_mass_within_the_band(inv_s):
    """Crossing a plane head-on, NeuS's weight is the logistic density of sharpness s in depth,
    so the share within +-b of the median is sigmoid(s b) - sigmoid(-s b) = tanh(s b / 2)."""
    weights, depths = _ray_weights(inv_s)
    share, opacity = weight_concentration(weights, depths)
    assert opacity.item() == pytest.approx(1.0, abs=1e-3)
    # to within the sample spacing: the median is a section, not a point
    assert share.item() == pytest.approx(math.tanh(inv_s * BAND / 2), abs=0.02)


def test_fog_spreads_the_weight():
    """A uniform fog (constant density along the ray) puts little weight near its median."""
    samples = 400
    depths = torch.linspace(0.0, 2.0, samples)[None]
    alpha = torch.full((1, samples), 1 - math.exp(-2.0 * 2.0 / samples))  # optical depth 4
    share, _ = weight_concentration(composite_weights(alpha), depths)
    assert share.item() < 0.3


def test_verdict_needs_both_sharpness_and_concentration():
    assert judge(280.0, 192.0, 0.97, 0.9).formed  # the skull
    assert not judge(13.7, 192.0, 0.97, 0.9).formed  # the fogged gilt capture's inv_s
    assert not judge(39.0, 96.0, 0.72, 0.9).formed  # gilding on black cloth: fuzzy normals
    assert not judge(280.0, 192.0, 0.3, 0.9).formed  # sharp, but weight spread over layers
    assert "NO SURFACE" in judge(13.7, 96.0, 0.2, 0.9).line()
    assert not judge(194.0, 96.0, 1.0, 1.0, at_sphere=0.9).formed  # a shell (floored from step 0)


class _ExactSDF(SDFField):
    """A closed-form SDF standing in for a trained one: the scene's sphere, or a thin shell
    just inside the bounding sphere (what a floored field closed around the gilded capture)."""

    grid = None

    def __init__(self, shell: bool, feature_dim: int):
        super().__init__()
        self.shell, self.feature_dim = shell, feature_dim

    def forward(self, points):
        radius = points.norm(dim=-1)
        if self.shell:  # |(|x| - 0.97)| - 0.02: surfaces at |x| = 0.99 and 0.95
            sdf = (radius - 0.97).abs() - 0.02
        else:
            sdf = (points - CENTER).norm(dim=-1) - RADIUS
        return SDFSample(sdf, points.new_zeros(*points.shape[:-1], self.feature_dim))


@pytest.mark.parametrize("shell", [False, True])
def test_a_sharp_shell_at_the_bounding_sphere_is_no_surface(scene, shell):  # noqa: F811
    """Both fields are sharp (inv_s 300) and concentrated; only the shell stops the object's
    rays where they enter the bounding sphere, and only it is called no surface."""
    config = small_config(steps=1)
    config = dataclasses.replace(
        config, volume=dataclasses.replace(config.volume, background="black")
    )
    model = Stage1Model(config)
    model.sdf = _ExactSDF(shell, model.sdf.feature_dim)
    model.variance.variance.data.fill_(math.log(300.0) / model.variance.scale)
    split = load_split(scene, "train")
    sampler = PixelSampler(PixelTargets(split.images), 1.0, 0.02)
    check = check_surface(model, None, config.volume, split.cameras, sampler, rays=1024)
    assert check.inv_s == pytest.approx(300.0, rel=1e-4) and check.concentration > 0.9
    assert check.learnt_inv_s == pytest.approx(300.0, rel=1e-4) and not check.floored
    if shell:
        assert check.at_sphere > 0.95 and check.shell and not check.formed
        assert "shell at the bounding sphere" in check.line()
    else:
        assert check.at_sphere == 0.0 and check.formed, check.line()


def test_required_sharpness_is_a_band_of_two_pixels_or_cells():
    """s >= 2 min(D, R) / 2: the logistic's 96 % band 4 / s spans two pixels at the object
    (D pixels across the unit sphere's diameter 2) or two cells of the finest grid."""
    d = 2 * (16 / math.tan(math.radians(20))) / 2.5  # 32 px, 40 degrees, 2.5 units away
    assert footprint_pixels(sphere_cameras()) == pytest.approx(d, rel=1e-4)
    assert 4 / required_inv_s(d, None) == pytest.approx(2 * (2 / d))  # two pixels
    assert 4 / required_inv_s(d, 16) == pytest.approx(2 * (2 / 16))  # two cells
    assert required_inv_s(970.0, 192) == 192.0  # the skull: its grid is the limit


def test_alarm_loud_on_fog(scene, tmp_path, capsys):  # noqa: F811
    """A stage 1 stopped after a few steps (inv_s still at its start, the sphere's weight
    smeared) is called fog in the log, the run summary and report.html. (The quiet case, a
    trained sphere: tests/test_stage1.py::test_training_recovers_the_sphere.)"""
    foggy = tmp_path / "foggy"
    train_stage1(scene, foggy, small_config(steps=3), "cpu")
    out = capsys.readouterr().out
    check = read_surface_check(foggy / "stage1")
    assert not check.formed and check.inv_s < 30
    assert check.required_inv_s == pytest.approx(min(footprint_pixels(sphere_cameras()), 32))
    assert "NO SURFACE" in out and "WARNING: stage 1 did not form a surface" in out
    assert json.loads((foggy / "stage1" / SURFACE_FILE).read_text())["formed"] is False
    summary = format_summary(RunSummary(foggy, {"stage1": 1.0}, {}, None, 0.0))
    assert "WARNING: stage 1 did not form a surface" in summary
    assert "class=alarm" in build_report(foggy).read_text()


def test_sharpness_floor_makes_the_surface_and_keeps_it_right(scene, tmp_path, capsys):  # noqa: F811
    """With the floor (train.min_inv_s) the run ends at inv_s = the floor (the sphere alone
    learns about 42 in 150 steps), the weight is concentrated at the surface, the alarm stays
    quiet, and the mesh still lies on the true sphere (the floor sharpens, it does not move
    the surface)."""
    config = small_config(steps=150)
    train = dataclasses.replace(config.train, min_inv_s=150.0)
    config = dataclasses.replace(
        config, train=train, log=dataclasses.replace(config.log, checkpoint_every=100)
    )
    result = train_stage1(scene, tmp_path / "floored", config, "cpu")
    out = capsys.readouterr().out
    assert "WARNING" not in out
    check = read_surface_check(tmp_path / "floored" / "stage1")
    assert check.formed and check.inv_s == pytest.approx(150.0, rel=1e-4), check.line()
    # the floor did the work (the sphere learns about 42 alone), and the log says so
    assert check.floored and 20 < check.learnt_inv_s < 100, check.learnt_inv_s
    assert "note: the sharpness floor, not the photographs, made this surface sharp" in out
    # the floor held inv_s at the anneal's end (step 100), so stage 1 lengthened itself
    assert result.steps == 200 and "150 -> 200 steps" in out
    assert check.concentration > math.tanh(150.0 * BAND / 2) - 0.1
    assert "class=alarm" not in build_report(tmp_path / "floored").read_text()
    mesh = trimesh.load(result.mesh)
    distance = np.abs(np.linalg.norm(mesh.vertices - CENTER.numpy(), axis=-1) - RADIUS)
    assert np.median(distance) < 0.02 and distance.mean() < 0.04, distance.mean()
