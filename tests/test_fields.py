"""Fields: encodings (finite differences), geometric init (analytic sphere), NeuS variance."""

from __future__ import annotations

import math

import pytest
import torch

from ironrender.fields import fused_grid
from ironrender.fields.encodings import (
    DenseGridEncoding,
    GridConfig,
    HashGridEncoding,
    PositionalEncoding,
)
from ironrender.fields.radiance import RadianceConfig, RadianceField
from ironrender.fields.sdf import NeuralSDF, NeuSVariance, SDFConfig, paper_sdf_config


def test_positional_encoding_matches_nerf_formula():
    pe = PositionalEncoding(num_freqs=3)
    x = torch.tensor([[0.3, -0.7, 1.1]])
    out = pe(x)[0]
    expected = [0.3, -0.7, 1.1]
    for k in range(3):
        expected += [math.sin(2**k * v) for v in (0.3, -0.7, 1.1)]
        expected += [math.cos(2**k * v) for v in (0.3, -0.7, 1.1)]
    assert pe.out_dim == 21
    torch.testing.assert_close(out, torch.tensor(expected), atol=1e-6, rtol=0)


def test_grid_encoding_gradients_match_finite_differences():
    torch.manual_seed(0)
    config = GridConfig(levels=2, features_per_level=2, base_resolution=3, max_resolution=5)
    encoding = DenseGridEncoding(config).double()
    with torch.no_grad():  # non-trivial features so every term of the trilinear blend matters
        for grid in encoding.grids:
            grid.normal_()
    points = (torch.rand(5, 3, dtype=torch.float64) * 1.8 - 0.9).requires_grad_(True)
    grids = list(encoding.grids)

    def f(p, *_):
        return encoding(p)

    assert torch.autograd.gradcheck(f, (points, *grids), eps=1e-6, atol=1e-5)
    # The eikonal loss differentiates dS/dx again: second derivatives through grid_sample,
    # the path taken where the fused kernel (differentiated once) is off or not built.
    with fused_grid.switched_off():
        assert torch.autograd.gradgradcheck(f, (points, grids[0]), eps=1e-6, atol=1e-5)


def test_grid_encoding_interpolates_vertex_values_exactly():
    config = GridConfig(levels=1, features_per_level=1, base_resolution=3, max_resolution=3)
    encoding = DenseGridEncoding(config).double()
    with torch.no_grad():
        encoding.grids[0].zero_()
        encoding.grids[0][0, 0, 2, 1, 0] = 1.0  # vertex (x=-1, y=0, z=+1), grid indexed (z, y, x)
    corner = torch.tensor(
        [[-1.0, 0.0, 1.0], [-0.5, 0.0, 1.0], [0.0, 0.0, 0.0]], dtype=torch.float64
    )
    torch.testing.assert_close(encoding(corner)[:, 0], torch.tensor([1.0, 0.5, 0.0]).double())


def test_hash_grid_matches_dense_grid_where_its_table_is_dense():
    """Levels that fit the table are dense: same vertex values -> same trilinear features."""
    torch.manual_seed(1)
    config = GridConfig(levels=2, features_per_level=3, base_resolution=4, max_resolution=7)
    dense, hashed = DenseGridEncoding(config).double(), HashGridEncoding(config).double()
    with torch.no_grad():
        for grid, table, r in zip(dense.grids, hashed.tables, config.resolutions(), strict=True):
            grid.normal_()
            # dense grid layout (1, F, z, y, x); hash table row = x + R y + R^2 z
            table.copy_(grid[0].permute(1, 2, 3, 0).reshape(r**3, -1))
    points = torch.rand(200, 3, dtype=torch.float64) * 2 - 1
    torch.testing.assert_close(hashed(points), dense(points), atol=1e-12, rtol=0)


def test_hash_grid_hashes_fine_levels_and_has_exact_gradients():
    torch.manual_seed(2)
    config = GridConfig(
        levels=2, features_per_level=2, base_resolution=3, max_resolution=9, log2_hashmap_size=5
    )
    encoding = HashGridEncoding(config).double()
    assert encoding.table_sizes == [27, 32]  # 3^3 fits in 2^5 rows; 9^3 is hashed into 32
    with torch.no_grad():
        for table in encoding.tables:
            table.normal_()
    # A vertex of the fine level reads the row that Instant-NGP's hash names (computed here
    # with Python integers, independently of the tensor code).
    i, j, k = 2, 7, 5
    row = (i * 1 ^ j * 2654435761 ^ k * 805459861) % 32
    vertex = torch.tensor([[i, j, k]], dtype=torch.float64) / 8 * 2 - 1
    torch.testing.assert_close(encoding(vertex)[0, 2:], encoding.tables[1][row])
    points = (torch.rand(4, 3, dtype=torch.float64) * 1.8 - 0.9).requires_grad_(True)
    tables = list(encoding.tables)

    def f(p, *_):
        return encoding(p)

    assert torch.autograd.gradcheck(f, (points, *tables), eps=1e-6, atol=1e-5)
    assert torch.autograd.gradgradcheck(f, (points, tables[1]), eps=1e-6, atol=1e-5)


