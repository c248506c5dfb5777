"""Reading and writing images as linear radiance.

Conventions, fixed for the whole project:

* In memory an image is a float32 array of shape (H, W, 3), RGB, **linear** radiance.
* PNG/JPG files are gamma-encoded 8-bit: ``linear = (value / 255) ** 2.2`` on read and
  ``value = round(255 * clip(linear, 0, 1) ** (1 / 2.2))`` on write (IRON's convention).
* EXR files are linear float, read and written with the ``OpenEXR`` package (imageio would
  silently write a TIFF under an ``.exr`` name).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ironrender.errors import DatasetError

GAMMA = 2.2
LDR_SUFFIXES = (".png", ".jpg", ".jpeg")
HDR_SUFFIXES = (".exr",)
IMAGE_SUFFIXES = LDR_SUFFIXES + HDR_SUFFIXES


def linear_to_srgb_gamma(linear: np.ndarray) -> np.ndarray:
    """Gamma-encode linear radiance with exponent 1/2.2, clipping to [0, 1]."""
    return np.clip(linear, 0.0, 1.0) ** (1.0 / GAMMA)


def gamma_to_linear(encoded: np.ndarray) -> np.ndarray:
    """Decode gamma-encoded values in [0, 1] into linear radiance (exponent 2.2)."""
    return np.clip(encoded, 0.0, 1.0) ** GAMMA


def is_hdr(path: str | Path) -> bool:
    return Path(path).suffix.lower() in HDR_SUFFIXES


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as linear RGB float32 of shape (H, W, 3).

    Raises :class:`DatasetError` with a one-line message if the file is missing or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: image file not found")
    suffix = path.suffix.lower()
    try:
        if suffix in HDR_SUFFIXES:
            return _read_exr(path)
        if suffix in LDR_SUFFIXES:
            from PIL import Image, ImageOps

            with Image.open(path) as img:
                img = ImageOps.exif_transpose(img)
                if img.mode in ("I;16", "I;16B", "I"):
                    data = np.asarray(img, dtype=np.float32) / 65535.0
                    data = np.repeat(data[..., None], 3, axis=-1)
                else:
                    data = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
            return gamma_to_linear(data).astype(np.float32)
    except DatasetError:
        raise
    except Exception as exc:  # any decoder failure is a bad file, not a bug
        raise DatasetError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from exc
    raise DatasetError(f"{path}: unsupported image type {suffix!r} (use PNG, JPG or EXR)")


def write_image(path: str | Path, linear: np.ndarray) -> None:
    """Write linear RGB (H, W, 3): gamma-encoded 8-bit for PNG/JPG, float32 for EXR."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    linear = np.asarray(linear, dtype=np.float32)
    if linear.ndim == 2:
        linear = np.repeat(linear[..., None], 3, axis=-1)
    suffix = path.suffix.lower()
    if suffix in HDR_SUFFIXES:
        _write_exr(path, linear)
    elif suffix in LDR_SUFFIXES:
        from PIL import Image

        encoded = np.round(linear_to_srgb_gamma(linear) * 255.0).astype(np.uint8)
        Image.fromarray(encoded).save(path)
    else:
        raise ValueError(f"unsupported image type {suffix!r}")


def write_data_png(path: str | Path, values: np.ndarray) -> None:
    """Write data in [0, 1] (masks, roughness, albedo maps) as 8-bit PNG **without** gamma."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    encoded = np.round(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)
    Image.fromarray(encoded).save(path)


def _read_exr(path: Path) -> np.ndarray:
    import OpenEXR

    with OpenEXR.File(str(path)) as exr:
        channels = exr.channels()
        if "RGB" in channels:
            data = np.asarray(channels["RGB"].pixels, dtype=np.float32)
        elif all(c in channels for c in "RGB"):
            data = np.stack([np.asarray(channels[c].pixels, np.float32) for c in "RGB"], -1)
        elif "Y" in channels:
            y = np.asarray(channels["Y"].pixels, dtype=np.float32)
            data = np.repeat(y[..., None], 3, axis=-1)
        else:
            raise DatasetError(f"{path}: EXR has no RGB or Y channels ({sorted(channels)})")
    return np.ascontiguousarray(data[..., :3], dtype=np.float32)


def _write_exr(path: Path, linear: np.ndarray) -> None:
    import OpenEXR

    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    channels = {"RGB": np.ascontiguousarray(linear[..., :3], dtype=np.float32)}
    with OpenEXR.File(header, channels) as exr:
        exr.write(str(path))
