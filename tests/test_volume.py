"""NeuS volume rendering against closed forms: an analytic sphere SDF and ray-sphere geometry."""

from __future__ import annotations

import math

import torch

from ironrender.data.cameras import RayBundle
from ironrender.fields.base import SphereSDF
from ironrender.fields.radiance import RadianceConfig, RadianceField
from ironrender.rendering.samplers import SDFGridCache, sample_pdf, sphere_bounds
from ironrender.rendering.volume import Background, VolumeConfig, render_rays

RADIUS = 0.5


def _rays(count: int, seed: int = 0) -> RayBundle:
    """Rays from points on a sphere of radius 3 aimed near the origin (some miss r = 0.5)."""
    generator = torch.Generator().manual_seed(seed)
    origins = torch.nn.functional.normalize(torch.randn(count, 3, generator=generator), dim=-1) * 3
    targets = (torch.rand(count, 3, generator=generator) * 2 - 1) * 0.45
    directions = torch.nn.functional.normalize(targets - origins, dim=-1)
    return RayBundle(origins, directions, torch.ones(count))


def _analytic_hit(rays: RayBundle, radius: float):
    """Closed-form first intersection with |x| = radius: t = -b - sqrt(b^2 - c)."""
    b = (rays.origins * rays.directions).sum(-1)
    c = (rays.origins**2).sum(-1) - radius**2
    disc = b**2 - c
    return -b - torch.sqrt(disc.clamp(min=0)), disc > 0


def _render(rays, inv_s: float, config: VolumeConfig | None = None):
    radiance = RadianceField(RadianceConfig(), feature_dim=0)
    return render_rays(
        rays,
        SphereSDF(RADIUS),
        radiance,
        torch.tensor(inv_s),
        Background("black"),
        config or VolumeConfig(),
        create_graph=False,
    )


def test_sphere_bounds_lie_on_the_sphere():
    rays = _rays(64)
    near, far, hit = sphere_bounds(rays.origins, rays.directions, 1.0)
    assert bool(hit.all())  # every ray aims inside the unit sphere
    for t in (near, far):
        points = rays.origins + rays.directions * t[:, None]
        torch.testing.assert_close(points.norm(dim=-1), torch.ones(64), atol=1e-5, rtol=0)
    # A ray pointing away from a sphere it starts outside of misses it.
    _, _, hit = sphere_bounds(torch.tensor([[0.0, 0.0, 3.0]]), torch.tensor([[0.0, 0.0, 1.0]]))
    assert not bool(hit.any())


def test_neus_weights_peak_at_the_surface_and_sum_to_at_most_one():
    rays = _rays(128)
    out = _render(rays, inv_s=2000.0)
    t_hit, hit = _analytic_hit(rays, RADIUS)
    distances = (out.points - rays.origins[:, None]).norm(dim=-1)
    assert bool((out.weights.sum(-1) <= 1 + 1e-5).all())
    assert bool((out.weights >= 0).all())
    peak = distances.gather(-1, out.weights.argmax(-1, keepdim=True))[:, 0]
    spacing = 2.0 / VolumeConfig().n_coarse
    assert ((peak - t_hit).abs()[hit] < spacing).all()
    # Rays that hit are opaque; rays that miss the sphere are transparent.
    assert out.opacity[hit].min() > 0.99
    assert out.opacity[~hit].max() < 0.01 if bool((~hit).any()) else True


def test_rendered_depth_matches_ray_sphere_intersection():
    rays = _rays(128, seed=1)
    t_hit, hit = _analytic_hit(rays, RADIUS)
    grazing = _analytic_hit(rays, RADIUS * 0.98)[1]  # keep rays that enter the sphere clearly
    keep = hit & grazing
    for inv_s, tolerance in ((500.0, 5e-3), (4000.0, 1e-3)):
        out = _render(rays, inv_s)
        error = (out.depth - t_hit).abs()[keep]
        assert error.max() < tolerance, (inv_s, float(error.max()))


def test_depth_is_unbiased_even_with_a_soft_density():
    """NeuS's weights peak at the zero crossing for any inv_s (first-order unbiasedness): a
    head-on ray through a sphere of radius 0.5 at low sharpness still gets depth 2.5."""
    rays = RayBundle(
        torch.tensor([[0.0, 0.0, -3.0]]), torch.tensor([[0.0, 0.0, 1.0]]), torch.ones(1)
    )
    out = _render(rays, inv_s=100.0, config=VolumeConfig(n_coarse=512, n_importance=0))
    distances = out.points[0, :, 2] + 3.0
    peak = distances[out.weights[0].argmax()]
    assert abs(float(peak) - 2.5) < 2.0 / 512 * 1.5


def test_fast_sampling_with_a_cached_proposal_finds_the_surface():
    """The fast preset renders only importance samples placed by a cached SDF grid."""
    rays = _rays(128, seed=2)
    cache = SDFGridCache(resolution=32, bound=1.0, device="cpu")
    cache.refresh(SphereSDF(RADIUS))
    config = VolumeConfig(n_coarse=32, n_importance=32, up_sample_steps=2, render_coarse=False)
    radiance = RadianceField(RadianceConfig(), feature_dim=0)
    out = render_rays(
        rays,
        SphereSDF(RADIUS),
        radiance,
        torch.tensor(1000.0),
        Background(),
        config,
        proposal=cache,
        create_graph=False,
    )
    t_hit, hit = _analytic_hit(rays, RADIUS)
    keep = hit & _analytic_hit(rays, RADIUS * 0.98)[1]
    assert (out.depth - t_hit).abs()[keep].max() < 5e-3
    assert out.opacity[keep].min() > 0.99


def test_sample_pdf_follows_the_density():
    bins = torch.tensor([[0.0, 1.0, 2.0, 4.0]])
    weights = torch.tensor([[1.0, 3.0, 0.0]])
    samples = sample_pdf(
        bins, weights, 4000, jitter=True, generator=torch.Generator().manual_seed(0)
    )
    in_second = ((samples >= 1) & (samples < 2)).float().mean()
    assert math.isclose(float(in_second), 0.75, abs_tol=0.03)
    assert float((samples >= 2).float().mean()) < 0.01
