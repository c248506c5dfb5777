"""Cameras and rays: rays through pixels hit the points that project there, and back."""

from __future__ import annotations

import torch

from ironrender.data.cameras import Cameras, look_at
from tests.conftest import ring_cameras


def test_ray_through_pixel_passes_through_points_projecting_there(cameras):
    torch.manual_seed(0)
    n_points = 200
    index = torch.randint(len(cameras), (n_points,))
    points = 0.8 * (torch.rand(n_points, 3) * 2 - 1)
    uv, z = cameras.project(points, index)
    assert (z > 0).all()
    rays = cameras.generate_rays(index, uv)
    # Distance from each point to its ray: |(p - o) x d| must vanish.
    offset = points - rays.origins
    distance = torch.linalg.cross(offset, rays.directions).norm(dim=-1)
    assert distance.max() < 1e-5
    # z-depth along the ray: t * z_scale equals the camera-space depth.
    t = (offset * rays.directions).sum(-1)
    torch.testing.assert_close(t * rays.z_scale, z, atol=1e-5, rtol=1e-5)


def test_pixel_centre_rays_project_back_to_pixel_centres(cameras):
    rays = cameras.image_rays(2)
    points = rays.origins + 1.7 * rays.directions
    uv, _ = cameras.project(points.reshape(-1, 3), 2)
    expected = cameras.pixel_centers(2).reshape(-1, 2)
    torch.testing.assert_close(uv, expected, atol=1e-4, rtol=0)
    # Pixel centres are at +0.5: the first pixel's ray goes through (0.5, 0.5).
    assert torch.allclose(expected[0], torch.tensor([0.5, 0.5]))


def test_opencv_axes_and_centres():
    eye = torch.tensor([[0.0, 0.0, -3.0]])
    w2c = look_at(eye, torch.zeros(3), torch.tensor([0.0, 1.0, 0.0]))
    K = torch.tensor([[[100.0, 0, 50], [0, 100.0, 40], [0, 0, 1]]])
    cam = Cameras(K, w2c, torch.tensor([[100, 80]]))
    torch.testing.assert_close(cam.centers[0], eye[0])
    torch.testing.assert_close(cam.forward[0], torch.tensor([0.0, 0.0, 1.0]))
    # World up (+y) appears towards the top of the image (smaller v); OpenCV y points down.
    uv, _ = cam.project(torch.tensor([[0.0, 0.5, 0.0], [0.0, 0.0, 0.0]]))
    assert uv[0, 1] < uv[1, 1]
    torch.testing.assert_close(uv[1], torch.tensor([50.0, 40.0]))


def test_crop_shifts_principal_point(cameras):
    torch.manual_seed(1)
    points = 0.5 * torch.randn(50, 3).clamp(-1.5, 1.5)
    uv, _ = cameras.project(points, 3)
    crop = cameras.crop(3, 5, 7, 16, 12)
    uv_crop, _ = crop.project(points, 0)
    torch.testing.assert_close(uv_crop, uv - torch.tensor([5.0, 7.0]), atol=1e-4, rtol=0)
    assert crop.width() == 16 and crop.height() == 12
    # Rays of the crop's pixel (0, 0) equal rays of the full camera's pixel (5, 7).
    full = cameras.generate_rays(torch.tensor([3]), torch.tensor([[5.5, 7.5]]))
    cropped = crop.generate_rays(torch.tensor([0]), torch.tensor([[0.5, 0.5]]))
    torch.testing.assert_close(full.directions, cropped.directions)


def test_scaled_cameras_match_resized_image_coordinates():
    cams = ring_cameras(width=40, height=30)
    half = cams.scaled(0.5)
    points = torch.tensor([[0.1, -0.2, 0.3]])
    uv, _ = cams.project(points, 1)
    uv_half, _ = half.project(points, 1)
    torch.testing.assert_close(uv_half, uv * 0.5)
    assert half.width(1) == 20 and half.height(1) == 15


def test_c2w_inverts_w2c(cameras):
    eye = torch.eye(4).expand(len(cameras), 4, 4)
    torch.testing.assert_close(cameras.c2w @ cameras.w2c, eye, atol=1e-5, rtol=0)
