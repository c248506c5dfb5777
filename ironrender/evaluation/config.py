"""What ``iron eval`` computes: :class:`EvalConfig`, shared by every evaluation module."""

from __future__ import annotations

from dataclasses import dataclass

from ironrender.config import option


@dataclass
class EvalConfig:
    """What ``iron eval`` computes; defaults are quick on 2 CPU cores at 128x128."""

    max_views: int = option(0, "test views evaluated; 0: every test view")
    edges: bool = option(True, "stage-2 renders with edge pixels blended (as trained)")
    render_chunk_rows: int = option(64, "image rows rendered per batch")
    max_size: int = option(
        512, "longest side views are evaluated at (larger ones are scaled); 0: any"
    )
    error_gain: float = option(4.0, "the error images show |pred - gt| times this")
    mesh_resolution: int = option(192, "marching cubes of the SDF, as the fast export: ~7M queries")
    mesh_samples: int = option(50_000, "points sampled on each mesh for Chamfer and F-score")
    f_threshold_fraction: float = option(
        0.01, "F-score distance threshold, a fraction of the GT bounding-sphere diameter"
    )
    material_samples: int = option(20_000, "surface points where materials are compared to GT")
    projection_steps: int = option(3, "Newton steps that project those points onto the SDF")
    relight: bool = option(True, "relight the exported asset under the GT environment map")
    relight_spp: int = option(64, "samples per pixel of the relit renders")
    turntable_frames: int = option(6, "flash-lit frames of the exported asset; 0: none")
    turntable_spp: int = option(64, "samples per pixel of the turntable frames")
    turntable_elevation_deg: float = option(20.0, "the turntable camera's elevation, degrees")
    export_if_missing: bool = option(
        True, "export the asset first when relighting or the turntable needs it"
    )
    seed: int = option(0, "seed of the point samples and the renders' noise")
    progress: bool = option(True, "progress bars on the terminal")
