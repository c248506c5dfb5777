"""Export: a trained model as a relightable asset (OBJ/MTL, glTF, Mitsuba 3 scene, textures).

=================  ============================================================================
``asset``          :func:`export_asset`: the steps below in order; ``ExportConfig``
``select``         which part of the extracted surface is the object (crop, cut, components)
``support_plane``  the table or cloth under the object, found so it can be cut away
``mesh``           decimation to a triangle budget
``uv``             the UV atlas (xatlas)
``bake``           texture baking: one material query per texel
``texture_fit``    the texture stage (optional): the maps fitted to the training photographs
``photo_hits``     its per-pixel hits on the fixed mesh (Mitsuba 3), computed once
``writers``        the files: maps, OBJ/MTL, ``scene.xml``, ``light.json``
``gltf``           ``model.glb`` with the specular albedo (``KHR_materials_specular``, ``_ior``)
``run``            :func:`export_run`: a trained run folder to ``RUN/export``
=================  ============================================================================

The surface itself is the SDF's zero level set (:mod:`ironrender.fields.level_set`).
"""

from ironrender.export.asset import ExportConfig, ExportResult, export_asset, write_asset
from ironrender.export.bake import BakedTextures, bake_textures
from ironrender.export.mesh import decimate
from ironrender.export.uv import UVMesh, unwrap
from ironrender.fields.level_set import extract_mesh

__all__ = [
    "BakedTextures",
    "ExportConfig",
    "ExportResult",
    "UVMesh",
    "bake_textures",
    "decimate",
    "export_asset",
    "extract_mesh",
    "unwrap",
    "write_asset",
]
