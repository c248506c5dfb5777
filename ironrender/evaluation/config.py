"""What ``iron eval`` computes: :class:`EvalConfig`, shared by every evaluation module."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EvalConfig:
    """What ``iron eval`` computes; defaults are quick on 2 CPU cores at 128x128."""

    max_views: int = 0  # 0: every test view
    edges: bool = True  # stage-2 renders with edge pixels blended (as trained)
    render_chunk_rows: int = 64
    max_size: int = 512  # longest side views are evaluated at (larger ones are scaled); 0: any
    error_gain: float = 4.0  # the error images show |pred - gt| times this
    mesh_resolution: int = 192  # as the fast export: ~7M SDF queries
    mesh_samples: int = 50_000
    f_threshold_fraction: float = 0.01  # of the GT bounding-sphere diameter
    material_samples: int = 20_000
    projection_steps: int = 3
    relight: bool = True
    relight_spp: int = 64
    turntable_frames: int = 6
    turntable_spp: int = 64
    turntable_elevation_deg: float = 20.0
    export_if_missing: bool = True
    seed: int = 0
    progress: bool = True
