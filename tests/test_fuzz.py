"""Datasets broken on purpose: ``iron check`` and the loaders of ``iron fit`` on hundreds of them.

One small valid dataset (3 train + 2 test views, 16x16 PNG) is mutated by seeded random
mutations of a fixed list of classes, each several times (different files, entries, bytes and
variants), plus pairs of two mutations. For every mutated dataset:

* ``iron check`` through the real CLI entry in-process, and the loading path of ``iron fit``
  (``check_dataset`` + ``raise_on_errors``, then ``load_split`` of train and test) end within
  :data:`TIME_LIMIT_S`, with no traceback: only :class:`~ironrender.errors.DatasetError` and
  one-line problems, each naming a file of the dataset;
* broken datasets exit 1 and are refused by a loader; harmless variants (16-bit, grey, RGBA,
  palette, JPEG, EXIF-rotated, EXR channel layouts, links inside the dataset) exit 0 and load
  the same arrays as the original; ``check`` and the loaders always agree;
* nothing is written anywhere, inside the dataset or outside it, and files outside the dataset
  (reachable by ``..`` names, absolute names and links, each a valid image) are never read.

A few cases run through a real ``python -m ironrender check`` subprocess too. ``pytest -s``
prints a table of outcomes by mutation class.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import time
import traceback
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import OpenEXR
import pytest
from PIL import Image

from ironrender.cli import main
from ironrender.data.check import check_dataset, raise_on_errors
from ironrender.data.dataset import load_split, save_split
from ironrender.data.tone_curve import decode
from ironrender.errors import DatasetError, IronError
from tests.conftest import ring_cameras

SEED = 20250101
SIZE = 16
SPLIT_VIEWS = {"train": 3, "test": 2}
TIME_LIMIT_S = 10.0
COMBINED_CASES = 40

FAIL, PASS, AGREE, WARN = "fail", "pass", "agree", "warn"


# ----------------------------------------------------------------------------- the base
@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """The valid dataset every case starts from, its pixels and what it loads to."""
    root = tmp_path_factory.mktemp("fuzz_base") / "data"
    rng = np.random.default_rng(SEED)
    for split, n in SPLIT_VIEWS.items():
        cams = ring_cameras(n, width=SIZE, height=SIZE)
        images = rng.random((n, SIZE, SIZE, 3), dtype=np.float32)
        save_split(root, split, [f"{i}.png" for i in range(n)], images, cams)
    pixels = {
        (split, f"{i}.png"): np.asarray(Image.open(root / split / "image" / f"{i}.png"))
        for split, n in SPLIT_VIEWS.items()
        for i in range(n)
    }
    loaded = {split: load_split(root, split) for split in SPLIT_VIEWS}
    return root, pixels, loaded


# ----------------------------------------------------------------------------- helpers
def png_bytes(array: np.ndarray, rng: random.Random, size=None) -> bytes:
    """A PNG of uint8/uint16 ``array`` (H, W[, C]), written here: Pillow cannot write 16-bit
    colour. Rows use random filters (None, Sub, Up), so decoders work for their pixels."""
    array = array if array.ndim == 3 else array[..., None]
    height, width, channels = array.shape
    depth = 16 if array.dtype == np.uint16 else 8
    colour = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = np.frombuffer(array.astype(">u2" if depth == 16 else np.uint8).tobytes(), np.uint8)
    rows = rows.reshape(height, -1).astype(np.int64)
    bpp = channels * depth // 8
    raw = b""
    for y in range(height):
        kind = rng.choice((0, 1, 2))
        row = rows[y].copy()
        if kind == 1:
            row[bpp:] = rows[y, bpp:] - rows[y, :-bpp]
        elif kind == 2 and y > 0:
            row = rows[y] - rows[y - 1]
        raw += bytes([kind]) + bytes((row % 256).astype(np.uint8))
    width, height = size or (width, height)
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw))


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return struct.pack(">I", len(data)) + kind + data + crc


def png_end(data: bytes) -> bytes:
    return data + _chunk(b"IEND", b"")


def write_exr(path: Path, channels: dict) -> None:
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, channels) as exr:
        exr.write(str(path))


def linear(pixels: np.ndarray, scale: float = 255.0) -> np.ndarray:
    encoded = pixels.astype(np.float32) / scale
    if encoded.ndim == 2:
        encoded = np.repeat(encoded[..., None], 3, axis=-1)
    return decode(encoded[..., :3]).astype(np.float32)


def grey(pixels: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(pixels).convert("L"))


def snapshot(folder: Path) -> dict:
    """Every entry under ``folder`` (links not followed): type, size, mtime and content."""
    state = {}
    for directory, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            entry = (info.st_mode, info.st_size, info.st_mtime_ns)
            if os.path.islink(path):
                entry += (os.readlink(path),)
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    entry += (hashlib.sha1(f.read()).hexdigest(),)
            state[os.path.relpath(path, folder)] = entry
    return state


# ----------------------------------------------------------------------------- mutations
@dataclass
class Ctx:
    """One case: its folders, its random source, the base's pixels, and what it should load."""

    rng: random.Random
    variant_index: int
    data: Path
    case_dir: Path
    pixels: dict
    expected: dict = field(default_factory=dict)  # (split, name) -> linear array
    renamed: dict = field(default_factory=dict)  # (split, old name) -> new name
    touched: set = field(default_factory=set)

    def variant(self, options):
        return options[self.variant_index % len(options)]

    def pick(self, split: str | None = None) -> tuple[str, str]:
        """An entry no earlier mutation of this case touched (split, name)."""
        keys = [k for k in self.pixels if k not in self.touched and (split in (None, k[0]))]
        key = self.rng.choice(sorted(keys))
        self.touched.add(key)
        return key

    def image(self, key) -> Path:
        return self.data / key[0] / "image" / key[1]

    def cams(self, split: str) -> dict:
        return json.loads((self.data / split / "cam_dict_norm.json").read_text())

    def save_cams(self, split: str, cams: dict) -> None:
        (self.data / split / "cam_dict_norm.json").write_text(json.dumps(cams, indent=1))

    def edit_entry(self, key, edit) -> None:
        cams = self.cams(key[0])
        edit(cams, key[1])
        self.save_cams(key[0], cams)

    def rename(self, key, new_name: str) -> Path:
        """Rename ``key``'s entry and drop its old file; returns the new file's path."""

        def edit(cams, name):
            cams[new_name] = cams.pop(name)

        self.edit_entry(key, edit)
        self.image(key).unlink()
        self.renamed[key] = new_name
        return self.data / key[0] / "image" / new_name

    def bait(self) -> Path:
        """A valid image outside the dataset: reading it would make a refused case load."""
        path = self.case_dir / "outside.png"
        if not path.exists():
            Image.fromarray(self.pixels[("train", "0.png")]).save(path)
        return path


