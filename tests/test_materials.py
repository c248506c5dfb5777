"""Stage-2 material fields: hand-off from stage 1, output ranges, light initialisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ironrender.fields.ambient import AmbientLight
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


def test_shader_matches_hand_written_ggx():
    """Constant materials at known points: the shader's radiance equals the formula in numpy."""
    from ironrender.rendering.material_shader import MaterialShader
    from ironrender.rendering.surface import SurfaceHit

    radiance = make_radiance()
    with torch.no_grad():  # constant diffuse albedo sigmoid(b) = (0.6, 0.3, 0.2)
        last = radiance.mlp.layers[-1]
        last.weight.zero_()
        last.bias.copy_(torch.logit(torch.tensor([0.6, 0.3, 0.2])))
    config = MaterialConfig(specular_init=0.05, roughness_init=0.25)
    materials = MaterialFields(radiance, config, FEATURES, light_intensity=7.0)
    points, normals, features = random_inputs(32, seed=4)
    eye = torch.tensor([0.3, 2.0, 1.5])
    view = torch.nn.functional.normalize(eye - points, dim=-1)
    normals = torch.nn.functional.normalize(view + 0.5 * normals, dim=-1)  # front-facing
    hit = SurfaceHit(
        points=points,
        normals=normals,
        gradients=normals,
        sdf=torch.zeros(32),
        features=features,
        view_dirs=view,
        t=torch.ones(32),
        mask=torch.ones(32, dtype=torch.bool),
    )
    result = MaterialShader(materials)(hit, eye.expand(32, 3), True)

    p, n, o = points.double().numpy(), normals.double().numpy(), eye.double().numpy()
    d2 = ((o - p) ** 2).sum(-1)
    c = (n * (o - p)).sum(-1) / np.sqrt(d2)
    a2 = 0.25**2
    D = a2 / (np.pi * (c**2 * (a2 - 1) + 1) ** 2)
    G1 = 2 / (1 + np.sqrt(1 + a2 * (1 - c**2) / c**2))
    f_r = np.array([0.6, 0.3, 0.2]) / np.pi + (0.05 * D * G1**2 / (4 * c**2))[:, None]
    expected = 7.0 / d2[:, None] * f_r * c[:, None]
    np.testing.assert_allclose(result.color.detach().numpy(), expected, rtol=1e-4)
    np.testing.assert_allclose(result.extras["roughness"].detach().numpy(), 0.25, rtol=1e-5)
    unit = MaterialShader(materials, unit_light=True)(hit, eye.expand(32, 3), True)
    np.testing.assert_allclose(unit.color.detach().numpy(), expected / 7.0, rtol=1e-4)
    # The general (off-axis) form with the light in the lens: the same image.
    general = MaterialShader(materials)(hit, eye.expand(32, 3), False)
    np.testing.assert_allclose(general.color.detach().numpy(), expected, rtol=1e-3)
    # A room whose light is the same from every direction adds rho_d / pi * E, E = c_0 Y_0,
    # and never to the unit-light renders the flash intensity is fitted from.
    ambient = AmbientLight()
    with torch.no_grad():
        ambient.coefficients[0] = torch.tensor([0.3, 0.2, 0.1]) / 0.282095
    lit = MaterialShader(materials, ambient=ambient)(hit, eye.expand(32, 3), True)
    room = np.array([0.6, 0.3, 0.2]) / np.pi * np.array([0.3, 0.2, 0.1])
    np.testing.assert_allclose(lit.color.detach().numpy(), expected + room, rtol=1e-4)
    unit = MaterialShader(materials, unit_light=True, ambient=ambient)(hit, eye.expand(32, 3), True)
    np.testing.assert_allclose(unit.color.detach().numpy(), expected / 7.0, rtol=1e-4)


def test_sh_irradiance_of_known_lighting():
    """The nine SH functions are orthonormal on the sphere (quadrature), and the irradiance of
    a sky that is L_0 (1 + cos theta) about +z, fitted by projection with the clamped-cosine
    convolution (pi, 2pi/3, pi/4), is E(n) = pi L_0 (1 + n_z 2/3) exactly (orders 0 and 1)."""
    from ironrender.fields.ambient import sh_basis

    n_theta, n_phi = 200, 400
    theta = (torch.arange(n_theta, dtype=torch.float64) + 0.5) * math.pi / n_theta
    phi = (torch.arange(n_phi, dtype=torch.float64) + 0.5) * 2 * math.pi / n_phi
    t, p = torch.meshgrid(theta, phi, indexing="ij")
    dirs = torch.stack([t.sin() * p.cos(), t.sin() * p.sin(), t.cos()], -1).reshape(-1, 3)
    weights = (t.sin() * (math.pi / n_theta) * (2 * math.pi / n_phi)).reshape(-1, 1)
    Y = sh_basis(dirs)
    gram = Y.T @ (Y * weights)
    torch.testing.assert_close(gram, torch.eye(9, dtype=torch.float64), atol=2e-4, rtol=0)
    sky = 0.4 * (1 + dirs[:, 2:3])
    coefficients = (Y * weights).T @ sky  # projection of the radiance
    band = torch.tensor([math.pi] + [2 * math.pi / 3] * 3 + [math.pi / 4] * 5, dtype=torch.float64)
    ambient = AmbientLight().double()
    with torch.no_grad():
        ambient.coefficients.copy_((band[:, None] * coefficients).expand(9, 3))
    normals = torch.nn.functional.normalize(torch.randn(64, 3, dtype=torch.float64), dim=-1)
    expected = math.pi * 0.4 * (1 + normals[:, 2:3] * 2 / 3)
    torch.testing.assert_close(
        ambient.irradiance(normals), expected.expand(64, 3), atol=2e-3, rtol=0
    )


def test_srgb_stage1_albedo_is_decoded_by_the_srgb_curve():
    """An sRGB capture: the starting albedo is stage 1's colour decoded by sRGB, not ^2.2."""
    from ironrender.data.tone_curve import decode

    radiance = make_radiance()
    points, normals, features = random_inputs()
    encoded = radiance(points, normals, -normals, features)
    decoded = MaterialFields.from_stage1(
        radiance, MaterialConfig(), stage1_gamma_encoded=True, curve="srgb"
    )
    albedo = decoded(points, normals, features).diffuse_albedo
    torch.testing.assert_close(albedo, decode(encoded, "srgb"))
    assert not torch.allclose(albedo, encoded**2.2, rtol=1e-2)


def test_decoded_stage1_albedo_is_linear_colour():
    """Stage 1 fit gamma-encoded colours: the starting albedo is that colour decoded (^2.2)."""
    radiance = make_radiance()
    points, normals, features = random_inputs()
    encoded = radiance(points, normals, -normals, features)
    decoded = MaterialFields.from_stage1(radiance, MaterialConfig(), stage1_gamma_encoded=True)
    torch.testing.assert_close(decoded(points, normals, features).diffuse_albedo, encoded**2.2)
    as_is = MaterialFields.from_stage1(
        radiance, MaterialConfig(decode_stage1_gamma=False), stage1_gamma_encoded=True
    )
    torch.testing.assert_close(as_is(points, normals, features).diffuse_albedo, encoded)
    # the exponent travels with the weights
    fresh = MaterialFields.from_stage1(radiance, MaterialConfig())
    fresh.load_state_dict(decoded.state_dict())
    torch.testing.assert_close(fresh(points, normals, features).diffuse_albedo, encoded**2.2)
