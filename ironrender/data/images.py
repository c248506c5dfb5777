"""Reading and writing images as linear radiance.

Conventions, fixed for the whole project:

* In memory an image is a float32 array of shape (H, W, 3), RGB, **linear** radiance.
* PNG/JPG files are gamma-encoded: ``linear = (value / 255) ** 2.2`` on read (``/ 65535`` for
  16-bit PNGs) and ``value = round(255 * clip(linear, 0, 1) ** (1 / 2.2))`` on write (IRON's
  convention). Grey, grey+alpha, palette and RGBA files are read as RGB (alpha is ignored); the
  EXIF orientation is applied.
* Training keeps 8-bit photographs as their uint8 values (:func:`read_stored`, a quarter of the
  float32 memory) and decodes them per batch with :data:`LINEAR_OF_8BIT`, the same numbers.
* EXR files are linear float, read and written with the ``OpenEXR`` package (imageio would
  silently write a TIFF under an ``.exr`` name).

Reading never trusts a file: a ``.png``/``.jpg`` must hold PNG or JPEG data, an image larger
than :data:`MAX_PIXELS` is refused from its header before anything is decoded, and every
failure is a one-line :class:`~ironrender.errors.DatasetError`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import OpenEXR
from PIL import Image, UnidentifiedImageError

from ironrender.data.tone_curve import DEFAULT_TONE_CURVE, decode, encode, linear_of_8bit
from ironrender.errors import DatasetError

LDR_SUFFIXES = (".png", ".jpg", ".jpeg")
HDR_SUFFIXES = (".exr",)
IMAGE_SUFFIXES = LDR_SUFFIXES + HDR_SUFFIXES
#: The formats a ``.png``/``.jpg`` file may hold (whatever its suffix says of the two).
LDR_FORMATS = ("PNG", "JPEG")
#: Largest image read, in pixels: Pillow's decompression-bomb threshold (a 9459 x 9459 image).
MAX_PIXELS = 1024 * 1024 * 1024 // 4 // 3

#: 16-bit PNG layouts Pillow decodes to 8 bits, and how to get the full values back (below).
_PNG16_LOW_BYTES = {"RGB;16B": "RGB;16L", "RGBA;16B": "RGBA;16L"}
_PNG16_GREY_ALPHA = "LA;16B"
#: EXIF orientation -> numpy steps that undo it (what ``ImageOps.exif_transpose`` does).
_ORIENTATIONS = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}


class ImageSizeError(DatasetError):
    """The image is not the size the caller expected (``width``, ``height`` are the file's)."""

    def __init__(self, message: str, width: int, height: int) -> None:
        super().__init__(message)
        self.width, self.height = width, height


def is_hdr(path: str | Path) -> bool:
    return Path(path).suffix.lower() in HDR_SUFFIXES


def one_line(text: object) -> str:
    """``text`` on one printable line: control characters and unencodable ones escaped."""
    text = str(text).encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def read_image(
    path: str | Path, size: tuple[int, int] | None = None, curve: str = DEFAULT_TONE_CURVE
) -> np.ndarray:
    """Read an image file as linear RGB float32 of shape (H, W, 3).

    With ``size`` (width, height), a file of another size raises :class:`ImageSizeError`, from
    its header where possible (nothing decoded). Raises :class:`DatasetError` with a one-line
    message if the file is missing, empty, too large or unreadable. PNG/JPEG values are decoded
    with the tone ``curve`` (:mod:`ironrender.data.tone_curve`).
    """
    data = read_stored(path, size, curve)
    return decode_8bit(data, curve) if data.dtype == np.uint8 else data


def read_stored(
    path: str | Path, size: tuple[int, int] | None = None, curve: str = DEFAULT_TONE_CURVE
) -> np.ndarray:
    """An image file as it is best kept in memory, shape (H, W, 3): the encoded 8-bit values
    themselves (uint8) for 8-bit PNG/JPEG files, linear float32 for 16-bit PNGs (decoded with
    ``curve``) and EXRs. :func:`decode_8bit` turns the former into exactly what
    :func:`read_image` returns."""
    path = Path(path)
    if not path.is_file():
        found = "is not a regular file" if path.exists() else "image file not found"
        raise DatasetError(f"{path}: {found}")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise DatasetError(f"{path}: unsupported image type {suffix!r} (use PNG, JPG or EXR)")
    try:
        if path.stat().st_size == 0:
            raise DatasetError(f"{path}: image file is empty")
        data = _read_exr(path, size) if suffix in HDR_SUFFIXES else _read_ldr(path, size, curve)
    except DatasetError:
        raise
    except Exception as exc:  # any decoder failure is a bad file, not a bug
        raise DatasetError(
            f"{path}: cannot read image ({type(exc).__name__}: {one_line(exc)})"
        ) from exc
    if data.ndim != 3 or data.shape[2] != 3:
        raise DatasetError(f"{path}: cannot read image (decoded to shape {data.shape})")
    _check_size(path, data.shape[1], data.shape[0], size)
    return data


def _check_size(path: Path, width: int, height: int, size, rotated: bool = False) -> None:
    if width * height > MAX_PIXELS:
        raise DatasetError(
            f"{path}: image is {width}x{height}, more than {MAX_PIXELS} pixels; downscale it"
        )
    if size is None:
        return
    expected = (int(size[0]), int(size[1]))
    if (width, height) == expected or (rotated and (height, width) == expected):
        return
    raise ImageSizeError(
        f"{path}: image is {width}x{height} but img_size says {expected[0]}x{expected[1]}",
        width,
        height,
    )


def _read_ldr(path: Path, size, curve: str) -> np.ndarray:
    with warnings.catch_warnings():
        # MAX_PIXELS is checked below, before decoding; Pillow's own warning would only be noise.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(path, formats=LDR_FORMATS)
        except UnidentifiedImageError as exc:
            raise DatasetError(f"{path}: cannot read image (not PNG or JPEG data)") from exc
    with img:
        # The header size, before anything is decoded (EXIF may still swap width and height).
        _check_size(path, *img.size, size, rotated=True)
        rawmode = _png16_rawmode(img)
        if rawmode is not None:
            data = _read_png16(path, img, rawmode)
        elif img.mode.startswith("I"):  # 16-bit grey ("I;16", "I;16B", ...) or 32-bit "I"
            grey = np.asarray(img, dtype=np.float32) / 65535.0
            data = np.repeat(grey[..., None], 3, axis=-1)
        else:
            data = np.asarray(img.convert("RGB"), dtype=np.uint8)
        orientation = img.getexif().get(0x0112)
    if orientation in _ORIENTATIONS:
        data = _ORIENTATIONS[orientation](data)
    if data.dtype == np.uint8:
        return np.ascontiguousarray(data)
    return np.ascontiguousarray(decode(data, curve), dtype=np.float32)


#: ``(v / 255) ** 2.2`` for every 8-bit value ``v``, float32: the linear radiance of an 8-bit
#: gamma-encoded sample, computed once by the same operations a decoded image went through.
LINEAR_OF_8BIT = linear_of_8bit("gamma2.2")
_TABLES = {DEFAULT_TONE_CURVE: LINEAR_OF_8BIT}


def stored_bytes_per_pixel(path: str | Path) -> int:
    """Bytes one pixel of this file takes as :func:`read_stored` keeps it (3 for 8-bit PNG and
    JPEG, 12 otherwise), from its header; 12 when the header cannot be read."""
    path = Path(path)
    if path.suffix.lower() not in LDR_SUFFIXES:
        return 12
    try:
        with Image.open(path, formats=LDR_FORMATS) as img:
            eight_bit = _png16_rawmode(img) is None and not img.mode.startswith("I")
    except Exception:  # the dataset check reports unreadable files
        return 12
    return 3 if eight_bit else 12


def decode_8bit(values: np.ndarray, curve: str = DEFAULT_TONE_CURVE) -> np.ndarray:
    """Linear float32 radiance of encoded 8-bit samples (a lookup in :func:`table_8bit`)."""
    return table_8bit(curve)[values]


def table_8bit(curve: str = DEFAULT_TONE_CURVE) -> np.ndarray:
    """The linear radiance of each 8-bit value under ``curve`` (computed once per curve)."""
    if curve not in _TABLES:
        _TABLES[curve] = linear_of_8bit(curve)
    return _TABLES[curve]


def _png16_rawmode(img) -> str | None:
    """The raw layout of a 16-bit colour PNG (which Pillow would cut to 8 bits), else None."""
    if img.format != "PNG" or len(img.tile) != 1:
        return None
    args = img.tile[0][3]
    rawmode = args if isinstance(args, str) else args[0]
    return rawmode if rawmode in _PNG16_LOW_BYTES or rawmode == _PNG16_GREY_ALPHA else None


def _read_png16(path: Path, img, rawmode: str) -> np.ndarray:
    """Full 16-bit values of an RGB, RGBA or grey+alpha PNG, in [0, 1], shape (H, W, 3).

    Pillow has no 16-bit colour mode: it keeps the high byte of each sample. Decoding the same
    file a second time with the little-endian layout gives the low bytes (the PNG filters work
    on whole pixels, so a layout of the same pixel size decodes the same bytes), and
    grey+alpha's 4-byte pixels read as raw RGBA are (L high, L low, A high, A low).
    """
    tile = img.tile[0]
    if rawmode == _PNG16_GREY_ALPHA:
        raw = _decode_png_as(path, tile, "RGBA").astype(np.float32)
        grey = (raw[..., 0] * 256.0 + raw[..., 1]) / 65535.0
        return np.repeat(grey[..., None], 3, axis=-1)
    high = np.asarray(img, dtype=np.float32)[..., :3]
    low = _decode_png_as(path, tile, _PNG16_LOW_BYTES[rawmode])[..., :3]
    return (high * 256.0 + low) / 65535.0


def _decode_png_as(path: Path, tile, rawmode: str) -> np.ndarray:
    with Image.open(path, formats=("PNG",)) as again:
        args = rawmode if isinstance(tile[3], str) else (rawmode, *tile[3][1:])
        again.tile = [tile._replace(args=args) if hasattr(tile, "_replace") else (*tile[:3], args)]
        return np.asarray(again)


def write_image(
    path: str | Path, linear: np.ndarray, curve: str = DEFAULT_TONE_CURVE, quality: int = 75
) -> None:
    """Write linear RGB (H, W, 3): 8-bit encoded with ``curve`` for PNG/JPG (JPEG at
    ``quality``), float32 for EXR."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    linear = np.asarray(linear, dtype=np.float32)
    if linear.ndim == 2:
        linear = np.repeat(linear[..., None], 3, axis=-1)
    suffix = path.suffix.lower()
    if suffix in HDR_SUFFIXES:
        _write_exr(path, linear)
    elif suffix in LDR_SUFFIXES:
        encoded = np.round(encode(linear, curve) * 255.0).astype(np.uint8)
        options = {"quality": quality} if suffix != ".png" else {}
        Image.fromarray(encoded).save(path, **options)
    else:
        raise ValueError(f"unsupported image type {suffix!r}")


def write_data_png(path: str | Path, values: np.ndarray) -> None:
    """Write data in [0, 1] (masks, roughness, albedo maps) as 8-bit PNG **without** gamma."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    encoded = np.round(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)
    Image.fromarray(encoded).save(path)


def _read_exr(path: Path, size) -> np.ndarray:
    with OpenEXR.File(str(path), header_only=True) as exr:
        low, high = exr.header()["dataWindow"]
    width, height = int(high[0]) - int(low[0]) + 1, int(high[1]) - int(low[1]) + 1
    if width < 1 or height < 1:
        raise DatasetError(f"{path}: EXR data window is empty ({width}x{height})")
    _check_size(path, width, height, size)  # before the pixels are read
    with OpenEXR.File(str(path)) as exr:
        channels = exr.channels()
        if "RGB" in channels or "RGBA" in channels:
            data = np.asarray(channels["RGB" if "RGB" in channels else "RGBA"].pixels, np.float32)
        elif all(c in channels for c in "RGB"):
            data = np.stack([np.asarray(channels[c].pixels, np.float32) for c in "RGB"], -1)
        elif "Y" in channels:
            y = np.asarray(channels["Y"].pixels, dtype=np.float32)
            data = np.repeat(y[..., None], 3, axis=-1)
        else:
            raise DatasetError(f"{path}: EXR has no RGB or Y channels ({sorted(channels)})")
    if data.shape[:2] != (height, width) or data.ndim != 3 or data.shape[2] < 3:
        raise DatasetError(f"{path}: EXR channels have an unexpected shape {data.shape}")
    return np.ascontiguousarray(data[..., :3], dtype=np.float32)


def _write_exr(path: Path, linear: np.ndarray) -> None:
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    channels = {"RGB": np.ascontiguousarray(linear[..., :3], dtype=np.float32)}
    with OpenEXR.File(header, channels) as exr:
        exr.write(str(path))