def truncated_image(ctx: Ctx) -> str:
    path = ctx.image(ctx.pick())
    data = path.read_bytes()
    path.write_bytes(data[: ctx.rng.randrange(0, len(data) - 20)])  # the last 20: checksums
    return FAIL


def garbage_image(ctx: Ctx) -> str:
    path = ctx.image(ctx.pick())
    data = bytearray(path.read_bytes())
    for _ in range(ctx.rng.randint(1, 16)):
        data[ctx.rng.randrange(len(data))] = ctx.rng.randrange(256)
    path.write_bytes(bytes(data))
    return AGREE  # PNG decoders skip IDAT checksums: a changed pixel may still decode


def noise_image(ctx: Ctx) -> str:
    key = ctx.pick()
    noise = ctx.rng.randbytes(ctx.rng.randrange(0, 3000))
    prefix = ctx.variant([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"v/1\x01"])
    if prefix == b"v/1\x01":  # EXR magic under an .exr name
        path = ctx.rename(key, key[1].replace(".png", ".exr"))
    else:
        path = ctx.image(key)
    path.write_bytes(prefix + noise)
    return FAIL


def empty_image(ctx: Ctx) -> str:
    key = ctx.pick()
    if ctx.variant([False, True]):
        ctx.rename(key, key[1].replace(".png", ".exr")).write_bytes(b"")
    else:
        ctx.image(key).write_bytes(b"")
    return FAIL


def garbage_json(ctx: Ctx) -> str:
    path = ctx.data / ctx.rng.choice(list(SPLIT_VIEWS)) / "cam_dict_norm.json"
    data = bytearray(path.read_bytes())
    for _ in range(ctx.rng.randint(1, 8)):
        data[ctx.rng.randrange(len(data))] = ctx.rng.randrange(256)
    path.write_bytes(bytes(data))
    return AGREE  # a changed digit is still a camera


def truncated_json(ctx: Ctx) -> str:
    path = ctx.data / ctx.rng.choice(list(SPLIT_VIEWS)) / "cam_dict_norm.json"
    data = path.read_bytes()
    path.write_bytes(data[: ctx.rng.randrange(0, len(data) - 1)])
    return FAIL


def json_not_object(ctx: Ctx) -> str:
    path = ctx.data / ctx.rng.choice(list(SPLIT_VIEWS)) / "cam_dict_norm.json"
    cams = json.loads(path.read_text())
    text = ctx.variant(
        [json.dumps(list(cams.values())), "42", "null", '"cams"', "true", "[]", "1e999", "{}"]
    )
    path.write_text(text)
    return FAIL


