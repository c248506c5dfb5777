"""Nuisances of real captures: a dim room and a support table (off by default).

The default capture is unchanged by this code.

* ``room="dim"``: an off-centre box room of textured diffuse walls (albedo 0.3-0.6) enclosing
  every camera, 2.6-4.2 camera distances from the origin. Only the flash lights it, so the
  1/d^2 falloff makes it dim but not black, and its pattern varies across views and pixels.
* ``support_plane``: a horizontal square of textured diffuse albedo ``support_albedo`` (a
  table; 0.04 is a black cloth), half-size 1.75 (beyond the unit sphere), touching the object's
  lowest point along ``WORLD_UP``. Cameras are then sampled only above ``min_elevation``
  degrees (seen from the origin), so every camera is above the plane.

Ground truth stays the object's: ``gt/mesh.obj``, the material maps, the masks (the object's
footprint coverage; a separate coverage pass of the object alone, which equals "the object is
the first surface hit" because neither the plane nor the room can lie between a camera and the
object: :func:`check_nuisances_cannot_occlude`) and the relit views (the object alone).
``gt/light.json`` records the up axis, the room and the plane under ``scene``.
"""

from __future__ import annotations

import numpy as np

from ironrender.data.synth.assets import TexturedMesh
from ironrender.data.synth.config import WORLD_UP, SynthConfig
from ironrender.errors import IronError

# The dim room: an axis-aligned box, bounds per axis (x, y, z) in camera distances. Off-centre,
# so that walls behind the object lie at different distances (about 3.6-5.2 camera distances
# from the camera looking at them) and the background brightness differs between views. At
# these distances the walls of a default-sized capture have a median of about 27/255 in the
# gamma PNGs (per view 20-37): dark, not black.
ROOM_BOUNDS = ((-3.0, 4.2), (-2.6, 3.4), (-3.8, 3.0))
ROOM_ALBEDO_RANGE = (0.3, 0.6)
ROOM_TEXTURE_SIZE = 384  # texels per wall; a wall spans about 15-18 units
ROOM_TILE_PERIOD = 32  # texels between the darker grout lines of the wall tiles (about 1.3 units)
ROOM_GROUT_WIDTH = 2  # texels
ROOM_GROUT_SHADE = 0.35  # albedo factor of the pattern on grout lines
ROOM_NOISE_SIGMAS = (24.0, 6.0, 1.5)  # texels: blotches, smaller stains, fine grain
ROOM_TINT_RANGE = (0.8, 1.0)  # per-wall, per-channel factor of the pattern: faintly coloured
# The support: a square table top reaching beyond the unit sphere on every side.
SUPPORT_HALF_SIZE = 1.75
# The plane sits this far below the lowest vertex, so no triangle of the object (a flat hoof)
# coincides with it, where floating-point round-off would decide which surface is hit.
SUPPORT_GAP = 1e-4
SUPPORT_TEXTURE_SIZE = 256
SUPPORT_PLANKS = 6  # boards across the table
SUPPORT_CONTRAST = 0.3  # table albedo spans support_albedo * (1 +- contrast), mean ~ the albedo
SUPPORT_GRAIN_SIGMAS = ((0.8, 12.0), (2.0, 40.0))  # texels (across, along the boards)
# Distinct random streams for the nuisance textures (never shared with cameras or samplers).
ROOM_STREAM, SUPPORT_STREAM = 1, 2


def smooth_noise(rng: np.random.Generator, size: int, sigmas) -> np.ndarray:
    """Tileable multi-scale noise (size, size) in [0, 1].

    White noise blurred (wrapping around, so the texture repeats without seams) at each scale
    in ``sigmas`` (texels, a number or a (rows, columns) pair for streaks), each layer weighted
    equally by its standard deviation, then stretched to [0, 1].
    """
    from scipy.ndimage import gaussian_filter  # lazy: ~0.4 s, on `iron --help`'s path

    total = np.zeros((size, size))
    for sigma in sigmas:
        layer = gaussian_filter(rng.standard_normal((size, size)), sigma, mode="wrap")
        total += layer / layer.std()
    return (total - total.min()) / (total.max() - total.min())


def wall_texture(rng: np.random.Generator) -> np.ndarray:
    """A wall's linear albedo (H, W, 3) in ``ROOM_ALBEDO_RANGE``: stained tiles, faintly tinted.

    Structure at several scales (tiles, blotches, grain), so that the background differs
    between neighbouring pixels and views as a real room's does.
    """
    low, high = ROOM_ALBEDO_RANGE
    noise = smooth_noise(rng, ROOM_TEXTURE_SIZE, ROOM_NOISE_SIGMAS)
    grout_1d = np.arange(ROOM_TEXTURE_SIZE) % ROOM_TILE_PERIOD < ROOM_GROUT_WIDTH
    grout = grout_1d[:, None] | grout_1d[None, :]
    pattern = np.where(grout, ROOM_GROUT_SHADE * noise, noise)
    tint = rng.uniform(*ROOM_TINT_RANGE, size=3)
    return (low + (high - low) * pattern[..., None] * tint).astype(np.float32)


