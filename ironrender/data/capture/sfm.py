"""Structure from motion with pycolmap: SIFT features, matching, incremental mapping.

Nothing of SfM is written by hand; pycolmap (COLMAP's Python bindings) runs every step, on the
staged photos (:func:`ironrender.data.capture.photos.stage_for_sfm`), with one shared pinhole
camera by default (``SIMPLE_PINHOLE``: phones have square pixels and a centred principal
point). pycolmap is optional: :func:`import_pycolmap` says how to install it.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from ironrender.data.capture.config import ImportConfig
from ironrender.data.capture.files import STAGED_IMAGES
from ironrender.data.capture.messages import Progress
from ironrender.data.capture.photos import Photo
from ironrender.errors import IronError


def import_pycolmap():
    """The pycolmap module, or an :class:`IronError` that says how to install it."""
    try:
        import pycolmap  # lazy: a missing pycolmap gets the install hint below
    except ImportError as exc:
        raise IronError(
            "pycolmap is not installed; install it with: pip install 'ironrender[colmap]'"
        ) from exc
    return pycolmap


def run_sfm(
    pycolmap, work: Path, photos: list[Photo], config: ImportConfig, say: Progress, warnings
):
    """SIFT features, matching, incremental mapping: the largest reconstruction and its folder."""
    database = work / "database.db"
    sparse = work / "sparse"
    for stale in (database, work / "database.db-shm", work / "database.db-wal"):
        stale.unlink(missing_ok=True)
    shutil.rmtree(sparse, ignore_errors=True)
    sparse.mkdir(parents=True)
    pycolmap.set_random_seed(config.seed)
    images = work / STAGED_IMAGES
    names = [p.name for p in photos]

    say(f"[2/5] SfM: extracting SIFT features from {len(names)} photos")
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = config.camera_model
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = config.num_threads
    extraction.sift.max_num_features = config.max_features
    mode = pycolmap.CameraMode.SINGLE if config.shared_camera else pycolmap.CameraMode.PER_IMAGE
    pycolmap.extract_features(
        database, images, image_names=names, camera_mode=mode, reader_options=reader,
        extraction_options=extraction,
    )  # fmt: skip

    say(f"[2/5] SfM: matching features ({config.matcher})")
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = config.num_threads
    if config.matcher == "sequential":
        pairing = pycolmap.SequentialPairingOptions()
        pairing.overlap = config.sequential_overlap
        pycolmap.match_sequential(database, matching_options=matching, pairing_options=pairing)
    else:
        pycolmap.match_exhaustive(database, matching_options=matching)

    say("[2/5] SfM: incremental mapping")
    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads = config.num_threads
    options.mapper.random_seed = config.seed
    options.triangulation.random_seed = config.seed
    registered = [0]

    def on_image() -> None:
        registered[0] += 1
        if registered[0] % 10 == 0:
            say(f"      placed {registered[0]} views")

    models = pycolmap.incremental_mapping(
        database, images, sparse, options, next_image_callback=on_image
    )
    if not models:
        raise IronError(
            "SfM found no pair of photos to start from: photos need more overlap and texture"
            " (see docs/capture-guide.md)"
        )
    ranked = sorted(models.items(), key=lambda kv: -kv[1].num_reg_images())
    if len(ranked) > 1:
        sizes = ", ".join(str(m.num_reg_images()) for _, m in ranked)
        warnings.append(
            f"SfM split the photos into {len(ranked)} separate models ({sizes} views); only the"
            " largest is used: take photos that bridge the gaps"
        )
    index, model = ranked[0]
    path = sparse / str(index)
    path.mkdir(parents=True, exist_ok=True)
    model.write(path)  # the chosen model on disk: for undistortion and later re-imports
    return model, path


def colmap_log_level(pycolmap, verbose: bool):
    """Silence COLMAP's INFO/WARNING log unless ``verbose`` (restored afterwards)."""

    @contextlib.contextmanager
    def scope():
        previous = pycolmap.logging.minloglevel
        if not verbose:
            pycolmap.logging.minloglevel = int(pycolmap.logging.Level.ERROR.value)
        try:
            yield
        finally:
            pycolmap.logging.minloglevel = previous

    return scope()
