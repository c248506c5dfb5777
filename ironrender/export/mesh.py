"""Mesh decimation for export: a triangle budget that UV unwrapping and viewers can handle.

The mesh itself comes from the SDF's zero level set (:mod:`ironrender.fields.level_set`).
"""

from __future__ import annotations

import fast_simplification
import numpy as np
import trimesh

from ironrender.errors import IronError


def decimate(mesh: trimesh.Trimesh, max_faces: int) -> trimesh.Trimesh:
    """Quadric-error decimation (fast-simplification) down to at most ``max_faces`` faces.

    Meshes already within budget are returned unchanged. The decimator may stop slightly above
    the target on a few meshes; the count is then close to ``max_faces`` rather than exact.
    """
    if max_faces < 4:
        raise IronError(f"max_faces must be at least 4, got {max_faces}")
    if len(mesh.faces) <= max_faces:
        return mesh
    verts, faces = fast_simplification.simplify(
        np.asarray(mesh.vertices, dtype=np.float64),
        np.asarray(mesh.faces, dtype=np.int32),
        target_count=int(max_faces),
    )
    return trimesh.Trimesh(vertices=verts, faces=faces, process=True)
