"""Sphere tracing of an SDF and the differentiable ray-surface intersection (IRON stage 2).

Two halves, as in IRON (§3.2; docs/architecture.md#sphere-tracing and
#interior-reparameterisation, (A12)-(A13)):

1. :func:`sphere_trace` finds, **without gradients**, the first zero crossing of ``s(o + t d)``
   inside the bounding sphere: sphere tracing from the ray's entry into the sphere, then, for rays
   that did not converge, dense uniform samples, the first ``+ -> -`` sign change and bisection.
2. :func:`differentiable_hits` turns the traced distances into points that carry the gradient of
   the *implicit* intersection (IRON Eq. 4; ``reparam_points`` in its code), plus unit normals and
   features from the SDF with ``create_graph`` so shading and the eikonal term can backpropagate.

Sign conventions: ``s < 0`` inside, ``s > 0`` outside, ``g = grad s`` points outwards; rays are
``x(t) = o + t d`` with unit ``d``; ``v = -d`` is the unit direction from the point to the camera,
so a visible (front-facing) hit has ``g . v > 0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ironrender.config import option
from ironrender.errors import IronError
from ironrender.fields.base import SDFField


@dataclass
class SphereTraceConfig:
    """Sphere tracing and fallback parameters (IRON's ``RayTracer`` but for ``max_iterations``).

    IRON stops sphere tracing after 16 steps (the ``paper`` preset does). Rays that graze the
    surface need more, and each of them then pays 128 SDF samples plus bisection in the
    fallback, which cost more than the march itself; ours march up to 64 steps
    (BENCHMARKS.md, "Sphere tracing: 16 or 64 steps").
    """

    max_iterations: int = option(64, "sphere-tracing steps (step = SDF value, no relaxation)")
    threshold: float = option(5e-5, "converged when |s| <= threshold")
    fallback_samples: int = option(128, "uniform samples for rays that did not converge")
    bisection_tolerance: float = option(1e-4, "bisect until the bracket is shorter (2 x threshold)")
    bounding_radius: float = option(1.0, "the object lies inside the sphere |x| < bounding_radius")
    chunk_size: int = option(200_000, "points per SDF evaluation in the fallback")
    min_cos: float = option(1e-4, "lower clamp of g . v in the interior reparameterisation")

    def __post_init__(self) -> None:
        # A negative count would trace nothing and call every pixel a miss, in silence.
        if self.max_iterations < 0 or self.fallback_samples < 2:
            raise IronError(
                "stage2.render.trace: max_iterations must be >= 0 and fallback_samples >= 2,"
                f" not {self.max_iterations} and {self.fallback_samples}"
            )


@dataclass
class TraceResult:
    """Traced rays, all (R,): ``t`` distance along the ray (0 where nothing was hit); ``hit``;
    ``converged`` (found by sphere tracing itself; the others came from the fallback)."""

    t: Tensor
    hit: Tensor
    converged: Tensor


@dataclass
class SurfaceHit:
    """Differentiable ray-surface intersections of the rays selected by ``mask``.

    All fields have one row per selected ray (R = mask.sum()):
    ``points`` (R, 3) reparameterised hits (value = traced point, gradient = implicit
    intersection); ``normals`` (R, 3) unit ``g/|g|``; ``gradients`` (R, 3) raw ``g`` (eikonal);
    ``sdf`` (R,); ``features`` (R, F); ``view_dirs`` (R, 3) unit, point -> camera; ``t`` (R,)
    detached distance along the ray; ``mask`` (...) bool over the traced rays;
    ``light_visibility`` (R, 1) whether the flash sees the point (:func:`light_visibility`;
    traced only for a flash beside the lens: a light in the lens sees every point the camera
    sees).
    """

    points: Tensor
    normals: Tensor
    gradients: Tensor
    sdf: Tensor
    features: Tensor
    view_dirs: Tensor
    t: Tensor
    mask: Tensor
    light_visibility: Tensor | None = None  # (R, 1) 1 lit, 0 in a shadow; None: not traced

    def __len__(self) -> int:
        return self.points.shape[0]


# --------------------------------------------------------------------------------- tracing
def intersect_sphere(
    origins: Tensor, directions: Tensor, radius: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Entry and exit distances of unit-direction rays with the sphere ``|x| = radius``.

    Returns ``near = max(t1, 0)``, ``far = t2`` and ``valid`` (the ray meets the sphere ahead).
    """
    b = (origins * directions).sum(-1)
    c = (origins * origins).sum(-1) - radius**2
    disc = b * b - c
    valid = disc > 0
    h = disc.clamp_min(0).sqrt()
    near = (-b - h).clamp_min(0)
    far = -b + h
    return near, far, valid & (far > 0)


def _sdf_chunked(sdf: SDFField, points: Tensor, chunk_size: int) -> Tensor:
    flat = points.reshape(-1, 3)
    values = [sdf.sdf(flat[i : i + chunk_size]) for i in range(0, flat.shape[0], chunk_size)]
    if not values:
        return points.new_zeros(points.shape[:-1])
    return torch.cat(values).reshape(points.shape[:-1])


SHADOW_RAY_OFFSET = 2e-3
"""Shadow rays start this far off the surface along the normal (scene units; about a quarter
of a pixel at the object for a 256-pixel view of the unit sphere from 3 units), so that they
do not find the surface they leave."""


def light_visibility(
    sdf: SDFField, points: Tensor, normals: Tensor, light: Tensor, config: SphereTraceConfig
) -> Tensor:
    """1 where nothing lies between a surface point and the point light ``light`` (3,), else 0;
    (R, 1), no gradient (a shadow's edge moves with the geometry, which the edge pixels of the
    camera's own silhouettes already teach). The shadow ray starts ``SHADOW_RAY_OFFSET`` off the
    surface towards the light's side; the light lies outside the bounding sphere, so any hit
    inside it is in the way."""
    with torch.no_grad():
        to_light = light - points
        directions = to_light / to_light.norm(dim=-1, keepdim=True)
        side = torch.where((normals * directions).sum(-1, keepdim=True) >= 0, 1.0, -1.0)
        origins = points + SHADOW_RAY_OFFSET * side * normals
        blocked = sphere_trace(sdf, origins, directions, config).hit
    return (~blocked).to(points.dtype).unsqueeze(-1)


@torch.no_grad()
def sphere_trace(
    sdf: SDFField, origins: Tensor, directions: Tensor, config: SphereTraceConfig
) -> TraceResult:
    """First intersection of rays (R, 3) with the zero level set, without gradients.

    Sphere tracing starts at the ray's entry into the bounding sphere and steps by the SDF value
    for up to ``max_iterations`` steps; a ray converges when ``|s| <= threshold`` and leaves when
    ``t > far``. Rays that neither converged nor left go to :func:`_fallback_search`.
    """
    near, far, valid = intersect_sphere(origins, directions, config.bounding_radius)
    t = near.clone()
    s_last = torch.zeros_like(t)
    converged = torch.zeros_like(valid)
    active = valid.clone()
    for iteration in range(config.max_iterations + 1):
        idx = active.nonzero().squeeze(-1)
        if idx.numel() == 0:
            break
        s = sdf.sdf(origins[idx] + t[idx, None] * directions[idx])
        s_last[idx] = s
        done = s.abs() <= config.threshold
        converged[idx[done]] = True
        if iteration == config.max_iterations:
            break
        moving = idx[~done]
        t[moving] = torch.maximum(t[moving] + s[~done], near[moving])
        left = t[moving] > far[moving]
        active[idx[done]] = False
        active[moving[left]] = False

    unresolved = valid & ~converged & (t <= far)
    hit = converged.clone()
    idx = unresolved.nonzero().squeeze(-1)
    if idx.numel() > 0:
        # Outside the surface at the last point: the crossing is ahead; inside: it was stepped over.
        ahead = s_last[idx] > 0
        lo = torch.where(ahead, t[idx], near[idx])
        hi = torch.where(ahead, far[idx], t[idx])
        t_found, found = _fallback_search(sdf, origins[idx], directions[idx], lo, hi, config)
        t[idx] = torch.where(found, t_found, t[idx])
        hit[idx[found]] = True
    t = torch.where(hit, t, torch.zeros_like(t))
    return TraceResult(t=t, hit=hit, converged=converged)


def _fallback_search(
    sdf: SDFField,
    origins: Tensor,
    directions: Tensor,
    lo: Tensor,
    hi: Tensor,
    config: SphereTraceConfig,
) -> tuple[Tensor, Tensor]:
    """Dense uniform samples on [lo, hi], first ``+ -> -`` sign change, then bisection.

    Bisection halves the bracket until it is shorter than ``bisection_tolerance``; the returned
    distance is the secant (linear-interpolation) root inside the final bracket. Returns
    ``(t, found)``; rays without a sign change are not hits (background).
    """
    steps = torch.linspace(0.0, 1.0, config.fallback_samples, device=lo.device, dtype=lo.dtype)
    ts = lo[:, None] + (hi - lo)[:, None] * steps  # (R, N)
    s = _sdf_chunked(sdf, origins[:, None] + ts[..., None] * directions[:, None], config.chunk_size)
    change = (s[:, :-1] > 0) & (s[:, 1:] <= 0)
    found = change.any(-1)
    first = change.to(torch.uint8).argmax(-1, keepdim=True)
    t_lo, t_hi = ts.gather(1, first).squeeze(1), ts.gather(1, first + 1).squeeze(1)
    s_lo, s_hi = s.gather(1, first).squeeze(1), s.gather(1, first + 1).squeeze(1)

    width = float((t_hi - t_lo)[found].max()) if found.any() else 0.0
    bisections = max(0, math.ceil(math.log2(width / config.bisection_tolerance))) if width else 0
    for _ in range(bisections):
        t_mid = 0.5 * (t_lo + t_hi)
        s_mid = sdf.sdf(origins + t_mid[:, None] * directions)
        outside = s_mid > 0
        t_lo, s_lo = torch.where(outside, t_mid, t_lo), torch.where(outside, s_mid, s_lo)
        t_hi, s_hi = torch.where(outside, t_hi, t_mid), torch.where(outside, s_hi, s_mid)
    denom = s_lo - s_hi
    fraction = torch.where(denom > 0, s_lo / denom.clamp_min(1e-12), torch.full_like(s_lo, 0.5))
    return t_lo + fraction.clamp(0, 1) * (t_hi - t_lo), found


# --------------------------------------------------------------------------------- gradients
def differentiable_hits(
    sdf: SDFField,
    origins: Tensor,
    directions: Tensor,
    trace: TraceResult,
    min_cos: float = 1e-4,
    differentiable: bool = True,
) -> SurfaceHit:
    """Reparameterised hits, normals and features for the rays with ``trace.hit``.

    The traced point ``x0 = o + t d`` is a constant. The intersection's dependence on the SDF
    parameters enters through (IRON Eq. 4, docs/architecture.md (A13))::

        x = x0 - v * (s(x0) - sg[s(x0)]) / max(sg[g(x0)] . v, min_cos),   v = -d,

    where ``sg`` stops gradients. Its value is ``x0``; its derivative is
    ``dx/dtheta = -v (ds/dtheta) / (g . v)``, exactly the implicit derivative of the ray-surface
    intersection ``s(o + t* d; theta) = 0`` (``dt*/dtheta = -(ds/dtheta) / (g . d)``), i.e. the
    point slides along the camera ray. Normals and features are then evaluated *at x* with
    ``create_graph`` so they also follow the moving point. With ``differentiable=False``
    (evaluation) the point stays ``x0`` and nothing keeps a graph.
    """
    mask = trace.hit
    o, d, t = origins[mask], directions[mask], trace.t[mask]
    x0 = (o + t[:, None] * d).detach()
    v = -d
    if not differentiable:
        out = sdf.with_gradients(x0, create_graph=False)
        return _make_hit(x0, out.sdf, out.features, out.gradients, v, t, mask)
    with torch.enable_grad():
        leaf = x0.clone().requires_grad_(True)
        s0 = sdf.sdf(leaf)
        (g0,) = torch.autograd.grad(s0, leaf, torch.ones_like(s0), retain_graph=True)
        cos = (g0 * v).sum(-1).clamp_min(min_cos)
        x = x0 - v * ((s0 - s0.detach()) / cos).unsqueeze(-1)
        out = sdf.with_gradients(x, create_graph=True)
    return _make_hit(x, out.sdf, out.features, out.gradients, v, t, mask)


def _make_hit(
    points: Tensor,
    sdf: Tensor,
    features: Tensor,
    gradients: Tensor,
    view_dirs: Tensor,
    t: Tensor,
    mask: Tensor,
) -> SurfaceHit:
    return SurfaceHit(
        points=points,
        normals=F.normalize(gradients, dim=-1),
        gradients=gradients,
        sdf=sdf,
        features=features,
        view_dirs=view_dirs,
        t=t.detach(),
        mask=mask,
    )