def nan_inf(ctx: Ctx) -> str:
    key = ctx.pick()
    literal = ctx.variant(["NaN", "Infinity", "-Infinity", "1e400", "-1e39", "1" + "0" * 400])
    field_name = ctx.rng.choice(["K", "W2C", "K", "W2C", "img_size"])

    def edit(cams, name):
        values = cams[name][field_name]
        values[ctx.rng.randrange(len(values))] = "__VALUE__"

    ctx.edit_entry(key, edit)
    path = ctx.data / key[0] / "cam_dict_norm.json"
    path.write_text(path.read_text().replace('"__VALUE__"', literal))
    return FAIL


def bad_img_size(ctx: Ctx) -> str:
    key = ctx.pick()
    size = ctx.variant(
        [
            [0, SIZE],
            [SIZE, -SIZE],
            [SIZE + 0.5, SIZE],
            [1e12, SIZE],
            [10**12, 10**12],
            [SIZE, SIZE, 3],
            [SIZE],
            "16x16",
            None,
            [True, SIZE],
            [float(SIZE), float(SIZE)],
            [[SIZE], [SIZE]],
            [2**62, 2**62],
            [SIZE + 1, SIZE],
        ]
    )
    ctx.edit_entry(key, lambda cams, name: cams[name].__setitem__("img_size", size))
    return FAIL


def _edit_pose(ctx: Ctx, change) -> None:
    key = ctx.pick()

    def edit(cams, name):
        w2c = np.array(cams[name]["W2C"]).reshape(4, 4)
        change(w2c)
        cams[name]["W2C"] = w2c.ravel().tolist()

    ctx.edit_entry(key, edit)


def non_rigid(ctx: Ctx) -> str:
    how = ctx.variant(["scale", "shear", "last-row", "reflect", "tiny-scale"])
    rng = ctx.rng

    def change(w2c):
        if how == "scale":
            w2c[:3, :3] *= rng.choice([rng.uniform(1.05, 3.0), rng.uniform(0.2, 0.95)])
        elif how == "shear":
            w2c[rng.randrange(3), rng.randrange(3)] += rng.choice([-1, 1]) * rng.uniform(0.05, 1)
        elif how == "last-row":
            w2c[3, rng.randrange(4)] += rng.uniform(0.1, 2.0)
        elif how == "reflect":
            w2c[rng.randrange(3), :3] *= -1
        else:
            w2c[:3, :3] *= 1e-4

    _edit_pose(ctx, change)
    return FAIL


def singular(ctx: Ctx) -> str:
    how = ctx.variant(["row", "column", "zeros", "equal-rows"])
    rng = ctx.rng

    def change(w2c):
        if how == "row":
            w2c[rng.randrange(3), :3] = 0
        elif how == "column":
            w2c[:3, rng.randrange(3)] = 0
        elif how == "zeros":
            w2c[:] = 0
        else:
            w2c[1, :3] = w2c[0, :3]

    _edit_pose(ctx, change)
    return FAIL


def odd_camera(ctx: Ctx) -> str:
    """Numbers of the right type and shape that describe no usable camera."""
    key = ctx.pick()
    how = ctx.variant(["far", "tiny-focal", "denormal-focal", "singular-K", "negative-f", "K-row"])

    def edit(cams, name):
        K, W2C = cams[name]["K"], cams[name]["W2C"]
        if how == "far":
            W2C[11] = ctx.rng.choice([1e6, 1e30, 3e38])
        elif how in ("tiny-focal", "denormal-focal"):
            K[0] = K[5] = 1e-3 if how == "tiny-focal" else 1e-320
        elif how == "singular-K":
            K[1], K[4] = K[0], K[5]
        elif how == "negative-f":
            K[ctx.rng.choice([0, 5])] *= -1
        else:
            K[8] = ctx.rng.uniform(0.1, 2.0)

    ctx.edit_entry(key, edit)
    return FAIL


def duplicate_key(ctx: Ctx) -> str:
    split, name = ctx.pick()
    path = ctx.data / split / "cam_dict_norm.json"
    cams = ctx.cams(split)
    text = json.dumps(cams)
    if ctx.variant([True, False]):  # the same image twice (same or other camera)
        other = cams[ctx.rng.choice(sorted(cams))]
        text = text[:-1] + f", {json.dumps(name)}: {json.dumps(other)}}}"
    else:  # a field twice inside one entry
        inner = ctx.rng.choice(["K", "W2C", "img_size"])
        entry = json.dumps(cams[name])
        twice = entry[:-1] + f', "{inner}": {json.dumps(cams[name][inner])}}}'
        text = text.replace(entry, twice, 1)
    path.write_text(text)
    return FAIL


def missing_key(ctx: Ctx) -> str:
    key = ctx.pick()
    fields = ["K", "W2C", "img_size"]
    drop = ctx.rng.sample(fields, ctx.rng.randint(1, 3))

    def edit(cams, name):
        for f in drop:
            del cams[name][f]

    ctx.edit_entry(key, edit)
    return FAIL


