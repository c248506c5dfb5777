"""The photos of a capture: listing them, their upright sizes, and staging resized copies.

EXIF orientation is applied (``PIL.ImageOps.exif_transpose``, through
:func:`ironrender.data.images.read_image`) *before* feature extraction, so COLMAP sees the
photos upright, as the user does. Sizes are read from the file header and the EXIF orientation
alone; unsupported and unreadable files are skipped with a warning. Every photo gets a unique
dataset name, ``<stem>.png``. Resizing happens in linear radiance (:func:`resize_linear`), both
for the copies SfM reads and for the dataset's images (:class:`LazyImages`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ironrender.data.capture.messages import short
from ironrender.data.images import IMAGE_SUFFIXES, read_image, write_image
from ironrender.errors import IronError

# File types that are photos but cannot be read here; they are skipped with a hint.
UNSUPPORTED_PHOTO_SUFFIXES = (".heic", ".heif", ".tif", ".tiff", ".dng", ".cr2", ".cr3", ".nef",
                              ".arw", ".raw", ".webp", ".bmp")  # fmt: skip
# Two photos "have the same aspect ratio" when W/H agree to this relative tolerance (rounding).
ASPECT_TOLERANCE = 0.01
# EXIF tag 0x0112 (orientation): values 5-8 rotate by 90 degrees, swapping width and height.
EXIF_ORIENTATION_TAG = 0x0112
EXIF_TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)


@dataclass
class Photo:
    """One input photo: its file, the name it gets in the dataset, its upright size (W, H)."""

    path: Path
    name: str
    size: tuple[int, int]


def list_photos(folder: Path, warnings: list[str], minimum: int) -> tuple[list[Photo], list[str]]:
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
            f" them to JPEG or PNG): {short(unsupported)}"
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
            size = upright_size(path)
        except Exception as exc:  # any decoder failure is a bad file
            warnings.append(f"skipped unreadable file {path.name} ({type(exc).__name__}: {exc})")
            skipped.append(path.name)
            continue
        photos.append(Photo(path, unique_name(path, used), size))
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


def upright_size(path: Path) -> tuple[int, int]:
    """(W, H) after EXIF orientation, from the header alone; raises if the file is no image.

    A damaged body passes here and is caught when the photo is decoded (then skipped).
    """
    if path.suffix.lower() == ".exr":
        image = read_image(path)
        return image.shape[1], image.shape[0]
    with Image.open(path) as img:
        width, height = img.size
        orientation = img.getexif().get(EXIF_ORIENTATION_TAG, 1)
    if orientation in EXIF_TRANSPOSED_ORIENTATIONS:
        return height, width
    return width, height


def unique_name(path: Path, used: set[str]) -> str:
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


def check_sizes(photos: list[Photo], shared_camera: bool) -> None:
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
            f" crop the odd ones ({short(odd)}), e.g. those taken in the other orientation"
        )


def output_size(size: tuple[int, int], resolution: int) -> tuple[int, int]:
    """(W, H) with max side ``resolution`` (never upsampled; 0 keeps the size)."""
    width, height = size
    factor = 1.0 if resolution <= 0 else min(1.0, resolution / max(width, height))
    return max(1, round(width * factor)), max(1, round(height * factor))


def stage_for_sfm(
    photos: list[Photo], folder: Path, max_side: int, warnings: list[str]
) -> tuple[list[Photo], list[str]]:
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
        size = output_size((image.shape[1], image.shape[0]), max_side)
        write_image(folder / photo.name, resize_linear(image, size))
        kept.append(Photo(photo.path, photo.name, (image.shape[1], image.shape[0])))
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


class LazyImages:
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
