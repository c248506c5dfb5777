"""The look diagnosis tells a colour error, a detail error and a silhouette error apart."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from ironrender.evaluation.diagnosis import diagnose_run, diagnose_view

SIZE = 96


@pytest.fixture
def scene(rng):
    """A textured disc (the 'photograph') and its mask."""
    y, x = np.mgrid[:SIZE, :SIZE]
    mask = (x - 48) ** 2 + (y - 46) ** 2 < 36**2
    texture = 0.2 + 0.6 * rng.random((SIZE, SIZE, 3))
    texture = ndimage.gaussian_filter(texture, sigma=(0.7, 0.7, 0))  # detail a 2-px blur removes
    return np.where(mask[..., None], texture, 0.0), mask


def test_a_colour_error_is_explained_by_the_colour_correction(scene):
    gt, mask = scene
    matrix = np.array([[0.8, 0.1, 0.0], [0.05, 0.7, 0.05], [0.0, 0.1, 0.9]])
    pred = np.clip(gt @ matrix.T + 0.05, 0, 1)
    result = diagnose_view("v", pred, gt, mask)
    assert result.psnr < 30 and result.psnr_colour > 60  # all of it explained
    assert result.psnr_blurred < result.psnr + 6  # a colour error is not a detail error


def test_a_response_curve_and_vignetting_are_camera_errors(scene):
    """A camera's curve and darkened corners: beyond a colour matrix, within the camera fit."""
    gt, mask = scene
    y, x = np.mgrid[:SIZE, :SIZE]
    falloff = 1.0 - 0.9 * (((x + 0.5) / SIZE - 0.5) ** 2 + ((y + 0.5) / SIZE - 0.5) ** 2)
    pred = (gt ** (1 / 1.6)) * falloff[..., None]  # the render misses both
    result = diagnose_view("v", pred, gt, mask)
    assert result.psnr_camera > result.psnr_colour + 6 and result.psnr_camera > 38
    assert result.psnr_blurred < result.psnr + 6  # not a detail error


def test_a_blur_is_a_detail_error(scene):
    gt, mask = scene
    pred = ndimage.gaussian_filter(gt, sigma=(1.5, 1.5, 0))
    result = diagnose_view("v", pred, gt, mask, band=2)
    assert result.psnr_blurred > result.psnr + 8  # the same blur on both removes most of it
    # a matrix cannot sharpen (it only shrinks the blurred texture towards its mean a little)
    assert result.psnr_colour < result.psnr + 3
    assert result.psnr_camera < result.psnr + 4


def test_an_outline_error_lies_in_the_silhouette_band(scene):
    gt, mask = scene
    pred = gt.copy()
    grown = ndimage.binary_dilation(mask, iterations=2) & ~mask
    pred[ndimage.binary_erosion(mask, iterations=1) ^ mask] = 1.0  # the rim is wrong
    result = diagnose_view("v", pred, gt, mask)
    assert result.silhouette_share > 0.99 and result.silhouette_area < 0.2
    assert grown.any()


def test_diagnose_run_reads_the_evaluation_folder(scene, tmp_path):
    gt, mask = scene
    views = tmp_path / "eval" / "views"
    views.mkdir(parents=True)
    to_png = lambda a: Image.fromarray(np.round(a * 255).astype(np.uint8))  # noqa: E731
    for name, pred in (("000", gt * 0.8), ("001", gt)):
        to_png(gt).save(views / f"{name}_gt.png")
        to_png(pred).save(views / f"{name}_pred.png")
        to_png(mask.astype(float)).save(views / f"{name}_mask.png")
    to_png(gt).save(views / "002_pred.png")  # no mask: skipped
    rows = diagnose_run(tmp_path)
    assert [row["view"] for row in rows] == ["000", "001", "mean"]
    assert rows[1]["psnr"] > 90 and rows[0]["psnr"] < 30 and rows[0]["psnr_colour"] > 40
    assert rows[2]["psnr"] == pytest.approx((rows[0]["psnr"] + rows[1]["psnr"]) / 2)
