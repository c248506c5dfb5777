"""The zero level set of a signed-distance field as a triangle mesh (grid, marching cubes).

IRON (§3.3; ``models/export_mesh.py`` in its code; docs/architecture.md (A29)) evaluates the SDF
on a regular grid and runs marching cubes at level 0. We do the same on an axis-aligned grid
over ``[-bound, bound]^3`` (IRON's extra PCA-aligned 512-sample pass only re-orients the grid; a
finer ``resolution`` gives the same accuracy without it). The field is queried in chunks under
``no_grad`` so memory is bounded by ``chunk`` points plus the float32 volume (``resolution^3 * 4``
bytes), and only in a narrow band around the surface: a 384^3 export grid asks the network at a
few percent of its 57 million nodes (the rest cannot hold surface; :func:`_banded_volume`).

Sign convention (``ironrender.fields.base``): the SDF is negative inside, so the outward normal
is the SDF gradient and marching cubes must orient faces along increasing SDF.

Marching cubes returns everything opaque in the box, clutter included (a table, a stand);
:mod:`ironrender.export.select` chooses the object's part (``keep_largest_component`` here is
IRON's simple rule, the ``largest`` mode there). Stage 1's mesh, export and evaluation all extract
their meshes here, so it sits with the fields, below all three.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import trimesh
from skimage.measure import marching_cubes
from torch import Tensor

from ironrender.errors import IronError

#: Marching-cubes iso-level: the surface is the zero level set of the SDF.
SURFACE_LEVEL = 0.0
#: Default grid resolution per axis.
DEFAULT_RESOLUTION = 256
#: Default number of points per SDF query.
DEFAULT_CHUNK = 65536
#: Narrow band: nodes per side of the blocks asked or skipped together, and the steepest SDF
#: slope assumed when skipping (the eikonal term keeps a trained SDF's slope near 1).
BAND_BLOCK = 8
BAND_SLOPE = 2.0


def grid_spacing(resolution: int, bound: float = 1.0) -> float:
    """Distance between neighbouring nodes of the ``resolution^3`` grid over [-bound, bound]^3."""
    return 2.0 * bound / (resolution - 1)


def sdf_grid(
    sdf_fn: Callable[[Tensor], Tensor],
    resolution: int = DEFAULT_RESOLUTION,
    bound: float = 1.0,
    chunk: int = DEFAULT_CHUNK,
    device: torch.device | str = "cpu",
    narrow_band: bool = True,
) -> np.ndarray:
    """SDF values on the ``resolution^3`` grid of node positions ``linspace(-bound, bound)``.

    Returns a float32 volume indexed ``[i, j, k]`` for the point ``(x_i, y_j, z_k)``.
    ``narrow_band`` (grids of ``4 * BAND_BLOCK`` nodes a side and more): the network is asked
    only near the surface (:func:`_banded_volume`); elsewhere the volume holds a value of the
    right sign, which is all marching cubes reads there. The mesh is the full grid's.
    """
    if resolution < 2:
        raise IronError(f"mesh resolution must be at least 2, got {resolution}")
    device = torch.device(device)
    axis = torch.linspace(-bound, bound, resolution, dtype=torch.float32, device=device)
    if narrow_band and resolution >= 4 * BAND_BLOCK:
        return _banded_volume(sdf_fn, axis, chunk)
    total = resolution**3
    volume = np.empty(total, dtype=np.float32)
    for start in range(0, total, chunk):
        flat = torch.arange(start, min(start + chunk, total), device=device)
        i = flat // (resolution * resolution)
        j = (flat // resolution) % resolution
        k = flat % resolution
        volume[start : start + len(flat)] = _query(sdf_fn, axis[i], axis[j], axis[k])
    return volume.reshape(resolution, resolution, resolution)


def _query(sdf_fn: Callable[[Tensor], Tensor], x: Tensor, y: Tensor, z: Tensor) -> np.ndarray:
    with torch.no_grad():
        values = sdf_fn(torch.stack([x, y, z], dim=-1))
    values = getattr(values, "sdf", values).reshape(-1)  # an SDFSample works too
    return values.detach().float().cpu().numpy()


def _banded_volume(sdf_fn: Callable[[Tensor], Tensor], axis: Tensor, chunk: int) -> np.ndarray:
    """The grid's SDF asked only in blocks of ``BAND_BLOCK^3`` nodes that may hold surface.

    A block is *far* when its centre's value exceeds ``BAND_SLOPE`` times the distance from the
    centre to the block's farthest node: an SDF whose slope is below ``BAND_SLOPE`` (an SDF
    trained with the eikonal term has slope about 1) cannot cross zero inside it. A far block's
    nodes all get the centre's value. Where the slope assumption fails, marching cubes would
    see a sign change at a far block's node; every such block is then asked too, until none
    is left, so the zero crossings are exactly the full grid's.
    """
    resolution, device = len(axis), axis.device
    spacing = float(axis[1] - axis[0])
    blocks = -(-resolution // BAND_BLOCK)
    starts = torch.arange(blocks, device=device) * BAND_BLOCK
    ends = torch.clamp(starts + BAND_BLOCK, max=resolution) - 1
    centres = (axis[starts] + axis[ends]) / 2
    reach = float((ends - starts).max()) * spacing / 2 * math.sqrt(3)  # centre to a corner
    bi, bj, bk = torch.meshgrid(*(torch.arange(blocks, device=device),) * 3, indexing="ij")
    bi, bj, bk = bi.reshape(-1), bj.reshape(-1), bk.reshape(-1)
    centre_values = np.concatenate(
        [
            _query(
                sdf_fn,
                centres[bi[s : s + chunk]],
                centres[bj[s : s + chunk]],
                centres[bk[s : s + chunk]],
            )  # fmt: skip
            for s in range(0, len(bi), chunk)
        ]
    ).reshape(blocks, blocks, blocks)
    # every node of a block starts with its centre's value
    node_block = np.minimum(np.arange(resolution) // BAND_BLOCK, blocks - 1)
    volume = centre_values[np.ix_(node_block, node_block, node_block)].astype(np.float32)
    asked = np.zeros((blocks,) * 3, dtype=bool)
    todo = np.abs(centre_values) <= BAND_SLOPE * reach + spacing
    while todo.any():
        _fill_blocks(sdf_fn, axis, volume, np.argwhere(todo), chunk)
        asked |= todo
        todo = _blocks_at_sign_changes(volume, node_block, blocks) & ~asked
    return volume


def _fill_blocks(
    sdf_fn: Callable[[Tensor], Tensor],
    axis: Tensor,
    volume: np.ndarray,
    blocks: np.ndarray,
    chunk: int,
) -> None:
    """Ask the SDF at every node of ``blocks`` (B, 3 block indices), ``chunk`` points a call."""
    resolution = len(axis)
    local = np.stack(np.meshgrid(*(np.arange(BAND_BLOCK),) * 3, indexing="ij"), -1).reshape(-1, 3)
    per_call = max(1, chunk // len(local))
    for start in range(0, len(blocks), per_call):
        nodes = (blocks[start : start + per_call, None, :] * BAND_BLOCK + local).reshape(-1, 3)
        nodes = nodes[(nodes < resolution).all(-1)]
        index = torch.from_numpy(nodes).to(axis.device)
        values = _query(sdf_fn, axis[index[:, 0]], axis[index[:, 1]], axis[index[:, 2]])
        volume[nodes[:, 0], nodes[:, 1], nodes[:, 2]] = values


def _blocks_at_sign_changes(volume: np.ndarray, node_block: np.ndarray, blocks: int) -> np.ndarray:
    """Blocks holding a node of a grid edge whose two ends differ in sign (marching cubes puts
    a vertex on it)."""
    found = np.zeros((blocks,) * 3, dtype=bool)
    inside = volume < SURFACE_LEVEL
    for axis in range(3):
        change = np.diff(inside, axis=axis)
        for shift in (0, 1):  # both ends of each edge
            nodes = np.argwhere(change)
            nodes[:, axis] += shift
            found[node_block[nodes[:, 0]], node_block[nodes[:, 1]], node_block[nodes[:, 2]]] = True
    return found


def mesh_from_grid(
    volume: np.ndarray, bound: float = 1.0, keep_largest_component: bool = False
) -> trimesh.Trimesh:
    """Marching cubes at level 0 on a grid from :func:`sdf_grid`, in world coordinates.

    Raises :class:`IronError` when the volume has no zero crossing (the surface is not inside
    the box, or the field is not a valid SDF) or contains NaN.
    """
    if not np.all(np.isfinite(volume)):
        raise IronError("the SDF returned NaN or infinite values on the export grid")
    lo, hi = float(volume.min()), float(volume.max())
    if not (lo < SURFACE_LEVEL < hi):
        raise IronError(
            f"the SDF has no zero crossing in [-{bound}, {bound}]^3 (values in [{lo:.4g}, "
            f"{hi:.4g}]): the surface is empty or outside the box; check the checkpoint or bound"
        )
    spacing = grid_spacing(volume.shape[0], bound)
    # skimage's default winding ('descent') makes face normals (right-hand rule) point towards
    # increasing values: outwards for an SDF that is negative inside (the sphere test checks it).
    verts, faces, _normals, _values = marching_cubes(
        volume, level=SURFACE_LEVEL, spacing=(spacing,) * 3, gradient_direction="descent"
    )
    verts = verts - bound
    mesh = trimesh.Trimesh(vertices=verts, faces=faces, process=True)
    if keep_largest_component:
        mesh = largest_component(mesh)
    return mesh


def largest_component(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """The connected component with the largest surface area (IRON keeps the largest by area)."""
    parts = mesh.split(only_watertight=False)
    if len(parts) <= 1:
        return mesh
    return max(parts, key=lambda part: part.area)


def extract_mesh(
    sdf_fn: Callable[[Tensor], Tensor],
    resolution: int = DEFAULT_RESOLUTION,
    bound: float = 1.0,
    chunk: int = DEFAULT_CHUNK,
    device: torch.device | str = "cpu",
    keep_largest_component: bool = False,
) -> trimesh.Trimesh:
    """The zero level set of ``sdf_fn`` as a triangle mesh with outward-facing faces.

    ``sdf_fn`` maps points (P, 3) on ``device`` to SDF values (P,) or (P, 1) (or to an
    :class:`~ironrender.fields.base.SDFSample`, so an ``SDFField`` can be passed). Vertices are in
    world coordinates; the grid spacing ``2 * bound / (resolution - 1)`` bounds the error.
    """
    volume = sdf_grid(sdf_fn, resolution, bound, chunk, device)
    return mesh_from_grid(volume, bound, keep_largest_component)
