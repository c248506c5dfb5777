"""Evaluation metrics on constructed cases with known answers. Budget: under 15 s."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh

from ironrender.evaluation import metrics


def smooth_image(seed: int, size: int = 48) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    channels = [
        0.5 + 0.4 * np.sin(rng.uniform(2, 9) * x + rng.uniform(2, 9) * y + rng.uniform(0, 6))
        for _ in range(3)
    ]
    return np.stack(channels, axis=-1)


def test_psnr_identical_images_is_infinite():
    image = smooth_image(0)
    assert metrics.psnr(image, image) == math.inf
    assert metrics.psnr(torch.as_tensor(image), torch.as_tensor(image)) == math.inf


def test_psnr_of_a_known_error():
    gt = smooth_image(1)
    sigma = 0.05
    signs = np.where((np.indices(gt.shape).sum(0) % 2) == 0, 1.0, -1.0)
    assert metrics.psnr(gt + sigma * signs, gt) == pytest.approx(20 * math.log10(1 / sigma))
    # Gaussian noise: the sample MSE is sigma^2 up to sampling error (0.3 % for 1e6 values).
    rng = np.random.default_rng(2)
    big = np.full((1000, 1000, 1), 0.5)
    noisy = big + rng.normal(0, sigma, big.shape)
    assert metrics.psnr(noisy, big) == pytest.approx(-10 * math.log10(sigma**2), abs=0.02)


def test_psnr_mask_ignores_pixels_outside():
    gt = smooth_image(3)
    pred = gt.copy()
    pred[:10] += 0.3
    mask = np.ones(gt.shape[:2], dtype=bool)
    mask[:10] = False
    assert metrics.psnr(pred, gt, mask) == math.inf
    assert metrics.psnr(pred, gt) < 30


def test_ssim_matches_skimage_and_is_one_for_identical_images():
    from skimage.metrics import structural_similarity

    gt = smooth_image(4)
    pred = np.clip(gt + np.random.default_rng(5).normal(0, 0.05, gt.shape), 0, 1)
    assert metrics.ssim(gt, gt) == pytest.approx(1.0, abs=1e-6)
    reference = structural_similarity(
        pred,
        gt,
        channel_axis=-1,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
    )
    assert reference < 0.95  # a case where SSIM is far from 1
    assert metrics.ssim(pred, gt) == pytest.approx(reference, abs=1e-4)


def test_lpips_is_none_when_the_package_is_missing():
    try:
        import lpips  # noqa: F401
    except ImportError:
        assert metrics.lpips(smooth_image(6), smooth_image(6)) is None
    else:  # pragma: no cover - not installed on the project's machines
        assert metrics.lpips(smooth_image(6), smooth_image(6)) == pytest.approx(0.0, abs=1e-6)


def test_aligned_albedo_psnr_removes_a_per_channel_scale():
    gt = smooth_image(7)
    scaled = gt * np.array([0.5, 2.0, 1.3])
    assert metrics.aligned_albedo_psnr(scaled, gt) > 100
    assert metrics.psnr(scaled, gt) < 20


def test_roughness_error_alpha_and_perceptual():
    gt = np.full((8, 8), 0.25)
    pred = np.full((8, 8), 0.36)
    assert metrics.roughness_error(pred, gt) == pytest.approx(0.11)
    assert metrics.roughness_error(pred, gt, perceptual=True) == pytest.approx(0.1)


# ------------------------------------------------------------------------------------ geometry
N_POINTS = 4000


@pytest.fixture(scope="module")
def spheres():
    fine = trimesh.creation.icosphere(subdivisions=5, radius=0.5)
    larger = trimesh.creation.icosphere(subdivisions=5, radius=0.6)
    # The same surface with another tessellation: distances ~ its chordal error only.
    coarse = trimesh.creation.icosphere(subdivisions=4, radius=0.5)
    return fine, larger, coarse


def test_identical_meshes_have_zero_chamfer_and_perfect_scores(spheres):
    fine, _, _ = spheres
    result = metrics.mesh_metrics(fine, fine.copy(), f_threshold=1e-3, n_points=N_POINTS)
    assert result.chamfer < 1e-9
    assert result.f_score == 1.0
    assert result.normal_consistency == pytest.approx(1.0, abs=1e-9)


def test_chamfer_between_concentric_spheres_is_the_radius_difference(spheres):
    fine, larger, coarse = spheres
    # Icosphere facets sit inside the sphere by at most r (1 - cos(edge/2r)) ~ 2e-4 here.
    assert metrics.chamfer(fine, larger, n_points=N_POINTS) == pytest.approx(0.1, abs=1e-3)
    assert metrics.chamfer(fine, coarse, n_points=N_POINTS) < 1e-3


def test_f_score_switches_at_the_gap(spheres):
    fine, larger, _ = spheres
    assert metrics.f_score(fine, larger, threshold=0.11, n_points=N_POINTS) == 1.0
    assert metrics.f_score(fine, larger, threshold=0.09, n_points=N_POINTS) == 0.0


def test_normal_consistency_of_a_tilted_square_is_the_cosine_of_the_tilt():
    square = trimesh.Trimesh(
        vertices=[[-0.5, -0.5, 0], [0.5, -0.5, 0], [0.5, 0.5, 0], [-0.5, 0.5, 0]],
        faces=[[0, 1, 2], [0, 2, 3]],
    )
    tilted = square.copy()
    angle = np.radians(30)
    tilted.apply_transform(trimesh.transformations.rotation_matrix(angle, [1, 0, 0]))
    # Every closest point lies on the other (planar) square, whose one normal is tilted by 30 deg.
    assert metrics.normal_consistency(square, square.copy(), n_points=N_POINTS) == 1.0
    assert metrics.normal_consistency(square, tilted, n_points=N_POINTS) == pytest.approx(
        np.cos(angle), abs=1e-9
    )


def test_point_to_mesh_matches_the_analytic_distance_to_a_plane():
    plane = trimesh.creation.box(extents=(2.0, 2.0, 0.2))  # top face at z = 0.1
    rng = np.random.default_rng(8)
    points = np.column_stack([rng.uniform(-0.8, 0.8, (200, 2)), rng.uniform(0.2, 0.5, 200)])
    result = metrics.point_to_mesh(points, plane)
    np.testing.assert_allclose(result.distance, points[:, 2] - 0.1, atol=1e-9)


# ------------------------------------------------------------------------------------ SfM points
def antipodal_points(radius: float, count: int, center=(0.0, 0.0, 0.0), seed: int = 9):
    """Points on a sphere in pairs ``c +- v``: their component-wise median is ``c`` exactly."""
    v = np.random.default_rng(seed).normal(size=(count // 2, 3))
    v *= radius / np.linalg.norm(v, axis=1, keepdims=True)
    return np.asarray(center) + np.concatenate([v, -v])


def test_sfm_points_on_the_surface_are_at_zero_and_a_gap_is_a_share_of_their_diameter():
    center = np.array([0.1, -0.05, 0.2])
    points = antipodal_points(0.5, 4000, center)
    surface = trimesh.creation.icosphere(subdivisions=5, radius=0.5).apply_translation(center)
    larger = trimesh.creation.icosphere(subdivisions=5, radius=0.55).apply_translation(center)
    # Points beyond the unit sphere (the stand, the room) are left out, whatever their distance.
    far = np.array([[1.2, 0.0, 0.0], [0.0, 0.9, -0.9]])

    on = metrics.sfm_point_distances(np.concatenate([points, far]), surface)
    assert len(on.percent) == 4000 and on.points_total == 4002
    assert on.diameter == pytest.approx(1.0, abs=1e-12)  # 2 x 0.5, from the points alone
    # Facets lie inside the sphere by at most r (1 - cos(edge / 2r)) ~ 1e-4, i.e. 0.01 % of D.
    assert on.median_percent < 0.01 and on.p90_percent < 0.015 and on.within_close == 1.0

    gap = metrics.sfm_point_distances(points, larger)
    assert gap.diameter == on.diameter  # the reference does not move with the mesh
    assert gap.median_percent == pytest.approx(5.0, abs=0.015)  # 0.05 / 1.0
    assert gap.p90_percent == pytest.approx(5.0, abs=0.015)
    assert gap.within_close == 0.0


def test_sfm_reference_diameter_ignores_the_farthest_percent():
    points = antipodal_points(0.5, 2000)
    strays = antipodal_points(0.95, 10, seed=10)  # 0.5 % of the points, far out
    assert metrics.sfm_reference_diameter(np.concatenate([points, strays])) == pytest.approx(1.0)
    assert metrics.sfm_reference_diameter(antipodal_points(0.3, 2000)) == pytest.approx(0.6)


def test_sfm_points_outside_the_unit_sphere_only_are_an_error():
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=0.5)
    with pytest.raises(ValueError, match="unit sphere"):
        metrics.sfm_point_distances(np.array([[2.0, 0.0, 0.0]]), mesh)
