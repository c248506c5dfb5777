"""Pinhole cameras and rays, in IRON's conventions.

Conventions, documented once:

* World-to-camera ``W2C`` (4x4, rigid) maps world points to camera coordinates with **OpenCV
  axes**: x right, y down, z forward (into the scene).
* Intrinsics ``K`` (3x3) map camera coordinates to **continuous pixel coordinates**: the pixel
  with integer index (i, j) covers [i, i+1) x [j, j+1), so its centre is (i + 0.5, j + 0.5).
  ``u = fx * x / z + cx``; ``v = fy * y / z + cy``.
* Rays are ``o + t d`` with unit ``d``; the z-depth of the point at distance ``t`` is
  ``t * z_scale`` where ``z_scale = d . forward``.
* Image sizes are (width, height), as in IRON's ``img_size``.

Everything is a torch tensor on the cameras' device; nothing here assumes CPU or CUDA.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass
class RayBundle:
    """A batch of rays. Shapes: origins and directions (..., 3); z_scale (...)."""

    origins: Tensor
    directions: Tensor
    z_scale: Tensor

    @property
    def shape(self) -> torch.Size:
        return self.origins.shape[:-1]

    def reshape(self, *shape: int) -> RayBundle:
        return RayBundle(
            self.origins.reshape(*shape, 3),
            self.directions.reshape(*shape, 3),
            self.z_scale.reshape(*shape),
        )

    def __getitem__(self, index) -> RayBundle:
        return RayBundle(self.origins[index], self.directions[index], self.z_scale[index])


@dataclass
class Cameras:
    """N pinhole cameras. ``intrinsics`` (N, 3, 3), ``w2c`` (N, 4, 4), ``sizes`` (N, 2) = (W, H).

    ``flash`` (N, 3) is where each view's light was, in that view's camera coordinates (OpenCV
    axes, scene units); None means at the centre of projection, IRON's co-located flash.
    """

    intrinsics: Tensor
    w2c: Tensor
    sizes: Tensor
    flash: Tensor | None = None

    def __post_init__(self) -> None:
        if self.intrinsics.ndim == 2:  # a single camera
            self.intrinsics = self.intrinsics[None]
            self.w2c = self.w2c[None]
            self.sizes = self.sizes.reshape(1, 2)
            if self.flash is not None:
                self.flash = self.flash.reshape(1, 3)
        self.sizes = self.sizes.to(device=self.intrinsics.device, dtype=torch.long)
        if self.flash is not None:
            self.flash = self.flash.to(device=self.intrinsics.device, dtype=self.w2c.dtype)
            if not bool(self.flash.any()):
                self.flash = None  # every light in its lens: the co-located case, exactly

    # ----------------------------------------------------------------------------- basics
    @classmethod
    def from_iron(cls, K: Tensor, W2C: Tensor, sizes: Tensor) -> Cameras:
        """Build from IRON's 4x4 ``K`` (N, 4, 4), ``W2C`` (N, 4, 4) and ``img_size`` (N, 2)."""
        return cls(K[..., :3, :3].clone(), W2C.clone(), sizes)

    def to_iron_K(self) -> Tensor:
        """Intrinsics as IRON's 4x4 matrices (N, 4, 4)."""
        K = torch.eye(4, dtype=self.intrinsics.dtype, device=self.device).repeat(len(self), 1, 1)
        K[:, :3, :3] = self.intrinsics
        return K

    @property
    def device(self) -> torch.device:
        return self.intrinsics.device

    def __len__(self) -> int:
        return self.intrinsics.shape[0]

    def __getitem__(self, index) -> Cameras:
        if isinstance(index, int):
            index = slice(index, index + 1)
        flash = None if self.flash is None else self.flash[index]
        return Cameras(self.intrinsics[index], self.w2c[index], self.sizes[index], flash)

    def to(self, device: torch.device | str) -> Cameras:
        flash = None if self.flash is None else self.flash.to(device)
        return Cameras(
            self.intrinsics.to(device), self.w2c.to(device), self.sizes.to(device), flash
        )

    @property
    def c2w(self) -> Tensor:
        """Camera-to-world matrices (N, 4, 4), the exact inverse of a rigid W2C."""
        R = self.w2c[:, :3, :3]
        t = self.w2c[:, :3, 3:]
        c2w = torch.eye(4, dtype=self.w2c.dtype, device=self.device).repeat(len(self), 1, 1)
        c2w[:, :3, :3] = R.transpose(1, 2)
        c2w[:, :3, 3:] = -R.transpose(1, 2) @ t
        return c2w

    @property
    def centers(self) -> Tensor:
        """Camera centres in world coordinates (N, 3)."""
        return self.c2w[:, :3, 3]

    @property
    def colocated(self) -> bool:
        """Is every view's light at its centre of projection (IRON's assumption)?"""
        return self.flash is None

    @property
    def flash_positions(self) -> Tensor:
        """Each view's light in world coordinates (N, 3): ``C2W (flash, 1)``; the centres when
        the flash is co-located."""
        if self.flash is None:
            return self.centers
        c2w = self.c2w
        return (c2w[:, :3, :3] @ self.flash.unsqueeze(-1)).squeeze(-1) + c2w[:, :3, 3]

    @property
    def forward(self) -> Tensor:
        """Unit optical axes (camera +z) in world coordinates (N, 3)."""
        return self.w2c[:, 2, :3]

    def width(self, i: int = 0) -> int:
        return int(self.sizes[i, 0])

    def height(self, i: int = 0) -> int:
        return int(self.sizes[i, 1])

    # ----------------------------------------------------------------------------- rays
    def generate_rays(self, camera_indices: Tensor, pixels: Tensor) -> RayBundle:
        """Rays through continuous pixel coordinates.

        ``camera_indices`` (...) long; ``pixels`` (..., 2) as (u, v). Pass ``ij + 0.5`` for
        pixel centres. Differentiable with respect to ``pixels``.
        """
        K = self.intrinsics[camera_indices]
        c2w = self.c2w[camera_indices]
        fx, fy = K[..., 0, 0], K[..., 1, 1]
        cx, cy, skew = K[..., 0, 2], K[..., 1, 2], K[..., 0, 1]
        y = (pixels[..., 1] - cy) / fy
        x = (pixels[..., 0] - cx - skew * y) / fx
        d_cam = torch.stack([x, y, torch.ones_like(x)], dim=-1)
        d_world = (c2w[..., :3, :3] @ d_cam.unsqueeze(-1)).squeeze(-1)
        norm = d_world.norm(dim=-1, keepdim=True)
        directions = d_world / norm
        origins = c2w[..., :3, 3].expand_as(directions)
        return RayBundle(origins, directions, 1.0 / norm.squeeze(-1))

    def pixel_centers(self, i: int = 0) -> Tensor:
        """Centres of every pixel of camera ``i`` as (H, W, 2) continuous (u, v)."""
        W, H = self.width(i), self.height(i)
        v, u = torch.meshgrid(
            torch.arange(H, device=self.device, dtype=self.intrinsics.dtype) + 0.5,
            torch.arange(W, device=self.device, dtype=self.intrinsics.dtype) + 0.5,
            indexing="ij",
        )
        return torch.stack([u, v], dim=-1)

    def image_plane(self, i: int = 0) -> Tensor:
        """Every pixel centre of camera ``i`` on the plane at unit depth, (H, W, 2):
        ``((u - c_x) / f_x, (v - c_y) / f_y)``, the tangents of the ray's angles off the optical
        axis. A crop's pixels keep their full-image values (its principal point moved with it),
        and a scaled camera's the same (both sides scale): a vignetting expressed in these
        coordinates fits any patch or resolution of the photograph."""
        K = self.intrinsics[i]
        pixels = self.pixel_centers(i)
        y = (pixels[..., 1] - K[1, 2]) / K[1, 1]
        x = (pixels[..., 0] - K[0, 2] - K[0, 1] * y) / K[0, 0]
        return torch.stack([x, y], dim=-1)

    def field_radius(self) -> float:
        """The largest :meth:`image_plane` radius any view's image corner reaches (the lens's
        field of view, as a tangent): what a vignetting polynomial is normalised by."""
        radius = 0.0
        for i in range(len(self)):
            K = self.intrinsics[i]
            for u in (0.0, float(self.width(i))):
                for v in (0.0, float(self.height(i))):
                    y = (v - float(K[1, 2])) / float(K[1, 1])
                    x = (u - float(K[0, 2]) - float(K[0, 1]) * y) / float(K[0, 0])
                    radius = max(radius, (x * x + y * y) ** 0.5)
        return radius

    def image_rays(self, i: int = 0) -> RayBundle:
        """Rays through all pixel centres of camera ``i``, shaped (H, W)."""
        pixels = self.pixel_centers(i)
        index = torch.full(pixels.shape[:-1], i, dtype=torch.long, device=self.device)
        return self.generate_rays(index, pixels)

    # ----------------------------------------------------------------------------- projection
    def project(self, points: Tensor, camera_indices: Tensor | int = 0) -> tuple[Tensor, Tensor]:
        """Project world points (..., 3) to continuous pixel coordinates (..., 2) and z-depth (...).

        Points behind the camera get z <= 0; their (u, v) is meaningless. Differentiable.
        """
        if isinstance(camera_indices, int):
            camera_indices = torch.full(points.shape[:-1], camera_indices, device=self.device)
        w2c = self.w2c[camera_indices]
        K = self.intrinsics[camera_indices]
        p_cam = (w2c[..., :3, :3] @ points.unsqueeze(-1)).squeeze(-1) + w2c[..., :3, 3]
        z = p_cam[..., 2]
        uvw = (K @ p_cam.unsqueeze(-1)).squeeze(-1)
        safe_z = torch.where(z.abs() > 1e-12, z, torch.full_like(z, 1e-12))
        return uvw[..., :2] / safe_z.unsqueeze(-1), z

    # ----------------------------------------------------------------------------- editing
    def crop(self, i: int, x0: int, y0: int, width: int, height: int) -> Cameras:
        """Camera ``i`` restricted to the window [x0, x0+width) x [y0, y0+height).

        The principal point shifts by (x0, y0); pixel (0, 0) of the crop is pixel (x0, y0).
        """
        K = self.intrinsics[i : i + 1].clone()
        K[:, 0, 2] -= x0
        K[:, 1, 2] -= y0
        sizes = torch.tensor([[width, height]], device=self.device)
        flash = None if self.flash is None else self.flash[i : i + 1]
        return Cameras(K, self.w2c[i : i + 1].clone(), sizes, flash)

    def scaled(self, factor: float) -> Cameras:
        """Cameras for images resized by ``factor`` (continuous coordinates scale exactly)."""
        K = self.intrinsics.clone()
        K[:, :2, :] *= factor
        sizes = torch.round(self.sizes.to(torch.float64) * factor).to(torch.long)
        return Cameras(K, self.w2c.clone(), sizes, self.flash)


