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
  (:func:`ironrender.data.cameras.capture_up`; a capture's world frame has no preferred axis,
  and an imported one often has its up along -Y).

Cameras: our OpenCV world-to-camera matrices become Mitsuba ``perspective`` sensors through
:func:`ironrender.data.mitsuba_backend.perspective_sensor` (``to_world = C2W diag(-1, -1, 1)``,
horizontal field of view ``2 atan(W / 2 f_x)``, box filter, so pixel ``(i, j)`` is the mean
radiance over ``[i, i+1) x [j, j+1)`` whose centre is our ray through ``(i + 0.5, j + 0.5)``);
tests check the result against :meth:`Cameras.project`.

Images come back as linear RGB float32 (N, H, W, 3). :func:`relight_metrics` compares the relit
views with ``gt/relit`` twice: **raw** (the asset as exported; its albedo inherits the
albedo/light scale ambiguity, as flash photographs only measure ``I rho``) and after ONE global
least-squares scale ``s = sum p g / sum p^2`` over all views and channels (``relight_scale``; 1 =
the exported albedo scale was right). :func:`write_turntable` writes the turntable's PNGs.

Call nothing here before :func:`~ironrender.data.mitsuba_backend.select_variant` has run (these
functions call it).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ironrender.data.cameras import Cameras, intrinsics_from_fov, look_at
from ironrender.data.images import read_image, write_data_png, write_image
from ironrender.data.mitsuba_backend import perspective_sensor, select_variant
from ironrender.errors import IronError
from ironrender.evaluation.config import EvalConfig
from ironrender.evaluation.views import encode_8bit, image_scores, mean_of
from ironrender.export.writers import LIGHT_NAME, SCENE_NAME

#: Single-bounce direct lighting, as the synthetic ground truth (``iron synth``) renders it.
RELIGHT_INTEGRATOR = {"type": "direct", "hide_emitters": True}
#: Flash turntable: emitter samples only (a point light is a delta emitter, so each is exact).
FLASH_INTEGRATOR = {"type": "direct", "emitter_samples": 1, "bsdf_samples": 0}
#: Distinct sampler seeds per rendered view, offset per purpose so no two renders share one.
RELIGHT_SEED_OFFSET = 0
TURNTABLE_SEED_OFFSET = 10_000


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
    select_variant()
    import mitsuba as mi  # lazy: select_variant() sets DRJIT_LIBLLVM_PATH before its first import

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

    The cameras circle ``up``, the capture's up direction
    (:func:`ironrender.data.cameras.capture_up` of its cameras).
    ``light_intensity`` defaults to the exported ``light.json``, so a frame at the capture
    distance is exposed like the training photographs.
    """
    config = config or TurntableConfig()
    cameras = turntable_cameras(config, up)
    return render_flash(
        export_dir, cameras, config.spp, light_intensity, seed + TURNTABLE_SEED_OFFSET
    )


def render_flash(
    export_dir: str | Path,
    cameras: Cameras,
    spp: int,
    light_intensity: float | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Images (N, H, W, 3) linear of the exported asset seen by ``cameras``, each lit by a point
    light at its centre (the capture setting), of ``light_intensity`` (default ``light.json``)."""
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
    return _render_each(mi, scene, cameras, spp, seed, move_light=True)


# ----------------------------------------------------------------------------- metrics
def relit_ground_truth(gt_dir: Path, stem: str) -> np.ndarray | None:
    for suffix in (".exr", ".png"):
        path = gt_dir / "relit" / f"{stem}{suffix}"
        if path.is_file():
            return read_image(path)
    return None


def fit_global_scale(preds: np.ndarray, gts: np.ndarray) -> float:
    """The one scale ``s`` minimising ``sum (s p - g)^2`` over all views, pixels and channels."""
    p, g = np.asarray(preds, np.float64), np.asarray(gts, np.float64)
    denominator = float((p * p).sum())
    return float((p * g).sum() / denominator) if denominator > 0 else 1.0


def relight_metrics(
    export_dir: Path,
    gt_dir: Path,
    cameras: Cameras,
    names: list[str],
    out_dir: Path,
    config: EvalConfig,
) -> dict | None:
    """Relit test views of the exported asset vs ``gt/relit`` (raw and one global scale)."""
    envmap_path = gt_dir / "envmap.exr"
    stems = [Path(n).stem for n in names]
    gts = [relit_ground_truth(gt_dir, s) for s in stems]
    keep = [i for i, g in enumerate(gts) if g is not None]
    if not envmap_path.is_file() or not keep:
        return None
    cameras = cameras[torch.as_tensor(keep, device=cameras.device)]
    gt_images = np.stack([gts[i] for i in keep])
    try:
        preds = render_relit(export_dir, read_image(envmap_path), cameras, config.relight_spp)
    except ValueError as exc:  # e.g. an off-centre principal point (Mitsuba's sensor lacks it)
        print(f"warning: no relighting: {exc}")
        return None
    scale = fit_global_scale(preds, gt_images)
    rows = []
    for k, i in enumerate(keep):
        gt = encode_8bit(gt_images[k])
        raw = encode_8bit(preds[k])
        scaled = encode_8bit(scale * preds[k])
        write_data_png(out_dir / f"{stems[i]}_gt.png", gt)
        write_data_png(out_dir / f"{stems[i]}_pred.png", raw)
        write_data_png(out_dir / f"{stems[i]}_scaled.png", scaled)
        raw_scores = image_scores(raw, gt)
        scaled_scores = image_scores(scaled, gt)
        rows.append(
            {"view": stems[i]}
            | {k2: v for k2, v in raw_scores.items()}
            | {f"{k2}_scaled": v for k2, v in scaled_scores.items()}
        )
    keys = [k for k in rows[0] if k != "view"]
    return {
        "mean": {key: mean_of(rows, key) for key in keys},
        "scale": scale,
        "per_view": rows,
        "note": (
            "raw: the exported asset as is; *_scaled: after one global least-squares scale of"
            " the rendered radiance (all views, linear) = `scale`. Images compared as 8-bit"
            " gamma-2.2 PNGs, full image. Renders: Mitsuba 3 direct illumination under"
            " gt/envmap.exr, emitter hidden."
        ),
    }


def write_turntable(export_dir: Path, out_dir: Path, up: np.ndarray, distance: float, fov: float,
                    size: int, config: EvalConfig) -> list[Path]:  # fmt: skip
    """``config.turntable_frames`` flash-lit frames of the exported asset (PNG), the cameras
    circling the capture's up direction ``up``."""
    turntable = TurntableConfig(
        frames=config.turntable_frames,
        size=size,
        spp=config.turntable_spp,
        elevation_deg=config.turntable_elevation_deg,
        distance=distance,
        fov_deg=fov,
    )
    frames = render_turntable(export_dir, up, turntable, seed=config.seed)
    paths = []
    for k, frame in enumerate(frames):
        path = out_dir / f"frame_{k:02d}.png"
        write_image(path, frame)
        paths.append(path)
    return paths
