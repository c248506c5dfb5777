"""Import a flash-photo capture into an IRON dataset, with camera poses from COLMAP.

IRON needs calibrated cameras (``cam_dict_norm.json``) and the object inside the unit sphere.
For real photos both come from structure from motion, run here by pycolmap (COLMAP's Python
bindings; nothing of SfM is written by hand). The pipeline, in the order of this module:

1. **Read the photos.** EXIF orientation is applied (``PIL.ImageOps.exif_transpose``) *before*
   feature extraction, so COLMAP sees the photos upright, as the user does. Unreadable files are
   skipped with a warning. The photos are staged, resized to ``sfm_resolution`` (max side), as
   8-bit PNGs in ``DATA/colmap/images``.
2. **Structure from motion**: SIFT features, exhaustive or sequential matching, incremental
   mapping, with one shared pinhole camera (``SIMPLE_PINHOLE``: phones have square pixels and a
   centred principal point). Radial models are allowed; their images are then undistorted by
   COLMAP. Alternatively an existing COLMAP model (``colmap_model``) is read.
3. **Convert**: COLMAP's ``cam_from_world`` maps world points to camera coordinates with OpenCV
   axes (x right, y down, z forward), exactly IRON's ``W2C = [R | t]``. COLMAP and ironrender
   share the pixel convention (the top-left pixel's centre is (0.5, 0.5)), so ``K`` carries over;
   resizing to the output resolution scales each axis: ``K' = diag(W'/W, H'/H, 1) K``.
4. **Normalize**: the object is found among the sparse points (see :func:`estimate_normalization`)
   and the similarity ``x_n = (x - center) / scale`` puts it in the unit sphere; a camera becomes
   ``W2C_n = [R | (R center + t) / scale]`` (camera coordinates shrink by ``scale``, which a
   pinhole projection does not see).
5. **Check for folding** (:func:`check_folding`): a repetitive object can be reconstructed with
   its back folded onto its front, every image registered and a small reprojection error.
6. **Split and write**: a seeded train/test split, images resized in linear radiance, written by
   :func:`ironrender.data.dataset.save_split`; ``normalization.json``, ``import_report.json`` and
   the sparse points in the normalized frame, ``sparse_points_norm.npz`` (``points`` (M, 3)
   float32, ``colors`` (M, 3) uint8, ``track_length`` (M,) int32), which ``iron eval`` measures
   the reconstruction against.
"""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ironrender.data.cameras import Cameras
from ironrender.data.dataset import save_split
from ironrender.data.images import IMAGE_SUFFIXES, gamma_to_linear, read_image, write_image
from ironrender.errors import IronError

# Fewer photos than this cannot give IRON a usable capture (it needs 100-200, see the guide);
# below it SfM itself is unreliable.
MIN_IMAGES = 10
# A reconstruction that places fewer views than this is refused.
MIN_REGISTERED_VIEWS = 8
# File types that are photos but cannot be read here; they are skipped with a hint.
UNSUPPORTED_PHOTO_SUFFIXES = (".heic", ".heif", ".tif", ".tiff", ".dng", ".cr2", ".cr3", ".nef",
                              ".arw", ".raw", ".webp", ".bmp")  # fmt: skip
PINHOLE_MODELS = ("SIMPLE_PINHOLE", "PINHOLE")
CAMERA_MODELS = PINHOLE_MODELS + ("SIMPLE_RADIAL", "RADIAL", "OPENCV")
MATCHERS = ("exhaustive", "sequential")
# Two photos "have the same aspect ratio" when W/H agree to this relative tolerance (rounding).
ASPECT_TOLERANCE = 0.01
WORK_DIR = "colmap"
STAGED_IMAGES = "images"
NORMALIZATION_FILE = "normalization.json"
REPORT_FILE = "import_report.json"
SPARSE_POINTS_FILE = "sparse_points_norm.npz"
# EXIF tag 0x0112 (orientation): values 5-8 rotate by 90 degrees, swapping width and height.
EXIF_ORIENTATION_TAG = 0x0112
EXIF_TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)

Progress = Callable[[str], None]


# --------------------------------------------------------------------------------- configuration
@dataclass
class NormalizationConfig:
    """How the object is found among the sparse points (see :func:`estimate_normalization`)."""

    min_track_length: int = 3  # points seen by fewer images are too uncertain to use
    # Points farther from the cameras' look-at point than this fraction of the median camera
    # distance are background (walls, table far away).
    trim_ratio: float = 0.75
    bounds_percentile: float = 2.0  # per-axis bounding box from the [p, 100 - p] percentiles
    radius_percentile: float = 99.0  # radius covers this percentile of object points
    radius_margin: float = 1.15  # ... times this margin (parts with few points poke out)
    # Every camera must stay this factor outside the unit sphere (IRON samples in front of it).
    min_camera_distance: float = 1.2


