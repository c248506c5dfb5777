"""Stage-2 material fields: hand-off from stage 1, output ranges, light initialisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ironrender.fields.materials import (
    MaterialConfig,
    MaterialFields,
    least_squares_light,
    paper_material_config,
    reference_light_init,
)
from ironrender.fields.radiance import RadianceConfig, RadianceField

FEATURES = 5


def random_inputs(n: int = 64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    points = torch.rand(n, 3, generator=g) * 2 - 1
    normals = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    features = torch.randn(n, FEATURES, generator=g)
    return points, normals, features


def make_radiance(seed: int = 0) -> RadianceField:
    torch.manual_seed(seed)
    return RadianceField(RadianceConfig(hidden_dim=16), FEATURES)


def test_diffuse_is_stage1_radiance_with_view_minus_normal():
    radiance = make_radiance()
    materials = MaterialFields.from_stage1(radiance, MaterialConfig())
    points, normals, features = random_inputs()
    expected = radiance(points, normals, -normals, features)
    got = materials(points, normals, features).diffuse_albedo
    torch.testing.assert_close(got, expected)
    # a copy, not shared weights: training materials must not change stage 1
    with torch.no_grad():
        for p in materials.diffuse.parameters():
            p.add_(0.1)
    torch.testing.assert_close(radiance(points, normals, -normals, features), expected)
    assert not torch.allclose(materials(points, normals, features).diffuse_albedo, expected)


def test_bounded_mapping_starts_at_init_and_stays_in_range():
    config = MaterialConfig(specular_init=0.04, roughness_init=0.3)
    materials = MaterialFields.from_stage1(make_radiance(), config)
    points, normals, features = random_inputs()
    sample = materials(points, normals, features)
    torch.testing.assert_close(sample.specular_albedo, torch.full((64, 3), 0.04))
    torch.testing.assert_close(sample.roughness, torch.full((64, 1), 0.3))
    with torch.no_grad():  # huge weights: the outputs must still respect the bounds
        for head in (materials.specular, materials.roughness):
            for p in head.parameters():
                p.normal_(0.0, 50.0)
    sample = materials(points, normals, features * 100)
    assert (sample.specular_albedo >= 0).all() and (sample.specular_albedo <= 1).all()
    assert (sample.roughness >= config.roughness_min).all()
    assert (sample.roughness <= config.roughness_max).all()


def test_reference_mapping_ranges():
    torch.manual_seed(3)
    materials = MaterialFields(make_radiance(), paper_material_config(), FEATURES)
    points, normals, features = random_inputs(256)
    sample = materials(points, normals, features)
    assert (sample.specular_albedo >= 0).all()
    assert (sample.roughness >= 0.01 - 1e-7).all()


@pytest.mark.parametrize("metal", [False, True])
def test_specular_grey_or_rgb(metal):
    torch.manual_seed(1)
    materials = MaterialFields(make_radiance(), MaterialConfig(metal=metal), FEATURES)
    with torch.no_grad():
        materials.specular.mlp.layers[-1].weight.normal_()
    sample = materials(*random_inputs())
    rho_s = sample.specular_albedo
    spread = (rho_s.max(-1).values - rho_s.min(-1).values).max()
    assert (spread > 1e-3) if metal else (spread == 0)


def test_gradients_reach_sdf_features_and_every_head():
    materials = MaterialFields.from_stage1(make_radiance(), MaterialConfig())
    points, normals, features = random_inputs()
    features.requires_grad_()
    sample = materials(points, normals, features)
    loss = (
        sample.diffuse_albedo.sum()
        + sample.specular_albedo.sum()
        + sample.roughness.sum()
        + sample.light_intensity
    )
    loss.backward()
    assert features.grad.abs().sum() > 0
    assert materials.log_light.grad is not None
    for head in (materials.specular, materials.roughness):
        assert head.mlp.layers[-1].bias.grad.abs().sum() > 0
    names = {name for name, _ in materials.named_parameters()}
    assert "log_light" in names
    assert all(p is not materials.log_light for p in materials.material_parameters())
    assert len(materials.material_parameters()) == len(names) - 1


def test_light_intensity_roundtrip_and_positive():
    materials = MaterialFields(make_radiance(), MaterialConfig(), FEATURES, light_intensity=12.5)
    assert materials.light_intensity.item() == pytest.approx(12.5)
    materials.set_light_intensity(3.0)
    assert materials.light_intensity.item() == pytest.approx(3.0)
    with pytest.raises(ValueError):
        materials.set_light_intensity(0.0)


def test_reference_light_init():
    centers = torch.tensor([[0.0, 0.0, 2.0], [3.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert reference_light_init(centers, 8.0) == pytest.approx(8.0 * 4.0)


def test_least_squares_light_matches_numpy(rng):
    unit = rng.random(200)
    target = 7.5 * unit + 0.05 * rng.standard_normal(200)
    weights = (rng.random(200) > 0.3).astype(np.float64)
    # numpy: weighted least squares through the origin, sqrt(w) scaling of the rows
    sw = np.sqrt(weights)
    expected = np.linalg.lstsq((sw * unit)[:, None], sw * target, rcond=None)[0][0]
    got = least_squares_light(
        torch.from_numpy(unit), torch.from_numpy(target), torch.from_numpy(weights)
    )
    assert got == pytest.approx(expected, rel=1e-9)
    assert least_squares_light(
        torch.from_numpy(unit), torch.from_numpy(7.5 * unit)
    ) == pytest.approx(7.5)
    assert math.isfinite(got)
