"""IRON's dataset layout: reading and writing, exactly as the authors' code expects.

::

    <scene>/
      train/  image/<name>.png|.jpg|.exr   cam_dict_norm.json
      test/   image/<name>.png|.jpg|.exr   cam_dict_norm.json
      gt/     (optional, synthetic scenes: ground-truth mesh, materials, light, relit views)

``cam_dict_norm.json`` maps each image file name to ``{"K": 16 floats, "W2C": 16 floats,
"img_size": [W, H]}`` (row-major 4x4 matrices, OpenCV camera axes). The object lies inside the
unit sphere at the origin. An LDR key (``12.png``) may have a linear twin ``12.exr`` beside it;
``load_split(..., linear=True)`` reads the twin instead.

The camera file's reader and names live in :mod:`ironrender.data.camera_file` (below both this
module and :mod:`ironrender.data.check`). Every loader validates with
:func:`ironrender.data.check.check_split` first, so bad input gives a
one-line :class:`~ironrender.errors.DatasetError`, never a traceback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ironrender.data.camera_file import (
    CAMERA_FILE,
    IMAGE_DIR,
    cameras_from_dict,
    cameras_to_dict,
    read_camera_dict,
    sort_names,
)
from ironrender.data.cameras import Cameras
from ironrender.data.check import check_split, raise_on_errors, resolve_inside, unsafe_name
from ironrender.data.images import (
    decode_8bit,
    is_hdr,
    one_line,
    read_image,
    read_stored,
    table_8bit,
    write_image,
)
from ironrender.data.tone_curve import DEFAULT_TONE_CURVE
from ironrender.errors import DatasetError


@dataclass
class Split:
    """One split of a dataset: images (N, H, W, 3) and their cameras.

    ``images`` are linear RGB float32, or, when loaded with ``keep_8bit``, the gamma-encoded
    8-bit values of 8-bit files as uint8 (a quarter of the memory), which
    :func:`linear_images` decodes to the same float32 values.
    ``hdr`` is False for images decoded from gamma-encoded 8-bit files: such images were clipped
    at 1 and quantized, so losses are best computed in the gamma-encoded domain.
    """

    names: list[str]
    images: Tensor
    cameras: Cameras
    hdr: bool
    tone_curve: str = DEFAULT_TONE_CURVE  # how the 8-bit files encode radiance

    def __len__(self) -> int:
        return len(self.names)

    def to(self, device: torch.device | str) -> Split:
        return Split(
            self.names, self.images.to(device), self.cameras.to(device), self.hdr, self.tone_curve
        )

    def linear(self, images: Tensor) -> Tensor:
        """:func:`linear_images` of some of this split's stored images, with its tone curve."""
        return linear_images(images, self.tone_curve)


def linear_images(images: Tensor, curve: str = DEFAULT_TONE_CURVE) -> Tensor:
    """Linear float32 radiance of stored images (any leading shape, last axis RGB): uint8
    encoded values through the ``curve``'s table (:func:`~ironrender.data.images.table_8bit`),
    float32 as they are. Meant for a batch, a patch or a view, not the whole capture."""
    if images.dtype != torch.uint8:
        return images
    return decode_table(table_8bit(curve), images)


def decode_table(table: np.ndarray | Tensor, values: Tensor) -> Tensor:
    """``table[values]`` for a 256-entry table and uint8 ``values`` (on their device)."""
    table = torch.as_tensor(table, device=values.device)
    return table[values.long()]  # (a uint8 index would be read as a boolean mask)


def load_split(
    root: str | Path,
    split: str = "train",
    device: torch.device | str = "cpu",
    linear: bool = False,
    keep_8bit: bool = False,
    curve: str = DEFAULT_TONE_CURVE,
) -> Split:
    """Load and validate one split of an IRON dataset.

    ``linear=True`` reads the ``.exr`` twin of each LDR key where one exists. ``keep_8bit``
    keeps the photographs of a split of 8-bit files as their uint8 values (:class:`Split`); a
    split mixing them with 16-bit or EXR files is linear float32 throughout. ``curve`` is the
    tone curve of the PNG/JPEG files (:mod:`ironrender.data.tone_curve`).
    """
    root = Path(root)
    split_dir = root / split
    raise_on_errors(check_split(split_dir, root))
    entries = read_camera_dict(split_dir / CAMERA_FILE)
    names = sort_names(entries)
    paths = [_image_path(root, split_dir, name, linear) for name in names]
    stacked: np.ndarray | None = None  # filled image by image: one copy of the split, not two
    read = read_stored if keep_8bit else read_image
    for i, (path, name) in enumerate(zip(paths, names, strict=True)):
        image = read(path, tuple(entries[name]["img_size"]), curve)
        if stacked is None:
            stacked = np.empty((len(names), *image.shape), dtype=image.dtype)
        elif image.shape != stacked.shape[1:]:
            shapes = sorted({stacked.shape[1:], image.shape})
            raise DatasetError(
                f"{split_dir}: images of different sizes in one split ({shapes}...);"
                " resize them to one size"
            )
        if image.dtype != stacked.dtype:  # 8-bit files mixed with others: all linear float
            stacked = decode_8bit(stacked, curve) if stacked.dtype == np.uint8 else stacked
            image = decode_8bit(image, curve) if image.dtype == np.uint8 else image
        stacked[i] = image
    if stacked is None:
        raise DatasetError(f"{split_dir / CAMERA_FILE}: no cameras in the file")
    cameras = cameras_from_dict(entries, names)
    hdr = all(is_hdr(p) for p in paths)
    return Split(names, torch.from_numpy(stacked), cameras, hdr, curve).to(device)


def _image_path(root: Path, split_dir: Path, name: str, linear: bool) -> Path:
    """The file to read for ``name``: checked again here, so nothing outside ``root`` is read
    even if the dataset changed since :func:`check_split`."""
    reason = unsafe_name(name)
    if reason:
        raise DatasetError(one_line(f"{split_dir / CAMERA_FILE}[{name}]: {reason}"))
    path = split_dir / IMAGE_DIR / name
    twin = path.with_suffix(".exr")
    if linear and not is_hdr(name) and twin.is_file():
        path = twin
    resolve_inside(path, root)
    return path


def save_split(
    root: str | Path,
    split: str,
    names: list[str],
    images: np.ndarray | Tensor,
    cameras: Cameras,
    linear_twins: bool = False,
    curve: str = DEFAULT_TONE_CURVE,
    quality: int = 75,
) -> Path:
    """Write one split: images under ``image/`` (format from each name's suffix) and the JSON.

    ``images`` are linear RGB (N, H, W, 3), encoded with the tone ``curve`` (JPEG files at
    ``quality``). With ``linear_twins`` an ``.exr`` twin of every LDR image is written too,
    keeping the exact linear radiance.
    """
    split_dir = Path(root) / split
    (split_dir / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    if isinstance(images, Tensor):
        images = images.detach().cpu().numpy()
    for name, image in zip(names, images, strict=True):
        write_image(split_dir / IMAGE_DIR / name, image, curve, quality)
        if linear_twins and not is_hdr(name):
            write_image((split_dir / IMAGE_DIR / name).with_suffix(".exr"), image)
    (split_dir / CAMERA_FILE).write_text(json.dumps(cameras_to_dict(names, cameras), indent=1))
    return split_dir