@dataclass
class FoldingConfig:
    """Thresholds of the folding checks (see :func:`check_folding`)."""

    # The object's centre must project inside this fraction of the half-width/height around
    # the image centre (a person centres the object; a folded view sees it off to the side).
    max_center_offset: float = 0.7
    # Cameras of a capture around an object spread over this many degrees of azimuth at least.
    min_azimuth_coverage_deg: float = 200.0
    # Azimuths need level cameras: mean squared sine of the right axes' tilt at most this
    # (0.1: about 18 degrees of roll, RMS).
    max_roll_spread: float = 0.1
    # Two-view check: pairs with this many verified matches are compared with the poses.
    min_pair_inliers: int = 50
    max_epipolar_error_px: float = 4.0  # a match "fits" the recovered poses within this
    max_pair_outlier_fraction: float = 0.5  # more misfits: the pair disagrees with the poses
    max_disagreeing_pairs_fraction: float = 0.05  # more disagreeing pairs: warn
    max_listed_views: int = 8


@dataclass
class ImportConfig:
    """Options of :func:`import_photos` (the CLI's flags map one to one)."""

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
    normalization: NormalizationConfig = field(default_factory=NormalizationConfig)
    folding: FoldingConfig = field(default_factory=FoldingConfig)


@dataclass
class Normalization:
    """The similarity into IRON's frame: ``x_normalized = (x_colmap - center) / scale``."""

    center: np.ndarray
    scale: float
    look_at: np.ndarray  # the cameras' common look-at point (COLMAP frame), for the record
    num_object_points: int

    @property
    def matrix(self) -> np.ndarray:
        """4x4 normalized-from-COLMAP transform."""
        m = np.eye(4)
        m[:3, :3] /= self.scale
        m[:3, 3] = -np.asarray(self.center) / self.scale
        return m

    def apply(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points) - self.center) / self.scale

    def apply_to_w2c(self, w2c: np.ndarray) -> np.ndarray:
        """``W2C_n = [R | (R center + t) / scale]`` for (..., 4, 4) rigid W2C matrices."""
        out = np.array(w2c, dtype=np.float64, copy=True)
        R, t = out[..., :3, :3], out[..., :3, 3]
        out[..., :3, 3] = (np.einsum("...ij,j->...i", R, self.center) + t) / self.scale
        return out

    def to_json(self) -> dict:
        return {
            "formula": "x_normalized = (x_colmap - center) / scale",
            "center": np.asarray(self.center).tolist(),
            "scale": float(self.scale),
            "normalized_from_colmap": self.matrix.tolist(),
            "look_at": np.asarray(self.look_at).tolist(),
            "num_object_points": int(self.num_object_points),
        }


@dataclass
class FoldingReport:
    """Signs that the reconstruction folded opposite sides of the object onto each other."""

    off_center_views: list[str]
    azimuth_coverage_deg: float | None  # None: cameras have no common up direction
    pairs_checked: int
    disagreeing_pairs: list[tuple[str, str]]
    warnings: list[str]

    @property
    def suspicious(self) -> bool:
        return bool(self.warnings)


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

    def summary(self) -> str:
        lines = [
            f"registered {len(self.registered)}/{self.num_photos} photos,"
            f" mean reprojection error {self.mean_reprojection_error:.3f} px;"
            f" {len(self.train)} train / {len(self.test)} test views at"
            f" {self.image_size[0]}x{self.image_size[1]} -> {self.out_dir}"
        ]
        if self.unregistered:
            lines.append(f"not registered ({len(self.unregistered)}): {_short(self.unregistered)}")
        if self.skipped:
            lines.append(f"skipped ({len(self.skipped)}): {_short(self.skipped)}")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


@dataclass
class _Photo:
    """One input photo: its file, the name it gets in the dataset, its upright size (W, H)."""

    path: Path
    name: str
    size: tuple[int, int]


@dataclass
class _Views:
    """Registered views in COLMAP's frame, with the images COLMAP's cameras describe."""

    photos: list[_Photo]
    image_paths: list[Path]  # images at the cameras' resolution (staged or undistorted)
    K: np.ndarray  # (N, 3, 3), pinhole
    w2c: np.ndarray  # (N, 4, 4)
    sizes: np.ndarray  # (N, 2) = (W, H)