def wrong_type(ctx: Ctx) -> str:
    key = ctx.pick()
    target = ctx.rng.choice(["K", "W2C", "entry"])

    def edit(cams, name):
        value = cams[name]["K" if target == "entry" else target]
        options = [
            json.dumps(value),
            [value[i : i + 4] for i in range(0, 16, 4)],  # nested 4x4
            [bool(v) for v in value],
            {"values": value},
            value[:15],
            value + [0.0],
            [str(v) for v in value],
            3.0,
            None,
            [value[:8], value[8:]],
        ]
        if target == "entry":
            cams[name] = ctx.variant([[1, 2, 3], 7, "camera", None, True, []])
        else:
            cams[name][target] = ctx.variant(options)

    ctx.edit_entry(key, edit)
    return FAIL


def _other_size(ctx: Ctx) -> tuple[int, int]:
    while True:
        size = (ctx.rng.randint(1, 40), ctx.rng.randint(1, 40))
        if size != (SIZE, SIZE):
            return size


def other_size_image(ctx: Ctx) -> str:
    key = ctx.pick()
    width, height = _other_size(ctx)
    pixels = np.random.default_rng(ctx.rng.randrange(2**32)).integers(0, 256, (height, width, 3))
    Image.fromarray(pixels.astype(np.uint8)).save(ctx.image(key))
    return FAIL


def mixed_sizes(ctx: Ctx) -> str:
    key = ctx.pick()
    width, height = _other_size(ctx)
    image = Image.fromarray(ctx.pixels[key]).resize((width, height))
    image.save(ctx.image(key))

    def edit(cams, name):  # a consistent camera for the new size: only the split's size differs
        K = np.array(cams[name]["K"]).reshape(4, 4)
        K[0] *= width / SIZE
        K[1] *= height / SIZE
        cams[name]["K"] = K.ravel().tolist()
        cams[name]["img_size"] = [width, height]

    ctx.edit_entry(key, edit)
    return FAIL


def bad_channels(ctx: Ctx) -> str:
    key = ctx.pick()
    how = ctx.variant(["Z-only", "nan-pixels", "bmp", "gif", "tiff", "webp", "inf-pixels", "YA"])
    pixels = ctx.pixels[key]
    if how in ("Z-only", "nan-pixels", "inf-pixels", "YA"):
        path = ctx.rename(key, key[1].replace(".png", ".exr"))
        values = linear(pixels)
        if how == "Z-only":
            write_exr(path, {"Z": values[..., 0], "A": values[..., 1]})
        elif how == "YA":
            write_exr(path, {"V": values[..., 0], "A": values[..., 1]})
        else:
            values[ctx.rng.randrange(SIZE), ctx.rng.randrange(SIZE)] = (
                np.nan if how == "nan-pixels" else np.inf
            )
            write_exr(path, {"RGB": values})
    else:  # another format under a .png name
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format=how.upper())
        ctx.image(key).write_bytes(buffer.getvalue())
    return FAIL


def decompression_bomb(ctx: Ctx) -> str:
    key = ctx.pick()
    how = ctx.variant(["huge-header", "warning-size", "max-header", "zeros-4096", "exr-window"])
    rng = ctx.rng
    if how == "zeros-4096":  # a real image, 16 M pixels of zeros in 16 kB
        side = 4096
        raw = zlib.compress(b"\x00" * (side * (side + 1)), 9)
        header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
        data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", raw)
        ctx.image(key).write_bytes(png_end(data))
    elif how == "exr-window":
        path = ctx.rename(key, key[1].replace(".png", ".exr"))
        write_exr(path, {"RGB": linear(ctx.pixels[key])})
        data = bytearray(path.read_bytes())
        at = data.index(b"dataWindow\x00box2i\x00") + len(b"dataWindow\x00box2i\x00") + 4
        data[at + 8 : at + 16] = struct.pack("<ii", 99_999, 99_999)
        path.write_bytes(bytes(data))
    else:
        size = {
            "huge-header": (100_000, 100_000),
            "warning-size": (10_000, 9_000),
            "max-header": (2**31 - 1, 2**31 - 1),
        }[how]
        data = png_bytes(ctx.pixels[key], rng, size=size)
        ctx.image(key).write_bytes(png_end(data))
    return FAIL


def deleted_file(ctx: Ctx) -> str:
    how = ctx.variant(["image", "train-json", "test-json", "train", "image-folder", "test"])
    if how == "image":
        ctx.image(ctx.pick()).unlink()
    elif how.endswith("-json"):
        (ctx.data / how.split("-")[0] / "cam_dict_norm.json").unlink()
    elif how == "image-folder":
        shutil.rmtree(ctx.data / ctx.rng.choice(list(SPLIT_VIEWS)) / "image")
    else:
        shutil.rmtree(ctx.data / how)
    return WARN if how == "test" else FAIL


