"""A COLMAP reconstruction as pinhole views and sparse points in COLMAP's frame.

COLMAP's ``cam_from_world`` maps world points to camera coordinates with OpenCV axes (x right,
y down, z forward), exactly IRON's ``W2C = [R | t]``. COLMAP and ironrender share the pixel
convention (the top-left pixel's centre is (0.5, 0.5)), so ``K`` carries over. Cameras with
lens distortion (radial models) are undistorted by COLMAP first. An existing model
(``--colmap-model``) is read here too, with the photos staged at its cameras' sizes.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ironrender.data.capture.config import PINHOLE_MODELS
from ironrender.data.capture.photos import ASPECT_TOLERANCE, Photo, resize_linear
from ironrender.data.images import read_image, write_image
from ironrender.data.tone_curve import decode
from ironrender.errors import IronError


@dataclass
class Views:
    """Registered views in COLMAP's frame, with the images COLMAP's cameras describe."""

    photos: list[Photo]
    image_paths: list[Path]  # images at the cameras' resolution (staged or undistorted)
    K: np.ndarray  # (N, 3, 3), pinhole
    w2c: np.ndarray  # (N, 4, 4)
    sizes: np.ndarray  # (N, 2) = (W, H)


def read_model(pycolmap, model_dir: str, photos: list[Photo]):
    """An existing COLMAP model, its folder and the photos its registered images name."""
    path = Path(model_dir)
    if not path.is_dir():
        raise IronError(f"{path}: COLMAP model folder not found")
    try:
        model = pycolmap.Reconstruction(path)
    except Exception as exc:
        raise IronError(f"{path}: cannot read COLMAP model ({type(exc).__name__}: {exc})") from exc
    by_file = _photos_by_model_name(photos)
    used = [by_file[Path(im.name).name] for im in model.images.values()
            if im.has_pose and Path(im.name).name in by_file]  # fmt: skip
    if not used:
        raise IronError(f"{path}: no registered image of the model is among the photos")
    return model, path, used


def stage_for_model(model, photos: list[Photo], folder: Path, warnings) -> dict[str, Path]:
    """Copies of the photos as the model's cameras saw them (size and orientation).

    A photo may be a uniform multiple of its camera's size (COLMAP run on smaller copies): it
    is resized. COLMAP may have read the photo without its EXIF rotation: if only the raw
    orientation matches the camera, the raw pixels are used.
    """
    folder.mkdir(parents=True, exist_ok=True)
    by_file = _photos_by_model_name(photos)
    staged = {}
    for image in model.images.values():
        photo = by_file.get(Path(image.name).name)
        if photo is None or not image.has_pose:
            continue
        camera = image.camera
        target = (int(camera.width), int(camera.height))
        upright = read_image(photo.path)
        candidates = [upright]
        if photo.path.suffix.lower() != ".exr":
            candidates.append(_read_raw_orientation(photo.path))
        chosen = next((c for c in candidates if _same_aspect(c, target)), None)
        if chosen is None:
            warnings.append(
                f"{photo.path.name}: {upright.shape[1]}x{upright.shape[0]} does not match its"
                f" COLMAP camera ({target[0]}x{target[1]}); left out"
            )
            continue
        out = folder / image.name
        write_image(out, resize_linear(chosen, target))
        staged[photo.name] = out
    return staged


def _photos_by_model_name(photos: list[Photo]) -> dict[str, Photo]:
    """Photos by the names a COLMAP model may use: the file name, or the dataset name (the
    models an import writes name the staged copies, ``<stem>.png``)."""
    by_name = {p.name: p for p in photos}
    by_name.update({p.path.name: p for p in photos})
    return by_name


def _same_aspect(image: np.ndarray, size: tuple[int, int]) -> bool:
    height, width = image.shape[:2]
    return abs((width / height) / (size[0] / size[1]) - 1.0) < ASPECT_TOLERANCE


def _read_raw_orientation(path: Path) -> np.ndarray:
    """Linear RGB ignoring the EXIF orientation (what COLMAP 3.x reads)."""
    with Image.open(path) as img:
        data = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return decode(data).astype(np.float32)


def views_from_model(
    pycolmap, model, model_path: Path, by_name, staged: dict[str, Path], work: Path
):
    """Registered pinhole views (undistorting first if a camera has lens distortion).

    Returns the views in photo order and the dataset names of photos that were not registered.
    """
    model_images = {}
    for image in model.images.values():
        if image.has_pose:
            model_images[Path(image.name).name] = image
    non_pinhole = {c.model_name for c in model.cameras.values()} - set(PINHOLE_MODELS)
    image_paths = {}
    if non_pinhole:
        model, image_paths = _undistort(pycolmap, model_path, staged, work)
        model_images = {Path(im.name).name: im for im in model.images.values() if im.has_pose}

    photos, paths, Ks, w2cs, sizes, unregistered = [], [], [], [], [], []
    for name, photo in by_name.items():
        if name not in staged:  # not in the model, or unusable
            unregistered.append(name)
            continue
        image = model_images.get(staged[name].name)
        if image is None:
            unregistered.append(name)
            continue
        camera = image.camera
        w2c = np.eye(4)
        w2c[:3, :] = image.cam_from_world().matrix()
        photos.append(photo)
        paths.append(image_paths.get(staged[name].name, staged[name]))
        Ks.append(np.asarray(camera.calibration_matrix(), dtype=np.float64))
        w2cs.append(w2c)
        sizes.append((int(camera.width), int(camera.height)))
    views = Views(photos, paths, np.array(Ks).reshape(-1, 3, 3), np.array(w2cs).reshape(-1, 4, 4),
                   np.array(sizes, dtype=np.int64).reshape(-1, 2))  # fmt: skip
    return views, unregistered


def _undistort(pycolmap, model_path: Path, staged: dict[str, Path], work: Path):
    """COLMAP's undistortion: pinhole cameras and resampled images."""
    out = work / "undistorted"
    shutil.rmtree(out, ignore_errors=True)
    source_dir = next(iter(staged.values())).parent
    pycolmap.undistort_images(out, model_path, source_dir)
    undistorted = pycolmap.Reconstruction(out / "sparse")
    paths = {Path(im.name).name: out / "images" / im.name for im in undistorted.images.values()}
    return undistorted, paths


def sparse_points(model) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse points (M, 3) in COLMAP's frame, their track lengths (M,) and colours (M, 3)."""
    points = [(p.xyz, p.track.length(), p.color) for p in model.points3D.values()]
    if not points:
        return np.zeros((0, 3)), np.zeros(0, dtype=np.int64), np.zeros((0, 3), dtype=np.uint8)
    xyz = np.array([p[0] for p in points], dtype=np.float64)
    colors = np.array([p[2] for p in points], dtype=np.uint8)
    return xyz, np.array([p[1] for p in points], dtype=np.int64), colors