def support_texture(rng: np.random.Generator, albedo: float) -> np.ndarray:
    """A table top's linear albedo (H, W, 3), grey boards with grain, mean about ``albedo``."""
    size = SUPPORT_TEXTURE_SIZE
    grain = smooth_noise(rng, size, SUPPORT_GRAIN_SIGMAS)  # streaks along the rows
    board = (np.arange(size) * SUPPORT_PLANKS) // size
    board_shade = rng.uniform(0.0, 1.0, SUPPORT_PLANKS)[board][:, None]
    pattern = 0.6 * grain + 0.4 * board_shade
    gap = np.arange(size) % (size // SUPPORT_PLANKS) < 2
    pattern[gap] = 0.0  # the dark joints between boards
    values = albedo * (1.0 + SUPPORT_CONTRAST * (2.0 * pattern - 1.0))
    return np.repeat(values[..., None], 3, axis=-1).astype(np.float32)


def rectangle_to_world(center, axis_u, axis_v, half_u: float, half_v: float) -> np.ndarray:
    """4x4 ``to_world`` of Mitsuba's ``rectangle`` ([-1, 1]^2 at z = 0, normal +z, uv [0, 1]^2).

    Local x goes along ``axis_u``, y along ``axis_v``; the normal is ``axis_u x axis_v``.
    """
    u, v = np.asarray(axis_u, dtype=np.float64), np.asarray(axis_v, dtype=np.float64)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = half_u * u, half_v * v, np.cross(u, v), center
    return m


def room_walls(bounds: np.ndarray) -> list[np.ndarray]:
    """``rectangle_to_world`` of the six faces of the box ``bounds`` (3, 2), normals inward."""
    axes, half, walls = np.eye(3), (bounds[:, 1] - bounds[:, 0]) / 2, []
    for a in range(3):
        b, c = (a + 1) % 3, (a + 2) % 3
        # e_b x e_c = +e_a points inward from the low face, e_c x e_b = -e_a from the high one
        for side, (u, v) in ((0, (b, c)), (1, (c, b))):
            center = bounds.mean(axis=1)
            center[a] = bounds[a, side]
            walls.append(rectangle_to_world(center, axes[u], axes[v], half[u], half[v]))
    return walls


def support_height(mesh: TexturedMesh) -> float:
    """Height (along ``WORLD_UP``) of the support plane: just below the object's lowest point."""
    return float((mesh.vertices @ np.asarray(WORLD_UP)).min()) - SUPPORT_GAP


def support_to_world(height: float) -> np.ndarray:
    """The support square, centred under the origin, normal +Y (``WORLD_UP``)."""
    z, x = np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0])  # z x x = +Y
    half = SUPPORT_HALF_SIZE
    return rectangle_to_world(height * np.asarray(WORLD_UP), z, x, half, half)


def _diffuse_rectangle(mi, to_world: np.ndarray, albedo: np.ndarray) -> dict:
    # Two-sided: which side a rectangle faces then cannot blacken it (diffuse is one-sided).
    texture = {"type": "bitmap", "bitmap": mi.Bitmap(albedo), "raw": True}
    return {
        "type": "rectangle",
        "to_world": mi.ScalarTransform4f(to_world.tolist()),
        "bsdf": {"type": "twosided", "material": {"type": "diffuse", "reflectance": texture}},
    }


def nuisance_shapes(mi, config: SynthConfig, mesh: TexturedMesh) -> tuple[dict, dict]:
    """Mitsuba shapes of the room and support asked for, and their description for ``gt/``.

    Textures are drawn from ``config.seed`` (streams of their own: cameras and samplers do
    not move when a nuisance is switched on).
    """
    shapes: dict = {}
    info: dict = {
        "up": list(WORLD_UP),
        "room": None,
        "support_plane": None,
        "min_camera_elevation_degrees": None,
    }
    if config.room == "dim":
        rng = np.random.default_rng([config.seed, ROOM_STREAM])
        bounds = config.camera_distance * np.asarray(ROOM_BOUNDS)
        for i, to_world in enumerate(room_walls(bounds)):
            shapes[f"room_wall_{i}"] = _diffuse_rectangle(mi, to_world, wall_texture(rng))
        info["room"] = {
            "kind": "dim",
            "bounds": bounds.tolist(),
            "albedo_range": list(ROOM_ALBEDO_RANGE),
            "note": "axis-aligned box of textured diffuse walls, lit by the flash only",
        }
    if config.support_plane:
        rng = np.random.default_rng([config.seed, SUPPORT_STREAM])
        height = support_height(mesh)
        texture = support_texture(rng, config.support_albedo)
        shapes["support"] = _diffuse_rectangle(mi, support_to_world(height), texture)
        info["support_plane"] = {
            "height": height,
            "normal": list(WORLD_UP),
            "shape": "square",
            "half_size": SUPPORT_HALF_SIZE,
            "albedo": config.support_albedo,
            "albedo_range": [float(texture.min()), float(texture.max())],
            "note": "points x with dot(x, up) = height; the object touches it from above",
        }
        info["min_camera_elevation_degrees"] = config.min_elevation
    return shapes, info


def check_nuisances_cannot_occlude(centers: np.ndarray, info: dict) -> None:
    """Fail unless every camera is above the support plane and inside the room.

    Then neither can come between a camera and the object (the object lies above the plane
    and inside the room, both convex), so the object's coverage in a render of the object
    alone is exactly its coverage as the first visible surface: the ground-truth masks.
    """
    plane = info["support_plane"]
    if plane is not None and not (centers @ np.asarray(info["up"]) > plane["height"]).all():
        raise IronError("a camera lies below the support plane; raise min_elevation")
    room = info["room"]
    if room is not None:
        bounds = np.asarray(room["bounds"])
        if not ((centers > bounds[:, 0]) & (centers < bounds[:, 1])).all():
            raise IronError("a camera lies outside the room")
