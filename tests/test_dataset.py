"""IRON dataset layout: exact round-trip, and `iron check` naming every kind of breakage."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ironrender.data.camera_file import split_cameras
from ironrender.data.cameras import Cameras, intrinsics_from_fov, look_at
from ironrender.data.check import check_dataset
from ironrender.data.dataset import load_split, save_split
from ironrender.data.images import read_image, write_image
from ironrender.errors import DatasetError
from tests.conftest import ring_cameras


def _write_scene(root: Path, n_train: int = 4, n_test: int = 2, rng=None) -> None:
    rng = rng or np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        cams = ring_cameras(n, width=32, height=24)
        images = rng.random((n, 24, 32, 3), dtype=np.float32)
        names = [f"{i}.png" for i in range(n)]
        save_split(root, split, names, images, cams, linear_twins=True)


@pytest.fixture
def scene(tmp_path) -> Path:
    _write_scene(tmp_path / "scene")
    return tmp_path / "scene"


def test_round_trip_cameras_and_images(tmp_path, rng):
    cams = ring_cameras(5, width=32, height=24)
    images = rng.random((5, 24, 32, 3), dtype=np.float32)
    names = [f"{i}.exr" for i in range(5)]
    save_split(tmp_path, "train", names, images, cams)
    split = load_split(tmp_path, "train")
    assert split.names == names and split.hdr
    np.testing.assert_array_equal(split.images.numpy(), images)  # EXR is exact
    torch.testing.assert_close(split.cameras.intrinsics, cams.intrinsics, rtol=0, atol=1e-6)
    torch.testing.assert_close(split.cameras.w2c, cams.w2c, rtol=0, atol=1e-6)
    assert torch.equal(split.cameras.sizes, cams.sizes)


def test_png_round_trip_within_quantization_and_exr_twin(scene):
    ldr = load_split(scene, "train")
    linear = load_split(scene, "train", linear=True)
    assert not ldr.hdr and linear.hdr
    # 8-bit gamma quantization: at most half a code value in the encoded domain.
    encoded_ldr = ldr.images.clamp(0, 1) ** (1 / 2.2)
    encoded_lin = linear.images.clamp(0, 1) ** (1 / 2.2)
    assert (encoded_ldr - encoded_lin).abs().max() <= 0.5 / 255 + 1e-6


def test_numeric_name_order(tmp_path, rng):
    cams = ring_cameras(11)
    names = [f"{i}.png" for i in range(11)]
    save_split(tmp_path, "train", names, rng.random((11, 24, 32, 3), dtype=np.float32), cams)
    assert load_split(tmp_path, "train").names == names  # 10 after 9, not after 1


def test_cameras_alone_come_in_the_loaded_order(tmp_path, rng):
    """Gains fitted per training view are looked up by camera: the cameras read without the
    images (split_cameras) must be in the order the split loads, whatever the file's order."""
    cams = ring_cameras(11)
    names = [f"{i}.png" for i in range(11)]
    save_split(tmp_path, "train", names, rng.random((11, 24, 32, 3), dtype=np.float32), cams)
    path = tmp_path / "train" / "cam_dict_norm.json"
    entries = json.loads(path.read_text())
    path.write_text(json.dumps(dict(reversed(list(entries.items())))))  # 10, 9, ..., 0
    loaded = load_split(tmp_path, "train").cameras
    alone = split_cameras(tmp_path, "train")
    assert torch.allclose(alone.w2c, loaded.w2c) and torch.allclose(alone.w2c, cams.w2c)


def test_clean_dataset_passes(scene):
    assert [p for p in check_dataset(scene) if p.fatal] == []


def _edit_cameras(split_dir: Path, edit) -> None:
    path = split_dir / "cam_dict_norm.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _break_missing_image(root):
    (root / "train/image/1.png").unlink()


def _break_unreadable(root):
    (root / "train/image/2.png").write_bytes(b"this is not a png")


def _break_size(root):
    write_image(root / "train/image/0.png", np.zeros((10, 10, 3), np.float32))


def _break_orphan_image(root):
    shutil.copy(root / "train/image/0.png", root / "train/image/99.png")


def _break_non_rigid(root):
    def edit(data):
        w2c = np.array(data["1.png"]["W2C"]).reshape(4, 4)
        w2c[:3, :3] *= 2.0  # a scaled rotation is not a rigid pose
        data["1.png"]["W2C"] = w2c.ravel().tolist()

    _edit_cameras(root / "train", edit)


def _break_singular(root):
    def edit(data):
        data["0.png"]["W2C"] = [0.0] * 12 + [0, 0, 0, 1]

    _edit_cameras(root / "train", edit)