def empty_folders(ctx: Ctx) -> str:
    how = ctx.variant(["empty-image", "empty-split", "empty-dataset", "image-is-file", "json-dir"])
    split = ctx.rng.choice(list(SPLIT_VIEWS))
    if how == "empty-image":
        for path in (ctx.data / split / "image").iterdir():
            path.unlink()
    elif how == "empty-split":
        shutil.rmtree(ctx.data / split)
        (ctx.data / split).mkdir()
    elif how == "empty-dataset":
        shutil.rmtree(ctx.data)
        ctx.data.mkdir()
    elif how == "image-is-file":
        shutil.rmtree(ctx.data / split / "image")
        (ctx.data / split / "image").write_bytes(b"\x89PNG\r\n\x1a\n")
    else:
        (ctx.data / split / "cam_dict_norm.json").unlink()
        (ctx.data / split / "cam_dict_norm.json").mkdir()
    return FAIL


UNSAFE = [
    "dotdot",
    "absolute",
    "backslash",
    "empty",
    "nul",
    "parent",
    "subfolder",
    "link-out",
    "folder-link-out",
    "json-link-out",
    "newline",
    "surrogate",
    "long",
    "link-loop",
]


def unsafe_name(ctx: Ctx) -> str:
    key = ctx.pick()
    how = ctx.variant(UNSAFE)
    bait = ctx.bait()
    image_dir = ctx.data / key[0] / "image"
    if how == "link-out":
        ctx.image(key).unlink()
        ctx.image(key).symlink_to(bait)
        return FAIL
    if how == "link-loop":
        ctx.image(key).unlink()
        ctx.image(key).symlink_to(ctx.image(key))
        return FAIL
    if how == "folder-link-out":
        outside = ctx.case_dir / "outside_images"
        shutil.copytree(image_dir, outside)
        shutil.rmtree(image_dir)
        image_dir.symlink_to(outside, target_is_directory=True)
        return FAIL
    if how == "json-link-out":
        json_path = ctx.data / key[0] / "cam_dict_norm.json"
        outside = ctx.case_dir / "outside.json"
        shutil.copy(json_path, outside)
        json_path.unlink()
        json_path.symlink_to(outside)
        return FAIL
    name = {
        "dotdot": "../../../outside.png",
        "absolute": str(bait),
        "backslash": "..\\..\\..\\outside.png",
        "empty": "",
        "nul": "0\x00.png",
        "parent": "..",
        "subfolder": "sub/0.png",
        "newline": "0\n.png",
        "surrogate": "\ud800.png",
        "long": "x" * 300 + ".png",
    }[how]
    original = ctx.image(key).read_bytes()
    ctx.rename(key, name)
    if how == "subfolder":
        (image_dir / "sub").mkdir()
        (image_dir / name).write_bytes(original)
    elif how == "newline":
        (image_dir / name).write_bytes(original)  # the file exists; its name is still refused
    return FAIL


def png16(ctx: Ctx) -> str:
    key = ctx.pick()
    pixels = ctx.pixels[key].astype(np.uint16) * 257  # the same values, exactly
    ctx.image(key).write_bytes(png_end(png_bytes(pixels, ctx.rng)))
    ctx.expected[key] = linear(ctx.pixels[key])
    return PASS


def grey_variants(ctx: Ctx) -> str:
    key = ctx.pick()
    how = ctx.variant(["L", "L16", "LA", "LA16"])
    level = grey(ctx.pixels[key])
    alpha = np.random.default_rng(ctx.rng.randrange(2**32)).integers(0, 256, level.shape)
    if how == "L":
        Image.fromarray(level).save(ctx.image(key))
    elif how == "LA":
        Image.fromarray(np.stack([level, alpha.astype(np.uint8)], -1), "LA").save(ctx.image(key))
    else:
        value = level.astype(np.uint16) * 257
        if how == "LA16":
            value = np.stack([value, alpha.astype(np.uint16) * 257], -1)
        ctx.image(key).write_bytes(png_end(png_bytes(value, ctx.rng)))
    ctx.expected[key] = linear(level)
    return PASS


