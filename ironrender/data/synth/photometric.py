"""What a real camera and room do to the light IRON models (all off by default).

Each option of :class:`~ironrender.data.synth.config.SynthConfig` below breaks one of IRON's
assumptions by a known amount, so that what it costs, and what each remedy recovers, is
measured against ground truth:

* ``flash_offset`` (x, y, z): the light sits there in every view's camera coordinates (scene
  units; OpenCV axes) instead of in the lens. A phone's LED is about 1 cm from its lens, a
  hot-shoe flash 5-15 cm above it. :func:`flash_offset_for_angle` gives the offset that puts the
  light ``degrees`` off the optical axis as seen from the object's centre. The cameras carry it
  (``"flash"`` in ``cam_dict_norm.json``).
* ``ambient``: a uniform room light (Mitsuba ``constant`` emitter, radiance ``L``) whose
  irradiance on an unoccluded surface, ``pi L``, is this fraction of the flash's at the object's
  centre, ``I / d^2`` (d = the camera distance). It is rendered in a separate pass and added
  (rendering is linear; two emitters in one pass would sample the flash only half the time and
  make it noisy). The background shows ``L``: the room is as bright as its light.
* ``exposure_jitter`` j and ``white_balance_jitter`` w: each training photograph is multiplied
  by a gain ``g ~ U(1 - j, 1 + j)`` (all channels) times ``U(1 - w, 1 + w)`` per channel (an
  automatic exposure and white balance).
* ``noise`` s: shot noise in the linear sensor values, ``x + s sqrt(x) N(0, 1)`` (standard
  deviation s at full scale, ``s sqrt(x)`` below), before the tone curve.
* ``tone_curve`` (``"gamma2.2"`` or ``"srgb"``) encodes the 8-bit files of both splits, and
  ``jpeg_quality`` (1-100; 0 = PNG) stores the training photographs as JPEG.

Gains, noise and JPEG touch the training photographs only: the held-out test views stay clean
at the nominal exposure (ground truth for held-out evaluation, as ``gt/``).
"""

from __future__ import annotations

import math

import numpy as np

from ironrender.data.synth.config import SynthConfig

PHOTOMETRIC_STREAM = 3  # random stream of the gains and noise (never shared; see nuisances.py)


def flash_offset_for_angle(degrees: float, camera_distance: float) -> tuple[float, float, float]:
    """The offset straight above the lens (camera -y) that puts the light ``degrees`` off the
    optical axis seen from the object's centre, ``camera_distance`` away: ``d tan(angle)``."""
    return (0.0, -camera_distance * math.tan(math.radians(degrees)), 0.0)


def has_flash_offset(config: SynthConfig) -> bool:
    return any(float(x) != 0.0 for x in config.flash_offset)


def ambient_radiance(config: SynthConfig, intensity: float) -> float:
    """The constant emitter's radiance ``L = ambient I / (pi d^2)`` for a flash of ``intensity``."""
    return config.ambient * intensity / (math.pi * config.camera_distance**2)


def ambient_emitter(config: SynthConfig, intensity: float) -> dict | None:
    """Mitsuba's uniform environment of :func:`ambient_radiance`, or None without ambient light."""
    if config.ambient <= 0:
        return None
    value = ambient_radiance(config, intensity)
    return {"type": "constant", "radiance": {"type": "rgb", "value": [value] * 3}}


def camera_gains(config: SynthConfig, views: int, seed: int) -> np.ndarray:
    """Per-view RGB gains (views, 3): exposure jitter times white-balance jitter; ones when
    both are 0."""
    rng = np.random.default_rng([seed, PHOTOMETRIC_STREAM])
    exposure = rng.uniform(1 - config.exposure_jitter, 1 + config.exposure_jitter, (views, 1))
    balance = rng.uniform(
        1 - config.white_balance_jitter, 1 + config.white_balance_jitter, (views, 3)
    )
    return exposure * balance


def develop(linear: np.ndarray, gains: np.ndarray, noise: float, seed: int) -> np.ndarray:
    """Photographs (N, H, W, 3) as the sensor records them before the tone curve: ``gains``
    (N, 3) applied, then shot noise ``noise sqrt(x) N(0, 1)``; not clipped (the encoder is)."""
    out = linear * gains[:, None, None, :].astype(np.float32)
    if noise > 0:
        rng = np.random.default_rng([seed, PHOTOMETRIC_STREAM, 1])
        sigma = noise * np.sqrt(np.clip(out, 0.0, None))
        out = out + sigma * rng.standard_normal(out.shape).astype(np.float32)
    return out.astype(np.float32)


def photometric_info(config: SynthConfig, gains: np.ndarray, ambient_l: float) -> dict:
    """What ``gt/light.json`` says of these nuisances (``gains`` per training view)."""
    return {
        "flash_offset_camera": list(config.flash_offset),
        "flash_angle_degrees": math.degrees(
            math.atan2(math.hypot(*config.flash_offset[:2]), config.camera_distance)
        ),
        "ambient_fraction": config.ambient,
        "ambient_radiance": ambient_l,
        "tone_curve": config.tone_curve,
        "train_gains": gains.tolist(),
        "noise": config.noise,
        "jpeg_quality": config.jpeg_quality,
        "note": "gains, noise and JPEG touch the training photographs only; test views are clean",
    }
