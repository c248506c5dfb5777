"""The camera file ``cam_dict_norm.json``: its names, reader and writer, and what a dataset's
cameras say about the capture (distance, up direction) without reading any image.

``cam_dict_norm.json`` maps each image file name to ``{"K": 16 floats, "W2C": 16 floats,
"img_size": [W, H]}`` (row-major 4x4 matrices, OpenCV camera axes), and optionally
``"flash": [x, y, z]``: where that view's light was, in its camera coordinates (scene units;
absent means [0, 0, 0], the light in the lens as IRON assumes). This module sits below both
the loader (:mod:`ironrender.data.dataset`) and the checks (:mod:`ironrender.data.check`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ironrender.data.cameras import Cameras, capture_up
from ironrender.errors import DatasetError

CAMERA_FILE = "cam_dict_norm.json"
IMAGE_DIR = "image"
FLASH_KEY = "flash"
SPLITS = ("train", "test")
_JSON_TYPES = {
    list: "an array",
    int: "a number",
    float: "a number",
    str: "a string",
    bool: "true/false",
    type(None): "null",
}


def read_camera_dict(path: str | Path) -> dict:
    """Parse a ``cam_dict_norm.json``; raises :class:`DatasetError` on malformed files,
    duplicate keys included."""
    entries, duplicates = parse_camera_dict(path)
    if duplicates:
        raise DatasetError(f"{path}: {duplicates[0]}")
    return entries


def parse_camera_dict(path: str | Path) -> tuple[dict, list[str]]:
    """The entries of a ``cam_dict_norm.json`` and one line per duplicate key in it.

    JSON parsers keep the last of two equal keys without a word; IRON's file is keyed by image
    name, so a duplicate means a view is silently dropped or replaced. Raises
    :class:`DatasetError` when the file is missing, unreadable, not JSON or not an object.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: camera file not found")
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the camera file ({exc.strerror})") from exc
    if not text.strip():
        raise DatasetError(f"{path}: not valid JSON (the file is empty)")
    duplicates: list[str] = []

    def no_duplicates(pairs: list[tuple[str, object]]) -> dict:
        obj: dict = {}
        for key, value in pairs:
            if key in obj:
                duplicates.append(
                    f"duplicate key {json.dumps(key)} (JSON would keep only the last one)"
                )
            obj[key] = value
        return obj

    try:
        data = json.loads(text, object_pairs_hook=no_duplicates)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, deep nesting
        reason = str(exc) if not isinstance(exc, RecursionError) else "nested too deeply"
        raise DatasetError(f"{path}: not valid JSON ({reason})") from exc
    if not isinstance(data, dict):
        found = _JSON_TYPES.get(type(data), type(data).__name__)
        raise DatasetError(f"{path}: expected a JSON object keyed by image file name, not {found}")
    return data, duplicates


def cameras_from_dict(entries: dict, names: list[str]) -> Cameras:
    """Cameras for ``names`` from parsed ``cam_dict_norm.json`` entries (float32, CPU)."""
    K = torch.tensor([entries[n]["K"] for n in names], dtype=torch.float64).reshape(-1, 4, 4)
    W2C = torch.tensor([entries[n]["W2C"] for n in names], dtype=torch.float64).reshape(-1, 4, 4)
    sizes = torch.tensor([entries[n]["img_size"] for n in names], dtype=torch.long)
    flash = torch.tensor([entries[n].get(FLASH_KEY, [0.0, 0.0, 0.0]) for n in names])
    return Cameras(K[:, :3, :3].float(), W2C.float(), sizes, flash.reshape(-1, 3).float())


def cameras_to_dict(names: list[str], cameras: Cameras) -> dict:
    K = cameras.to_iron_K().detach().cpu().double()
    W2C = cameras.w2c.detach().cpu().double()
    sizes = cameras.sizes.cpu()
    entries = {
        name: {
            "K": K[i].reshape(-1).tolist(),
            "W2C": W2C[i].reshape(-1).tolist(),
            "img_size": [int(sizes[i, 0]), int(sizes[i, 1])],
        }
        for i, name in enumerate(names)
    }
    if cameras.flash is not None:  # written only where it says something
        for name, flash in zip(names, cameras.flash.detach().cpu().double().tolist(), strict=True):
            entries[name][FLASH_KEY] = flash
    return entries


def sort_names(names) -> list[str]:
    """Numeric order where every stem is an integer (IRON's convention), else lexicographic:
    the order of a split's views everywhere (training, gains, evaluation)."""
    names = list(names)
    try:
        return sorted(names, key=lambda n: int(Path(n).stem))
    except ValueError:
        return sorted(names)


def split_cameras(data_dir: Path | None, split: str) -> Cameras | None:
    """The cameras of ``DATA/<split>/cam_dict_norm.json`` (no images read), in
    :func:`sort_names` order (the views' order when the split is loaded), or None."""
    if data_dir is None:
        return None
    path = data_dir / split / CAMERA_FILE
    if not path.is_file():
        return None
    entries = read_camera_dict(path)
    try:
        return cameras_from_dict(entries, sort_names(entries))
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
        # Commands that only need the cameras (eval, export) may read a dataset unchecked.
        raise DatasetError(
            f"{path}: malformed camera entries ({type(exc).__name__}); run `iron check`"
        ) from exc


def median_camera_distance(data_dir: Path | None) -> float | None:
    """Median |camera centre| of the training split, or None when there is no dataset."""
    cameras = split_cameras(data_dir, "train")
    return None if cameras is None else float(cameras.centers.norm(dim=-1).median())


def dataset_up(data_dir: Path) -> np.ndarray:
    """The capture's up direction from all its cameras, train and test
    (:func:`ironrender.data.cameras.capture_up`)."""
    parts = [c for split in SPLITS if (c := split_cameras(data_dir, split)) is not None]
    w2c = torch.cat([c.w2c.double() for c in parts])
    intrinsics = torch.cat([c.intrinsics.double() for c in parts])
    return capture_up(Cameras(intrinsics, w2c, torch.cat([c.sizes for c in parts])))
