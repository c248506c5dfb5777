"""Stage-2 losses against independent computations (numpy/scipy by hand, scikit-image SSIM)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import convolve
from skimage.metrics import structural_similarity

from ironrender.fields.base import SphereSDF
from ironrender.training.losses import (
    LossWeights,
    eikonal_loss,
    pyramid_l2_loss,
    random_eikonal_points,
    roughness_range_loss,
    ssim_loss,
    stage2_loss,
)


def numpy_pyramid_l2(a: np.ndarray, b: np.ndarray, levels: int = 5) -> float:
    """Independent pyramid L2: explicit 7x7 Gaussian (sigma 1, zero border) and 2x2 means."""
    r = np.arange(7) - 3.0
    g = np.exp(-(r**2) / 2.0)
    g /= g.sum()
    kernel = np.outer(g, g)
    diff = (a - b).astype(np.float64)
    total = 0.0
    for level in range(levels):
        if level > 0:
            blurred = np.stack(
                [convolve(diff[..., c], kernel, mode="constant", cval=0.0) for c in range(3)], -1
            )
            h, w = blurred.shape[0] // 2 * 2, blurred.shape[1] // 2 * 2
            blurred = blurred[:h, :w]
            diff = blurred.reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3))
        total += (diff**2).sum() / (diff.shape[0] * diff.shape[1])
    return total


def test_pyramid_identical_is_zero(rng):
    image = torch.from_numpy(rng.random((32, 32, 3), dtype=np.float32))
    assert pyramid_l2_loss(image, image).item() == 0.0


def test_pyramid_matches_numpy(rng):
    a = rng.random((32, 48, 3)).astype(np.float32)
    b = rng.random((32, 48, 3)).astype(np.float32)
    expected = numpy_pyramid_l2(a, b)
    got = pyramid_l2_loss(torch.from_numpy(a), torch.from_numpy(b)).item()
    assert got == pytest.approx(expected, rel=1e-5)


def test_pyramid_constant_offset_level_zero(rng):
    """A constant difference d over the image: level 0 alone contributes 3 d^2 per pixel."""
    a = torch.zeros(16, 16, 3)
    b = torch.full((16, 16, 3), 0.5)
    level0_only = pyramid_l2_loss(a, b, levels=1).item()
    assert level0_only == pytest.approx(3 * 0.25)


def test_ssim_identical_is_zero(rng):
    image = torch.from_numpy(rng.random((40, 40, 3), dtype=np.float32))
    assert ssim_loss(image, image).item() == pytest.approx(0.0, abs=1e-6)
    mask = torch.ones(40, 40, dtype=torch.bool)
    assert ssim_loss(image, image, mask).item() == pytest.approx(0.0, abs=1e-6)


def test_ssim_matches_skimage(rng):
    a = rng.random((48, 40, 3)).astype(np.float32)
    b = np.clip(a + 0.2 * rng.standard_normal(a.shape), 0, 1).astype(np.float32)
    expected = structural_similarity(
        a.astype(np.float64),
        b.astype(np.float64),
        channel_axis=-1,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
    )
    got = ssim_loss(torch.from_numpy(a), torch.from_numpy(b)).item()
    assert got == pytest.approx(1.0 - expected, abs=1e-5)


def test_ssim_mask_restricts_to_eroded_region(rng):
    """With a mask, only windows fully inside the mask count: equals skimage on the sub-image."""
    a = rng.random((40, 40, 3)).astype(np.float32)
    b = np.clip(a + 0.3 * rng.standard_normal(a.shape), 0, 1).astype(np.float32)
    b[:, 20:] = a[:, 20:]  # identical on the right: would raise SSIM if it leaked in
    mask = torch.zeros(40, 40, dtype=torch.bool)
    mask[:, :20] = True
    expected = structural_similarity(
        a[:, :20].astype(np.float64),
        b[:, :20].astype(np.float64),
        channel_axis=-1,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
    )
    got = ssim_loss(torch.from_numpy(a), torch.from_numpy(b), mask).item()
    assert got == pytest.approx(1.0 - expected, abs=1e-5)


def test_eikonal_zero_for_exact_sdf():
    sphere = SphereSDF(radius=0.4)
    points = random_eikonal_points(512, "cpu", torch.Generator().manual_seed(0))
    gradients = sphere.with_gradients(points).gradients
    assert eikonal_loss(gradients).item() == pytest.approx(0.0, abs=1e-10)


def test_eikonal_value_for_scaled_field():
    """S = 2 |x| has |grad S| = 2 everywhere: (2 - 1)^2 = 1; a list of tensors is concatenated."""
    points = random_eikonal_points(100, "cpu", torch.Generator().manual_seed(1)).requires_grad_()
    (grad,) = torch.autograd.grad((2 * points.norm(dim=-1)).sum(), points)
    unit = torch.nn.functional.normalize(grad, dim=-1)
    assert eikonal_loss([grad, unit]).item() == pytest.approx(0.5, rel=1e-5)


def test_roughness_range_hinge():
    alpha = torch.tensor([[0.1, 0.7], [0.9, 0.3]])
    mask = torch.tensor([[True, True], [False, True]])
    # masked: 0.1 -> 0, 0.7 -> 0.2, 0.3 -> 0; the 0.9 pixel is outside the mask
    assert roughness_range_loss(alpha, mask).item() == pytest.approx(0.2 / 3)
    assert roughness_range_loss(alpha[..., None], mask).item() == pytest.approx(0.2 / 3)
    assert roughness_range_loss(alpha, torch.zeros_like(mask)).item() == 0.0


def test_gradients_finite(rng):
    pred = torch.from_numpy(rng.random((32, 32, 3), dtype=np.float32)).requires_grad_()
    target = torch.from_numpy(rng.random((32, 32, 3), dtype=np.float32))
    target[:8] = 0.0  # black background region: SSIM denominators at their smallest
    pred_black = pred.detach().clone()
    pred_black[:8] = 0.0
    pred_black.requires_grad_()
    mask = torch.ones(32, 32, dtype=torch.bool)
    mask[:, :4] = False
    points = random_eikonal_points(64, "cpu").requires_grad_()
    (grad,) = torch.autograd.grad(points.norm(dim=-1).sum() * 1.3, points, create_graph=True)
    rough = torch.full((32, 32), 0.8, requires_grad=True)
    for image in (pred, pred_black):
        terms = stage2_loss(image, target, mask, [grad], rough, LossWeights())
        image_grad, rough_grad, point_grad = torch.autograd.grad(
            terms.total, [image, rough, points], retain_graph=True
        )
        for g in (image_grad, rough_grad, point_grad):
            assert torch.isfinite(g).all()
        assert image_grad.abs().sum() > 0 and rough_grad.abs().sum() > 0


def test_small_patches(rng):
    """Patches smaller than the pyramid or SSIM window: the missing levels/windows drop out."""
    a = rng.random((6, 6, 3)).astype(np.float32)
    b = rng.random((6, 6, 3)).astype(np.float32)
    got = pyramid_l2_loss(torch.from_numpy(a), torch.from_numpy(b)).item()
    assert got == pytest.approx(numpy_pyramid_l2(a, b, levels=3), rel=1e-5)  # 6 -> 3 -> 1
    assert ssim_loss(torch.from_numpy(a), torch.from_numpy(b)).item() == 0.0