def rgba_palette(ctx: Ctx) -> str:
    key = ctx.pick()
    how = ctx.variant(["RGBA", "P", "RGBA16", "P-transparent"])
    pixels = ctx.pixels[key]
    alpha = np.random.default_rng(ctx.rng.randrange(2**32)).integers(0, 256, pixels.shape[:2])
    if how == "RGBA":
        Image.fromarray(np.dstack([pixels, alpha.astype(np.uint8)]), "RGBA").save(ctx.image(key))
    elif how == "RGBA16":
        value = np.dstack([pixels, alpha]).astype(np.uint16) * 257
        ctx.image(key).write_bytes(png_end(png_bytes(value, ctx.rng)))
    else:  # an exact palette: at most 256 colours in 16x16 pixels
        colours, index = np.unique(pixels.reshape(-1, 3), axis=0, return_inverse=True)
        image = Image.fromarray(index.reshape(SIZE, SIZE).astype(np.uint8), "P")
        image.putpalette(colours.astype(np.uint8).ravel().tolist())
        if how == "P-transparent":
            image.info["transparency"] = int(index[0])
        image.save(ctx.image(key))
    ctx.expected[key] = linear(pixels)
    return PASS


def jpeg(ctx: Ctx) -> str:
    key = ctx.pick()
    path = ctx.rename(key, key[1].replace(".png", ctx.variant([".jpg", ".jpeg", ".JPG"])))
    Image.fromarray(ctx.pixels[key]).save(path, format="JPEG", quality=ctx.rng.randint(70, 100))
    with Image.open(path) as decoded:  # lossy: the reference is Pillow's own decoding
        ctx.expected[key] = linear(np.asarray(decoded.convert("RGB")))
    return PASS


#: An EXIF orientation and the transpose that, once undone by a reader, gives the pixels back.
STORED_AS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def exif_orientation(ctx: Ctx) -> str:
    key = ctx.pick()
    orientation = ctx.variant(sorted(STORED_AS))
    image = Image.fromarray(ctx.pixels[key]).transpose(STORED_AS[orientation])
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(ctx.image(key), exif=exif.tobytes())
    ctx.expected[key] = linear(ctx.pixels[key])
    return PASS


def exr_variants(ctx: Ctx) -> str:
    key = ctx.pick()
    how = ctx.variant(["RGBA", "R-G-B", "Y", "half"])
    values = linear(ctx.pixels[key])
    path = ctx.rename(key, key[1].replace(".png", ".exr"))
    if how == "RGBA":
        write_exr(path, {"RGBA": np.dstack([values, np.ones((SIZE, SIZE), np.float32)])})
    elif how == "R-G-B":
        write_exr(path, {c: np.ascontiguousarray(values[..., i]) for i, c in enumerate("RGB")})
    elif how == "Y":
        values = np.repeat(values[..., 1:2], 3, axis=-1)
        write_exr(path, {"Y": np.ascontiguousarray(values[..., 0])})
    else:
        values = values.astype(np.float16).astype(np.float32)
        write_exr(path, {"RGB": values.astype(np.float16)})
    ctx.expected[key] = values
    return PASS


def inside_link(ctx: Ctx) -> str:
    """A link to another image of the same dataset is fine (the other split's, even)."""
    source, target = ctx.pick("test"), ctx.pick("train")
    ctx.image(source).unlink()
    relative = Path("..") / ".." / target[0] / "image" / target[1]
    ctx.image(source).symlink_to(relative if ctx.variant([True, False]) else ctx.image(target))
    ctx.expected[source] = linear(ctx.pixels[target])
    return PASS


#: class name -> (mutation, cases, whole): a "whole" mutation rewrites a file's text or the
#: folders, so a pair applies it second (its damage could hide what the first did).
CLASSES = {
    "truncated-image": (truncated_image, 10, False),
    "garbage-image": (garbage_image, 12, False),
    "noise-image": (noise_image, 8, False),
    "empty-image": (empty_image, 4, False),
    "garbage-json": (garbage_json, 12, True),
    "truncated-json": (truncated_json, 8, True),
    "json-not-object": (json_not_object, 8, True),
    "nan-inf": (nan_inf, 12, False),
    "bad-img-size": (bad_img_size, 14, False),
    "non-rigid": (non_rigid, 10, False),
    "singular": (singular, 8, False),
    "odd-camera": (odd_camera, 8, False),
    "duplicate-key": (duplicate_key, 8, True),
    "missing-key": (missing_key, 6, False),
    "wrong-type": (wrong_type, 14, False),
    "other-size-image": (other_size_image, 6, False),
    "mixed-sizes": (mixed_sizes, 6, False),
    "bad-channels": (bad_channels, 8, False),
    "decompression-bomb": (decompression_bomb, 5, False),
    "deleted-file": (deleted_file, 6, True),
    "empty-folders": (empty_folders, 5, True),
    "unsafe-name": (unsafe_name, 2 * len(UNSAFE), False),
    "png16": (png16, 6, False),
    "grey": (grey_variants, 8, False),
    "rgba-palette": (rgba_palette, 8, False),
    "jpeg": (jpeg, 6, False),
    "exif-orientation": (exif_orientation, 7, False),
    "exr-variants": (exr_variants, 8, False),
    "inside-link": (inside_link, 4, False),
}


