"""The files and folders an import writes in the dataset folder ``DATA/``.

Nothing is imported here: ``iron eval`` reads :data:`SPARSE_POINTS_FILE` without loading the
importer (or torch, or pycolmap).
"""

from __future__ import annotations

WORK_DIR = "colmap"  # DATA/colmap: COLMAP's database, sparse model and staged images
STAGED_IMAGES = "images"  # DATA/colmap/images: the photos as SfM sees them
NORMALIZATION_FILE = "normalization.json"
REPORT_FILE = "import_report.json"
# The sparse points in the normalized frame: ``points`` (M, 3) float32, ``colors`` (M, 3)
# uint8, ``track_length`` (M,) int32; ``iron eval`` measures the reconstruction against them.
SPARSE_POINTS_FILE = "sparse_points_norm.npz"