def _break_nan(root):
    def edit(data):
        data["2.png"]["K"][0] = float("nan")

    path = root / "train/cam_dict_norm.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))  # json writes NaN, which Python reads back


def _break_looks_away(root):
    def edit(data):
        w2c = np.array(data["3.png"]["W2C"]).reshape(4, 4)
        flip = np.diag([-1.0, 1.0, -1.0, 1.0])  # turn the camera around its y axis
        data["3.png"]["W2C"] = (flip @ w2c).ravel().tolist()

    _edit_cameras(root / "train", edit)


def _break_inside_sphere(root):
    def edit(data):
        w2c = np.array(data["0.png"]["W2C"]).reshape(4, 4)
        w2c[:3, 3] *= 0.2  # camera centre moves to 0.5 from the origin
        data["0.png"]["W2C"] = w2c.ravel().tolist()

    _edit_cameras(root / "test", edit)


def _break_json(root):
    (root / "test/cam_dict_norm.json").write_text("{not json")


def _break_nan_pixels(root):
    image = read_image(root / "test/image/1.exr")
    image[3, 4, 1] = np.inf
    write_image(root / "test/image/1.exr", image)


def _break_duplicate_key(root):
    path = root / "train/cam_dict_norm.json"
    text = path.read_text().rstrip()
    entry = json.dumps(json.loads(text)["0.png"])
    path.write_text(text[:-1] + f', "0.png": {entry}}}')  # json.loads keeps the last silently


def _break_mixed_sizes(root):
    # Each image matches its own img_size, but one split holds one size (the loader stacks).
    image = read_image(root / "train/image/1.exr")[:12, :16]
    write_image(root / "train/image/1.png", image)
    write_image(root / "train/image/1.exr", image)

    def edit(data):
        data["1.png"]["img_size"] = [16, 12]
        K = np.array(data["1.png"]["K"]).reshape(4, 4)
        K[:2] *= 0.5
        data["1.png"]["K"] = K.ravel().tolist()

    _edit_cameras(root / "train", edit)


def _break_flash(root):
    def edit(data):
        data["1.png"]["flash"] = [0.0, 0.1]  # two numbers, not three

    _edit_cameras(root / "train", edit)


def _break_flash_inside(root):
    def edit(data):
        distance = np.linalg.norm(np.array(data["0.png"]["W2C"]).reshape(4, 4)[:3, 3])
        data["0.png"]["flash"] = [0.0, 0.0, float(distance)]  # at the object's centre

    _edit_cameras(root / "test", edit)


BREAKAGES = {
    "bad-flash": _break_flash,
    "camera-without-image": _break_missing_image,
    "unreadable-image": _break_unreadable,
    "size-mismatch": _break_size,
    "image-without-camera": _break_orphan_image,
    "non-rigid-pose": _break_non_rigid,
    "singular-pose": _break_singular,
    "non-finite": _break_nan,
    "not-looking-at-object": _break_looks_away,
    "camera-inside-sphere": _break_inside_sphere,
    "bad-json": _break_json,
    "duplicate-key": _break_duplicate_key,
    "mixed-sizes": _break_mixed_sizes,
}


def test_flash_inside_the_sphere_is_refused(scene):
    _break_flash_inside(scene)
    problems = [p for p in check_dataset(scene) if p.fatal]
    assert [p.kind for p in problems] == ["bad-flash"], problems
    assert "inside the unit sphere" in problems[0].message