# --------------------------------------------------------------------------------- main
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
    _validate(config)
    pycolmap = _import_pycolmap()
    photos_dir, out = Path(photos_dir), Path(out_dir)
    _prepare_output(out, config.overwrite)
    warnings: list[str] = []
    work = out / WORK_DIR
    work.mkdir(parents=True, exist_ok=True)

    with _colmap_log_level(pycolmap, config.verbose):
        if config.colmap_model:
            say(f"[1/5] reading COLMAP model {config.colmap_model}")
            photos, skipped = _list_photos(photos_dir, warnings, minimum=1)
            reconstruction, model_path, views_photos = _read_model(
                pycolmap, config.colmap_model, photos
            )
            say(f"[2/5] staging {len(views_photos)} photos at the model's camera sizes")
            staged = _stage_for_model(reconstruction, views_photos, work / STAGED_IMAGES, warnings)
            database = None
        else:
            photos, skipped = _list_photos(photos_dir, warnings, minimum=MIN_IMAGES)
            _check_sizes(photos, config.shared_camera)
            sfm_side = _sfm_side(photos[0].size, config)
            say(f"[1/5] reading {len(photos)} photos (EXIF orientation applied)")
            photos, more_skipped = _stage_for_sfm(photos, work / STAGED_IMAGES, sfm_side, warnings)
            skipped += more_skipped
            if len(photos) < MIN_IMAGES:
                raise IronError(
                    f"{photos_dir}: only {len(photos)} readable photos; SfM needs at least"
                    f" {MIN_IMAGES} (IRON wants 100-200, see docs/capture-guide.md)"
                )
            database = work / "database.db"
            reconstruction, model_path = _run_sfm(pycolmap, work, photos, config, say, warnings)
            staged = {p.name: work / STAGED_IMAGES / p.name for p in photos}

        by_name = {p.name: p for p in photos}
        views, unregistered = _views_from_model(
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
                f" {_short([by_name[n].path.name for n in unregistered])}"
            )
        reprojection_error = float(reconstruction.compute_mean_reprojection_error())

        say("[3/5] normalizing the scene into the unit sphere")
        points, track_lengths, colors = _sparse_points(reconstruction)
        normalization = estimate_normalization(
            views.w2c, points, track_lengths, config.normalization, warnings
        )
        w2c_n = normalization.apply_to_w2c(views.w2c)

        say("[4/5] checking the cameras for a folded reconstruction")
        pairs = (
            _two_view_pairs(pycolmap, database, reconstruction, config.folding)
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
    out_size = _output_size(tuple(int(s) for s in views.sizes[0]), config.resolution)
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
        )
        images = _LazyImages([views.image_paths[i] for i in index], out_size)
        save_split(out, split, names, images, cameras)  # type: ignore[arg-type]  # lazy sequence
        split_names[split] = names

    if not config.keep_sfm_images:
        shutil.rmtree(work / STAGED_IMAGES, ignore_errors=True)
        shutil.rmtree(work / "undistorted" / "images", ignore_errors=True)
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
    )
    _write_report(out / REPORT_FILE, report, config, views)
    return report


# --------------------------------------------------------------------------------- photos
def _list_photos(folder: Path, warnings: list[str], minimum: int) -> tuple[list[_Photo], list[str]]:
    """Photos in ``folder`` (not recursive), sorted by name, with their upright sizes.

    Sizes come from the file header and the EXIF orientation (no decoding). Unsupported and
    unreadable files are skipped with a warning.
    """
    if not folder.is_dir():
        raise IronError(f"{folder}: photo folder not found")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    candidates = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    unsupported = [p.name for p in files if p.suffix.lower() in UNSUPPORTED_PHOTO_SUFFIXES]
    if unsupported:
        warnings.append(
            f"skipped {len(unsupported)} file(s) in a format that cannot be read here (convert"
            f" them to JPEG or PNG): {_short(unsupported)}"
        )
    if not candidates:
        raise IronError(
            f"{folder}: no photos found (JPEG or PNG"
            + (f"; {len(unsupported)} unsupported file(s)" if unsupported else "")
            + ")"
        )
    photos, skipped = [], list(unsupported)
    used: set[str] = set()
    for path in candidates:
        try:
            size = _upright_size(path)
        except Exception as exc:  # any decoder failure is a bad file
            warnings.append(f"skipped unreadable file {path.name} ({type(exc).__name__}: {exc})")
            skipped.append(path.name)
            continue
        photos.append(_Photo(path, _unique_name(path, used), size))
    if not photos:
        raise IronError(
            f"{folder}: none of the {len(candidates)} image files could be read ({warnings[-1]})"
        )
    if len(photos) < minimum:
        raise IronError(
            f"{folder}: only {len(photos)} photos; SfM needs at least {minimum}"
            " (IRON wants 100-200, see docs/capture-guide.md)"
        )
    return photos, skipped


def _upright_size(path: Path) -> tuple[int, int]:
    """(W, H) after EXIF orientation, from the header alone; raises if the file is no image.

    A damaged body passes here and is caught when the photo is decoded (then skipped).
    """
    if path.suffix.lower() == ".exr":
        image = read_image(path)
        return image.shape[1], image.shape[0]
    from PIL import Image

    with Image.open(path) as img:
        width, height = img.size
        orientation = img.getexif().get(EXIF_ORIENTATION_TAG, 1)
    if orientation in EXIF_TRANSPOSED_ORIENTATIONS:
        return height, width
    return width, height


