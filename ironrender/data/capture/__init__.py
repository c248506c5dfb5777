"""``iron import``: a flash-photo capture into an IRON dataset, with camera poses from COLMAP.

One module per step, each importing only the ones above it in this table:

================  ===============================================================================
``files``         the file and folder names an import writes in ``DATA/`` (imports nothing)
``messages``      the progress callback type; names listed in warnings (``short``)
``photos``        listing photos, EXIF-upright sizes, unique names, size checks, staging and
                  resizing in linear radiance (``resize_linear``), output sizes
``normalize``     ``NormalizationConfig``, ``Normalization``: the object into the unit sphere
``folding``       ``FoldingConfig``, ``check_folding``: signs of a folded reconstruction
``config``        ``ImportConfig`` (one field per CLI flag), camera models, matchers, validation
``sfm``           running pycolmap: features, matching, incremental mapping, COLMAP's log level
``colmap_model``  a COLMAP model as pinhole views (undistorted if needed) and sparse points
``importer``      ``import_photos``: the steps in order, the train/test split, the report
================  ===============================================================================

Importing this package is cheap (no torch, no pycolmap): the entry points below are loaded
from their modules on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ironrender.data.capture.files import SPARSE_POINTS_FILE

if TYPE_CHECKING:
    from ironrender.data.capture.config import ImportConfig
    from ironrender.data.capture.folding import FoldingConfig
    from ironrender.data.capture.importer import ImportReport, import_photos
    from ironrender.data.capture.normalize import NormalizationConfig

_LAZY = {
    "import_photos": "importer",
    "ImportReport": "importer",
    "ImportConfig": "config",
    "NormalizationConfig": "normalize",
    "FoldingConfig": "folding",
}

__all__ = [
    "SPARSE_POINTS_FILE",
    "FoldingConfig",
    "ImportConfig",
    "ImportReport",
    "NormalizationConfig",
    "import_photos",
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
