"""The fused dense-grid kernel (ironrender/fields/fused_grid.py) against independent references.

* finite differences (``gradcheck``, float64): the features and their Jacobian, differentiated
  with respect to the points and the grids, so the scatter and the second-derivative terms are
  checked against numbers the kernel did not produce;
* PyTorch's ``F.grid_sample`` (the fallback path): values at points inside, outside and on the
  border of the grid, and the gradients that stage 1's loss sends through the SDF's gradient
  (the eikonal term's double backward) and through stage 2's moving surface points;
* the fallback taken, with a warning and the same results, when the kernel cannot be built.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from ironrender.fields import fused_grid
from ironrender.fields.encodings import DenseGridEncoding, GridConfig
from ironrender.fields.sdf import NeuralSDF, SDFConfig

pytestmark = pytest.mark.skipif(
    fused_grid.kernel() is None, reason="the fused kernel cannot be built here"
)


def _grids(resolutions, features, dtype=torch.float64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randn(features, r, r, r, generator=generator, dtype=dtype).requires_grad_(True)
        for r in resolutions
    ]


def _interior_points(count, bound, seed=1):
    """Random points well inside the grid (finite differences must not cross a border)."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(count, 3, generator=generator, dtype=torch.float64) * 2 - 1) * 0.9 * bound


def test_features_and_jacobian_pass_gradcheck():
    grids = _grids((3, 5), features=2)
    points = _interior_points(6, bound=1.3).requires_grad_(True)

    def both(x, *g):
        return fused_grid.encode(x, list(g), 1.3, 2, jacobian=True)

    assert torch.autograd.gradcheck(both, (points, *grids), eps=1e-6, atol=1e-7)


def test_features_alone_pass_gradcheck_with_a_level_switched_off():
    grids = _grids((4, 6, 7), features=3)
    points = _interior_points(5, bound=1.0).requires_grad_(True)

    def features(x, *g):
        return fused_grid.encode(x, list(g), 1.0, 2, jacobian=False)[0]

    assert torch.autograd.gradcheck(features, (points, *grids), eps=1e-6, atol=1e-7)
    out = features(points, *grids)
    assert torch.equal(out[:, 6:], torch.zeros_like(out[:, 6:]))  # the inactive level
    out.sum().backward()
    assert grids[2].grad is None and grids[0].grad is not None


def _reference(points, grids, bound):
    """``F.grid_sample`` as the encoding used it: (x, y, z) -> (W, H, D), border, corners."""
    coords = (points / bound).reshape(1, -1, 1, 1, 3)
    parts = [
        F.grid_sample(g[None], coords, mode="bilinear", padding_mode="border", align_corners=True)
        .reshape(g.shape[0], -1)
        .t()
        for g in grids
    ]
    return torch.cat(parts, dim=-1)


def test_values_match_grid_sample_inside_outside_and_on_the_border():
    grids = _grids((16, 33), features=2, dtype=torch.float32)
    generator = torch.Generator().manual_seed(3)
    inside = torch.rand(2000, 3, generator=generator) * 2 - 1
    outside = (torch.rand(500, 3, generator=generator) * 2 - 1) * 3  # clamped to the border
    faces = torch.rand(300, 3, generator=generator) * 2 - 1
    faces[:, 0] = torch.where(faces[:, 1] > 0, 1.0, -1.0)  # exactly on a face
    points = torch.cat([inside, outside, faces]) * 0.8
    with torch.no_grad():
        fused, _ = fused_grid.encode(points, grids, 0.8, 2, jacobian=False)
        reference = _reference(points, grids, 0.8)
    torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-5)


def _sdf_and_loss(fused: bool, moving_points: bool):
    """Stage 1's losses through a ``fast`` SDF (float64): the SDF, its gradient (eikonal) and
    its features; with ``moving_points`` the points themselves depend on a parameter, as
    stage 2's surface points do. Returns the gradients of every parameter and of that one."""
    torch.manual_seed(0)
    sdf = NeuralSDF(SDFConfig(grid=GridConfig(max_resolution=40))).double()
    with torch.no_grad():
        for grid in sdf.grid.grids:
            grid.normal_(0, 0.05)
        for layer in sdf.mlp.layers:
            layer.weight.add_(torch.randn_like(layer.weight) * 0.1)
    sdf.set_active_levels(6)
    generator = torch.Generator().manual_seed(5)
    theta = torch.rand(3000, 3, generator=generator, dtype=torch.float64) * 2.4 - 1.2
    theta.requires_grad_(moving_points)
    points = theta * 0.9 + 0.01 * theta**2 if moving_points else theta
    context = fused_grid.switched_off() if not fused else torch.enable_grad()
    with context:
        sample = sdf.with_gradients(points)
        loss = (
            sample.sdf.sin().sum()
            + ((sample.gradients.norm(dim=-1) - 1) ** 2).sum()
            + sample.features.cos().sum()
        )
        loss.backward()
    grads = [p.grad.clone() if p.grad is not None else None for p in sdf.parameters()]
    return sample, grads, theta.grad


