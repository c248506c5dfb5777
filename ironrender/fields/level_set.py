"""The zero level set of a signed-distance field as a triangle mesh (grid, marching cubes).

IRON (§3.3; ``models/export_mesh.py`` in its code; docs/architecture.md (A29)) evaluates the SDF
on a regular grid and runs marching cubes at level 0. We do the same on an axis-aligned grid
over ``[-bound, bound]^3`` (IRON's extra PCA-aligned 512-sample pass only re-orients the grid; a
finer ``resolution`` gives the same accuracy without it). The field is queried in chunks under
``no_grad`` so memory is bounded by ``chunk`` points plus the float32 volume (``resolution^3 * 4``
bytes).

Sign convention (``ironrender.fields.base``): the SDF is negative inside, so the outward normal
is the SDF gradient and marching cubes must orient faces along increasing SDF.

Marching cubes returns everything opaque in the box, clutter included (a table, a stand);
:mod:`ironrender.export.select` chooses the object's part (``keep_largest_component`` here is
IRON's simple rule, the ``largest`` mode there). Stage 1's mesh, export and evaluation all extract
their meshes here, so it sits with the fields, below all three.
"""

from __future__ import annotations

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


def grid_spacing(resolution: int, bound: float = 1.0) -> float:
    """Distance between neighbouring nodes of the ``resolution^3`` grid over [-bound, bound]^3."""
    return 2.0 * bound / (resolution - 1)


def sdf_grid(
    sdf_fn: Callable[[Tensor], Tensor],
    resolution: int = DEFAULT_RESOLUTION,
    bound: float = 1.0,
    chunk: int = DEFAULT_CHUNK,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """SDF values on the ``resolution^3`` grid of node positions ``linspace(-bound, bound)``.

    Returns a float32 volume indexed ``[i, j, k]`` for the point ``(x_i, y_j, z_k)``. Points are
    generated chunk by chunk from their flat index, so no ``(resolution^3, 3)`` array is built.
    """
    if resolution < 2:
        raise IronError(f"mesh resolution must be at least 2, got {resolution}")
    device = torch.device(device)
    axis = torch.linspace(-bound, bound, resolution, dtype=torch.float32, device=device)
    total = resolution**3
    volume = np.empty(total, dtype=np.float32)
    with torch.no_grad():
        for start in range(0, total, chunk):
            flat = torch.arange(start, min(start + chunk, total), device=device)
            i = flat // (resolution * resolution)
            j = (flat // resolution) % resolution
            k = flat % resolution
            points = torch.stack([axis[i], axis[j], axis[k]], dim=-1)
            values = sdf_fn(points)
            values = getattr(values, "sdf", values).reshape(-1)  # an SDFSample works too
            volume[start : start + len(flat)] = values.detach().float().cpu().numpy()
    return volume.reshape(resolution, resolution, resolution)


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
