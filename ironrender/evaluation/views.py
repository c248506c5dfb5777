"""Held-out views: render each test view, write the images, score them as IRON does.

**Image metrics** follow ``evaluation/eval_image_folder.py`` in IRON's code (IRON §4.2;
docs/architecture.md (A32)): prediction and
photograph are compared as the 8-bit gamma-encoded images written to disk,
``round(255 clip(x, 0, 1)^(1/2.2)) / 255`` (sRGB-encoded when the run says the capture is),
over the full image (black background included),
PSNR ``10 log10(1 / MSE)`` and SSIM (skimage settings), averaged over views; LPIPS-Alex where
the ``lpips`` package is importable. ``psnr_object`` is the PSNR over the object's pixels only
(the GT mask where the dataset has one, else the render's own object mask).

**Resolution**: views whose longest side exceeds ``max_size`` are evaluated at a scale
``s = max_size / longest side``: the model renders the camera ``Cameras.scaled(s)`` and the
photograph (and a GT mask) is reduced to that size by area averaging in linear radiance
(:func:`area_downsample`), which is what the scaled camera's pixel sees.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm.auto import tqdm

from ironrender.data.cameras import Cameras
from ironrender.data.images import write_data_png
from ironrender.data.tone_curve import DEFAULT_TONE_CURVE, encode
from ironrender.evaluation import metrics
from ironrender.evaluation.camera_gains import two_half_prediction
from ironrender.evaluation.config import EvalConfig
from ironrender.training.trained_model import OPACITY_THRESHOLD, TrainedModel

#: 8-bit PNG levels: metrics compare the images exactly as written to disk (IRON).
PNG_LEVELS = 255.0
#: A GT mask pixel belongs to the object when at least half of its footprint is covered.
MASK_THRESHOLD = 0.5


def encode_8bit(linear: np.ndarray | Tensor, curve: str = DEFAULT_TONE_CURVE) -> np.ndarray:
    """Linear radiance -> the 8-bit values a PNG stores (encoded by the capture's tone
    ``curve``: gamma 2.2 unless the run says sRGB), as floats in [0, 1]."""
    if isinstance(linear, Tensor):
        linear = linear.detach().cpu().numpy()
    encoded = encode(np.asarray(linear, dtype=np.float64), curve)
    return np.round(encoded * PNG_LEVELS) / PNG_LEVELS


def image_scores(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> dict:
    """PSNR, SSIM (and LPIPS if available, PSNR over ``mask`` if given) of encoded images."""
    scores = {"psnr": metrics.psnr(pred, gt), "ssim": metrics.ssim(pred, gt)}
    perceptual = metrics.lpips(pred, gt)
    if perceptual is not None:
        scores["lpips"] = perceptual
    if mask is not None and mask.any():
        scores["psnr_object"] = metrics.psnr(pred, gt, mask)
    return scores


def write_triplet(folder: Path, stem: str, pred: np.ndarray, gt: np.ndarray, gain: float):
    write_data_png(folder / f"{stem}_gt.png", gt)
    write_data_png(folder / f"{stem}_pred.png", pred)
    write_data_png(folder / f"{stem}_error.png", np.abs(pred - gt) * gain)


def mean_of(rows: list[dict], key: str) -> float | None:
    values = [row[key] for row in rows if key in row]
    return float(np.mean(values)) if values else None


def evaluation_scale(width: int, height: int, max_size: int) -> float:
    """``max_size / longest side`` for a view larger than ``max_size`` (> 0), else 1."""
    longest = max(width, height)
    return max_size / longest if 0 < max_size < longest else 1.0


def _area_weights(n_in: int, n_out: int, scale: float, device: torch.device) -> Tensor:
    """(n_out, n_in): output pixel ``a`` covers ``[a / s, (a + 1) / s)`` of the input, clipped to
    ``[0, n_in)``; its weight on input pixel ``[k, k + 1)`` is the overlap, rows summing to 1."""
    edges = (torch.arange(n_out + 1, dtype=torch.float64, device=device) / scale).clamp(max=n_in)
    k = torch.arange(n_in, dtype=torch.float64, device=device)
    overlap = torch.minimum(edges[1:, None], k + 1) - torch.maximum(edges[:-1, None], k)
    overlap = overlap.clamp_min(0.0)
    return overlap / overlap.sum(dim=1, keepdim=True)


def area_downsample(image: Tensor | np.ndarray, scale: float, size: tuple[int, int]) -> Tensor:
    """An (H, W, C) or (H, W) image reduced to ``size = (w, h)`` by area averaging (float64).

    Output pixel ``(a, b)`` is the mean of the input over ``[b / s, (b + 1) / s) x
    [a / s, (a + 1) / s)`` (``x`` then ``y``; partial pixels weighted by their overlap): the
    radiance a camera scaled by ``s`` (``Cameras.scaled``) integrates over its pixel.
    """
    image = torch.as_tensor(image).to(torch.float64)
    flat = image if image.ndim == 3 else image[..., None]
    rows = _area_weights(flat.shape[0], size[1], scale, flat.device)
    cols = _area_weights(flat.shape[1], size[0], scale, flat.device)
    out = torch.einsum("ah,hwc,bw->abc", rows, flat, cols)
    return out if image.ndim == 3 else out[..., 0]


def evaluate_views(
    model: TrainedModel,
    cameras: Cameras,
    images: Tensor,
    names: list[str],
    out_dir: Path,
    config: EvalConfig,
    masks: list[np.ndarray | None] | None = None,
    view_gains: Tensor | None = None,
) -> list[dict]:
    """Render each view, write the image triplet, return per-view scores.

    A view larger than ``config.max_size`` is rendered at ``Cameras.scaled(s)`` and compared with
    its photograph (and GT mask) reduced by :func:`area_downsample`. ``psnr_object`` takes the GT
    mask ``masks[i]`` where there is one, else the render's own object mask.

    A run with a camera model (``model.develop``) is seen through it. With ``view_gains``
    (views, 3; :mod:`ironrender.evaluation.camera_gains`, from the nearest training views) the
    headline scores and images are at those gains, and each row adds the scores at gain 1
    (``*_gain1``) and by the two-halves protocol (``*_halves``).
    """
    rows = []
    for i in tqdm(range(len(names)), desc="eval views", unit="view", disable=not config.progress):
        gt_mask = masks[i] if masks is not None else None
        scale = evaluation_scale(cameras.width(i), cameras.height(i), config.max_size)
        seen_by = cameras if scale == 1.0 else cameras.scaled(scale)
        if scale == 1.0:
            view = model.render(cameras, i)
            photo = images[i]
        else:
            size = (seen_by.width(i), seen_by.height(i))
            view = model.render(seen_by, i)
            photo = area_downsample(images[i], scale, size)
            if gt_mask is not None:
                gt_mask = area_downsample(gt_mask, scale, size).cpu().numpy() >= MASK_THRESHOLD
        gt = encode_8bit(photo, model.tone_curve)
        mask = gt_mask if gt_mask is not None else view.mask.detach().cpu().numpy()
        extra: dict[str, float] = {}
        if model.develop is None:
            pred = encode_8bit(view.color, model.tone_curve)
        else:

            def develop(
                color: Tensor, gains: Tensor | None, seen_by: Cameras = seen_by, i: int = i
            ) -> Tensor:
                return model.develop(color, seen_by, i, gains)

            pred = quantize(develop(view.color, None))
            if view_gains is not None:
                extra |= _renamed(image_scores(pred, gt, mask), "_gain1")
                photo_encoded = torch.from_numpy(gt).to(view.color)
                halves = two_half_prediction(view.color, photo_encoded, develop)
                extra |= _renamed(image_scores(quantize(halves), gt, mask), "_halves")
                pred = quantize(develop(view.color, view_gains[i].to(view.color)))
        stem = Path(names[i]).stem
        write_triplet(out_dir, stem, pred, gt, config.error_gain)
        write_data_png(out_dir / f"{stem}_mask.png", mask.astype(np.float32))  # for diagnosis
        rows.append({"view": stem} | image_scores(pred, gt, mask) | extra)
    return rows


def quantize(encoded: Tensor) -> np.ndarray:
    """Encoded values in [0, 1] -> the 8-bit levels a PNG stores, as floats in [0, 1]."""
    values = encoded.detach().cpu().numpy().astype(np.float64)
    return np.round(np.clip(values, 0.0, 1.0) * PNG_LEVELS) / PNG_LEVELS


def _renamed(scores: dict, suffix: str) -> dict:
    """PSNR scores under another protocol (``psnr_gain1``, ``psnr_object_halves``, ...)."""
    return {key + suffix: value for key, value in scores.items() if key.startswith("psnr")}


def resolution_note(cameras: Cameras, max_size: int) -> str:
    """The sizes the views were evaluated at, for ``info["resolution"]`` and the report."""
    notes = []
    for i in range(len(cameras)):
        width, height = cameras.width(i), cameras.height(i)
        scale = evaluation_scale(width, height, max_size)
        if scale == 1.0:
            notes.append(f"{width}x{height}, the photographs' size")
        else:
            small = cameras[i].scaled(scale)
            notes.append(
                f"{small.width()}x{small.height()}: photographs of {width}x{height} area-averaged"
                f" and cameras scaled by {scale:.4g} (max_size {max_size})"
            )
    return "; ".join(dict.fromkeys(notes))


def object_mask_note(masks: list[np.ndarray | None] | None, count: int) -> str:
    """Which mask ``psnr_object`` used, for ``info["object_mask"]`` and the report."""
    with_gt = 0 if masks is None else sum(m is not None for m in masks)
    parts = []
    if with_gt:
        parts.append(f"{with_gt} view(s): ground-truth mask (gt/masks/test)")
    if count - with_gt:
        parts.append(
            f"{count - with_gt} view(s): no ground-truth mask, the pixels the recovered geometry"
            " covers in the render (stage 2: sphere-traced hit or edge pixel; stage 1: opacity"
            f" > {OPACITY_THRESHOLD})"
        )
    return "psnr_object over " + "; ".join(parts)


def read_masks(gt_dir: Path, names: list[str]) -> list[np.ndarray | None] | None:
    folder = gt_dir / "masks" / "test"
    if not folder.is_dir():
        return None
    masks: list[np.ndarray | None] = []
    for name in names:
        path = folder / name
        if not path.is_file():
            masks.append(None)
            continue
        with Image.open(path) as image:
            masks.append(np.asarray(image.convert("L"), dtype=np.float64) / 255.0 >= MASK_THRESHOLD)
    return masks
