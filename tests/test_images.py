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


def test_srgb_curve_is_iec_61966_and_inverts_exactly(tmp_path):
    """sRGB against the standard's own numbers, both ways, and through the 8-bit files."""
    from ironrender.data.tone_curve import decode, encode, linear_of_8bit

    linear = np.array([0.0, 0.0031308, 0.01, 0.18, 0.5, 1.0])
    expected = [0.0, 0.04045, 0.0998528, 0.4613561, 0.7353570, 1.0]
    np.testing.assert_allclose(encode(linear, "srgb"), expected, atol=2e-6)
    np.testing.assert_allclose(decode(encode(linear, "srgb"), "srgb"), linear, atol=1e-9)
    table = linear_of_8bit("srgb")
    values = np.arange(256)
    np.testing.assert_array_equal(np.round(255 * encode(table, "srgb")), values)
    assert table[10] == pytest.approx(10 / 255 / 12.92) and table[10] > 3.5 * (10 / 255) ** 2.2
    # Files: written and read with the curve, 8-bit values exactly as the table says.
    write_image(tmp_path / "s.png", np.full((2, 2, 3), 0.18, np.float32), curve="srgb")
    assert np.asarray(Image.open(tmp_path / "s.png"))[0, 0, 0] == round(255 * 0.4613561)
    read = read_image(tmp_path / "s.png", curve="srgb")
    # bit-equal on purpose: read_image decodes 8-bit files by a lookup in this same table
    np.testing.assert_array_equal(read, table[round(255 * 0.4613561)])
    # torch agrees with numpy, and the loss's unclipped encoding has a finite slope at 0
    import torch

    x = torch.tensor([0.0, 0.002, 0.3, 1.4], requires_grad=True)
    y = encode(x, "srgb", clip=False)
    y.sum().backward()
    # torch's and numpy's pow kernels round differently (1 ulp at 0.3 on some CPUs): "the same
    # value" to a few float32 ulp, not bit for bit
    np.testing.assert_array_max_ulp(
        y.detach().numpy()[:3], encode(x.detach().numpy(), "srgb")[:3], maxulp=4
    )
    assert y[3] > 1.0 and torch.isfinite(x.grad).all() and x.grad[0] == pytest.approx(12.92)


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