def _unique_name(path: Path, used: set[str]) -> str:
    """The dataset name of a photo: its stem with ``.png`` (suffix kept if stems collide)."""
    name = f"{path.stem}.png"
    if name in used:
        name = f"{path.stem}_{path.suffix.lstrip('.').lower()}.png"
    counter = 1
    base = name
    while name in used:
        name = f"{Path(base).stem}_{counter}.png"
        counter += 1
    used.add(name)
    return name


def _check_sizes(photos: list[_Photo], shared_camera: bool) -> None:
    """One size for a shared camera; one aspect ratio in any case (the dataset has one size)."""
    sizes = Counter(p.size for p in photos)
    if len(sizes) == 1:
        return
    common = sizes.most_common(1)[0][0]
    odd = [p.path.name for p in photos if p.size != common]
    listing = ", ".join(f"{w}x{h}: {n}" for (w, h), n in sizes.most_common())
    aspects = {round(w / h, 3) for w, h in sizes}
    same_aspect = max(aspects) / min(aspects) - 1.0 < ASPECT_TOLERANCE
    if shared_camera or not same_aspect:
        hint = (
            "with one shared camera all photos must have one size"
            if shared_camera
            else "the dataset needs one aspect ratio"
        )
        raise IronError(
            f"photos have mixed sizes after EXIF orientation ({listing}); {hint}: remove or"
            f" crop the odd ones ({_short(odd)}), e.g. those taken in the other orientation"
        )


def _sfm_side(size: tuple[int, int], config: ImportConfig) -> int:
    """Max side of the staged images: ``sfm_resolution``, never below the output resolution."""
    native = max(size)
    wanted = max(config.sfm_resolution, config.resolution) if config.resolution > 0 else native
    return min(native, wanted)


def _output_size(size: tuple[int, int], resolution: int) -> tuple[int, int]:
    """(W, H) with max side ``resolution`` (never upsampled; 0 keeps the size)."""
    width, height = size
    factor = 1.0 if resolution <= 0 else min(1.0, resolution / max(width, height))
    return max(1, round(width * factor)), max(1, round(height * factor))


def _stage_for_sfm(
    photos: list[_Photo], folder: Path, max_side: int, warnings: list[str]
) -> tuple[list[_Photo], list[str]]:
    """Write upright (EXIF-applied) copies with max side ``max_side`` for COLMAP to read."""
    folder.mkdir(parents=True, exist_ok=True)
    kept, skipped = [], []
    for photo in photos:
        try:
            image = read_image(photo.path)  # linear RGB, EXIF orientation applied
        except IronError as exc:
            warnings.append(f"skipped unreadable photo {photo.path.name} ({exc})")
            skipped.append(photo.path.name)
            continue
        size = _output_size((image.shape[1], image.shape[0]), max_side)
        write_image(folder / photo.name, resize_linear(image, size))
        kept.append(_Photo(photo.path, photo.name, (image.shape[1], image.shape[0])))
    return kept, skipped


def resize_linear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize linear RGB (H, W, 3) to ``size`` = (W, H), antialiased, in linear radiance.

    Averaging radiance (not gamma-encoded values) is what a camera with fewer, larger pixels
    would measure. Continuous pixel coordinates scale by W'/W and H'/H exactly.
    """
    height, width = image.shape[:2]
    if (width, height) == tuple(size):
        return image
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
    resized = torch.nn.functional.interpolate(
        tensor, size=(size[1], size[0]), mode="bilinear", align_corners=False, antialias=True
    )
    return resized[0].permute(1, 2, 0).clamp_min(0.0).numpy()


class _LazyImages:
    """The dataset's images, decoded and resized one at a time while ``save_split`` writes.

    A full-resolution capture does not fit in memory as float32; ``save_split`` only iterates.
    """

    def __init__(self, paths: list[Path], size: tuple[int, int]):
        self.paths = paths
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[np.ndarray]:
        for path in self.paths:
            yield resize_linear(read_image(path), self.size)


# --------------------------------------------------------------------------------- SfM
def _run_sfm(
    pycolmap, work: Path, photos: list[_Photo], config: ImportConfig, say: Progress, warnings
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


def _colmap_log_level(pycolmap, verbose: bool):
    """Silence COLMAP's INFO/WARNING log unless ``verbose`` (restored afterwards)."""
    import contextlib

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


