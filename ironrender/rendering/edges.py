"""Edge sampling for neural SDFs: IRON's Algorithm 1 and Eqs. 5-9 (IRON §3.2;
docs/architecture.md#edge-sampling, labels (A17)-(A23)).

Interior pixels only get gradients that slide hit points along camera rays (IRON Eq. 4), which
cannot move a silhouette in the image plane (IRON Fig. 2a). Pixels that contain a silhouette are
therefore rendered as a blend of the two surfaces they see:

1. :func:`depth_discontinuities`: candidate pixels whose normalised Sobel magnitude of the z-depth
   map (background depth 0) exceeds ``tau`` and whose centre ray hit the surface.
2. :func:`walk_to_edges` (Algorithm 1): from each candidate's hit, walk on the zero level set
   towards the contour (``n . v -> 0``) and keep the points reached.
3. :func:`select_edge_pixels`: project the 3D edge points; the pixel ``floor(uv)`` owns at most
   one of them (sub-pixel edge localisation); optionally :func:`fill_edge_gaps`.
4. :func:`reparameterize_edge_points` (IRON Eq. 5): let the edge point move along its normal
   when the SDF changes, so the projected edge ``uv_e`` is differentiable.
5. :func:`coverage_weight` (IRON Eqs. 6-8): the fraction ``w_A`` of the pixel footprint on the
   object's side of the edge; the pixel colour is ``w_A C_A + (1 - w_A) C_B`` (IRON Eq. 9), with
   ``C_A``/``C_B`` shaded at ``A = c - r n2`` (inside) and ``B = c + r n2`` (outside).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor

from ironrender.config import check_choices, option
from ironrender.data.cameras import Cameras
from ironrender.fields.base import SDFField

Footprint = Literal["circle", "reference", "square"]
FOOTPRINTS = get_args(Footprint)
ACOS_MARGIN = 1e-6  # keeps acos' derivative finite where the edge touches the footprint circle
SQUARE_MIDPOINT_BELOW = 1e-3  # |slope| ratio under which the square coverage uses the midpoint


@dataclass
class EdgeConfig:
    """Edge detection, surface walk and pixel footprint (defaults: IRON's code).

    ``step_size * max_steps`` is the longest walk along the surface. IRON's 1e-3 x 16 only
    reaches the contour from hits within a fraction of a pixel of it at low resolution or for
    small objects; scale ``step_size`` with the scene (a world-space pixel is a good unit).
    ``footprint``: ``"circle"`` (the paper's disc of radius ``footprint_radius``, exact segment
    area on either side of the centre), ``"reference"`` (IRON's clamp: ``w_A = 0.5`` whenever the
    centre is outside) or ``"square"`` (exact pixel-box coverage); see :func:`coverage_weight`.
    ``fill_gaps`` also treats pixels that the local edge line crosses but that no walk landed in
    as edge pixels (:func:`fill_edge_gaps`).
    """

    depth_gradient_threshold: float = option(
        1e-2, "tau: walks start where kornia's normalised Sobel magnitude of depth exceeds it"
    )
    max_steps: int = option(16, "K: steps of the walk along the surface towards the contour")
    step_size: float = option(1e-3, "epsilon, world units per step")
    dot_threshold: float = option(0.05, "delta: stop when |n . v| <= delta")
    footprint_radius: float = option(
        math.sqrt(2.0) / 2.0, "r, pixels: circle through the pixel corners"
    )
    footprint: Footprint = option(
        "circle", "the pixel's shape: circle (the paper), reference (IRON's clamp), square"
    )
    fill_gaps: bool = option(
        True, "also pixels the edge line crosses but no walk reached (not in IRON; false: IRON)"
    )

    def __post_init__(self) -> None:
        check_choices(self)


@dataclass
class EdgeWalk:
    """Result of Algorithm 1 for M starting points: ``points`` (M, 3), ``found`` (M,) bool and
    ``normals`` (M, 3), the unit normals at the last step."""

    points: Tensor
    found: Tensor
    normals: Tensor


@dataclass
class EdgePixels:
    """One 3D edge point per edge pixel: ``pixels`` (E,) flat index y * W + x; ``points`` (E, 3);
    ``normals`` (E, 3) unit normals there (no gradients)."""

    pixels: Tensor
    points: Tensor
    normals: Tensor


@dataclass
class EdgePoints:
    """Reparameterised edge points: ``points`` (E, 3) differentiable; ``gradients`` (E, 3) raw
    ``g`` with graph (eikonal); ``normals`` (E, 3) detached unit normals."""

    points: Tensor
    gradients: Tensor
    normals: Tensor


# --------------------------------------------------------------------------------- detection
def depth_discontinuities(depth: Tensor, hit: Tensor, threshold: float) -> Tensor:
    """Pixels (H, W) whose Sobel magnitude of the z-depth map exceeds ``threshold`` and that hit.

    ``depth`` (H, W) is 0 on the background, so every silhouette is a depth jump. kornia's
    normalised Sobel divides the kernels by 8: the magnitude is roughly |grad depth| per pixel.
    """
    magnitude = kornia.filters.sobel(depth[None, None], normalized=True)[0, 0]
    return (magnitude > threshold) & hit


@torch.no_grad()
def walk_to_edges(sdf: SDFField, points: Tensor, eye: Tensor, config: EdgeConfig) -> EdgeWalk:
    """Algorithm 1: walk from surface points (M, 3) to contour points seen from ``eye`` (3,).

    At each step, with ``n`` the unit normal and ``v`` the unit direction to the camera, stop if
    ``|n . v| <= delta``; otherwise move by ``epsilon * normalize(n - v / (n . v))`` -- a tangent
    direction (its dot with ``n`` is 0) pointing away from the camera's side, along which ``n . v``
    decreases -- and pull the point back onto the level set by ``-s n``. One SDF evaluation per
    step: the pull-back uses the value at the current point; found points get a final pull-back.
    """
    x = points.clone()
    normals = torch.zeros_like(points)
    found = torch.zeros(points.shape[0], dtype=torch.bool, device=points.device)
    active = torch.ones_like(found)
    for step in range(config.max_steps + 1):
        idx = active.nonzero().squeeze(-1)
        if idx.numel() == 0:
            break
        sample = sdf.with_gradients(x[idx], create_graph=False)
        n = F.normalize(sample.gradients, dim=-1)
        v = F.normalize(eye - x[idx], dim=-1)
        cos = (n * v).sum(-1)
        done = cos.abs() <= config.dot_threshold
        on_surface = x[idx] - sample.sdf[:, None] * n
        normals[idx] = n
        x[idx[done]] = on_surface[done]
        found[idx[done]] = True
        active[idx[done]] = False
        if step == config.max_steps:
            break
        go = ~done
        direction = F.normalize(n[go] - v[go] / cos[go, None], dim=-1)
        x[idx[go]] = on_surface[go] + config.step_size * direction
    return EdgeWalk(points=x, found=found, normals=normals)


def select_edge_pixels(cameras: Cameras, index: int, points: Tensor, normals: Tensor) -> EdgePixels:
    """Project edge points; keep those inside the image and one per pixel ``floor(uv)``.

    Among several points in one pixel the first in input order is kept (IRON keeps an arbitrary
    one). Points behind the camera are dropped.
    """
    W, H = cameras.width(index), cameras.height(index)
    with torch.no_grad():
        uv, z = cameras.project(points, index)
        ij = torch.floor(uv).long()
        inside = (z > 0) & (ij[:, 0] >= 0) & (ij[:, 0] < W) & (ij[:, 1] >= 0) & (ij[:, 1] < H)
        ij, kept, kept_normals = ij[inside], points[inside], normals[inside]
        flat = ij[:, 1] * W + ij[:, 0]
        unique, inverse = torch.unique(flat, return_inverse=True)
        order = torch.arange(flat.shape[0], device=flat.device)
        first = torch.full_like(unique, flat.shape[0]).scatter_reduce(
            0, inverse, order, reduce="amin"
        )
    return EdgePixels(pixels=unique, points=kept[first], normals=kept_normals[first])


def fill_edge_gaps(cameras: Cameras, index: int, edges: EdgePixels) -> EdgePixels:
    """Add the neighbours that an edge pixel's edge line crosses but no walk landed in.

    Walks land on the contour at roughly the polar angles of their starting pixels, so pixels
    whose square the silhouette only clips (a corner) are often missed: they then render as
    plain background or interior pixels and lose their share of the silhouette gradient. For each
    edge pixel with point ``uv_e`` and 2D normal ``n2`` (from its unit 3D normal),
    every one of its 8 neighbours with centre ``c`` and ``|(uv_e - c) . n2| < (|n2_x| + |n2_y|)/2``
    (the straight line crosses its square) and no edge point of its own gets the same 3D point;
    its coverage is then evaluated against that line. Not in IRON; exact for straight edges.
    """
    W, H = cameras.width(index), cameras.height(index)
    with torch.no_grad():
        uv, _ = cameras.project(edges.points, index)
        n2 = image_edge_normals(cameras, index, edges.normals)
        half_extent = 0.5 * n2.abs().sum(-1, keepdim=True)
        step = torch.tensor(
            [[dx, dy] for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dx or dy], device=uv.device
        )
        ij = torch.stack([edges.pixels % W, edges.pixels // W], -1)
        neighbours = ij[:, None] + step  # (E, 8, 2)
        centres = neighbours.to(uv.dtype) + 0.5
        offset = ((uv[:, None] - centres) * n2[:, None]).sum(-1)
        inside = (neighbours >= 0).all(-1) & (neighbours[..., 0] < W) & (neighbours[..., 1] < H)
        crossed = inside & (offset.abs() < half_extent)
        flat = neighbours[..., 1] * W + neighbours[..., 0]
        taken = torch.zeros(W * H, dtype=torch.bool, device=uv.device)
        taken[edges.pixels] = True
        crossed &= ~taken[flat.clamp(0, W * H - 1)]
        source = torch.arange(len(edges.pixels), device=uv.device)[:, None].expand_as(flat)
        new_pixels, source = flat[crossed], source[crossed]
        unique, inverse = torch.unique(new_pixels, return_inverse=True)
        order = torch.arange(new_pixels.shape[0], device=uv.device)
        first = torch.full_like(unique, new_pixels.shape[0]).scatter_reduce(
            0, inverse, order, reduce="amin"
        )
    return EdgePixels(
        pixels=torch.cat([edges.pixels, unique]),
        points=torch.cat([edges.points, edges.points[source[first]]]),
        normals=torch.cat([edges.normals, edges.normals[source[first]]]),
    )


# --------------------------------------------------------------------------------- gradients
def reparameterize_edge_points(
    sdf: SDFField, points: Tensor, differentiable: bool = True
) -> EdgePoints:
    """IRON Eq. 5, docs/architecture.md (A19): move edge points along their normal.

    (In IRON's code, ``reparam_points`` applied to edge points.)

    With raw gradient ``g`` and detached unit normal ``n = sg[g/|g|]``::

        x_e = x0 - n * (s(x0) - sg[s(x0)]) / sg[g . n] = x0 - n * (s - sg[s]) / sg[|g|].

    Value ``x0``; derivative ``-n (ds/dtheta) / |g|``: the displacement of the level set along
    its normal, which is what moves a silhouette in the image plane.
    """
    x0 = points.detach()
    sample = sdf.with_gradients(x0, create_graph=differentiable)
    g_norm = sample.gradients.detach().norm(dim=-1, keepdim=True).clamp_min(1e-12)
    n = sample.gradients.detach() / g_norm
    if not differentiable:
        return EdgePoints(points=x0, gradients=sample.gradients, normals=n)
    x = x0 - n * (sample.sdf - sample.sdf.detach()).unsqueeze(-1) / g_norm
    return EdgePoints(points=x, gradients=sample.gradients, normals=n)


def image_edge_normals(cameras: Cameras, index: int, normals: Tensor) -> Tensor:
    """2D unit normals (E, 2) of the projected contour, pointing out of the object.

    At a contour point the tangent plane ``n . (X - x_e) = 0`` contains the camera centre, so in
    camera coordinates it is ``n_c . X = 0``; the image points ``X = K^-1 (u, v, 1)`` on it form
    the line with normal ``(n_cx / fx, n_cy / fy)`` (ignoring skew). For square pixels this is
    the x, y part of the camera-space normal, as in IRON.
    """
    R = cameras.w2c[index, :3, :3]
    n_cam = normals @ R.T
    K = cameras.intrinsics[index]
    n2 = torch.stack([n_cam[:, 0] / K[0, 0], n_cam[:, 1] / K[1, 1]], dim=-1)
    return F.normalize(n2, dim=-1)


def coverage_weight(offset: Tensor, normal_2d: Tensor, radius: float, footprint: str) -> Tensor:
    """Fraction ``w_A`` (E,) of a pixel footprint on the object's side of a straight edge.

    ``offset = (uv_e - c) . n2`` (E,) is the signed distance from the pixel centre ``c`` to the
    edge line through ``uv_e``, measured along the outward 2D normal ``n2`` (E, 2): positive when
    the centre is on the object's side. Footprints:

    * ``"circle"`` (IRON Eqs. 7-8, docs/architecture.md (A21)-(A22)): a disc of radius ``r``
      around ``c``. The part beyond the line (outside the object) is a circular segment with
      central angle ``a = 2 acos(offset / r)`` and area ``r^2 (a - sin a) / 2``, so
      ``w_A = 1 - (a - sin a) / (2 pi)``. The same expression is exact for negative offsets too
      (centre outside the object): then ``a = 2 pi - a'`` with ``a'`` the angle of the inside
      segment and ``w_A = (a' - sin a') / (2 pi)``, that smaller segment's share -- so the
      argument is only clamped to [-1, 1].
    * ``"reference"``: IRON's code, which clamps the argument to [0, 1]; every centre outside the
      object then gets ``w_A = 0.5``.
    * ``"square"``: the exact area of the unit pixel square on the object's side (box-filter
      coverage). The squares tile the image, so summed over the pixels a straight edge crosses,
      ``d w_A / d offset`` adds up to the edge length: the silhouette gradient is unbiased. The
      disc (area pi/2) instead under-weights edges that are not diagonal (by up to 18% for an
      axis-aligned edge, about 9% averaged over a circle's orientations).
    """
    if footprint == "square":
        return _square_coverage(offset, normal_2d)
    x = offset / radius
    if footprint == "reference":
        x = x.clamp(0.0, 1.0 - ACOS_MARGIN)
    elif footprint == "circle":
        x = x.clamp(-1.0 + ACOS_MARGIN, 1.0 - ACOS_MARGIN)
    else:
        raise ValueError(f"footprint must be one of {FOOTPRINTS}, got {footprint!r}")
    a = 2.0 * torch.acos(x)
    return 1.0 - (a - torch.sin(a)) / (2.0 * math.pi)


def _square_coverage(offset: Tensor, normal_2d: Tensor) -> Tensor:
    """Area of ``{q in [-1/2, 1/2]^2 : q . n2 <= offset}`` for unit ``n2``.

    By the square's symmetries only ``a = min(|n_x|, |n_y|) <= b = max(...)`` matter. Along the
    axis of ``a`` (coordinate ``s`` in [0, 1]) the covered fraction of the other axis is
    ``clamp(y(s), 0, 1)`` with ``y(s) = (offset + (a + b)/2 - a s) / b``, linear in ``s``; its
    mean over [0, 1] is ``(G(y(0)) - G(y(1))) / (a / b)`` with ``G`` the antiderivative of the
    clamp. For ``a / b < SQUARE_MIDPOINT_BELOW`` the midpoint value is used instead (error at most
    ``a / (8 b)``), avoiding cancellation.
    """
    n = normal_2d.abs()
    a, b = n.min(-1).values, n.max(-1).values
    k = a / b
    y0 = (offset + 0.5 * (a + b)) / b
    y1 = y0 - k

    def antiderivative(y: Tensor) -> Tensor:
        inner = y.clamp(0.0, 1.0)
        return 0.5 * inner**2 + (y - 1.0).clamp_min(0.0)

    small = k < SQUARE_MIDPOINT_BELOW
    exact = (antiderivative(y0) - antiderivative(y1)) / torch.where(small, torch.ones_like(k), k)
    midpoint = (0.5 * (y0 + y1)).clamp(0.0, 1.0)
    return torch.where(small, midpoint, exact)
