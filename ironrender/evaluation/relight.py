"""Rendering the EXPORTED asset with Mitsuba 3: relighting and turntable frames.

What is evaluated is the file a user gets, not the networks: ``RUN/export/scene.xml`` is
loaded with Mitsuba (its mesh, UVs and the ``blendbsdf`` that reproduces the project's GGX
model from the baked textures, :mod:`ironrender.export.writers`), and only its shape (with that
BSDF attached) is moved into new scenes:

* **relighting**: the shape under the dataset's environment map (``gt/envmap.exr``, Mitsuba's
  lat-long layout, :mod:`ironrender.data.envmap`) seen from the test cameras, with the same
  integrator the synthetic ground truth used (``direct``: emitter + BSDF samples with MIS,
  shadows, no interreflection; emitter hidden so the background is black);
* **turntable**: the shape under a point light at the camera centre (the capture setting,
  intensity from ``light.json``), cameras on a circle about the capture's own up direction
  (:func:`capture_up`; a capture's world frame has no preferred axis, and an imported one often
  has its up along -Y).

Cameras: our OpenCV world-to-camera matrices become Mitsuba ``perspective`` sensors through
:func:`ironrender.data.mitsuba_backend.perspective_sensor` (``to_world = C2W diag(-1, -1, 1)``,
horizontal field of view ``2 atan(W / 2 f_x)``, box filter, so pixel ``(i, j)`` is the mean
radiance over ``[i, i+1) x [j, j+1)`` whose centre is our ray through ``(i + 0.5, j + 0.5)``);
tests check the result against :meth:`Cameras.project`.

Images come back as linear RGB float32 (N, H, W, 3). Call nothing here before
:func:`~ironrender.data.mitsuba_backend.select_variant` has run (these functions call it).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ironrender.data.cameras import Cameras, intrinsics_from_fov, look_at
from ironrender.errors import IronError
from ironrender.export.writers import LIGHT_NAME, SCENE_NAME

#: Single-bounce direct lighting, as the synthetic ground truth (``iron synth``) renders it.
RELIGHT_INTEGRATOR = {"type": "direct", "hide_emitters": True}
#: Flash turntable: emitter samples only (a point light is a delta emitter, so each is exact).
FLASH_INTEGRATOR = {"type": "direct", "emitter_samples": 1, "bsdf_samples": 0}
#: Distinct sampler seeds per rendered view, offset per purpose so no two renders share one.
RELIGHT_SEED_OFFSET = 0
TURNTABLE_SEED_OFFSET = 10_000
#: Below this norm the mean of the cameras' up vectors has no direction (cameras rolled freely).
MIN_MEAN_UP = 1e-6


@dataclass
class TurntableConfig:
    """Turntable frames: ``frames`` azimuths evenly spaced over 360 degrees at ``elevation``."""

    frames: int = 6
    size: int = 256
    spp: int = 64
    elevation_deg: float = 20.0
    distance: float = 3.0
    fov_deg: float = 40.0


def _mitsuba():
    from ironrender.data.mitsuba_backend import select_variant

    select_variant()
    import mitsuba as mi

    return mi


def exported_shape(export_dir: str | Path):
    """The mesh of ``export_dir/scene.xml`` with its BSDF attached (a ``mi.Shape``)."""
    mi = _mitsuba()
    scene_path = Path(export_dir) / SCENE_NAME
    if not scene_path.is_file():
        raise IronError(f"{scene_path}: no exported Mitsuba scene; run `iron export` first")
    logger = mi.logger()
    level = logger.log_level()
    # The export stores 2 x albedo for blendbsdf (writers.py), so Mitsuba warns about texels
    # above 1 on every load; that is by design, not a problem to report.
    logger.set_log_level(mi.LogLevel.Error)
    try:
        shapes = mi.load_file(str(scene_path)).shapes()
    finally:
        logger.set_log_level(level)
    if len(shapes) != 1:
        raise IronError(f"{scene_path}: expected one shape, found {len(shapes)}")
    return shapes[0]


def exported_light_intensity(export_dir: str | Path) -> float:
    """The flash intensity ``I`` written by the export (``light.json``)."""
    path = Path(export_dir) / LIGHT_NAME
    if not path.is_file():
        raise IronError(f"{path}: no light.json in the export folder")
    return float(json.loads(path.read_text())["light_intensity"])


def mitsuba_sensor(cameras: Cameras, index: int, spp: int) -> dict:
    """Mitsuba ``perspective`` sensor of camera ``index`` (see the module docstring).

    Centred principal point and square pixels only, as
    :func:`~ironrender.data.mitsuba_backend.perspective_sensor` (ValueError otherwise).
    """
    from ironrender.data.mitsuba_backend import perspective_sensor

    K = cameras.intrinsics[index].detach().cpu().double().numpy()
    c2w = cameras.c2w[index].detach().cpu().double().numpy()
    return perspective_sensor(K, c2w, cameras.width(index), cameras.height(index), spp)


def _render_each(mi, scene_dict: dict, cameras: Cameras, spp: int, seed: int, move_light: bool):
    """Render every camera; the scene is rebuilt per view (the shape object is shared, so only
    the sensor and the light are new), which also allows cameras of different sizes."""
    images = []
    for i in range(len(cameras)):
        scene_dict = dict(scene_dict, sensor=mitsuba_sensor(cameras, i, spp))
        if move_light:
            position = cameras.centers[i].detach().cpu().double().tolist()
            scene_dict["light"] = dict(scene_dict["light"], position=position)
        scene = mi.load_dict(scene_dict)
        images.append(np.array(mi.render(scene, seed=seed + i), dtype=np.float32)[..., :3])
    return np.stack(images)


def render_relit(
    export_dir: str | Path,
    envmap: np.ndarray,
    cameras: Cameras,
    spp: int = 64,
    seed: int = 0,
) -> np.ndarray:
    """The exported asset under the lat-long ``envmap`` (H, W, 3) linear, seen from ``cameras``.

    Returns (N, H, W, 3) linear radiance, black background (emitter hidden).
    """
    mi = _mitsuba()
    shape = exported_shape(export_dir)
    envmap = np.ascontiguousarray(envmap, dtype=np.float32)
    scene = {
        "type": "scene",
        "integrator": dict(RELIGHT_INTEGRATOR),
        "light": {"type": "envmap", "bitmap": mi.Bitmap(envmap)},
        "asset": shape,
    }
    return _render_each(mi, scene, cameras, spp, seed + RELIGHT_SEED_OFFSET, move_light=False)


def capture_up(cameras: Cameras) -> np.ndarray:
    """The capture's up direction (3,): the normalised mean of the cameras' up vectors.

    With OpenCV axes the camera's y points down the image, so camera ``i`` shows world direction
    ``u_i = -R_i^T e_y = -(row 1 of R_i)`` as up (``R_i`` the rotation of its W2C). A person holds
    the camera upright, so ``normalize(sum_i u_i)`` is the world's up; on a ring of views the
    tilts towards the object cancel. Should the vectors cancel altogether (cameras rolled
    freely), the first camera's up is returned.
    """
    ups = -cameras.w2c[:, 1, :3].detach().cpu().double().numpy()
    mean = ups.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    if norm < MIN_MEAN_UP:
        return ups[0] / np.linalg.norm(ups[0])
    return mean / norm


def turntable_axes(up: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Orthonormal ``(side, up, front)``: ``front`` = world +Z made perpendicular to ``up``
    (+X when up is along Z), ``side = up x front``; ``up = +Y`` gives the world axes X, Y, Z."""
    up = np.asarray(up, dtype=np.float64)
    up = up / np.linalg.norm(up)
    reference = np.array([0.0, 0.0, 1.0]) if abs(up[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    front = reference - (reference @ up) * up
    front /= np.linalg.norm(front)
    return np.cross(up, front), up, front


def turntable_cameras(
    config: TurntableConfig, up: np.ndarray, device: torch.device | str = "cpu"
) -> Cameras:
    """``config.frames`` cameras on a circle about ``up`` looking at the origin (OpenCV W2C).

    Frame ``k`` sits at azimuth ``a = 2 pi k / frames`` and elevation ``e`` above the plane
    perpendicular to ``up``: ``eye = d (cos e sin a side + sin e up + cos e cos a front)``
    (:func:`turntable_axes`), its image up along ``up``.
    """
    side, up, front = (torch.from_numpy(axis) for axis in turntable_axes(up))
    azimuths = torch.arange(config.frames, dtype=torch.float64) * (2 * math.pi / config.frames)
    elevation = math.radians(config.elevation_deg)
    eye = config.distance * (
        math.cos(elevation) * torch.sin(azimuths)[:, None] * side
        + math.sin(elevation) * up
        + math.cos(elevation) * torch.cos(azimuths)[:, None] * front
    )
    w2c = look_at(eye, torch.zeros(3, dtype=torch.float64), up)
    K = intrinsics_from_fov(config.size, config.size, config.fov_deg).to(torch.float64)
    sizes = torch.tensor([[config.size, config.size]]).expand(config.frames, 2).clone()
    return Cameras(K.expand(config.frames, 3, 3).clone(), w2c, sizes).to(device)


def render_turntable(
    export_dir: str | Path,
    up: np.ndarray,
    config: TurntableConfig | None = None,
    light_intensity: float | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Frames (F, S, S, 3) linear of the exported asset lit by a flash at each camera.

    The cameras circle ``up``, the capture's up direction (:func:`capture_up` of its cameras).
    ``light_intensity`` defaults to the exported ``light.json``, so a frame at the capture
    distance is exposed like the training photographs.
    """
    config = config or TurntableConfig()
    mi = _mitsuba()
    shape = exported_shape(export_dir)
    intensity = light_intensity if light_intensity is not None else (
        exported_light_intensity(export_dir)
    )  # fmt: skip
    scene = {
        "type": "scene",
        "integrator": dict(FLASH_INTEGRATOR),
        "light": {
            "type": "point",
            "position": [0.0, 0.0, 0.0],
            "intensity": {"type": "uniform", "value": float(intensity)},
        },
        "asset": shape,
    }
    cameras = turntable_cameras(config, up)
    return _render_each(
        mi, scene, cameras, config.spp, seed + TURNTABLE_SEED_OFFSET, move_light=True
    )