# --------------------------------------------------------------------------------- models
def _read_model(pycolmap, model_dir: str, photos: list[_Photo]):
    """An existing COLMAP model, its folder and the photos its registered images name."""
    path = Path(model_dir)
    if not path.is_dir():
        raise IronError(f"{path}: COLMAP model folder not found")
    try:
        model = pycolmap.Reconstruction(path)
    except Exception as exc:
        raise IronError(f"{path}: cannot read COLMAP model ({type(exc).__name__}: {exc})") from exc
    by_file = _photos_by_model_name(photos)
    used = [by_file[Path(im.name).name] for im in model.images.values()
            if im.has_pose and Path(im.name).name in by_file]  # fmt: skip
    if not used:
        raise IronError(f"{path}: no registered image of the model is among the photos")
    return model, path, used


def _stage_for_model(model, photos: list[_Photo], folder: Path, warnings) -> dict[str, Path]:
    """Copies of the photos as the model's cameras saw them (size and orientation).

    A photo may be a uniform multiple of its camera's size (COLMAP run on smaller copies): it
    is resized. COLMAP may have read the photo without its EXIF rotation: if only the raw
    orientation matches the camera, the raw pixels are used.
    """
    folder.mkdir(parents=True, exist_ok=True)
    by_file = _photos_by_model_name(photos)
    staged = {}
    for image in model.images.values():
        photo = by_file.get(Path(image.name).name)
        if photo is None or not image.has_pose:
            continue
        camera = image.camera
        target = (int(camera.width), int(camera.height))
        upright = read_image(photo.path)
        candidates = [upright]
        if photo.path.suffix.lower() != ".exr":
            candidates.append(_read_raw_orientation(photo.path))
        chosen = next((c for c in candidates if _same_aspect(c, target)), None)
        if chosen is None:
            warnings.append(
                f"{photo.path.name}: {upright.shape[1]}x{upright.shape[0]} does not match its"
                f" COLMAP camera ({target[0]}x{target[1]}); left out"
            )
            continue
        out = folder / image.name
        write_image(out, resize_linear(chosen, target))
        staged[photo.name] = out
    return staged


def _photos_by_model_name(photos: list[_Photo]) -> dict[str, _Photo]:
    """Photos by the names a COLMAP model may use: the file name, or the dataset name (the
    models this module writes name the staged copies, ``<stem>.png``)."""
    by_name = {p.name: p for p in photos}
    by_name.update({p.path.name: p for p in photos})
    return by_name


def _same_aspect(image: np.ndarray, size: tuple[int, int]) -> bool:
    height, width = image.shape[:2]
    return abs((width / height) / (size[0] / size[1]) - 1.0) < ASPECT_TOLERANCE


def _read_raw_orientation(path: Path) -> np.ndarray:
    """Linear RGB ignoring the EXIF orientation (what COLMAP 3.x reads)."""
    from PIL import Image

    with Image.open(path) as img:
        data = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return gamma_to_linear(data).astype(np.float32)


def _views_from_model(
    pycolmap, model, model_path: Path, by_name, staged: dict[str, Path], work: Path
):
    """Registered pinhole views (undistorting first if a camera has lens distortion).

    Returns the views in photo order and the dataset names of photos that were not registered.
    """
    model_images = {}
    for image in model.images.values():
        if image.has_pose:
            model_images[Path(image.name).name] = image
    non_pinhole = {c.model_name for c in model.cameras.values()} - set(PINHOLE_MODELS)
    image_paths = {}
    if non_pinhole:
        model, image_paths = _undistort(pycolmap, model_path, staged, work)
        model_images = {Path(im.name).name: im for im in model.images.values() if im.has_pose}

    photos, paths, Ks, w2cs, sizes, unregistered = [], [], [], [], [], []
    for name, photo in by_name.items():
        if name not in staged:  # not in the model, or unusable
            unregistered.append(name)
            continue
        image = model_images.get(staged[name].name)
        if image is None:
            unregistered.append(name)
            continue
        camera = image.camera
        w2c = np.eye(4)
        w2c[:3, :] = image.cam_from_world().matrix()
        photos.append(photo)
        paths.append(image_paths.get(staged[name].name, staged[name]))
        Ks.append(np.asarray(camera.calibration_matrix(), dtype=np.float64))
        w2cs.append(w2c)
        sizes.append((int(camera.width), int(camera.height)))
    views = _Views(photos, paths, np.array(Ks).reshape(-1, 3, 3), np.array(w2cs).reshape(-1, 4, 4),
                   np.array(sizes, dtype=np.int64).reshape(-1, 2))  # fmt: skip
    return views, unregistered


def _undistort(pycolmap, model_path: Path, staged: dict[str, Path], work: Path):
    """COLMAP's undistortion: pinhole cameras and resampled images."""
    out = work / "undistorted"
    shutil.rmtree(out, ignore_errors=True)
    source_dir = next(iter(staged.values())).parent
    pycolmap.undistort_images(out, model_path, source_dir)
    undistorted = pycolmap.Reconstruction(out / "sparse")
    paths = {Path(im.name).name: out / "images" / im.name for im in undistorted.images.values()}
    return undistorted, paths


