"""Stage 2 outside its training step: whole views, object masks and the flash's starting value.

:func:`render_view` renders a full view in strips of rows (evaluation, previews);
:func:`object_masks` says where stage 1's surface is in every view (patch sampling);
:func:`initial_light_intensity` is the least-squares flash intensity stage 2 starts from.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import Tensor

from ironrender.data.cameras import Cameras
from ironrender.data.dataset import Split
from ironrender.errors import IronError
from ironrender.fields.base import SDFField
from ironrender.fields.materials import (
    MaterialFields,
    least_squares_light,
    reference_light_init,
)
from ironrender.rendering.material_shader import MaterialShader
from ironrender.rendering.surface import sphere_trace
from ironrender.rendering.surface_renderer import (
    BackgroundFn,
    RenderedImage,
    ShadeFn,
    SurfaceRenderConfig,
    render_patch,
)
from ironrender.training.stage2_config import Stage2Config

SATURATED = 0.99
"""Linear values at or above this are treated as clipped by the 8-bit camera (light init)."""
EDGE_ROW_MARGIN = 4
"""Rows of overlap between the strips of a chunked full-view render: edge detection (Sobel) and
edge points that project one pixel away must see the same neighbourhood as an unchunked render."""


def render_view(
    sdf: SDFField,
    shade: ShadeFn,
    cameras: Cameras,
    index: int,
    render: SurfaceRenderConfig | None = None,
    edges: bool = True,
    chunk_rows: int = 64,
    background: BackgroundFn | None = None,
) -> RenderedImage:
    """Render a full view for evaluation: no reparameterisation, no graphs, strips of rows.
    ``shade`` is stage 2's :class:`MaterialShader` (a trained model's:
    :meth:`~ironrender.training.stage2_model.Stage2Model.render_view`).

    Each strip is rendered with ``EDGE_ROW_MARGIN`` extra rows above and below (so edge
    detection and edge points near a strip border see the same pixels as a whole-image render)
    and only its own rows are kept. Returns a :class:`RenderedImage` without eikonal gradients.
    """
    render = render or SurfaceRenderConfig()
    W, H = cameras.width(index), cameras.height(index)
    strips: list[RenderedImage] = []
    with torch.no_grad():
        for y0 in range(0, H, chunk_rows):
            y1 = min(H, y0 + chunk_rows)
            top, bottom = max(0, y0 - EDGE_ROW_MARGIN), min(H, y1 + EDGE_ROW_MARGIN)
            crop = cameras.crop(index, 0, top, W, bottom - top)
            image = render_patch(
                sdf, shade, crop, 0, render, edges=edges, training=False, background=background
            )
            strips.append(_rows(image, y0 - top, y1 - top))
    channels = {name: v.shape[-1] for s in strips for name, v in s.extras.items()}
    for s in strips:  # a strip without hits has no extras: zeros there
        for name, count in channels.items():
            if name not in s.extras:
                s.extras[name] = s.color.new_zeros(*s.color.shape[:2], count)
    return RenderedImage(
        color=torch.cat([s.color for s in strips]),
        hit_mask=torch.cat([s.hit_mask for s in strips]),
        edge_mask=torch.cat([s.edge_mask for s in strips]),
        depth=torch.cat([s.depth for s in strips]),
        normals=torch.cat([s.normals for s in strips]),
        eikonal_gradients=strips[0].eikonal_gradients.new_zeros(0, 3),
        extras={k: torch.cat([s.extras[k] for s in strips]) for k in channels},
        edge_uv=strips[0].edge_uv.new_zeros(0, 2),
        edge_weight=strips[0].edge_weight.new_zeros(0),
    )


def _rows(image: RenderedImage, start: int, stop: int) -> RenderedImage:
    return RenderedImage(
        color=image.color[start:stop],
        hit_mask=image.hit_mask[start:stop],
        edge_mask=image.edge_mask[start:stop],
        depth=image.depth[start:stop],
        normals=image.normals[start:stop],
        eikonal_gradients=image.eikonal_gradients,
        extras={k: v[start:stop] for k, v in image.extras.items()},
        edge_uv=image.edge_uv,
        edge_weight=image.edge_weight,
    )


def scene_render_config(config: Stage2Config, cameras: Cameras) -> SurfaceRenderConfig:
    """``config.render`` with the edge-walk step set to ``edge_step_pixels`` pixels at the object.

    A pixel at the object (inside the unit sphere at the origin) spans about
    ``median |camera centre| / f`` world units. IRON's fixed 1e-3 reaches the contour only when
    a pixel is tiny; stating the step in pixels makes the walk resolution-independent.
    """
    render = copy.deepcopy(config.render)
    if config.edge_step_pixels > 0:
        distance = float(cameras.centers.norm(dim=-1).median())
        focal = float(cameras.intrinsics[:, 0, 0].median())
        render.edges.step_size = config.edge_step_pixels * distance / focal
    return render


def downscale_factor(cameras: Cameras, longest: int) -> float:
    size = int(cameras.sizes.max())
    return min(1.0, longest / size)


def initial_light_intensity(
    sdf: SDFField,
    materials: MaterialFields,
    split: Split,
    config: Stage2Config,
    render: SurfaceRenderConfig,
) -> float:
    """Starting flash intensity: the least-squares fit to the photographs, or IRON's heuristic.

    ``least_squares``: render ``light_init_views`` training views (downscaled) with ``I = 1``
    (the flash alone: no room, no room light, the flash where the camera file puts it),
    then ``I = sum p t / sum p^2`` over the pixels that hit and are not saturated (linear), the
    exact minimiser of the L2 loss over ``I`` at the stage-1 geometry and albedo. Falls back to
    the reference ``8 median(|o|)^2`` when no pixel hits.
    """
    reference = reference_light_init(split.cameras.centers, config.materials.init_light_scale)
    if config.materials.light_init == "reference":
        return reference
    if config.materials.light_init != "least_squares":
        raise IronError("materials.light_init must be least_squares or reference")
    unit_light = MaterialShader(materials, unit_light=True)
    factor = downscale_factor(split.cameras, config.light_init_size)
    cameras = split.cameras.scaled(factor) if factor < 1 else split.cameras
    count = min(config.light_init_views, len(split))
    views = np.linspace(0, len(split) - 1, count).round().astype(int)
    predictions, targets, weights = [], [], []
    for i in views:
        image = render_view(sdf, unit_light, cameras, int(i), render)
        target = resize_image(split.linear(split.images[int(i)]), image.color.shape[:2])
        predictions.append(image.color)
        targets.append(target)
        weights.append((image.mask[..., None] & (target < SATURATED)).to(target.dtype))
    try:
        return least_squares_light(torch.cat(predictions), torch.cat(targets), torch.cat(weights))
    except ValueError:
        return reference


def resize_image(image: Tensor, size: tuple[int, int]) -> Tensor:
    """(H, W, 3) -> size, area-averaged (antialiased) when shrinking."""
    if tuple(image.shape[:2]) == tuple(size):
        return image
    resized = torch.nn.functional.interpolate(image.permute(2, 0, 1)[None], size=size, mode="area")
    return resized[0].permute(1, 2, 0)


@torch.no_grad()
def object_masks(
    sdf: SDFField, cameras: Cameras, render: SurfaceRenderConfig, longest: int
) -> Tensor:
    """Where the object is in every view (N, h, w), bool: the pixel centres of the views
    downscaled to ``longest`` pixels whose rays hit the SDF's surface (sphere-traced)."""
    factor = downscale_factor(cameras, longest)
    small = cameras.scaled(factor) if factor < 1 else cameras
    masks = []
    for i in range(len(small)):
        rays = small.image_rays(i).reshape(-1)
        trace = sphere_trace(sdf, rays.origins, rays.directions, render.trace)
        masks.append(trace.hit.reshape(small.height(i), small.width(i)))
    return torch.stack(masks)