def _shell_points(count: int, low: float, high: float, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    directions = torch.nn.functional.normalize(torch.randn(count, 3, generator=generator), dim=-1)
    radii = low + (high - low) * torch.rand(count, 1, generator=generator)
    return directions, radii


def test_fast_init_is_exactly_the_sphere():
    """The fast preset (sphere prior) starts as |x| - r: value, sign and unit radial gradient."""
    torch.manual_seed(0)
    config = SDFConfig(init_radius=0.6)
    directions, radii = _shell_points(300, 0.05, 1.0)
    out = NeuralSDF(config).with_gradients(directions * radii, create_graph=False)
    truth = radii[:, 0] - 0.6
    torch.testing.assert_close(out.sdf, truth, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.gradients, directions, atol=1e-5, rtol=0)
    assert out.features.shape == (300, config.feature_dim)


def test_paper_geometric_init_is_approximately_the_sphere():
    """IDR's geometric init (8 x 256) is a sphere up to finite-width noise; ours also corrects
    its slope and offset, so the radius is right on average."""
    torch.manual_seed(0)
    config = paper_sdf_config()
    directions, radii = _shell_points(500, 0.3, 0.9)
    out = NeuralSDF(config).with_gradients(directions * radii, create_graph=False)
    truth = radii[:, 0] - config.init_radius
    clear = truth.abs() > 0.25
    assert torch.equal(torch.sign(out.sdf[clear]), torch.sign(truth[clear]))
    assert (out.sdf - truth).abs().mean() < 0.1
    fit = torch.linalg.lstsq(torch.cat([radii, torch.ones_like(radii)], -1), out.sdf[:, None])
    slope, offset = fit.solution[:, 0].tolist()
    assert abs(slope - 1) < 0.1 and abs(-offset / slope - config.init_radius) < 0.03
    cos = torch.nn.functional.cosine_similarity(out.gradients, directions, dim=-1)
    assert cos.mean() > 0.95
    assert out.features.shape == (500, 256)


def test_variance_starts_at_exp_3():
    assert NeuSVariance().inv_s().item() == pytest.approx(math.exp(3.0), rel=1e-6)


def test_sharpness_floor_holds_inv_s_and_passes_the_gradient_through():
    """Below the floor inv_s is the floor, and the learnt v gets the gradient it would get
    without it (d inv_s / dv = scale exp(scale v)); above it the floor changes nothing; a
    checkpoint written before the floor existed loads with none."""
    variance = NeuSVariance()
    variance.floor.fill_(100.0)
    held = variance.inv_s()
    held.backward()
    assert held.item() == pytest.approx(100.0, rel=1e-6)
    assert variance.variance.grad.item() == pytest.approx(10 * math.exp(3.0), rel=1e-5)
    variance.floor.fill_(5.0)
    variance.variance.grad = None
    free = variance.inv_s()
    free.backward()
    assert free.item() == pytest.approx(math.exp(3.0), rel=1e-6)
    assert variance.variance.grad.item() == pytest.approx(10 * math.exp(3.0), rel=1e-5)
    old = NeuSVariance()
    old.load_state_dict({"variance": torch.tensor(0.5)})
    assert old.floor.item() == 0.0 and old.inv_s().item() == pytest.approx(math.exp(5.0))


def test_radiance_accepts_stage2_albedo_call():
    """Stage 2 calls the same class with view_dirs = -normal; the output is a colour in (0, 1)."""
    net = RadianceField(RadianceConfig(), feature_dim=4)
    normals = torch.nn.functional.normalize(torch.randn(7, 3), dim=-1)
    rgb = net(torch.rand(7, 3), normals, -normals, torch.randn(7, 4))
    assert rgb.shape == (7, 3)
    assert bool(((rgb > 0) & (rgb < 1)).all())


def test_mlp_skip_works_when_the_input_is_wider_than_the_hidden_layers():
    """IRON's colour net has 349 inputs and width 256: the skip must still feed the input in.

    (IDR's way, shrinking the layer before the skip to ``hidden - in`` units, would need a
    negative width; the paper preset crashed on it.)
    """
    from ironrender.fields.sdf import MLP

    torch.manual_seed(0)
    mlp = MLP(in_dim=12, hidden_dim=8, num_hidden=3, out_dim=2, skip_layers=(2,))
    assert [layer.in_features for layer in mlp.layers] == [12, 8, 8 + 12, 8]
    inputs = torch.randn(5, 12, requires_grad=True)
    out = mlp(inputs)
    assert out.shape == (5, 2)
    # the skip layer's weights on the re-fed input carry gradient: the input really enters there
    out.sum().backward()
    assert mlp.layers[2].weight.grad[:, 8:].abs().sum() > 0


def test_paper_preset_networks_build_and_run():
    from ironrender.fields.radiance import RadianceField
    from ironrender.training.stage1 import Stage1Model, paper_stage1_config

    model = Stage1Model(paper_stage1_config())
    assert isinstance(model.radiance, RadianceField)
    points = torch.rand(4, 3) * 0.5
    sample = model.sdf.with_gradients(points, create_graph=False)
    normals = torch.nn.functional.normalize(sample.gradients, dim=-1)
    color = model.radiance(points, normals, -normals, sample.features)
    assert color.shape == (4, 3) and bool(torch.isfinite(color).all())