def _sparse_points(model) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse points (M, 3) in COLMAP's frame, their track lengths (M,) and colours (M, 3)."""
    points = [(p.xyz, p.track.length(), p.color) for p in model.points3D.values()]
    if not points:
        return np.zeros((0, 3)), np.zeros(0, dtype=np.int64), np.zeros((0, 3), dtype=np.uint8)
    xyz = np.array([p[0] for p in points], dtype=np.float64)
    colors = np.array([p[2] for p in points], dtype=np.uint8)
    return xyz, np.array([p[1] for p in points], dtype=np.int64), colors


# --------------------------------------------------------------------------------- normalization
def look_at_point(w2c: np.ndarray) -> np.ndarray | None:
    """The point closest to every optical axis in the least-squares sense.

    Minimizes ``sum_i |(I - d_i d_i^T)(p - c_i)|^2`` over p (c_i the centres, d_i the unit
    axes): ``[sum_i (I - d_i d_i^T)] p = sum_i (I - d_i d_i^T) c_i``. None when the axes are
    (nearly) parallel, e.g. a forward-facing capture, where no such point exists.
    """
    R, t = w2c[:, :3, :3], w2c[:, :3, 3]
    centers = -np.einsum("nji,nj->ni", R, t)
    axes = R[:, 2, :]
    projectors = np.eye(3)[None] - axes[:, :, None] * axes[:, None, :]
    A = projectors.sum(0)
    b = np.einsum("nij,nj->i", projectors, centers)
    eigenvalues = np.linalg.eigvalsh(A)
    if eigenvalues[0] < 1e-3 * eigenvalues[-1]:
        return None
    return np.linalg.solve(A, b)


def estimate_normalization(
    w2c: np.ndarray,
    points: np.ndarray,
    track_lengths: np.ndarray,
    config: NormalizationConfig,
    warnings: list[str] | None = None,
) -> Normalization:
    """Find the object among the sparse points and fit a sphere around it.

    1. ``p*`` = the cameras' common look-at point (:func:`look_at_point`); a person aims at
       the object, so stray background points far from ``p*`` are not the object.
    2. Object points: seen by at least ``min_track_length`` images and within
       ``trim_ratio * median |c_i - p*|`` of ``p*``.
    3. Centre: the middle of their per-axis [p, 100 - p] percentile box; radius: the
       ``radius_percentile`` of their distances to it, times ``radius_margin``.
    4. Cameras stay outside the unit sphere: the radius is capped at
       ``min_i |c_i - centre| / min_camera_distance`` (with a warning).
    """
    warnings = warnings if warnings is not None else []
    R, t = w2c[:, :3, :3], w2c[:, :3, 3]
    centers = -np.einsum("nji,nj->ni", R, t)
    target = look_at_point(w2c)
    reliable = points[track_lengths >= config.min_track_length]
    if target is None:
        if len(reliable) == 0:
            raise IronError("the reconstruction has no reliable 3D points to place the object")
        target = np.median(reliable, axis=0)
        warnings.append(
            "the cameras' optical axes do not converge (forward-facing capture?); the object"
            " was placed at the median of the sparse points"
        )
    camera_distance = float(np.median(np.linalg.norm(centers - target, axis=1)))
    near = reliable[np.linalg.norm(reliable - target, axis=1) < config.trim_ratio * camera_distance]
    if len(near) < 4:
        raise IronError(
            f"only {len(near)} reliable sparse points near the cameras' look-at point: cannot"
            " find the object (is it textured, and centred in the photos?)"
        )
    low = np.percentile(near, config.bounds_percentile, axis=0)
    high = np.percentile(near, 100.0 - config.bounds_percentile, axis=0)
    center = 0.5 * (low + high)
    radius = config.radius_margin * float(
        np.percentile(np.linalg.norm(near - center, axis=1), config.radius_percentile)
    )
    closest = float(np.linalg.norm(centers - center, axis=1).min())
    if radius * config.min_camera_distance > closest:
        warnings.append(
            f"the object's sphere (radius {radius:.3g}) would reach the nearest camera"
            f" ({closest:.3g} away); shrunk to keep the cameras outside it"
        )
        radius = closest / config.min_camera_distance
    return Normalization(center, radius, target, len(near))


