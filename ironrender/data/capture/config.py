"""The options of an import (:class:`ImportConfig`, one per CLI flag) and their validation."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ironrender.data.capture.folding import FoldingConfig
from ironrender.data.capture.normalize import NormalizationConfig
from ironrender.errors import IronError

PINHOLE_MODELS = ("SIMPLE_PINHOLE", "PINHOLE")
CAMERA_MODELS = PINHOLE_MODELS + ("SIMPLE_RADIAL", "RADIAL", "OPENCV")
MATCHERS = ("exhaustive", "sequential")


@dataclass
class ImportConfig:
    """Options of :func:`~ironrender.data.capture.importer.import_photos` (the CLI's flags map
    one to one)."""

    resolution: int = 512  # max side of the dataset's images; 0 keeps the photos' size
    sfm_resolution: int = 1600  # max side of the images SfM sees (at least ``resolution``)
    test_fraction: float = 0.1
    seed: int = 0
    matcher: str = "exhaustive"  # or "sequential" (photos in capture order, large captures)
    sequential_overlap: int = 10  # sequential matcher: each photo is matched to this many next
    camera_model: str = "SIMPLE_PINHOLE"
    shared_camera: bool = True  # one camera for all photos (one phone, locked zoom)
    max_features: int = 8192  # SIFT features per image
    num_threads: int = -1  # -1: all cores
    colmap_model: str | None = None  # import this COLMAP model folder instead of running SfM
    keep_sfm_images: bool = False  # keep the staged photos in DATA/colmap/images
    overwrite: bool = False
    verbose: bool = False  # show COLMAP's own log
    # Where the flash sits relative to the lens, in metres along the camera's axes (OpenCV: x
    # right, y down, z forward), and how far the camera was from the object's centre (metres,
    # typical), which converts metres to the dataset's units. None: the flash is in the lens.
    flash_offset: tuple[float, float, float] | None = None
    object_distance: float | None = None
    normalization: NormalizationConfig = field(default_factory=NormalizationConfig)
    folding: FoldingConfig = field(default_factory=FoldingConfig)


def validate(config: ImportConfig) -> None:
    """Raise :class:`IronError` (one line) for options no import can run with."""
    if config.matcher not in MATCHERS:
        raise IronError(f"matcher must be one of {', '.join(MATCHERS)}, not {config.matcher!r}")
    if config.camera_model not in CAMERA_MODELS:
        raise IronError(
            f"camera model must be one of {', '.join(CAMERA_MODELS)}, not {config.camera_model!r}"
        )
    if not 0.0 <= config.test_fraction < 1.0:
        raise IronError(f"test fraction must be in [0, 1), not {config.test_fraction}")
    if config.flash_offset is not None:
        if config.object_distance is None or not config.object_distance > 0:
            raise IronError(
                "--flash-offset needs --object-distance: how far (in metres) the camera was from"
                " the object's centre, which converts the offset to the dataset's units"
            )
        if not all(math.isfinite(x) for x in config.flash_offset):
            raise IronError("the flash offset must be three finite numbers (metres)")
    if config.resolution < 0 or config.sfm_resolution <= 0:
        raise IronError("resolutions must be positive (resolution 0 keeps the photos' size)")
