"""Image files: gamma conventions checked against values written by PIL and OpenEXR directly."""

from __future__ import annotations

import numpy as np
import OpenEXR
import pytest
from PIL import Image

from ironrender.data.images import read_image, write_image
from ironrender.errors import DatasetError


def test_png_is_decoded_with_gamma_2_2(tmp_path):
    Image.fromarray(np.full((2, 3, 3), 128, np.uint8)).save(tmp_path / "a.png")
    np.testing.assert_allclose(read_image(tmp_path / "a.png"), (128 / 255) ** 2.2, rtol=1e-6)


def test_png_is_written_gamma_encoded(tmp_path):
    write_image(tmp_path / "b.png", np.full((2, 2, 3), 0.25, np.float32))
    value = np.asarray(Image.open(tmp_path / "b.png"))[0, 0, 0]
    assert value == round(255 * 0.25 ** (1 / 2.2))


def test_exr_is_real_openexr_and_linear(tmp_path, rng):
    data = rng.random((4, 5, 3), dtype=np.float32) * 7.0  # HDR values above 1 survive
    write_image(tmp_path / "c.exr", data)
    assert (tmp_path / "c.exr").read_bytes()[:4] == b"\x76\x2f\x31\x01"  # OpenEXR magic
    with OpenEXR.File(str(tmp_path / "c.exr")) as exr:
        np.testing.assert_array_equal(exr.channels()["RGB"].pixels, data)
    np.testing.assert_array_equal(read_image(tmp_path / "c.exr"), data)


def test_missing_and_corrupt_files_are_user_errors(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DatasetError, match="cannot read"):
        read_image(tmp_path / "bad.png")