# --------------------------------------------------------------------------------- folding
def check_folding(
    cameras: Cameras,
    names: Sequence[str],
    pairs: Sequence[PairCheck],
    config: FoldingConfig,
) -> FoldingReport:
    """Look for a folded reconstruction in normalized cameras (object in the unit sphere).

    On an object whose texture repeats (front and back alike), SfM can register every photo
    yet place the back views on the front side, with a small reprojection error. Three signs:

    * **Off-centre views**: a person centres the object; the origin must project inside
      ``max_center_offset`` of each half-width/height around the image centre, in front of
      the camera.
    * **One-sided cameras**: azimuths of the camera centres around the up direction (the one
      orthogonal to the cameras' level right axes) must cover ``min_azimuth_coverage_deg``;
      a fold collapses them onto one side. (A capture from one side only is flagged too: the
      warning says so.)
    * **Two-view disagreement**: matches verified between two photos must fit the recovered
      relative pose (Sampson error below ``max_epipolar_error_px``); pairs whose matches
      mostly do not fit were pulled into a different geometry than their own images show.
    """
    warnings: list[str] = []
    off = off_center_views(cameras, config.max_center_offset)
    off_names = [names[i] for i in off]
    if off_names:
        warnings.append(
            f"{len(off_names)} view(s) do not see the object near their image centre"
            f" ({_short(off_names, config.max_listed_views)}): they may be misplaced"
            " (a folded reconstruction); check them"
        )
    coverage = azimuth_coverage_degrees(
        cameras.centers.double().cpu().numpy(),
        cameras.w2c[:, 0, :3].double().cpu().numpy(),
        -cameras.w2c[:, 1, :3].double().cpu().numpy(),
        config.max_roll_spread,
    )
    if coverage is not None and coverage < config.min_azimuth_coverage_deg:
        warnings.append(
            f"the cameras cover only {coverage:.0f} degrees around the object: if you took"
            " photos all the way around it, SfM has probably folded its back onto its front"
            " (repetitive texture); see 'folding' in docs/capture-guide.md"
        )
    limit = config.max_pair_outlier_fraction
    disagreeing = [(p.name1, p.name2) for p in pairs if p.outlier_fraction > limit]
    if pairs and len(disagreeing) > config.max_disagreeing_pairs_fraction * len(pairs):
        views = Counter(n for pair in disagreeing for n in pair)
        worst = [n for n, _ in views.most_common(config.max_listed_views)]
        warnings.append(
            f"{len(disagreeing)} of {len(pairs)} matched photo pairs disagree with the recovered"
            " poses (their matches fit another relative pose): the reconstruction is probably"
            f" folded; most involved: {', '.join(worst)}"
        )
    return FoldingReport(off_names, coverage, len(pairs), disagreeing, warnings)


def off_center_views(cameras: Cameras, max_offset: float) -> list[int]:
    """Indices of cameras that do not see the world origin near their image centre."""
    w2c = cameras.w2c.double().cpu().numpy()
    K = cameras.intrinsics.double().cpu().numpy()
    sizes = cameras.sizes.cpu().numpy().astype(np.float64)
    origin_cam = w2c[:, :3, 3]  # the origin in camera coordinates
    z = origin_cam[:, 2]
    uv = np.einsum("nij,nj->ni", K, origin_cam)[:, :2] / np.where(z > 0, z, 1.0)[:, None]
    half = sizes / 2.0
    offset = np.abs(uv - half) / half
    bad = (z <= 0) | (offset.max(axis=1) > max_offset)
    return [int(i) for i in np.flatnonzero(bad)]


def azimuth_coverage_degrees(
    centers: np.ndarray, rights: np.ndarray, ups: np.ndarray, max_roll_spread: float
) -> float | None:
    """Degrees of azimuth around the object (at the origin) that the camera centres span.

    The world's up is the direction most orthogonal to every camera's right axis (photos are
    held level; a camera tilted down still has a level right axis): the eigenvector of
    ``sum_i r_i r_i^T`` with the smallest eigenvalue, signed like the cameras' mean up. The
    coverage is 360 minus the largest gap between the centres' azimuths around it. None when
    the right axes are not level enough (mean ``(r_i . up)^2`` above ``max_roll_spread``).
    """
    if len(centers) < 2:
        return None
    eigenvalues, eigenvectors = np.linalg.eigh(rights.T @ rights)
    if eigenvalues[0] / len(rights) > max_roll_spread:
        return None
    up = eigenvectors[:, 0] * (1.0 if eigenvectors[:, 0] @ ups.sum(0) >= 0 else -1.0)
    helper = np.eye(3)[int(np.argmin(np.abs(up)))]
    e1 = np.cross(up, helper)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    azimuth = np.sort(np.arctan2(centers @ e2, centers @ e1))
    gaps = np.diff(np.concatenate([azimuth, azimuth[:1] + 2.0 * math.pi]))
    return float(360.0 - math.degrees(gaps.max()))


@dataclass
class PairCheck:
    """A matched photo pair and the fraction of its verified matches the poses do not fit."""

    name1: str
    name2: str
    num_matches: int
    outlier_fraction: float


