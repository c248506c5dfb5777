"""Import a flash-photo capture into an IRON dataset, with camera poses from COLMAP.

IRON needs calibrated cameras (``cam_dict_norm.json``) and the object inside the unit sphere.
For real photos both come from structure from motion, run by pycolmap. :func:`import_photos`
runs the steps, each in its own module:

1. **Read the photos** (:mod:`~ironrender.data.capture.photos`): EXIF orientation applied,
   unreadable files skipped, staged as 8-bit PNGs in ``DATA/colmap/images``, resized to
   ``sfm_resolution`` (max side).
2. **Structure from motion** (:mod:`~ironrender.data.capture.sfm`), or an existing COLMAP model
   (``colmap_model``) read, in either case as pinhole views
   (:mod:`~ironrender.data.capture.colmap_model`).
3. **Convert**: resizing to the output resolution scales each axis of ``K``:
   ``K' = diag(W'/W, H'/H, 1) K``.
4. **Normalize** (:mod:`~ironrender.data.capture.normalize`): the object into the unit sphere.
5. **Check for folding** (:mod:`~ironrender.data.capture.folding`).
6. **Split and write** (here): a seeded train/test split, images resized in linear radiance,
   written by :func:`ironrender.data.dataset.save_split`; ``normalization.json``,
   ``import_report.json`` and the sparse points in the normalized frame,
   ``sparse_points_norm.npz`` (see :mod:`~ironrender.data.capture.files`), which ``iron eval``
   measures the reconstruction against.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ironrender.data.cameras import Cameras
from ironrender.data.capture.colmap_model import (
    Views,
    read_model,
    sparse_points,
    stage_for_model,
    views_from_model,
)
from ironrender.data.capture.config import ImportConfig, validate
from ironrender.data.capture.files import (
    NORMALIZATION_FILE,
    REPORT_FILE,
    SPARSE_POINTS_FILE,
    STAGED_IMAGES,
    WORK_DIR,
)
from ironrender.data.capture.folding import FoldingReport, check_folding, two_view_pairs
from ironrender.data.capture.messages import Progress, short
from ironrender.data.capture.normalize import Normalization, estimate_normalization
from ironrender.data.capture.photos import (
    LazyImages,
    check_sizes,
    list_photos,
    output_size,
    stage_for_sfm,
)
from ironrender.data.capture.sfm import colmap_log_level, import_pycolmap, run_sfm
from ironrender.data.capture_file import (
    CAPTURE_FILE,
    CaptureDescription,
    describe,
    describe_photographs,
    write_capture,
)
from ironrender.data.dataset import save_split
from ironrender.errors import IronError

# Fewer photos than this cannot give IRON a usable capture (it needs 100-200, see the guide);
# below it SfM itself is unreliable.
MIN_IMAGES = 10
# A reconstruction that places fewer views than this is refused.
MIN_REGISTERED_VIEWS = 8


@dataclass
class ImportReport:
    """What :func:`import_photos` did."""

    out_dir: Path
    num_photos: int  # photos read
    registered: list[str]  # source photo names that got a pose
    unregistered: list[str]  # source photo names SfM could not place
    skipped: list[str]  # unreadable or unsupported files
    mean_reprojection_error: float  # pixels, at the SfM images' resolution
    train: list[str]  # dataset image names
    test: list[str]
    image_size: tuple[int, int]  # (W, H) of the dataset's images
    normalization: Normalization
    folding: FoldingReport
    warnings: list[str]
    capture: CaptureDescription | None = None  # what DATA/capture.json says

    def summary(self) -> str:
        lines = [
            f"registered {len(self.registered)}/{self.num_photos} photos,"
            f" mean reprojection error {self.mean_reprojection_error:.3f} px;"
            f" {len(self.train)} train / {len(self.test)} test views at"
            f" {self.image_size[0]}x{self.image_size[1]} -> {self.out_dir}"
        ]
        if self.unregistered:
            lines.append(f"not registered ({len(self.unregistered)}): {short(self.unregistered)}")
        if self.skipped:
            lines.append(f"skipped ({len(self.skipped)}): {short(self.skipped)}")
        if self.capture is not None:
            lines.append(f"capture ({CAPTURE_FILE}): {describe(self.capture)}")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def import_photos(
    photos_dir: str | Path,
    out_dir: str | Path,
    config: ImportConfig | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Build an IRON dataset in ``out_dir`` from the photos in ``photos_dir``.

    Runs SfM with pycolmap (or reads ``config.colmap_model``), normalizes the scene so the object
    lies in the unit sphere, checks for folded reconstructions, splits train/test and writes
    images and ``cam_dict_norm.json``. Photos SfM cannot place are reported and left out.
    Raises :class:`IronError` (one line) for input that cannot give a dataset.
    """
    config = config or ImportConfig()
    say = progress or (lambda message: None)
    validate(config)
    pycolmap = import_pycolmap()
    photos_dir, out = Path(photos_dir), Path(out_dir)
    _prepare_output(out, config.overwrite)
    warnings: list[str] = []
    work = out / WORK_DIR
    work.mkdir(parents=True, exist_ok=True)

    with colmap_log_level(pycolmap, config.verbose):
        if config.colmap_model:
            say(f"[1/5] reading COLMAP model {config.colmap_model}")
            photos, skipped = list_photos(photos_dir, warnings, minimum=1)
            reconstruction, model_path, views_photos = read_model(
                pycolmap, config.colmap_model, photos
            )
            say(f"[2/5] staging {len(views_photos)} photos at the model's camera sizes")
            staged = stage_for_model(reconstruction, views_photos, work / STAGED_IMAGES, warnings)
            database = None
        else:
            photos, skipped = list_photos(photos_dir, warnings, minimum=MIN_IMAGES)
            check_sizes(photos, config.shared_camera)
            sfm_side = _sfm_side(photos[0].size, config)
            say(f"[1/5] reading {len(photos)} photos (EXIF orientation applied)")
            photos, more_skipped = stage_for_sfm(photos, work / STAGED_IMAGES, sfm_side, warnings)
            skipped += more_skipped
            if len(photos) < MIN_IMAGES:
                raise IronError(
                    f"{photos_dir}: only {len(photos)} readable photos; SfM needs at least"
                    f" {MIN_IMAGES} (IRON wants 100-200, see docs/capture-guide.md)"
                )
            database = work / "database.db"
            reconstruction, model_path = run_sfm(pycolmap, work, photos, config, say, warnings)
            staged = {p.name: work / STAGED_IMAGES / p.name for p in photos}

        by_name = {p.name: p for p in photos}
        views, unregistered = views_from_model(
            pycolmap, reconstruction, model_path, by_name, staged, work
        )
        if len(views.photos) < MIN_REGISTERED_VIEWS:
            raise IronError(
                f"only {len(views.photos)} of {len(photos)} photos could be placed by SfM"
                f" (need at least {MIN_REGISTERED_VIEWS}): photos need more overlap and texture"
                " (see docs/capture-guide.md)"
            )
        if unregistered:
            warnings.append(
                f"{len(unregistered)} photo(s) could not be registered and are left out:"
                f" {short([by_name[n].path.name for n in unregistered])}"
            )
        reprojection_error = float(reconstruction.compute_mean_reprojection_error())

        say("[3/5] normalizing the scene into the unit sphere")
        points, track_lengths, colors = sparse_points(reconstruction)
        normalization = estimate_normalization(
            views.w2c, points, track_lengths, config.normalization, warnings
        )
        w2c_n = normalization.apply_to_w2c(views.w2c)

        say("[4/5] checking the cameras for a folded reconstruction")
        pairs = (
            two_view_pairs(pycolmap, database, reconstruction, config.folding)
            if database is not None
            else []
        )
        folding = check_folding(
            Cameras(_t(views.K), _t(w2c_n), torch.from_numpy(views.sizes)),
            [p.name for p in views.photos],
            pairs,
            config.folding,
        )
        warnings += folding.warnings

    say("[5/5] writing the dataset")
    out_size = output_size(tuple(int(s) for s in views.sizes[0]), config.resolution)
    scale_xy = np.stack([out_size[0] / views.sizes[:, 0], out_size[1] / views.sizes[:, 1]], -1)
    K_out = views.K.copy()
    K_out[:, 0, :] *= scale_xy[:, :1]
    K_out[:, 1, :] *= scale_xy[:, 1:]
    train_idx, test_idx = split_indices(len(views.photos), config.test_fraction, config.seed)
    split_names: dict[str, list[str]] = {}
    for split, index in (("train", train_idx), ("test", test_idx)):
        if len(index) == 0:
            continue
        names = [views.photos[i].name for i in index]
        cameras = Cameras(
            _t(K_out[index]),
            _t(w2c_n[index]),
            torch.tensor([out_size] * len(index), dtype=torch.long),
            flash_in_scene_units(config, w2c_n, len(index)),
        )
        images = LazyImages([views.image_paths[i] for i in index], out_size)
        save_split(out, split, names, images, cameras)  # type: ignore[arg-type]  # lazy sequence
        split_names[split] = names

    if not config.keep_sfm_images:
        shutil.rmtree(work / STAGED_IMAGES, ignore_errors=True)
        shutil.rmtree(work / "undistorted" / "images", ignore_errors=True)
    description = describe_photographs([p.path for p in views.photos])
    write_capture(out, description)
    (out / NORMALIZATION_FILE).write_text(json.dumps(normalization.to_json(), indent=1) + "\n")
    np.savez_compressed(
        out / SPARSE_POINTS_FILE,
        points=normalization.apply(points).astype(np.float32),
        colors=colors,
        track_length=track_lengths.astype(np.int32),
    )
    report = ImportReport(
        out_dir=out,
        num_photos=len(photos),
        registered=[p.path.name for p in views.photos],
        unregistered=[by_name[n].path.name for n in unregistered],
        skipped=skipped,
        mean_reprojection_error=reprojection_error,
        train=split_names.get("train", []),
        test=split_names.get("test", []),
        image_size=out_size,
        normalization=normalization,
        folding=folding,
        warnings=warnings,
        capture=description,
    )
    _write_report(out / REPORT_FILE, report, config, views)
    return report