@dataclass
class Case:
    label: str
    classes: tuple[str, ...]
    seed: int
    index: int


def all_cases() -> list[Case]:
    rng = random.Random(SEED)
    cases = [
        Case(name, (name,), rng.randrange(2**32), i)
        for name, (_, count, _) in CLASSES.items()
        for i in range(count)
    ]
    names = list(CLASSES)
    for i in range(COMBINED_CASES):
        first, second = rng.sample(names, 2)
        if CLASSES[first][2] and CLASSES[second][2]:
            continue  # two whole-file rewrites: the second hides the first
        if CLASSES[first][2]:
            first, second = second, first
        cases.append(Case("combined", (first, second), rng.randrange(2**32), i))
    return cases


def apply(case: Case, data: Path, case_dir: Path, pixels: dict) -> tuple[Ctx, str]:
    ctx = Ctx(random.Random(case.seed), case.index, data, case_dir, pixels)
    outcomes = [CLASSES[name][0](ctx) for name in case.classes]
    if len(outcomes) == 1:
        return ctx, outcomes[0]
    if all(o == PASS for o in outcomes):
        return ctx, PASS
    if FAIL in outcomes and AGREE not in outcomes and WARN not in outcomes:
        return ctx, FAIL
    return ctx, AGREE


# ----------------------------------------------------------------------------- running
@dataclass
class Outcome:
    exit_code: int | None = None
    output: str = ""
    fit_error: str | None = None  # iron fit's check (raise_on_errors)
    loaded: dict = field(default_factory=dict)  # split -> Split or the DatasetError text
    seconds: float = 0.0
    kinds: tuple[str, ...] = ()


def run_case(data: Path, capsys) -> Outcome:
    out = Outcome()
    started = time.perf_counter()
    out.exit_code = main(["check", str(data)])
    captured = capsys.readouterr()
    out.output = captured.out + captured.err
    problems = check_dataset(data)
    out.kinds = tuple(sorted({p.kind for p in problems if p.fatal}))
    try:
        raise_on_errors(problems)
    except (DatasetError, IronError) as exc:
        out.fit_error = str(exc)
    for split in SPLIT_VIEWS:
        try:
            out.loaded[split] = load_split(data, split)
        except (DatasetError, IronError) as exc:
            out.loaded[split] = str(exc)
    out.seconds = time.perf_counter() - started
    return out


def verify(out: Outcome, expect: str, data: Path, ctx: Ctx, loaded_base: dict) -> list[str]:
    """What is wrong with one case's outcome (empty when all is well)."""
    wrong = []
    if out.seconds >= TIME_LIMIT_S:
        wrong.append(f"took {out.seconds:.1f} s")
    if "Traceback" in out.output:
        wrong.append("traceback in the output")
    if out.exit_code not in (0, 1, 2):
        wrong.append(f"exit {out.exit_code}")
    for line in out.output.splitlines():
        if not line.startswith((f"error: {data}", f"warning: {data}", f"{data}: ")):
            wrong.append(f"line not naming a dataset file: {line!r}")
    errors = [out.fit_error] + [v for v in out.loaded.values() if isinstance(v, str)]
    for message in filter(None, errors):
        if "\n" in message or str(data) not in message:
            wrong.append(f"error not one line naming a file: {message!r}")
    refused = [s for s, v in out.loaded.items() if isinstance(v, str)]
    # iron check and iron fit's loading agree, whatever the case.
    if (out.exit_code == 0) != (out.fit_error is None):
        wrong.append(f"iron check exit {out.exit_code} but fit's check says {out.fit_error!r}")
    if out.fit_error is None and "train" in refused:
        wrong.append(f"checked fine but train refused: {out.loaded['train']}")
    if out.fit_error is None and "test" in refused and (data / "test").is_dir():
        wrong.append(f"checked fine but test refused: {out.loaded['test']}")
    if out.fit_error is not None and not refused:
        wrong.append(f"check refused ({out.fit_error}) but both splits loaded")
    if expect == FAIL and (out.exit_code == 0 or out.fit_error is None):
        wrong.append("a broken dataset passed")
    if expect == WARN and (out.exit_code != 0 or refused != ["test"]):
        wrong.append(f"expected a warning only: exit {out.exit_code}, refused {refused}")
    if expect == PASS:
        if out.exit_code != 0 or refused:
            wrong.append(f"a harmless variant was refused: {out.output.strip()!r}")
        else:
            wrong += compare(out.loaded, ctx, loaded_base)
    return wrong


