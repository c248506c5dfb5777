"""Edge-aware surface rendering of an SDF for one camera (or a crop of it): IRON stage 2.

:func:`render_patch` reads top to bottom as the algorithm (IRON §3.2; docs/architecture.md#stage-2):

1. sphere-trace the pixel centres (no gradients) -> hit mask, z-depth;
2. with ``edges=True``, find the silhouette pixels (:mod:`ironrender.rendering.edges`) and their
   sub-pixel edge points;
3. shade the remaining hit pixels at their reparameterised intersections (IRON Eq. 4);
4. shade each edge pixel as ``w_A C_A + (1 - w_A) C_B`` (IRON Eqs. 6-9), where ``w_A`` depends
   on the reparameterised edge point (IRON Eq. 5) and ``C_A``/``C_B`` are re-traced and shaded
   at ``A = c - r n2`` (object side) and ``B = c + r n2`` (other side).

Rays that miss the object see the background: black (radiance 0, IRON) unless a
:data:`BackgroundFn` is given, e.g. stage 1's model of the room (a capture whose room is dark
but not black). It colours missed pixel centres and the missed side of every edge pixel (its
``C_B``), so the loss compares the photograph's room with the room, never with black, and edge
sampling blends the object against what really lies behind it. The background is fixed here (no
gradient). ``edges=False`` is the IDR/DVR-style baseline: every hit pixel is an interior pixel,
so silhouettes get no image-plane gradient.

Shading is the caller's (stage 2 passes material networks and :mod:`ironrender.rendering.brdf`):
a :data:`ShadeFn` receives the :class:`SurfaceHit` rows (their unit view directions point ->
camera among them), the light position per row (the view's flash, :attr:`Cameras.
flash_positions`: the camera centre unless the camera file says otherwise) and whether that
light is the camera centre itself (IRON's co-located flash, for which the BRDF has an exact
short form), and returns linear radiance plus optional per-hit extras (e.g. roughness for a
range loss).

Training renders random patches: pass ``cameras.crop(i, x0, y0, w, h)`` and ``index=0``. Memory
grows with the number of pixels; render large images tile by tile.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.profiler import record_function

from ironrender.config import option
from ironrender.data.cameras import Cameras
from ironrender.fields.base import SDFField
from ironrender.rendering.edges import (
    EdgeConfig,
    coverage_weight,
    depth_discontinuities,
    fill_edge_gaps,
    image_edge_normals,
    reparameterize_edge_points,
    select_edge_pixels,
    walk_to_edges,
)
from ironrender.rendering.surface import (
    SphereTraceConfig,
    SurfaceHit,
    TraceResult,
    differentiable_hits,
    light_visibility,
    sphere_trace,
)

PIXEL_CENTER = 0.5


@dataclass
class ShadeResult:
    """What a shader returns for R hits: ``color`` (R, 3) linear radiance; ``extras`` maps a name
    to a per-hit tensor (R, C) that the renderer scatters into (H, W, C) maps."""

    color: Tensor
    extras: dict[str, Tensor] = field(default_factory=dict)


ShadeFn = Callable[[SurfaceHit, Tensor, bool], ShadeResult]
"""``(hits, light positions (R, 3), co-located?) -> ShadeResult`` (module docstring)."""
BackgroundFn = Callable[[Tensor, Tensor], Tensor]
"""``(origins, unit directions) (R, 3) -> linear radiance (R, 3)`` of rays that miss."""


@dataclass
class SurfaceRenderConfig:
    """How stage 2 renders: sphere tracing, edge sampling, shadow rays."""

    trace: SphereTraceConfig = option(
        factory=SphereTraceConfig, help="sphere tracing of the pixels' rays"
    )
    edges: EdgeConfig = option(
        factory=EdgeConfig, help="edge detection, surface walk and pixel footprint"
    )
    # A flash beside the lens casts shadows the camera sees: trace a shadow ray per shaded
    # point (no effect for IRON's flash in the lens, which casts none the camera can see).
    shadows: bool = option(
        True, "trace a shadow ray per shaded point (a flash in the lens casts none visible)"
    )


@dataclass
class RenderedImage:
    """A rendered image (or patch) of H x W pixels.

    ``color`` (H, W, 3) linear radiance, black background; ``hit_mask`` (H, W) interior pixels
    (centre ray hit, not an edge pixel); ``edge_mask`` (H, W) edge pixels; ``depth`` (H, W) z-depth
    of the centre ray, 0 where it missed; ``normals`` (H, W, 3) unit normals (interior: at the hit;
    edge pixels: at the edge point), 0 elsewhere; ``eikonal_gradients`` (G, 3) raw SDF gradients
    with graph at the interior hits, edge points and A/B hits; ``extras`` name -> (H, W, C) (edge
    pixels take the value of their object-side sample A, or of B if A missed); ``edge_uv`` (E, 2)
    differentiable sub-pixel edge points and ``edge_weight`` (E,) their ``w_A``.
    """

    color: Tensor
    hit_mask: Tensor
    edge_mask: Tensor
    depth: Tensor
    normals: Tensor
    eikonal_gradients: Tensor
    extras: dict[str, Tensor]
    edge_uv: Tensor
    edge_weight: Tensor

    @property
    def mask(self) -> Tensor:
        """Pixels that show the object: interior or edge (IRON's ``convergent | edge``)."""
        return self.hit_mask | self.edge_mask


def render_patch(
    sdf: SDFField,
    shade: ShadeFn,
    cameras: Cameras,
    index: int,
    config: SurfaceRenderConfig,
    edges: bool = True,
    training: bool = True,
    background: BackgroundFn | None = None,
) -> RenderedImage:
    """Render camera ``index`` of ``cameras`` (IRON §3.2); see the module docstring.

    ``training=True`` builds the reparameterised, differentiable image; ``training=False``
    renders the same image without reparameterisation or graphs (evaluation).
    """
    W, H = cameras.width(index), cameras.height(index)
    rays = cameras.image_rays(index).reshape(-1)
    origins, directions = rays.origins, rays.directions
    eye = cameras.centers[index]
    light = _Light(cameras.flash_positions[index], cameras.colocated)

    # 1. Trace pixel centres (no gradients).
    with record_function("surface: sphere tracing"):  # profile labels: profile_stage2.py
        trace = sphere_trace(sdf, origins, directions, config.trace)
    depth = (trace.t * rays.z_scale).reshape(H, W)

    # 2. Edge pixels and their 3D edge points.
    edge_flat = torch.zeros_like(trace.hit)
    edge_points = origins.new_zeros(0, 3)
    edge_pixels = torch.zeros(0, dtype=torch.long, device=origins.device)
    if edges and bool(trace.hit.any()):
        with record_function("surface: find edges"):
            candidates = depth_discontinuities(
                depth, trace.hit.reshape(H, W), config.edges.depth_gradient_threshold
            ).reshape(-1)
            starts = origins[candidates] + trace.t[candidates, None] * directions[candidates]
            walk = walk_to_edges(sdf, starts, eye, config.edges)
            selected = select_edge_pixels(
                cameras, index, walk.points[walk.found], walk.normals[walk.found]
            )
            if config.edges.fill_gaps:
                selected = fill_edge_gaps(cameras, index, selected)
            edge_pixels, edge_points = selected.pixels, selected.points
            edge_flat[edge_pixels] = True

    # 3. Interior pixels.
    interior = TraceResult(t=trace.t, hit=trace.hit & ~edge_flat, converged=trace.converged)
    with record_function("surface: shade interior pixels"):
        inner = _shade_traced(
            sdf, shade, origins, directions, interior, light, config, training, background
        )
    color = inner.color
    extras = inner.extras
    normals = origins.new_zeros(H * W, 3)
    normals = normals.index_put((interior.hit.nonzero().squeeze(-1),), inner.normals)
    gradients = [inner.gradients]

    # 4. Edge pixels.
    edge_uv = origins.new_zeros(0, 2)
    edge_weight = origins.new_zeros(0)
    if edge_pixels.numel() > 0:
        with record_function("surface: shade edge pixels"):
            edge = _render_edge_pixels(
                sdf, shade, cameras, index, edge_pixels, edge_points, config, training, background
            )
        color = color.index_put((edge_pixels,), edge.color)
        # A shader may return no extras for zero hits (interior or A/B): merge the union, zeros
        # where a side had none, so neither side's keys are assumed to exist on the other.
        for name, value in edge.extras.items():
            base = extras.get(name, value.new_zeros(H * W, value.shape[-1]))
            extras[name] = base.index_put((edge_pixels,), value)
        normals = normals.index_put((edge_pixels,), edge.normals)
        gradients += edge.gradients
        edge_uv, edge_weight = edge.uv, edge.weight

    return RenderedImage(
        color=color.reshape(H, W, 3),
        hit_mask=interior.hit.reshape(H, W),
        edge_mask=edge_flat.reshape(H, W),
        depth=depth,
        normals=normals.reshape(H, W, 3),
        eikonal_gradients=torch.cat(gradients),
        extras={name: value.reshape(H, W, -1) for name, value in extras.items()},
        edge_uv=edge_uv,
        edge_weight=edge_weight,
    )


@dataclass
class _Light:
    """One view's light: its world position (3,) and whether it is the camera centre."""

    position: Tensor
    colocated: bool


@dataclass
class _ShadedRays:
    """Colours (N, 3), extras (N, C) and unit normals (M, 3) of N rays, M of which hit."""

    color: Tensor
    extras: dict[str, Tensor]
    normals: Tensor
    gradients: Tensor


def _shade_traced(
    sdf: SDFField,
    shade: ShadeFn,
    origins: Tensor,
    directions: Tensor,
    trace: TraceResult,
    light: _Light,
    config: SurfaceRenderConfig,
    training: bool,
    background: BackgroundFn | None = None,
) -> _ShadedRays:
    """Reparameterise and shade the rays with ``trace.hit``; the others see the background."""
    hits = differentiable_hits(
        sdf, origins, directions, trace, config.trace.min_cos, differentiable=training
    )
    if config.shadows and not light.colocated and len(hits) > 0:
        hits.light_visibility = light_visibility(
            sdf, hits.points.detach(), hits.normals.detach(), light.position, config.trace
        )
    grad_mode = contextlib.nullcontext() if training else torch.no_grad()
    with grad_mode:
        shaded = shade(hits, light.position.expand(len(hits), 3), light.colocated)
    index = (trace.hit.nonzero().squeeze(-1),)
    n = origins.shape[0]
    color = origins.new_zeros(n, 3)
    if background is not None and not bool(trace.hit.all()):
        missed = ~trace.hit
        with torch.no_grad():
            behind = background(origins[missed], directions[missed]).to(color.dtype)
        color = color.index_put((missed.nonzero().squeeze(-1),), behind)
    color = color.index_put(index, shaded.color)
    extras = {
        name: value.new_zeros(n, value.shape[-1]).index_put(index, value)
        for name, value in (
            (k, v.unsqueeze(-1) if v.ndim == 1 else v.flatten(1)) for k, v in shaded.extras.items()
        )
    }
    return _ShadedRays(color=color, extras=extras, normals=hits.normals, gradients=hits.gradients)


@dataclass
class _EdgeRender:
    color: Tensor
    extras: dict[str, Tensor]
    normals: Tensor
    gradients: list[Tensor]
    uv: Tensor
    weight: Tensor


def _render_edge_pixels(
    sdf: SDFField,
    shade: ShadeFn,
    cameras: Cameras,
    index: int,
    pixels: Tensor,
    points: Tensor,
    config: SurfaceRenderConfig,
    training: bool,
    background: BackgroundFn | None = None,
) -> _EdgeRender:
    """IRON Eqs. 5-9 (docs/architecture.md (A19)-(A23)) for E edge pixels (flat indices
    ``pixels``, 3D edge points ``points``)."""
    W = cameras.width(index)
    edge = reparameterize_edge_points(sdf, points, differentiable=training)
    uv, _ = cameras.project(edge.points, index)
    centre = torch.stack([pixels % W, pixels // W], dim=-1).to(uv.dtype) + PIXEL_CENTER
    n2 = image_edge_normals(cameras, index, edge.normals)
    r = config.edges.footprint_radius
    weight = coverage_weight(((uv - centre) * n2).sum(-1), n2, r, config.edges.footprint)

    # A (object side) and B (other side) on the footprint circle, re-traced and shaded.
    samples = torch.cat([centre - r * n2, centre + r * n2])
    cam_index = torch.full(samples.shape[:-1], index, dtype=torch.long, device=samples.device)
    rays = cameras.generate_rays(cam_index, samples)
    trace = sphere_trace(sdf, rays.origins, rays.directions, config.trace)
    light = _Light(cameras.flash_positions[index], cameras.colocated)
    ab = _shade_traced(
        sdf, shade, rays.origins, rays.directions, trace, light, config, training, background
    )
    E = pixels.shape[0]
    color_a, color_b = ab.color[:E], ab.color[E:]
    w = weight[:, None]
    hit_a = trace.hit[:E, None]
    extras = {name: torch.where(hit_a, value[:E], value[E:]) for name, value in ab.extras.items()}
    return _EdgeRender(
        color=w * color_a + (1.0 - w) * color_b,
        extras=extras,
        normals=edge.normals,
        gradients=[edge.gradients, ab.gradients],
        uv=uv,
        weight=weight,
    )
