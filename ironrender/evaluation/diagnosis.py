"""What the object's error on held-out photographs is made of: colour, camera, detail, outline.

For each held-out view (the 8-bit images ``iron eval`` writes, ``RUN/eval/views``, and the object
mask its ``psnr_object`` used, ``<view>_mask.png``), over the object's pixels ``M``:

* ``psnr``: the object PSNR as evaluated;
* ``psnr_colour``: after the best per-view colour correction of the render, ``p' = A p + b``
  (3x3 matrix and offset, least squares over ``M``): the error a camera model (exposure, white
  balance, a response curve's linear part) could remove is the gap ``psnr_colour - psnr`` (an
  upper bound: the fit also shrinks a blurred texture towards its mean, worth up to a few dB);
* ``psnr_camera``: after the best per-view fit of what a photometric camera model holds: a
  cubic response per channel, colour mixing and offset, and a colour-dependent quadratic falloff
  over the image (vignetting, or a light's falloff that the render gets wrong), least squares
  over ``M``; again an upper bound on what such a model could remove (its 24 numbers per view
  can also absorb some shading error);
* ``psnr_blurred``: both images blurred by the same Gaussian (``sigma`` pixels) before scoring:
  what is left is low-frequency error (shading, colour); the gap ``psnr_blurred - psnr`` is the
  error in fine detail (texture, sharp highlights);
* ``silhouette_share``: the share of the object's squared error within ``band`` pixels of the
  mask's edge, beside ``silhouette_area`` (the band's share of the object's pixels): a share well
  above its area means the outline (geometry, anti-aliasing, the room behind) dominates.

PSNR here is 10 log10(1 / MSE) on values in [0, 1] (the evaluation's 8-bit encoded images).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

DEFAULT_SIGMA = 2.0
DEFAULT_BAND = 3


@dataclass
class ViewDiagnosis:
    view: str
    pixels: int
    psnr: float
    psnr_colour: float
    psnr_camera: float
    psnr_blurred: float
    silhouette_share: float
    silhouette_area: float


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return 10.0 * np.log10(1.0 / max(mse, 1e-12))


def colour_corrected(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """``pred`` (N, 3) mapped by the least-squares ``A p + b`` closest to ``gt`` (N, 3)."""
    design = np.concatenate([pred, np.ones((len(pred), 1))], axis=1)
    solution, *_ = np.linalg.lstsq(design, gt, rcond=None)
    return design @ solution


def camera_corrected(pred: np.ndarray, gt: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """``pred`` (N, 3) through the least-squares fit of the module docstring's camera terms:
    ``[p, p^2, p^3, 1, p x, p y, p r^2]`` per output channel, ``xy`` (N, 2) the pixels'
    positions relative to the image centre in units of its width, ``r^2 = x^2 + y^2``."""
    x, y = xy[:, :1], xy[:, 1:]
    design = np.concatenate(
        [pred, pred**2, pred**3, np.ones_like(x), pred * x, pred * y, pred * (x**2 + y**2)],
        axis=1,
    )
    solution, *_ = np.linalg.lstsq(design, gt, rcond=None)
    return design @ solution


def diagnose_view(
    name: str,
    pred: np.ndarray,
    gt: np.ndarray,
    mask: np.ndarray,
    sigma: float = DEFAULT_SIGMA,
    band: int = DEFAULT_BAND,
) -> ViewDiagnosis:
    """The measures of the module docstring for one view; images (H, W, 3) in [0, 1]."""
    mask = mask.astype(bool)
    if mask.sum() < 16:
        raise ValueError(f"view {name}: the object covers {int(mask.sum())} pixels")
    p, g = pred[mask], gt[mask]
    blur = lambda image: ndimage.gaussian_filter(image, sigma=(sigma, sigma, 0))  # noqa: E731
    squared = ((pred - gt) ** 2).sum(axis=-1)
    edge = mask & ~ndimage.binary_erosion(mask, iterations=band, border_value=1)
    rows, cols = np.nonzero(mask)
    width = mask.shape[1]
    xy = np.stack([(cols + 0.5) / width - 0.5, (rows + 0.5 - mask.shape[0] / 2) / width], axis=1)
    return ViewDiagnosis(
        view=name,
        pixels=int(mask.sum()),
        psnr=_psnr(p, g),
        psnr_colour=_psnr(colour_corrected(p, g), g),
        psnr_camera=_psnr(camera_corrected(p, g, xy), g),
        psnr_blurred=_psnr(blur(pred)[mask], blur(gt)[mask]),
        silhouette_share=float(squared[edge].sum() / max(squared[mask].sum(), 1e-12)),
        silhouette_area=float(edge.sum() / mask.sum()),
    )


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0


def diagnose_run(
    run_dir: str | Path, sigma: float = DEFAULT_SIGMA, band: int = DEFAULT_BAND
) -> list[dict]:
    """One row per held-out view of ``RUN/eval/views`` that has its mask, plus a ``mean`` row."""
    views = Path(run_dir) / "eval" / "views"
    rows = []
    for pred_path in sorted(views.glob("*_pred.png")):
        name = pred_path.name[: -len("_pred.png")]
        mask_path = views / f"{name}_mask.png"
        if not mask_path.is_file():
            continue
        with Image.open(mask_path) as image:
            mask = np.asarray(image.convert("L")) >= 128
        pred, gt = _read(pred_path), _read(views / f"{name}_gt.png")
        rows.append(asdict(diagnose_view(name, pred, gt, mask, sigma, band)))
    if rows:
        mean = {key: float(np.mean([row[key] for row in rows])) for key in rows[0] if key != "view"}
        rows.append({"view": "mean", **mean})
    return rows