@pytest.mark.parametrize("moving_points", [False, True])
def test_sdf_gradient_and_its_double_backward_match_autograd_through_grid_sample(moving_points):
    fused, fused_grads, fused_theta = _sdf_and_loss(True, moving_points)
    reference, reference_grads, reference_theta = _sdf_and_loss(False, moving_points)
    torch.testing.assert_close(fused.sdf, reference.sdf, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fused.gradients, reference.gradients, rtol=1e-10, atol=1e-10)
    assert sum(g is not None for g in reference_grads) >= 8  # grids and MLP reached
    for mine, theirs in zip(fused_grads, reference_grads, strict=True):
        assert (mine is None) == (theirs is None)
        if theirs is not None:
            torch.testing.assert_close(mine, theirs, rtol=1e-9, atol=1e-9)
    if moving_points:
        torch.testing.assert_close(fused_theta, reference_theta, rtol=1e-9, atol=1e-9)


def test_a_second_derivative_through_the_kernel_raises_and_the_sdf_avoids_it():
    """The kernel differentiates once: differentiating its gradient again is an error, never a
    silent zero; an SDF whose gradient autograd must take (PE and a grid) switches it off."""
    encoding = DenseGridEncoding(GridConfig(max_resolution=24)).double()
    x = _interior_points(50, 1.0).requires_grad_(True)
    with pytest.raises(RuntimeError, match="differentiated once"):
        torch.autograd.grad(encoding(x).sum(), x, create_graph=True)
    sdf = NeuralSDF(SDFConfig(pe_freqs=2, grid=GridConfig(max_resolution=24))).double()
    with torch.no_grad():  # at init the grid's inputs and the SDF output have zero weight
        for layer in sdf.mlp.layers:
            layer.weight.add_(torch.randn_like(layer.weight) * 0.1)
    sample = sdf.with_gradients(x.detach())
    ((sample.gradients.norm(dim=-1) - 1) ** 2).sum().backward()
    assert sdf.grid.grids[0].grad is not None and sdf.grid.grids[0].grad.abs().sum() > 0


def test_fallback_when_the_kernel_cannot_be_built(tmp_path):
    """No compiler: one warning, ``fused_available`` false, ``F.grid_sample`` used."""
    script = (
        "import warnings, torch\n"
        "from ironrender.fields import fused_grid\n"
        "from ironrender.fields.sdf import NeuralSDF, SDFConfig\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    available = fused_grid.fused_available(torch.zeros(1, 3))\n"
        "sample = NeuralSDF(SDFConfig()).with_gradients(torch.rand(64, 3))\n"
        "print(available, len(caught), 'grid_sample' in str(caught[0].message),\n"
        "      bool(torch.isfinite(sample.gradients).all()))\n"
    )
    env = dict(os.environ, CXX="/bin/false", IRONRENDER_CACHE=str(tmp_path))
    env.pop("IRONRENDER_FUSED", None)
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "1", "True", "True"]


_LOAD = "from ironrender.fields import fused_grid\nprint(fused_grid.kernel() is not None)\n"


def _load_kernel(cache, **env) -> subprocess.CompletedProcess:
    environment = dict(os.environ, IRONRENDER_CACHE=str(cache), **env)
    environment.pop("IRONRENDER_FUSED", None)
    return subprocess.run(
        [sys.executable, "-c", _LOAD], env=environment, capture_output=True, text=True, timeout=120
    )


def test_a_lock_left_by_a_killed_process_does_not_hang_the_next(tmp_path):
    """A process killed while PyTorch's extension loader held its build lock leaves a ``lock``
    file; PyTorch's loader then waits for it for ever (the reliability test's kill storm hung
    on one). A built kernel is imported without that lock, and a build clears a stale one."""
    if fused_grid.kernel() is None:
        pytest.skip("no compiler: the kernel is not built here")
    built = fused_grid.cache_dir() / "dense_grid"
    copy = tmp_path / "built" / "extensions" / "dense_grid"
    copy.mkdir(parents=True)
    for name in (f"{fused_grid.LIBRARY}.so", f"{fused_grid.LIBRARY}.stamp"):
        shutil.copy2(built / name, copy / name)
    (copy / "lock").touch()
    result = _load_kernel(tmp_path / "built")
    assert result.returncode == 0 and result.stdout.split() == ["True"], result.stderr
    # To be built, with a stale lock and no compiler: the lock is cleared, the build fails fast.
    fresh = tmp_path / "fresh" / "extensions" / "dense_grid"
    fresh.mkdir(parents=True)
    (fresh / "lock").touch()
    result = _load_kernel(tmp_path / "fresh", CXX="/bin/false")
    assert result.returncode == 0 and result.stdout.split() == ["False"], result.stderr
    assert "could not be built" in result.stderr and not (fresh / "lock").exists()


def test_backward_is_the_same_whatever_the_thread_count():
    """Levels scatter in parallel, not points: no atomics, so a resumed run repeats itself."""
    grids = _grids((16, 24, 40), features=2, dtype=torch.float32)
    points = (_interior_points(20000, 1.0).float()).requires_grad_(True)
    threads = torch.get_num_threads()
    results = []
    for count in (1, 3):
        torch.set_num_threads(count)
        for grid in grids:
            grid.grad = None
        points.grad = None
        features, jacobian = fused_grid.encode(points, grids, 1.0, 3, jacobian=True)
        (features.sin().sum() + jacobian.square().sum()).backward()
        results.append([points.grad.clone(), *(g.grad.clone() for g in grids)])
    torch.set_num_threads(threads)
    for one, many in zip(*results, strict=True):
        assert torch.equal(one, many)
