"""Texture baking: one material query per texel, at the surface point the texel covers.

IRON's code (``models/export_materials.py``; IRON §3.3, docs/architecture.md (A30)) splats 25M
random surface samples into the texture with a Gaussian kernel and leaves gutters empty. We
instead invert the UV map exactly: each triangle is rasterised in texture space, and a texel
whose centre lies inside a triangle with barycentric coordinates ``(b0, b1, b2)`` gets the point
``x = b0 x0 + b1 x1 + b2 x2`` and the normal ``normalize(b0 n0 + b1 n1 + b2 n2)`` (interpolated
vertex normals). The material function is queried once per covered texel (no splatting blur, no
noise). Like IRON, points are not projected onto the zero level set: the mesh is within a
fraction of a grid cell of it.

Empty texels (gutters between charts, outside the atlas) are filled with the value of the
nearest covered texel (Euclidean distance transform), so bilinear filtering and every mip level
only ever average values that belong to the surface: no dark seams.

Texel convention as in :mod:`ironrender.export.uv`: row ``r``, column ``c`` has its centre at
``(u, v) = ((c + 0.5) / W, 1 - (r + 0.5) / H)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt
from torch import Tensor
from tqdm.auto import tqdm

from ironrender.errors import IronError
from ironrender.export.uv import UVMesh
from ironrender.fields.materials import MaterialsFn

#: Barycentric tolerance: a texel centre exactly on a shared edge belongs to both triangles.
INSIDE_EPS = 1e-9
#: Candidate texels generated per rasterisation batch (bounds memory to ~100 MB).
RASTER_BATCH = 4_000_000
#: Default number of points per material query.
DEFAULT_BAKE_CHUNK = 65536


@dataclass
class TexelSurface:
    """The covered texels of a texture and the surface sample of each.

    rows, cols (T,) texel indices; face (T,) triangle index; bary (T, 3) barycentric coordinates
    of the texel centre; points (T, 3) and normals (T, 3) on the mesh; size (H, W).
    """

    rows: np.ndarray
    cols: np.ndarray
    face: np.ndarray
    bary: np.ndarray
    points: np.ndarray
    normals: np.ndarray
    size: tuple[int, int]

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool: texels whose centre lies on the mesh."""
        mask = np.zeros(self.size, dtype=bool)
        mask[self.rows, self.cols] = True
        return mask


@dataclass
class BakedTextures:
    """Texture maps (H, W, C) float32, linear values, gutters filled; ``coverage`` (H, W) bool."""

    maps: dict[str, np.ndarray]
    coverage: np.ndarray


def rasterize_uv(uv_mesh: UVMesh, size: int) -> TexelSurface:
    """Find, for every texel whose centre is inside a UV triangle, its surface point.

    Vectorised: each triangle's texel bounding box is enumerated with ``repeat``/``arange``
    (in batches of triangles), barycentric coordinates of the texel centres are computed in
    closed form, and the ones with all coordinates >= 0 are kept (first triangle wins on ties).
    """
    height = width = int(size)
    faces = np.asarray(uv_mesh.faces, dtype=np.int64)
    # Texel space: column = u W - 1/2, row = (1 - v) H - 1/2 (texel centres at integers).
    tex = np.stack(
        [uv_mesh.uvs[:, 0] * width - 0.5, (1.0 - uv_mesh.uvs[:, 1]) * height - 0.5], axis=-1
    )[faces]  # (F, 3, 2)
    col_lo = np.clip(np.ceil(tex[..., 0].min(1)), 0, width - 1).astype(np.int64)
    col_hi = np.clip(np.floor(tex[..., 0].max(1)), 0, width - 1).astype(np.int64)
    row_lo = np.clip(np.ceil(tex[..., 1].min(1)), 0, height - 1).astype(np.int64)
    row_hi = np.clip(np.floor(tex[..., 1].max(1)), 0, height - 1).astype(np.int64)
    box_w = np.maximum(col_hi - col_lo + 1, 0)
    counts = box_w * np.maximum(row_hi - row_lo + 1, 0)

    found_face, found_flat, found_bary = [], [], []
    start = 0
    cumulative = np.cumsum(counts)
    while start < len(faces):
        # Largest batch of triangles whose candidates fit in RASTER_BATCH (at least one).
        base = cumulative[start - 1] if start else 0
        stop = max(int(np.searchsorted(cumulative, base + RASTER_BATCH, side="right")), start + 1)
        tri = np.arange(start, stop)
        n = counts[tri]
        tri_of = np.repeat(tri, n)
        local = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
        cols = col_lo[tri_of] + local % box_w[tri_of]
        rows = row_lo[tri_of] + local // box_w[tri_of]
        bary = _barycentric(tex[tri_of], np.stack([cols, rows], axis=-1).astype(np.float64))
        inside = np.all(bary >= -INSIDE_EPS, axis=1)
        found_face.append(tri_of[inside])
        found_flat.append(rows[inside] * width + cols[inside])
        found_bary.append(bary[inside])
        start = stop

    face = np.concatenate(found_face)
    flat = np.concatenate(found_flat)
    bary = np.clip(np.concatenate(found_bary), 0.0, 1.0)
    bary /= bary.sum(axis=1, keepdims=True)
    flat, first = np.unique(flat, return_index=True)
    face, bary = face[first], bary[first]
    if len(flat) == 0:
        raise IronError("no texel centre falls inside a UV triangle; increase the texture size")

    corners = faces[face]  # (T, 3)
    points = np.einsum("tk,tkd->td", bary, uv_mesh.vertices[corners])
    normals = np.einsum("tk,tkd->td", bary, uv_mesh.normals[corners])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    return TexelSurface(
        rows=flat // width,
        cols=flat % width,
        face=face,
        bary=bary,
        points=points,
        normals=normals,
        size=(height, width),
    )


