"""Where to put samples along rays: sphere bounds, stratified samples, inverse-CDF sampling,
and a cached SDF grid that answers the no-gradient proposal queries cheaply.

All functions take tensors on any device and an optional ``torch.Generator`` on that device, so
a training run with a seeded generator is repeatable and resumable exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ironrender.fields.base import SDFField

PDF_EPSILON = 1e-5  # added to every bin's weight: no bin has zero probability (NeuS)


def sphere_bounds(origins: Tensor, directions: Tensor, radius: float = 1.0) -> tuple[Tensor, ...]:
    """Exact entry/exit distances of rays ``o + t d`` (unit ``d``) through the sphere ``|x| = r``.

    ``|o + t d|^2 = r^2`` gives ``t = -b -+ sqrt(b^2 - c)`` with ``b = o.d``, ``c = |o|^2 - r^2``.
    Returns ``near = max(t1, 0)``, ``far = max(t2, near)`` and ``hit`` (R,). Rays that miss get a
    zero-length interval at their closest approach, so they render as pure background.
    """
    b = (origins * directions).sum(-1)
    c = (origins * origins).sum(-1) - radius**2
    disc = b * b - c
    hit = disc > 0
    root = torch.sqrt(disc.clamp(min=0.0))
    near = (-b - root).clamp(min=0.0)
    far = torch.maximum(-b + root, near)
    return near, far, hit & (far > 0)


def stratified(
    near: Tensor, far: Tensor, count: int, jitter: bool, generator: torch.Generator | None = None
) -> Tensor:
    """``count`` section starts per ray splitting [near, far] evenly, jittered within each
    stratum when ``jitter`` (R, count). The last section ends at ``far``."""
    steps = torch.linspace(0.0, 1.0, count + 1, device=near.device, dtype=near.dtype)[:-1]
    z = near[:, None] + (far - near)[:, None] * steps
    if jitter:
        u = torch.rand(z.shape, device=z.device, dtype=z.dtype, generator=generator)
        z = z + u * ((far - near) / count)[:, None]
    return z


def sample_pdf(
    bins: Tensor,
    weights: Tensor,
    count: int,
    jitter: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Inverse-transform sampling of the piecewise-constant density ``weights`` (R, B) on the
    bins with edges ``bins`` (R, B+1): ``count`` distances per ray (R, count), unsorted-safe."""
    pdf = weights + PDF_EPSILON
    pdf = pdf / pdf.sum(-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, -1)], -1)  # (R, B+1)
    if jitter:
        u = torch.rand(
            (*cdf.shape[:-1], count), device=cdf.device, dtype=cdf.dtype, generator=generator
        )
    else:
        u = torch.linspace(0.5 / count, 1 - 0.5 / count, count, device=cdf.device, dtype=cdf.dtype)
        u = u.expand(*cdf.shape[:-1], count).contiguous()
    index = torch.searchsorted(cdf.contiguous(), u, right=True)
    below = (index - 1).clamp(min=0)
    above = index.clamp(max=cdf.shape[-1] - 1)
    cdf_lo, cdf_hi = cdf.gather(-1, below), cdf.gather(-1, above)
    bin_lo, bin_hi = bins.gather(-1, below), bins.gather(-1, above)
    span = torch.where(cdf_hi - cdf_lo < PDF_EPSILON, torch.ones_like(cdf_hi), cdf_hi - cdf_lo)
    return bin_lo + (u - cdf_lo) / span * (bin_hi - bin_lo)


class SDFGridCache:
    """The SDF sampled on a ``resolution^3`` lattice over [-bound, bound]^3, read back with
    trilinear interpolation: a proposal field for importance sampling that costs one
    ``grid_sample`` instead of a network evaluation per query.

    It is refreshed from the network every few steps (no gradients); between refreshes it lags
    the network slightly, which only moves where samples go, never what they render.
    """

    def __init__(self, resolution: int, bound: float, device: torch.device | str):
        self.resolution = resolution
        self.bound = bound
        self.values = torch.zeros(1, 1, resolution, resolution, resolution, device=device)

    def lattice(self) -> Tensor:
        """Lattice points (R^3, 3) in (z, y, x)-major order, matching grid_sample's (D, H, W)."""
        axis = torch.linspace(-self.bound, self.bound, self.resolution, device=self.values.device)
        zz, yy, xx = torch.meshgrid(axis, axis, axis, indexing="ij")
        return torch.stack([xx, yy, zz], dim=-1).reshape(-1, 3)

    @torch.no_grad()
    def refresh(self, sdf: SDFField, chunk: int = 65536) -> None:
        points = self.lattice()
        values = torch.cat([sdf.sdf(p) for p in points.split(chunk)])
        r = self.resolution
        self.values = values.reshape(1, 1, r, r, r).to(self.values.dtype)

    @torch.no_grad()
    def __call__(self, points: Tensor) -> Tensor:
        coords = (points / self.bound).reshape(1, -1, 1, 1, 3).to(self.values.dtype)
        out = F.grid_sample(
            self.values, coords, mode="bilinear", padding_mode="border", align_corners=True
        )
        return out.reshape(points.shape[:-1]).to(points.dtype)

    def state_dict(self) -> dict:
        return {"values": self.values}

    def load_state_dict(self, state: dict) -> None:
        self.values = state["values"].to(self.values.device)