def test_flash_positions_round_trip_and_survive_crops_and_scaling(tmp_path, rng):
    """``"flash"`` in the camera file: written only when off the lens, read back exactly, and
    carried by every camera edit; the world position is ``C2W (flash, 1)``."""
    from ironrender.data.camera_file import read_camera_dict

    images = rng.random((3, 12, 16, 3), dtype=np.float32)
    w2c = look_at(torch.tensor([[0.0, 0.0, 3.0], [3.0, 0.0, 0.0], [0.0, 3.0, 0.5]]),
                  torch.zeros(3), torch.tensor([0.0, 1.0, 0.0]))  # fmt: skip
    K = intrinsics_from_fov(16, 12, 50.0).expand(3, 3, 3)
    flash = torch.tensor([[0.0, -0.25, 0.0], [0.1, 0.0, 0.0], [0.0, 0.0, 0.0]])
    cameras = Cameras(K, w2c, torch.tensor([[16, 12]] * 3), flash)
    names = ["0.png", "1.png", "2.png"]
    save_split(tmp_path, "train", names, images, cameras)
    entries = read_camera_dict(tmp_path / "train" / "cam_dict_norm.json")
    assert entries["0.png"]["flash"] == [0.0, -0.25, 0.0]
    loaded = load_split(tmp_path, "train").cameras
    torch.testing.assert_close(loaded.flash, flash)
    assert not loaded.colocated
    world = (loaded.c2w[:, :3, :3] @ flash[..., None])[..., 0] + loaded.centers
    torch.testing.assert_close(loaded.flash_positions, world)
    torch.testing.assert_close(loaded.crop(1, 2, 3, 8, 6).flash_positions, world[1:2])
    torch.testing.assert_close(loaded.scaled(0.5).flash_positions, world)
    torch.testing.assert_close(loaded[2].flash_positions, loaded[2].centers)
    # A capture without the key: IRON's co-located flash, and nothing written for it.
    save_split(tmp_path / "plain", "train", names, images, Cameras(K, w2c, cameras.sizes))
    assert "flash" not in read_camera_dict(tmp_path / "plain/train/cam_dict_norm.json")["0.png"]
    plain = load_split(tmp_path / "plain", "train").cameras
    assert plain.colocated and plain.flash is None
    torch.testing.assert_close(plain.flash_positions, plain.centers)


@pytest.mark.parametrize("kind", sorted(BREAKAGES))
def test_check_names_each_breakage(scene, kind):
    BREAKAGES[kind](scene)
    problems = [p for p in check_dataset(scene) if p.fatal]
    assert [p.kind for p in problems] == [kind], problems
    # Loaders use the same validation: a one-line DatasetError, never a traceback.
    split = "test" if kind in ("camera-inside-sphere", "bad-json") else "train"
    with pytest.raises(DatasetError) as info:
        load_split(scene, split)
    assert "\n" not in str(info.value)


def test_nan_pixels_in_linear_twin_are_reported(scene):
    # The EXR twin is what `linear=True` reads; a poisoned twin must not load silently.
    (scene / "test/image/1.png").unlink()
    (scene / "test/image/1.exr").rename(scene / "test/image/1.exr.bak")
    cams = json.loads((scene / "test/cam_dict_norm.json").read_text())
    cams["1.exr"] = cams.pop("1.png")
    (scene / "test/cam_dict_norm.json").write_text(json.dumps(cams))
    (scene / "test/image/1.exr.bak").rename(scene / "test/image/1.exr")
    _break_nan_pixels(scene)
    kinds = [p.kind for p in check_dataset(scene) if p.fatal]
    assert kinds == ["non-finite"]


