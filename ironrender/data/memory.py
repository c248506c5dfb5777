"""Memory a capture needs, told before it is loaded, and a smaller copy when it does not fit.

Training keeps every training photograph on the device once: 8-bit PNG/JPEG photographs as
their uint8 values, decoded per batch (:func:`ironrender.data.images.read_stored`), others as
float32 RGB (loading fills one array image by image), so a capture of ``N`` views of
``W x H`` needs about ``N * W * H * 3`` bytes (300 photos at 1 MP: 0.9 GB; 3.6 GB as float32
or EXR). :func:`check_memory`
compares that with what the device has free (``MemAvailable`` and the cgroup's limit on the
CPU, ``cudaMemGetInfo`` on a GPU) before anything is read, and when it does not fit stops with
the downscale that would, instead of letting the kernel kill the run half-way.
:func:`downscale_dataset` writes that smaller copy (``iron run --downscale K``): images area-
averaged in linear radiance, intrinsics scaled by the exact size ratios.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import torch

from ironrender.data.camera_file import (
    CAMERA_FILE,
    IMAGE_DIR,
    SPLITS,
    cameras_from_dict,
    cameras_to_dict,
    read_camera_dict,
)
from ironrender.data.cameras import Cameras
from ironrender.data.images import LDR_SUFFIXES, read_image, stored_bytes_per_pixel, write_image
from ironrender.errors import IronError

#: Copies of the training photographs held at once.
TRAIN_COPIES = 1
BYTES_PER_PIXEL = 3 * 4  # float32 RGB (EXR, 16-bit PNG); 8-bit files take 3
#: Share of the free memory the photographs may take; the networks and batches need the rest.
HEADROOM = 0.6
#: What a downscaled copy leaves out of ``gt/``: images at the original size.
GT_AT_IMAGE_SIZE = ("masks", "relit")


def dataset_bytes(data_dir: str | Path) -> int:
    """Bytes the training split takes on the device during training (module docstring)."""
    path = Path(data_dir) / "train" / CAMERA_FILE
    entries = read_camera_dict(path)
    return TRAIN_COPIES * _bytes_per_pixel(path.parent, entries) * _pixels(entries)


def _bytes_per_pixel(split_dir: Path, entries: dict) -> int:
    """3 when the split's files are 8-bit PNG/JPEG (kept as uint8; judged from the first
    file's header), else float32 RGB."""
    names = [str(name) for name in entries]
    if not names or any(Path(name).suffix.lower() not in LDR_SUFFIXES for name in names):
        return BYTES_PER_PIXEL
    return stored_bytes_per_pixel(split_dir / IMAGE_DIR / names[0])


def _pixels(entries: dict) -> int:
    pixels = 0
    for entry in entries.values():
        try:
            width, height = (int(v) for v in entry["img_size"])
        except (KeyError, TypeError, ValueError, OverflowError):
            continue  # the dataset check names bad entries
        pixels += max(width, 0) * max(height, 0)
    return pixels


def available_bytes(device: torch.device | str) -> int | None:
    """Memory free for new tensors on ``device``, or None when it cannot be told."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    candidates = [_meminfo_available(), _cgroup_available()]
    known = [c for c in candidates if c is not None]
    return min(known) if known else None


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_available() -> int | None:
    """cgroup v2's ``memory.max - memory.current`` (a container's limit), if there is one."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        return int(limit) - used
    except (OSError, ValueError):
        return None


def fitting_downscale(needed: int, available: int) -> int:
    """The smallest integer factor ``k`` with ``needed / k^2 <= HEADROOM * available``."""
    budget = HEADROOM * max(available, 1)
    return max(2, math.ceil(math.sqrt(needed / budget)))


def check_memory(data_dir: str | Path, device: torch.device | str) -> int:
    """Raise :class:`IronError` when the training photographs will not fit; returns the bytes
    they need. The message names the ``--downscale`` factor that fits."""
    needed = dataset_bytes(data_dir)
    available = available_bytes(device)
    if available is None or needed <= HEADROOM * available:
        return needed
    factor = fitting_downscale(needed, available)
    raise IronError(
        f"{data_dir}: the training photographs need about {needed / 1e9:.1f} GB on"
        f" {torch.device(device).type} as float32 and {available / 1e9:.1f} GB is free; add"
        f" `--downscale {factor}` to the same command (trains on a copy {factor}x smaller per"
        " side, written into the run folder), or use fewer or smaller photographs"
    )


def downscale_dataset(source: str | Path, target: str | Path, factor: int) -> Path:
    """Write ``source`` with every image ``factor`` times smaller per side into ``target``.

    One image at a time (never the whole capture in memory). Each view's size is
    ``round(W / factor) x round(H / factor)``; its intrinsics' rows scale by the exact ratios
    ``W' / W`` and ``H' / H``, the scale the area-averaged image has. ``gt/`` is copied except
    what is stored at the image size (masks, relit views).
    """
    if factor < 1:
        raise IronError(f"--downscale must be a positive integer, not {factor}")
    source, target = Path(source), Path(target)
    for split in SPLITS:
        camera_path = source / split / CAMERA_FILE
        if not camera_path.is_file():
            continue
        entries = read_camera_dict(camera_path)
        names = list(entries)
        cameras = cameras_from_dict(entries, names)
        sizes = torch.round(cameras.sizes.to(torch.float64) / factor).clamp_min(1).long()
        K = cameras.intrinsics.clone().double()
        K[:, 0, :] *= sizes[:, 0].double()[:, None] / cameras.sizes[:, 0].double()[:, None]
        K[:, 1, :] *= sizes[:, 1].double()[:, None] / cameras.sizes[:, 1].double()[:, None]
        small = Cameras(K.to(cameras.intrinsics.dtype), cameras.w2c, sizes, cameras.flash)
        for i, name in enumerate(names):
            image = read_image(source / split / IMAGE_DIR / name)
            size = (int(sizes[i, 0]), int(sizes[i, 1]))
            write_image(target / split / IMAGE_DIR / name, area_resize(image, size))
        (target / split).mkdir(parents=True, exist_ok=True)
        camera_text = json.dumps(cameras_to_dict(names, small), indent=1) + "\n"
        (target / split / CAMERA_FILE).write_text(camera_text)
    gt = source / "gt"
    if gt.is_dir():
        shutil.copytree(
            gt, target / "gt", ignore=shutil.ignore_patterns(*GT_AT_IMAGE_SIZE), dirs_exist_ok=True
        )
    return target


def area_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) linear radiance averaged over each output pixel's footprint, ``size = (w, h)``:
    exact box averages when the sizes divide (``adaptive_avg_pool2d``), what a camera with
    fewer, larger pixels would measure."""
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)
    pooled = torch.nn.functional.adaptive_avg_pool2d(tensor[None], (size[1], size[0]))
    return pooled[0].permute(1, 2, 0).numpy()
