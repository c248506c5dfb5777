"""Exposure and white balance of a held-out photograph: two protocols, both reported.

A run that fits per-photograph gains (:class:`~ironrender.training.photometric.CameraGains`)
knows the exposure and white balance of each training photograph, not of a held-out one; at
gain 1 the held-out photograph's own deviation stays in its score, however well the model
explains the rest. Two ways to give it gains, neither of which lets the materials or the shape
see the photograph:

* **nearest views** (the headline figures): the geometric mean of the gains of the ``k``
  training photographs taken nearest to it (camera centres), weighted by inverse distance. A
  prediction: it uses no pixel of the held-out photograph, and is right when exposure and white
  balance drift slowly along the capture (a person walking around the object).
* **two halves** (the NeRF in the Wild protocol, Martin-Brualla et al. 2021): three gains
  fitted on the photograph's left half score its right half, and the reverse; every pixel is
  scored once, by gains that never saw it. An upper bound on what per-photograph gains can do.

The fit is per channel over ``log g`` in [-``GAIN_RANGE``, ``GAIN_RANGE``] (a grid search then
a finer one; the camera's curve makes the loss non-quadratic), on all pixels of the half as
training fits them, in the encoded domain the scores use.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from ironrender.data.camera_file import split_cameras
from ironrender.data.cameras import Cameras
from ironrender.errors import DatasetError

NEAREST_VIEWS = 3
GAIN_RANGE = 1.0  # log gain: 0.37x to 2.7x
COARSE_STEPS = 41
FINE_STEPS = 21

#: ``develop(linear render (H, W, 3), gains (3,)) -> encoded prediction (H, W, 3)``.
Develop = Callable[[Tensor, Tensor], Tensor]


def training_cameras(data_dir) -> Cameras:
    """The training split's cameras in training order (the order of the fitted gains)."""
    cameras = split_cameras(Path(data_dir), "train")
    if cameras is None:
        raise DatasetError(f"{data_dir}/train: no camera file, no gains to interpolate")
    return cameras


def nearest_view_gains(
    train_centers: Tensor, train_gains: Tensor, center: Tensor, k: int = NEAREST_VIEWS
) -> Tensor:
    """Gains (3,) for a photograph taken at ``center``: the inverse-distance weighted geometric
    mean of the ``k`` nearest training photographs' (``train_gains`` (N, 3))."""
    distance = (train_centers - center).norm(dim=-1)
    nearest = distance.topk(min(k, len(distance)), largest=False)
    weights = 1.0 / nearest.values.clamp_min(1e-6)
    weights = weights / weights.sum()
    logs = train_gains[nearest.indices].log()
    return (weights[:, None] * logs).sum(0).exp()


def fit_gains(render: Tensor, photo: Tensor, develop: Develop, columns: slice) -> Tensor:
    """Per-channel gains (3,) minimising the squared encoded error of ``develop(render, g)``
    against ``photo`` (both (H, W, 3), ``photo`` encoded) over the pixel ``columns``: a grid
    over ``log g``, then a finer grid around each channel's best. The whole image is developed
    (the vignetting depends on where a pixel is), the error taken over the columns."""
    center = render.new_zeros(3)
    width = GAIN_RANGE
    target = photo[:, columns]
    for steps in (COARSE_STEPS, FINE_STEPS):
        candidates = torch.linspace(-width, width, steps, dtype=render.dtype)
        errors = torch.stack(
            [
                ((develop(render, (center + t).exp())[:, columns] - target) ** 2).sum((0, 1))
                for t in candidates
            ]
        )  # (steps, 3)
        center = center + candidates[errors.argmin(dim=0)]
        width = 2.0 * width / (steps - 1)
    return center.exp()


def two_half_prediction(render: Tensor, photo: Tensor, develop: Develop) -> Tensor:
    """The encoded prediction (H, W, 3) whose left half is developed at gains fitted on the
    photograph's right half, and the reverse."""
    half = render.shape[1] // 2
    left, right = slice(0, half), slice(half, None)
    from_right = develop(render, fit_gains(render, photo, develop, right))
    from_left = develop(render, fit_gains(render, photo, develop, left))
    return torch.cat([from_right[:, left], from_left[:, right]], dim=1)