def test_cli_check_exit_codes_and_one_line_per_problem(scene):
    ok = subprocess.run(
        [sys.executable, "-m", "ironrender", "check", str(scene)], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    _break_missing_image(scene)
    _break_non_rigid(scene)
    bad = subprocess.run(
        [sys.executable, "-m", "ironrender", "check", str(scene)], capture_output=True, text=True
    )
    assert bad.returncode == 1
    lines = [line for line in bad.stdout.splitlines() if line.startswith("error:")]
    assert len(lines) == 2 and "Traceback" not in bad.stderr


def test_cli_user_error_is_one_line_not_traceback(tmp_path):
    # Loading through a command that needs a dataset: missing folder -> exit 2, one line.
    result = subprocess.run(
        [sys.executable, "-m", "ironrender", "check", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout


# ------------------------------------------------------------------- paths stay inside
@pytest.fixture
def opened(monkeypatch) -> list[Path]:
    """Every image file the decoders are asked to open, resolved."""
    import OpenEXR
    from PIL import Image

    paths: list[Path] = []
    pil_open, exr_file = Image.open, OpenEXR.File

    def record(opener):
        def wrapper(path, *args, **kwargs):
            if isinstance(path, str | Path):  # not OpenEXR.File(header, channels), a writer
                paths.append(Path(path).resolve())
            return opener(path, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(Image, "open", record(pil_open))
    monkeypatch.setattr(OpenEXR, "File", record(exr_file))
    return paths


def _rename_entry(root: Path, old: str, new: str) -> None:
    """Key ``old`` becomes ``new`` in train's camera file; its image and twin are removed."""
    _edit_cameras(root / "train", lambda data: data.__setitem__(new, data.pop(old)))
    (root / "train/image" / old).unlink()
    (root / "train/image" / old).with_suffix(".exr").unlink()


def _secret(tmp_path: Path) -> Path:
    """A valid image outside the dataset: a loader that followed a name there would succeed."""
    secret = tmp_path / "secret.png"
    write_image(secret, np.full((24, 32, 3), 0.5, np.float32))
    return secret


UNSAFE_NAMES = {
    "dotdot": lambda tmp_path: "../../../secret.png",  # scene/train/image -> tmp_path
    "etc-passwd": lambda tmp_path: "../" * 12 + "etc/passwd",
    "absolute": lambda tmp_path: str(tmp_path / "secret.png"),
    "backslash": lambda tmp_path: "..\\..\\..\\secret.png",
    "empty": lambda tmp_path: "",
    "nul": lambda tmp_path: "1\x00.png",
    "parent": lambda tmp_path: "..",
}


@pytest.mark.parametrize("case", sorted(UNSAFE_NAMES))
def test_names_outside_the_image_folder_are_refused_unopened(scene, tmp_path, opened, case):
    _secret(tmp_path)
    name = UNSAFE_NAMES[case](tmp_path)
    _rename_entry(scene, "1.png", name)
    problems = [p for p in check_dataset(scene) if p.fatal]
    assert [p.kind for p in problems] == ["unsafe-path"], problems
    assert "\n" not in str(problems[0]) and "\x00" not in str(problems[0])
    with pytest.raises(DatasetError, match="name") as info:
        load_split(scene, "train")
    assert "\n" not in str(info.value)
    root = scene.resolve()
    assert opened and all(root in path.parents for path in opened), opened


def test_links_to_files_outside_the_dataset_are_refused_unopened(scene, tmp_path, opened):
    secret = _secret(tmp_path)
    link = scene / "train/image/1.png"
    link.unlink()
    link.symlink_to(secret)
    outside_twin = tmp_path / "secret.exr"
    write_image(outside_twin, np.full((24, 32, 3), 0.5, np.float32))
    (scene / "test/image/0.exr").unlink()
    (scene / "test/image/0.exr").symlink_to(outside_twin)  # what linear=True would read
    problems = [p for p in check_dataset(scene) if p.fatal]
    assert [(p.kind, Path(p.path).name) for p in problems] == [
        ("unsafe-path", "1.png"),
        ("unsafe-path", "0.exr"),
    ]
    assert "outside the dataset folder" in problems[0].message
    for split in ("train", "test"):
        with pytest.raises(DatasetError, match="outside the dataset folder"):
            load_split(scene, split, linear=True)
    assert all(scene.resolve() in path.parents for path in opened), opened


def test_links_inside_the_dataset_are_fine(scene):
    # A split may share a file with the other split: the link stays inside the dataset.
    (scene / "test/image/1.png").unlink()
    (scene / "test/image/1.png").symlink_to(Path("../../train/image/1.png"))
    (scene / "test/image/1.exr").unlink()
    assert [p for p in check_dataset(scene) if p.fatal] == []
    assert len(load_split(scene, "test")) == 2


def test_a_linked_image_folder_outside_the_dataset_is_one_problem(scene, tmp_path):
    shutil.move(scene / "train/image", tmp_path / "elsewhere")
    (scene / "train/image").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    problems = [p for p in check_dataset(scene) if p.fatal]
    assert [(p.kind, Path(p.path).name) for p in problems] == [("unsafe-path", "image")]


# ------------------------------------------------------------------- harmless variants
def test_16_bit_pngs_load_with_16_bit_precision(tmp_path, rng):
    # Pillow decodes 16-bit colour PNGs to 8 bits; read_image keeps all 16 (random low bytes
    # here, so an 8-bit reading would be off by up to 1/255).
    from PIL import Image

    from tests.test_fuzz import png_bytes, png_end

    cams = ring_cameras(4, width=32, height=24)
    save_split(tmp_path, "train", [f"{i}.png" for i in range(4)], np.zeros((4, 24, 32, 3)), cams)
    values = rng.integers(0, 65536, (4, 24, 32, 4), dtype=np.uint16)
    image_dir = tmp_path / "train/image"
    chooser = random.Random(0)
    (image_dir / "0.png").write_bytes(png_end(png_bytes(values[0, ..., :3], chooser)))  # RGB
    (image_dir / "1.png").write_bytes(png_end(png_bytes(values[1], chooser)))  # RGBA
    (image_dir / "2.png").write_bytes(png_end(png_bytes(values[2, ..., :2], chooser)))  # LA
    Image.fromarray(values[3, ..., 0]).save(image_dir / "3.png")  # grey, Pillow's "I;16"
    expected = values[..., :3].astype(np.float64) / 65535.0
    expected[2:] = expected[2:, ..., :1]  # grey views
    split = load_split(tmp_path, "train")
    np.testing.assert_allclose(split.images.numpy(), expected**2.2, rtol=0, atol=1e-6)