def look_at(eye: Tensor, target: Tensor, up: Tensor) -> Tensor:
    """World-to-camera matrices (N, 4, 4) with OpenCV axes looking from ``eye`` at ``target``.

    ``up`` is the world direction that should appear up in the image (camera -y).
    """
    eye, target, up = torch.broadcast_tensors(eye, target, up)
    forward = torch.nn.functional.normalize(target - eye, dim=-1)
    right = torch.nn.functional.normalize(torch.cross(forward, up, dim=-1), dim=-1)
    down = torch.cross(forward, right, dim=-1)
    R = torch.stack([right, down, forward], dim=-2)  # rows: camera axes in world coordinates
    w2c = torch.eye(4, dtype=eye.dtype, device=eye.device).repeat(*eye.shape[:-1], 1, 1)
    w2c[..., :3, :3] = R
    w2c[..., :3, 3] = -(R @ eye.unsqueeze(-1)).squeeze(-1)
    return w2c


def intrinsics_from_fov(width: int, height: int, fov_x_degrees: float) -> Tensor:
    """A 3x3 pinhole matrix: square pixels, horizontal field of view, centred principal point."""
    f = 0.5 * width / math.tan(math.radians(fov_x_degrees) / 2)
    return torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])


#: Below this norm the mean of the cameras' up vectors has no direction (cameras rolled freely).
MIN_MEAN_UP = 1e-6


def capture_up(cameras: Cameras) -> np.ndarray:
    """The capture's up direction (3,): the normalised mean of the cameras' up vectors.

    With OpenCV axes the camera's y points down the image, so camera ``i`` shows world direction
    ``u_i = -R_i^T e_y = -(row 1 of R_i)`` as up (``R_i`` the rotation of its W2C). A person holds
    the camera upright, so ``normalize(sum_i u_i)`` is the world's up; on a ring of views the
    tilts towards the object cancel. Should the vectors cancel altogether (cameras rolled
    freely), the first camera's up is returned.
    """
    ups = -cameras.w2c[:, 1, :3].detach().cpu().double().numpy()
    mean = ups.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    if norm < MIN_MEAN_UP:
        return ups[0] / np.linalg.norm(ups[0])
    return mean / norm