def compare(loaded: dict, ctx: Ctx, loaded_base: dict) -> list[str]:
    wrong = []
    for split, split_data in loaded.items():
        base = loaded_base[split]
        names = [ctx.renamed.get((split, n), n) for n in base.names]
        if split_data.names != names:
            wrong.append(f"{split} names {split_data.names} != {names}")
            continue
        for i, name in enumerate(base.names):
            want = ctx.expected.get((split, name), base.images[i].numpy())
            got = split_data.images[i].numpy()
            if got.shape != want.shape or not np.allclose(got, want, rtol=0, atol=2e-6):
                wrong.append(f"{split}/{name}: pixels differ from the expected values")
        if not np.allclose(split_data.cameras.w2c, base.cameras.w2c, atol=1e-6):
            wrong.append(f"{split}: cameras differ")
    return wrong


@pytest.fixture
def signal_handlers():
    """``main()`` installs its own SIGINT/SIGTERM handlers: give pytest its own back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_broken_datasets_end_in_one_line_problems_never_tracebacks(
    base, tmp_path, capsys, monkeypatch, signal_handlers
):
    monkeypatch.setenv("IRON_NO_TCMALLOC", "1")  # main() would re-execute the process
    base_root, pixels, loaded_base = base
    base_before = snapshot(base_root.parent)
    cwd_before = sorted(os.listdir(os.getcwd()))
    cases = all_cases()
    assert len(cases) >= 200
    failures: list[str] = []
    table: dict[str, Counter] = defaultdict(Counter)
    kinds: dict[str, Counter] = defaultdict(Counter)
    slowest = 0.0
    for number, case in enumerate(cases):
        case_dir = tmp_path / f"{number:03d}-{case.label}"
        data = case_dir / "data"
        shutil.copytree(base_root, data, symlinks=True)
        ctx, expect = apply(case, data, case_dir, pixels)
        before, around = snapshot(case_dir), sorted(os.listdir(tmp_path))
        try:
            out = run_case(data, capsys)
        except Exception:  # a bug: report it with the others
            failures.append(f"{case_dir.name} {case.classes}: {traceback.format_exc()}")
            continue
        wrong = verify(out, expect, data, ctx, loaded_base)
        if snapshot(case_dir) != before:
            wrong.append("files changed under the case folder")
        if sorted(os.listdir(tmp_path)) != around:
            wrong.append("files appeared next to the case folder")
        if wrong:
            failures.append(f"{case_dir.name} {case.classes} seed {case.seed}: {wrong}")
        else:
            shutil.rmtree(case_dir)
        refused = sum(isinstance(v, str) for v in out.loaded.values())
        row = table[case.label]
        row["cases"] += 1
        row[f"exit {out.exit_code}"] += 1
        row["refused" if out.fit_error or refused else "loaded"] += 1
        row["max ms"] = max(row["max ms"], round(1000 * out.seconds))
        kinds[case.label].update(out.kinds)
        slowest = max(slowest, out.seconds)

    print_table(table, kinds, len(cases), slowest)
    assert snapshot(base_root.parent) == base_before
    assert sorted(os.listdir(os.getcwd())) == cwd_before
    assert not failures, f"{len(failures)} of {len(cases)} cases:\n" + "\n".join(failures[:15])


def print_table(table: dict, kinds: dict, total: int, slowest: float) -> None:
    print(f"\n{total} mutated datasets; slowest case {slowest:.2f} s")
    header = f"{'class':<20}{'cases':>6}{'exit 0':>7}{'exit 1':>7}{'exit 2':>7}"
    print(header + f"{'loaded':>7}{'max ms':>7}  problem kinds (fatal)")
    for label, row in table.items():
        top = ", ".join(f"{k} {n}" for k, n in kinds[label].most_common(3))
        print(
            f"{label:<20}{row['cases']:>6}{row['exit 0']:>7}{row['exit 1']:>7}"
            f"{row['exit 2']:>7}{row['loaded']:>7}{row['max ms']:>7}  {top}"
        )


#: Cases run through a real ``python -m ironrender check`` too: one of each kind of outcome.
SUBPROCESS_CASES = [
    ("unsafe-name", 0, 1),  # ../../../outside.png
    ("unsafe-name", 7, 1),  # a link to a file outside
    ("decompression-bomb", 0, 1),
    ("duplicate-key", 0, 1),
    ("png16", 0, 0),
    ("deleted-file", 5, 0),  # no test/: a warning
]


@pytest.mark.parametrize(("label", "index", "exit_code"), SUBPROCESS_CASES)
def test_cli_subprocess_on_broken_datasets(base, tmp_path, label, index, exit_code):
    base_root, pixels, _ = base
    data = tmp_path / "data"
    shutil.copytree(base_root, data, symlinks=True)
    apply(Case(label, (label,), SEED + index, index), data, tmp_path, pixels)
    result = subprocess.run(
        [sys.executable, "-m", "ironrender", "check", str(data)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == exit_code, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines and all(line.startswith(("error: ", "warning: ", f"{data}: ")) for line in lines)
