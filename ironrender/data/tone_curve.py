"""How an 8-bit photograph encodes radiance: the camera's tone curve.

Two curves, for numpy arrays and torch tensors alike (values in [0, 1] both sides):

* ``"gamma2.2"`` (IRON's assumption and the project's default): ``v = x^(1/2.2)``,
  ``x = v^2.2``.
* ``"srgb"`` (IEC 61966-2-1, what cameras and phones write into JPEGs): a linear toe below
  ``x = 0.0031308``, then ``v = 1.055 x^(1/2.4) - 0.055``; decoding is its exact inverse,
  ``x = v / 12.92`` below ``v = 0.04045``, ``((v + 0.055) / 1.055)^2.4`` above.

Both training stages compare renders with photographs in the photographs' own encoding, not
in linear radiance (IRON's ``gamma_pred``): an error in a shadow then weighs what it weighs to
the eye. :func:`prediction_to_loss_domain` and :func:`target_to_loss_domain` are that domain,
for every stage (``curve=None``: HDR captures, compared in linear radiance).

The two differ most in the shadows: the 8-bit value 10 decodes to 0.00077 under gamma 2.2 and
0.0030 under sRGB (4x), value 128 to 0.218 and 0.216. A model that decodes an sRGB camera's
photographs with gamma 2.2 darkens every shadow and dim albedo, which no BRDF can explain.

Decoding an 8-bit sample is a table lookup (:func:`linear_of_8bit`), computed by the same
operations as :func:`decode`, so photographs kept as bytes decode to exactly the same numbers.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import torch
from torch import Tensor

GAMMA = 2.2
ToneCurve = Literal["gamma2.2", "srgb"]
"""A configuration field's tone curve (checked by :func:`ironrender.config.check_choices`)."""
TONE_CURVES = get_args(ToneCurve)
DEFAULT_TONE_CURVE = "gamma2.2"

GAMMA_EPS = 1e-6
"""Added before ``x^(1/2.2)`` in a render's loss domain, so that the curve's derivative stays
finite at black (IRON)."""

SRGB_LINEAR_LIMIT = 0.0031308  # linear value where the toe ends
SRGB_ENCODED_LIMIT = 0.04045  # the same point, encoded
SRGB_TOE_SLOPE = 12.92
SRGB_EXPONENT = 2.4
SRGB_OFFSET = 0.055


def check_curve(curve: str) -> str:
    if curve not in TONE_CURVES:
        raise ValueError(f"tone curve must be one of {TONE_CURVES}, not {curve!r}")
    return curve


def encode(linear, curve: str = DEFAULT_TONE_CURVE, clip: bool = True):
    """Linear radiance -> encoded values, numpy or torch alike: in [0, 1] with ``clip``, else
    only negatives are cut (a prediction above white keeps its gradient in a loss)."""
    check_curve(curve)
    if isinstance(linear, Tensor):
        x = linear.clamp(0.0, 1.0) if clip else linear.clamp_min(0.0)
    else:
        x = np.clip(linear, 0.0, 1.0 if clip else None)
    if curve == "gamma2.2":
        return x ** (1.0 / GAMMA)
    where = torch.where if isinstance(x, Tensor) else np.where
    # the power branch evaluated at >= the limit only, so that its gradient stays finite at 0
    if isinstance(x, Tensor):
        safe = x.clamp_min(SRGB_LINEAR_LIMIT)
    else:
        safe = np.maximum(x, SRGB_LINEAR_LIMIT)
    power = (1.0 + SRGB_OFFSET) * safe ** (1.0 / SRGB_EXPONENT) - SRGB_OFFSET
    return where(x <= SRGB_LINEAR_LIMIT, SRGB_TOE_SLOPE * x, power)


def decode(encoded, curve: str = DEFAULT_TONE_CURVE):
    """Encoded values in [0, 1] -> linear radiance, numpy or torch alike (the inverse of
    :func:`encode` on [0, 1])."""
    check_curve(curve)
    v = encoded.clamp(0.0, 1.0) if isinstance(encoded, Tensor) else np.clip(encoded, 0.0, 1.0)
    if curve == "gamma2.2":
        return v**GAMMA
    where = torch.where if isinstance(v, Tensor) else np.where
    power = ((v + SRGB_OFFSET) / (1.0 + SRGB_OFFSET)) ** SRGB_EXPONENT
    return where(v <= SRGB_ENCODED_LIMIT, v / SRGB_TOE_SLOPE, power)


def linear_of_8bit(curve: str = DEFAULT_TONE_CURVE) -> np.ndarray:
    """The linear radiance of every 8-bit value under ``curve`` (256 float32 entries)."""
    values = np.arange(256, dtype=np.float32) / 255.0
    return np.ascontiguousarray(decode(values, curve), dtype=np.float32)


def prediction_to_loss_domain(linear: Tensor, curve: str | None) -> Tensor:
    """A render in the domain its loss compares: ``curve=None`` (HDR) linear as it is;
    gamma 2.2 ``(max(x, 0) + eps)^(1/2.2)`` (IRON: a finite slope at black); sRGB its curve
    (finite slope at black already). Not clipped at white: a prediction brighter than the
    photograph's white keeps its gradient."""
    if curve is None:
        return linear
    if curve == "gamma2.2":
        return (linear.clamp_min(0.0) + GAMMA_EPS) ** (1.0 / GAMMA)
    return encode(linear, curve, clip=False)


def target_to_loss_domain(linear, curve: str | None):
    """A photograph in its loss domain: for 8-bit files the encoded values ``v / 255`` they
    were read from (``encode`` of their decoding, clipped to [0, 1]); ``curve=None``: linear."""
    if curve is None:
        return linear
    return encode(linear, curve)


def target_to_loss_domain_(linear: Tensor, curve: str | None) -> Tensor:
    """:func:`target_to_loss_domain` overwriting ``linear`` where the curve allows it (gamma:
    the same elementwise operations in place, so the same numbers); returns the result."""
    if curve == "gamma2.2":
        return linear.clamp_(0.0, 1.0).pow_(1.0 / GAMMA)
    return target_to_loss_domain(linear, curve)
