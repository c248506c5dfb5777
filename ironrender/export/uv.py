"""UV atlas with xatlas (IRON §3.3 used Blender's Smart UV Project; docs/architecture.md#export).

xatlas cuts the surface into charts and packs them into one square atlas. Vertices on chart
boundaries (seams) are duplicated, one copy per chart, so every vertex has exactly one UV;
``vertex_map`` gives the original vertex of each copy.

UV convention (OBJ/trimesh): ``u`` grows to the right and ``v`` grows **upwards**, so the texel in
image row ``r``, column ``c`` of an ``H x W`` texture has its centre at
``(u, v) = ((c + 0.5) / W, 1 - (r + 0.5) / H)``. :mod:`ironrender.export.bake` uses the same.

xatlas costs about 15 s for 57k faces on this machine (platform notes): decimate first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh
import xatlas

from ironrender.errors import IronError

#: Default gutter between charts, in texels (also the baking dilation must fill it).
DEFAULT_CHART_PADDING = 4


@dataclass
class UVMesh:
    """A mesh whose vertices carry UVs; seam vertices are duplicated.

    vertices (V, 3) float, faces (F, 3) int, uvs (V, 2) in [0, 1] (v up), normals (V, 3) unit
    vertex normals inherited from the input mesh, vertex_map (V,) index into the input mesh.
    """

    vertices: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray
    normals: np.ndarray
    vertex_map: np.ndarray

    def to_trimesh(self) -> trimesh.Trimesh:
        """A trimesh with ``TextureVisuals`` UVs (no processing: that would merge seam copies)."""
        return trimesh.Trimesh(
            vertices=self.vertices,
            faces=self.faces,
            vertex_normals=self.normals,
            visual=trimesh.visual.TextureVisuals(uv=self.uvs),
            process=False,
        )


def unwrap(
    mesh: trimesh.Trimesh, texture_size: int = 1024, padding: int = DEFAULT_CHART_PADDING
) -> UVMesh:
    """Compute a single-atlas UV parametrisation of ``mesh`` for a ``texture_size``^2 texture.

    ``padding`` texels separate the charts so that bilinear filtering and baking dilation do not
    bleed one chart into another. xatlas may pack into an atlas somewhat larger than
    ``texture_size`` (measured: 2504 for 2048 on a 50k-face torus); the UVs are normalised to
    [0, 1] regardless, so the gutter shrinks in proportion (4 -> ~3.3 texels) but charts never
    overlap.
    """
    if len(mesh.faces) == 0:
        raise IronError("cannot unwrap an empty mesh")
    atlas = xatlas.Atlas()
    atlas.add_mesh(
        np.ascontiguousarray(mesh.vertices, dtype=np.float32),
        np.ascontiguousarray(mesh.faces, dtype=np.uint32),
    )
    pack = xatlas.PackOptions()
    pack.resolution = int(texture_size)
    pack.padding = int(padding)
    pack.bilinear = True
    atlas.generate(pack_options=pack)
    if atlas.atlas_count != 1:
        raise IronError(
            f"xatlas packed the charts into {atlas.atlas_count} atlases; use a larger "
            "texture size or fewer faces"
        )
    vertex_map, faces, uvs = atlas[0]
    vertex_map = vertex_map.astype(np.int64)
    uvs = uvs.astype(np.float64)
    # xatlas' v axis runs down the image (row 0 at v = 0); flip to the OBJ convention (v up).
    uvs[:, 1] = 1.0 - uvs[:, 1]
    return UVMesh(
        vertices=np.asarray(mesh.vertices, dtype=np.float64)[vertex_map],
        faces=faces.astype(np.int64),
        uvs=uvs,
        normals=valid_vertex_normals(mesh)[vertex_map],
        vertex_map=vertex_map,
    )


def valid_vertex_normals(mesh: trimesh.Trimesh) -> np.ndarray:
    """Unit vertex normals (V, 3), every one finite.

    A vertex whose faces all have zero area (slivers that marching cubes leaves where the level
    set pinches) has no normal; left as is it is zero or NaN, and Mitsuba refuses the whole OBJ
    ("invalid vertex normal data"). Such a vertex takes the direction from the mesh's centroid
    to it (outward for a blob), or +z if it sits on the centroid.
    """
    normals = np.asarray(mesh.vertex_normals, dtype=np.float64).copy()
    length = np.linalg.norm(normals, axis=-1)
    bad = ~np.isfinite(length) | (length < 1e-8)
    if bad.any():
        outward = np.asarray(mesh.vertices, dtype=np.float64)[bad] - mesh.vertices.mean(axis=0)
        size = np.linalg.norm(outward, axis=-1, keepdims=True)
        fallback = np.where(size > 1e-12, outward / np.maximum(size, 1e-12), [0.0, 0.0, 1.0])
        normals[bad] = fallback
    good = ~bad
    normals[good] /= length[good, None]
    return normals
