"""Latitude-longitude environment maps in Mitsuba 3's convention, and a procedural sky.

Convention (Mitsuba 3 ``envmap`` emitter with an identity ``to_world``; +Y is up): a world
direction ``d = (x, y, z)`` (pointing *away* from the scene, towards the sky) maps to

    u = atan2(x, -z) / (2 pi)   (wrapped into [0, 1)),      v = acos(y) / pi.

Mitsuba stores the map as *samples* (measured against its envmap.cpp): column ``i`` sits at
``u = (i + 0.5) / W`` (texel centres, periodic in u) but row ``j`` sits at ``v = j / (H - 1)``, so
row 0 is exactly the zenith and row H-1 exactly the nadir; radiance between samples is bilinear.
:func:`sample_envmap` reproduces that lookup. Values are linear radiance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ironrender.config import option


def latlong_directions(width: int, height: int) -> np.ndarray:
    """Unit world directions (H, W, 3) of every sample of a (H, W) map (Mitsuba's layout)."""
    u = (np.arange(width) + 0.5) / width
    v = np.arange(height) / (height - 1)
    phi = 2.0 * math.pi * u[None, :]
    theta = math.pi * v[:, None]
    sin_theta = np.sin(theta)
    x = sin_theta * np.sin(phi)
    y = np.cos(theta) * np.ones_like(phi)
    z = -sin_theta * np.cos(phi)
    return np.stack([x, y, z], axis=-1)


def direction_to_uv(directions: np.ndarray) -> np.ndarray:
    """Continuous (u, v) in [0, 1)^2 of unit directions (..., 3); the inverse of the map above."""
    x, y, z = directions[..., 0], directions[..., 1], directions[..., 2]
    u = np.mod(np.arctan2(x, -z) / (2.0 * math.pi), 1.0)
    v = np.arccos(np.clip(y, -1.0, 1.0)) / math.pi
    return np.stack([u, v], axis=-1)


def sample_envmap(envmap: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Radiance (..., 3) of a (H, W, 3) map towards unit ``directions`` (..., 3), as Mitsuba does.

    Bilinear between samples, periodic in u, clamped in v (see the module docstring).
    """
    height, width = envmap.shape[:2]
    uv = direction_to_uv(directions)
    x = uv[..., 0] * width - 0.5  # continuous column index
    y = uv[..., 1] * (height - 1)  # continuous row index
    x0 = np.floor(x)
    y0 = np.clip(np.floor(y), 0, height - 2)
    wx, wy = (x - x0)[..., None], np.clip(y - y0, 0.0, 1.0)[..., None]
    i0 = x0.astype(np.int64) % width
    i1 = (i0 + 1) % width
    j0 = y0.astype(np.int64)
    j1 = j0 + 1
    top = (1 - wx) * envmap[j0, i0] + wx * envmap[j0, i1]
    bottom = (1 - wx) * envmap[j1, i0] + wx * envmap[j1, i1]
    return (1 - wy) * top + wy * bottom


def elevation_azimuth_to_direction(elevation_deg: float, azimuth_deg: float) -> np.ndarray:
    """World direction at ``elevation`` above the horizon (XZ plane) and ``azimuth`` about +Y.

    Azimuth 0 points to -Z (the centre column of the map, u = 0.5 is +Z), increasing towards +X.
    """
    e, a = math.radians(elevation_deg), math.radians(azimuth_deg)
    return np.array([math.cos(e) * math.sin(a), math.sin(e), -math.cos(e) * math.cos(a)])


@dataclass
class SkyConfig:
    """A procedural outdoor HDR map: sky gradient, a sun blob and a darker ground.

    Radiances are linear; the sun's peak radiance is high so that it casts clear, directional
    shading (its solid angle is about pi * sigma^2 = 0.015 sr at 4 degrees).
    """

    width: int = option(256, "width of the lat-long map, pixels (height W/2 + 1)")
    zenith: tuple[float, float, float] = option((0.25, 0.45, 1.0), "sky radiance at the zenith")
    horizon: tuple[float, float, float] = option((1.0, 0.95, 0.9), "sky radiance at the horizon")
    ground: tuple[float, float, float] = option((0.30, 0.25, 0.20), "radiance of the ground")
    sun_color: tuple[float, float, float] = option((1.0, 0.92, 0.8), "colour of the sun")
    sun_radiance: float = option(400.0, "the sun's peak radiance")
    sun_sigma_deg: float = option(4.0, "angular width of the sun blob, degrees")
    sun_elevation_deg: float = option(40.0, "the sun's elevation, degrees")
    sun_azimuth_deg: float = option(60.0, "the sun's azimuth, degrees")
    gradient_exponent: float = option(
        0.5, "exponent of the sky gradient in sin(elevation): < 1 keeps the horizon bright"
    )
    horizon_blend: float = option(
        0.05, "width (in sin(elevation)) of the soft ground-sky transition at the horizon"
    )


def procedural_sky(config: SkyConfig | None = None) -> np.ndarray:
    """A lat-long HDR environment map (H = W/2 + 1, W, 3), float32, linear radiance.

    H = W/2 + 1 rows put the horizon exactly on the middle row (rows sample v = j / (H - 1)).
    """
    config = config or SkyConfig()
    directions = latlong_directions(config.width, config.width // 2 + 1)
    up = directions[..., 1:2]  # sin(elevation)
    t = np.clip(up, 0.0, 1.0) ** config.gradient_exponent
    sky = (1.0 - t) * np.array(config.horizon) + t * np.array(config.zenith)
    blend = np.clip(0.5 + up / (2.0 * config.horizon_blend), 0.0, 1.0)
    radiance = blend * sky + (1.0 - blend) * np.array(config.ground)
    sun = elevation_azimuth_to_direction(config.sun_elevation_deg, config.sun_azimuth_deg)
    angle = np.arccos(np.clip(directions @ sun, -1.0, 1.0))[..., None]
    sigma = math.radians(config.sun_sigma_deg)
    radiance = radiance + config.sun_radiance * np.array(config.sun_color) * np.exp(
        -0.5 * (angle / sigma) ** 2
    )
    return radiance.astype(np.float32)