def _barycentric(triangles: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Barycentric coordinates (N, 3) of 2-D ``points`` (N, 2) in ``triangles`` (N, 3, 2).

    Degenerate (zero-area) triangles give -inf coordinates, i.e. never inside.
    """
    a, b, c = triangles[:, 0], triangles[:, 1], triangles[:, 2]
    e1, e2, d = b - a, c - a, points - a
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    safe = np.where(det == 0.0, 1.0, det)
    b1 = (d[:, 0] * e2[:, 1] - d[:, 1] * e2[:, 0]) / safe
    b2 = (e1[:, 0] * d[:, 1] - e1[:, 1] * d[:, 0]) / safe
    bary = np.stack([1.0 - b1 - b2, b1, b2], axis=-1)
    bary[det == 0.0] = -np.inf
    return bary


def query_materials(
    materials_fn: MaterialsFn,
    points: np.ndarray,
    normals: np.ndarray,
    chunk: int = DEFAULT_BAKE_CHUNK,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Evaluate ``materials_fn`` on (P, 3) points/normals in chunks under ``no_grad``."""
    device = torch.device(device)
    parts: dict[str, list[np.ndarray]] = {}
    starts = range(0, len(points), chunk)
    with torch.no_grad():
        for start in tqdm(starts, desc="bake materials", unit="chunk", disable=not progress):
            p = torch.as_tensor(points[start : start + chunk], dtype=torch.float32, device=device)
            n = torch.as_tensor(normals[start : start + chunk], dtype=torch.float32, device=device)
            for name, value in materials_fn(p, n).items():
                if isinstance(value, Tensor):
                    value = value.detach().float().cpu().numpy()
                value = np.asarray(value, dtype=np.float32).reshape(len(p), -1)
                parts.setdefault(name, []).append(value)
    return {name: np.concatenate(chunks, axis=0) for name, chunks in parts.items()}


def fill_gutters(texture: np.ndarray, coverage: np.ndarray) -> np.ndarray:
    """Give every uncovered texel the value of its nearest covered texel (Euclidean)."""
    if coverage.all():
        return texture
    _, (rows, cols) = distance_transform_edt(~coverage, return_indices=True)
    return texture[rows, cols]


def bake_textures(
    uv_mesh: UVMesh,
    materials_fn: MaterialsFn,
    texture_size: int,
    chunk: int = DEFAULT_BAKE_CHUNK,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> BakedTextures:
    """Bake every output of ``materials_fn`` into a ``texture_size``^2 map (H, W, C)."""
    surface = rasterize_uv(uv_mesh, texture_size)
    values = query_materials(materials_fn, surface.points, surface.normals, chunk, device, progress)
    coverage = surface.mask
    maps = {}
    for name, value in values.items():
        texture = np.zeros((*surface.size, value.shape[1]), dtype=np.float32)
        texture[surface.rows, surface.cols] = value
        maps[name] = fill_gutters(texture, coverage)
    return BakedTextures(maps=maps, coverage=coverage)
