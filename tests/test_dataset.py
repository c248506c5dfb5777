"""IRON dataset layout: exact round-trip, and `iron check` naming every kind of breakage."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

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


BREAKAGES = {
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
}


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