def epipolar_errors_px(
    x1: np.ndarray, x2: np.ndarray, w2c1: np.ndarray, w2c2: np.ndarray, focal: float
) -> np.ndarray:
    """Sampson distances (pixels) of matches under the relative pose of two cameras.

    ``x1``, ``x2`` (M, 2) are normalized image coordinates (``K^-1`` applied, distortion
    removed). The relative pose ``cam2 = R cam1 + t`` (R = R2 R1^T, t = t2 - R t1) gives the
    essential matrix ``E = [t]_x R``, and ``x2^T E x1 = 0`` for a correct match; the Sampson
    distance is its first-order geometric error, scaled to pixels by ``focal``.
    """
    import pycolmap

    R = w2c2[:3, :3] @ w2c1[:3, :3].T
    t = w2c2[:3, 3] - R @ w2c1[:3, 3]
    t = t / max(np.linalg.norm(t), 1e-12)
    tx = np.array([[0.0, -t[2], t[1]], [t[2], 0.0, -t[0]], [-t[1], t[0], 0.0]])
    squared = pycolmap.compute_squared_sampson_error(
        np.ascontiguousarray(x1, dtype=np.float64), np.ascontiguousarray(x2, dtype=np.float64),
        tx @ R,
    )  # fmt: skip
    return np.sqrt(np.asarray(squared, dtype=np.float64)) * focal


def _two_view_pairs(pycolmap, database: Path, model, config: FoldingConfig) -> list[PairCheck]:
    """Verified pairs of registered photos (from COLMAP's database) against the poses."""
    registered = {iid: im for iid, im in model.images.items() if im.has_pose}
    db = pycolmap.Database.open(database)
    try:
        pair_ids, geometries = db.read_two_view_geometries()
        usable = []
        for pair_id, geometry in zip(pair_ids, geometries, strict=True):
            id1, id2 = pycolmap.pair_id_to_image_pair(pair_id)
            matches = np.asarray(geometry.inlier_matches)
            if id1 in registered and id2 in registered and len(matches) >= config.min_pair_inliers:
                usable.append((id1, id2, matches))
        keypoints = {iid: np.asarray(db.read_keypoints(iid))[:, :2] for iid in registered}
    finally:
        db.close()
    checks = []
    for id1, id2, matches in usable:
        im1, im2 = registered[id1], registered[id2]
        x1 = im1.camera.cam_from_img(keypoints[id1][matches[:, 0]].astype(np.float64))
        x2 = im2.camera.cam_from_img(keypoints[id2][matches[:, 1]].astype(np.float64))
        w2c1, w2c2 = np.eye(4), np.eye(4)
        w2c1[:3] = im1.cam_from_world().matrix()
        w2c2[:3] = im2.cam_from_world().matrix()
        focal = 0.5 * (im1.camera.mean_focal_length() + im2.camera.mean_focal_length())
        errors = epipolar_errors_px(x1, x2, w2c1, w2c2, focal)
        fraction = float(np.mean(errors > config.max_epipolar_error_px))
        checks.append(PairCheck(Path(im1.name).name, Path(im2.name).name, len(matches), fraction))
    return checks


# --------------------------------------------------------------------------------- split & report
def split_indices(count: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random train/test split; at least one view each when the fraction is > 0."""
    order = np.random.default_rng(seed).permutation(count)
    n_test = round(test_fraction * count)
    if test_fraction > 0 and count >= 2:
        n_test = min(max(n_test, 1), count - 1)
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def _write_report(path: Path, report: ImportReport, config: ImportConfig, views: _Views) -> None:
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


# --------------------------------------------------------------------------------- helpers
def _validate(config: ImportConfig) -> None:
    if config.matcher not in MATCHERS:
        raise IronError(f"matcher must be one of {', '.join(MATCHERS)}, not {config.matcher!r}")
    if config.camera_model not in CAMERA_MODELS:
        raise IronError(
            f"camera model must be one of {', '.join(CAMERA_MODELS)}, not {config.camera_model!r}"
        )
    if not 0.0 <= config.test_fraction < 1.0:
        raise IronError(f"test fraction must be in [0, 1), not {config.test_fraction}")
    if config.resolution < 0 or config.sfm_resolution <= 0:
        raise IronError("resolutions must be positive (resolution 0 keeps the photos' size)")


def _import_pycolmap():
    try:
        import pycolmap
    except ImportError as exc:
        raise IronError(
            "pycolmap is not installed; install it with: pip install 'ironrender[colmap]'"
        ) from exc
    return pycolmap


def _prepare_output(out: Path, overwrite: bool) -> None:
    existing = [out / s for s in ("train", "test") if (out / s).exists()]
    if existing and not overwrite:
        raise IronError(f"{existing[0]} already exists; choose another folder or pass --overwrite")
    for folder in existing:
        shutil.rmtree(folder)


def _t(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64))


def _short(names: Sequence[str], limit: int = 8) -> str:
    names = list(names)
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
