"""Sphere tracing and the interior reparameterisation against closed-form ray-sphere answers."""

from __future__ import annotations

import pytest
import torch

from ironrender.data.cameras import Cameras, intrinsics_from_fov, look_at
from ironrender.errors import IronError
from ironrender.fields.base import SDFField, SDFSample, SphereSDF
from ironrender.rendering.surface import (
    SphereTraceConfig,
    differentiable_hits,
    sphere_trace,
)

CENTER = (0.1, -0.05, 0.08)
RADIUS = 0.55
# Rays whose hit is this far from grazing (sqrt of the discriminant, world units) must be exact.
NON_GRAZING = 0.05


def _rays(size: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    w2c = look_at(torch.tensor([[0.4, 0.5, 2.3]]), torch.zeros(3), torch.tensor([0.0, 1.0, 0.0]))
    cameras = Cameras(intrinsics_from_fov(size, size, 45.0)[None], w2c, torch.tensor([[size] * 2]))
    rays = cameras.image_rays(0).reshape(-1)
    return rays.origins, rays.directions


def _analytic(origins, directions, radius=RADIUS):
    """Near ray-sphere distance t*, hit mask, sqrt(discriminant) and dt*/dr."""
    oc = origins - torch.tensor(CENTER)
    b = (oc * directions).sum(-1)
    disc = b * b - (oc * oc).sum(-1) + radius**2
    root = disc.clamp_min(0).sqrt()
    return -b - root, disc > 0, root, -radius / root.clamp_min(1e-12)


class ScaledSDF(SDFField):
    """``k * (|x - c| - r)``: the same zero set, but not a distance for k != 1."""

    def __init__(self, scale: float):
        super().__init__()
        self.sphere = SphereSDF(RADIUS, CENTER)
        self.scale = scale

    def forward(self, points):
        return SDFSample(
            self.scale * self.sphere(points).sdf, points.new_zeros(*points.shape[:-1], 0)
        )


def test_sphere_tracing_hits_the_exact_ray_sphere_distance():
    origins, directions = _rays()
    config = SphereTraceConfig()
    trace = sphere_trace(SphereSDF(RADIUS, CENTER), origins, directions, config)
    t_true, hit_true, root, _ = _analytic(origins, directions)
    clear = root > NON_GRAZING
    assert bool((trace.hit[clear] == hit_true[clear]).all())
    assert bool((~trace.hit[~hit_true]).all())  # nothing outside the sphere
    hits = trace.hit & hit_true & clear
    assert hits.sum() > 300
    # |s| <= threshold and |ds/dt| = root / r along the ray bound the distance error.
    err = (trace.t[hits] - t_true[hits]).abs()
    assert float(err.max()) < config.threshold * RADIUS / NON_GRAZING + 1e-5
    assert float(err.median()) < 2 * config.threshold


def test_fallback_finds_hits_of_a_non_distance_sdf():
    """k = 0.1 converges too slowly (crossing ahead); k = 2 oscillates around the surface (the
    crossing was stepped over): both need dense sampling + bisection."""
    origins, directions = _rays()
    t_true, hit_true, root, _ = _analytic(origins, directions)
    config = SphereTraceConfig(max_iterations=16)  # IRON's count: many rays reach the fallback
    for scale in (0.1, 2.0):
        trace = sphere_trace(ScaledSDF(scale), origins, directions, config)
        fallback = trace.hit & ~trace.converged
        clear = hit_true & (root > NON_GRAZING)
        assert int(fallback.sum()) > 100, scale
        assert bool(trace.hit[clear].all()), scale
        err = (trace.t[fallback & clear] - t_true[fallback & clear]).abs()
        # bisection to 1e-4, then the secant root inside the final bracket
        assert float(err.max()) < config.bisection_tolerance, scale


def test_interior_reparameterisation_gives_the_implicit_derivative():
    """d(hit)/d(radius) = d * dt*/dr with dt*/dr = -r / sqrt(disc) (moving along the ray)."""
    origins, directions = _rays(24)
    sdf = SphereSDF(RADIUS, CENTER)
    # The derivative is exact on the surface; a point traced to |s| <= threshold lies up to
    # threshold / cos off it along the ray, which moves g . v by ~threshold / (r cos^2), relative:
    # 1 % for IRON's 5e-5 at the grazing limit here. Trace tightly to test the formula itself.
    trace = sphere_trace(sdf, origins, directions, SphereTraceConfig(threshold=1e-6))
    hits = differentiable_hits(sdf, origins, directions, trace)
    _, _, root, dt_dr = _analytic(origins, directions)
    rows = (root[trace.hit] > NON_GRAZING).nonzero().squeeze(-1)
    assert rows.numel() > 50
    d = directions[trace.hit]
    for row in rows[:: max(1, rows.numel() // 40)].tolist():
        (grad,) = torch.autograd.grad(
            hits.points[row], sdf.radius, torch.ones(3), retain_graph=True
        )
        expected = (d[row] * dt_dr[trace.hit][row]).sum()
        torch.testing.assert_close(grad, expected, rtol=2e-3, atol=1e-5)
    # Forward values are the traced points; normals are the sphere's.
    x = hits.points.detach()
    analytic_normals = torch.nn.functional.normalize(x - torch.tensor(CENTER), dim=-1)
    torch.testing.assert_close(hits.normals.detach(), analytic_normals, atol=1e-5, rtol=0)
    torch.testing.assert_close(hits.view_dirs, -d)


def test_normals_follow_the_moving_point():
    """n = (x - c)/|x - c| at the reparameterised x: dn/dr = (dx/dr - n (n . dx/dr)) / r."""
    origins, directions = _rays(16)
    sdf = SphereSDF(RADIUS, CENTER)
    trace = sphere_trace(sdf, origins, directions, SphereTraceConfig())
    hits = differentiable_hits(sdf, origins, directions, trace)
    _, _, root, dt_dr = _analytic(origins, directions)
    row = int(torch.argmax(root[trace.hit] * (root[trace.hit] < 0.3)))  # a slanted hit
    weights = torch.tensor([0.3, -0.7, 0.5])
    (grad,) = torch.autograd.grad((hits.normals[row] * weights).sum(), sdf.radius)
    n = hits.normals[row].detach()
    dx = directions[trace.hit][row] * dt_dr[trace.hit][row]
    dn = (dx - n * (n * dx).sum()) / RADIUS
    torch.testing.assert_close(grad, (dn * weights).sum(), rtol=5e-3, atol=1e-5)


def test_patch_of_a_crop_equals_the_window_of_the_full_image_and_misses_are_black():
    from ironrender.rendering.surface_renderer import ShadeResult, SurfaceRenderConfig, render_patch

    def shade(hit, lights, colocated):
        # view-dependent colour so a wrong crop offset would show
        return ShadeResult(0.5 + 0.5 * hit.normals, {"r": hit.normals[:, :1]})

    size = 48
    w2c = look_at(torch.tensor([[0.3, 0.2, 2.4]]), torch.zeros(3), torch.tensor([0.0, 1.0, 0.0]))
    cameras = Cameras(intrinsics_from_fov(size, size, 40.0)[None], w2c, torch.tensor([[size] * 2]))
    sdf = SphereSDF(RADIUS, CENTER)
    full = render_patch(sdf, shade, cameras, 0, SurfaceRenderConfig(), training=False)
    crop = render_patch(
        sdf, shade, cameras.crop(0, 5, 9, 30, 20), 0, SurfaceRenderConfig(), training=False
    )
    torch.testing.assert_close(crop.color, full.color[9:29, 5:35], atol=1e-5, rtol=0)
    assert crop.extras["r"].shape == (20, 30, 1)
    assert float(full.color[~full.mask].abs().max()) == 0.0
    assert int(full.edge_mask.sum()) > 0


def test_trace_counts_that_would_trace_nothing_are_refused():
    """A negative step count would call every pixel a miss without a word."""
    for bad in ({"max_iterations": -1}, {"fallback_samples": 1}):
        with pytest.raises(IronError, match="max_iterations must be >= 0"):
            SphereTraceConfig(**bad)
    assert SphereTraceConfig(max_iterations=0).max_iterations == 0