def _sfm_side(size: tuple[int, int], config: ImportConfig) -> int:
    """Max side of the staged images: ``sfm_resolution``, never below the output resolution."""
    native = max(size)
    wanted = max(config.sfm_resolution, config.resolution) if config.resolution > 0 else native
    return min(native, wanted)


def split_indices(count: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random train/test split; at least one view each when the fraction is > 0."""
    order = np.random.default_rng(seed).permutation(count)
    n_test = round(test_fraction * count)
    if test_fraction > 0 and count >= 2:
        n_test = min(max(n_test, 1), count - 1)
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def _write_report(path: Path, report: ImportReport, config: ImportConfig, views: Views) -> None:
    data = {
        "num_photos": report.num_photos,
        "registered": report.registered,
        "unregistered": report.unregistered,
        "skipped": report.skipped,
        "mean_reprojection_error_px": report.mean_reprojection_error,
        "sfm_image_size": [int(s) for s in views.sizes[0]],
        "image_size": list(report.image_size),
        "train": report.train,
        "test": report.test,
        "dataset_name_of_photo": {p.path.name: p.name for p in views.photos},
        "folding": {
            "suspicious": report.folding.suspicious,
            "off_center_views": report.folding.off_center_views,
            "azimuth_coverage_deg": report.folding.azimuth_coverage_deg,
            "pairs_checked": report.folding.pairs_checked,
            "disagreeing_pairs": report.folding.disagreeing_pairs,
        },
        "warnings": report.warnings,
        "config": asdict(config),
    }
    path.write_text(json.dumps(data, indent=1) + "\n")


def _prepare_output(out: Path, overwrite: bool) -> None:
    existing = [out / s for s in ("train", "test") if (out / s).exists()]
    if existing and not overwrite:
        raise IronError(f"{existing[0]} already exists; choose another folder or pass --overwrite")
    for folder in existing:
        shutil.rmtree(folder)


def flash_in_scene_units(config: ImportConfig, w2c: np.ndarray, views: int) -> torch.Tensor | None:
    """``config.flash_offset`` (metres) in the dataset's units, one row per view, or None.

    The dataset's scale is the camera distance: the median distance of the normalized camera
    centres from the object's centre stands for ``config.object_distance`` metres.
    """
    if config.flash_offset is None or config.object_distance is None:
        return None
    R, t = w2c[:, :3, :3], w2c[:, :3, 3]
    centres = -np.einsum("nji,nj->ni", R, t)  # -R^T t
    units_per_metre = float(np.median(np.linalg.norm(centres, axis=-1))) / config.object_distance
    offset = torch.tensor(config.flash_offset, dtype=torch.float64) * units_per_metre
    return offset.expand(views, 3).float()


def _t(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64))
