"""Export: SDF to mesh, UV atlas, texture baking, OBJ/MTL/GLB/Mitsuba writers.

The one entry point is :func:`export_asset`; the steps are importable on their own.
"""

from ironrender.export.bake import BakedTextures, bake_textures
from ironrender.export.mesh import decimate, extract_mesh
from ironrender.export.uv import UVMesh, unwrap
from ironrender.export.writers import ExportConfig, ExportResult, export_asset, write_asset

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
