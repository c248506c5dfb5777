"""Dataset validation: one line per problem, shared by ``iron check`` and every loader.

Each :class:`Problem` names a file and says what is wrong in words a user can act on. Its
``kind`` is a short stable tag (tests and scripts match on it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ironrender.data.camera_file import CAMERA_FILE, IMAGE_DIR, SPLITS, read_camera_dict
from ironrender.data.images import IMAGE_SUFFIXES, is_hdr, read_image
from ironrender.errors import DatasetError

RIGID_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Problem:
    path: str
    kind: str
    message: str
    fatal: bool = True

    def __str__(self) -> str:
        level = "error" if self.fatal else "warning"
        return f"{level}: {self.path}: {self.message}"


def check_dataset(root: str | Path) -> list[Problem]:
    """Every problem found in a dataset (both splits); an empty list means it is usable."""
    root = Path(root)
    if not root.is_dir():
        return [Problem(str(root), "missing-dataset", "dataset folder not found")]
    problems: list[Problem] = []
    for split in SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            if split == "train":
                problems.append(
                    Problem(str(split_dir), "missing-split", "no train/ folder: nothing to train")
                )
            else:
                problems.append(
                    Problem(
                        str(split_dir),
                        "missing-split",
                        "no test/ folder: held-out evaluation will be skipped",
                        fatal=False,
                    )
                )
            continue
        problems += check_split(split_dir)
    return problems


def check_split(split_dir: str | Path) -> list[Problem]:
    """Problems of one split folder (``<scene>/train`` or ``<scene>/test``)."""
    split_dir = Path(split_dir)
    camera_path = split_dir / CAMERA_FILE
    try:
        entries = read_camera_dict(camera_path)
    except DatasetError as exc:
        kind = "missing-cameras" if not camera_path.is_file() else "bad-json"
        return [Problem(str(camera_path), kind, str(exc).split(": ", 1)[-1])]

    problems: list[Problem] = []
    if not entries:
        problems.append(Problem(str(camera_path), "empty", "no cameras in the file"))

    image_dir = split_dir / IMAGE_DIR
    files = (
        {p.name for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
        if image_dir.is_dir()
        else set()
    )
    twins = {Path(name).with_suffix(".exr").name for name in entries if not is_hdr(name)}
    for name in sorted(files - set(entries) - twins):
        problems.append(
            Problem(str(image_dir / name), "image-without-camera", f"no entry in {CAMERA_FILE}")
        )

    for name, entry in entries.items():
        where = f"{camera_path}[{name}]"
        camera_problems = _check_entry(where, entry)
        problems += camera_problems
        image_path = image_dir / name
        if name not in files:
            problems.append(
                Problem(str(image_path), "camera-without-image", "camera entry has no image file")
            )
            continue
        size = entry.get("img_size") if isinstance(entry, dict) else None
        problems += _check_image(image_path, size)
    return problems


def raise_on_errors(problems: list[Problem]) -> None:
    """Raise one :class:`DatasetError` naming the first fatal problem and how many more exist."""
    fatal = [p for p in problems if p.fatal]
    if fatal:
        more = f" (and {len(fatal) - 1} more; run `iron check` for all)" if len(fatal) > 1 else ""
        raise DatasetError(f"{fatal[0].path}: {fatal[0].message}{more}")


# --------------------------------------------------------------------------------- cameras
def _as_matrix(value, where: str, field: str) -> tuple[np.ndarray | None, list[Problem]]:
    try:
        matrix = np.asarray(value, dtype=np.float64).reshape(4, 4)
    except (TypeError, ValueError):
        return None, [Problem(where, "bad-camera", f"{field} must be 16 numbers (row-major 4x4)")]
    if not np.isfinite(matrix).all():
        return None, [Problem(where, "non-finite", f"{field} contains NaN or inf")]
    return matrix, []


def _check_entry(where: str, entry) -> list[Problem]:
    if not isinstance(entry, dict) or not {"K", "W2C", "img_size"} <= set(entry):
        return [Problem(where, "bad-camera", "entry needs K, W2C and img_size")]
    K, problems = _as_matrix(entry["K"], where, "K")
    W2C, more = _as_matrix(entry["W2C"], where, "W2C")
    problems += more
    size = entry["img_size"]
    if (
        not isinstance(size, list | tuple)
        or len(size) != 2
        or not all(isinstance(s, int | float) and s >= 1 and float(s).is_integer() for s in size)
    ):
        problems.append(Problem(where, "bad-camera", "img_size must be [W, H], positive integers"))
        size = None
    if K is not None and (K[0, 0] <= 0 or K[1, 1] <= 0 or not np.allclose(K[2, :3], [0, 0, 1])):
        problems.append(
            Problem(where, "bad-intrinsics", "K needs positive focal lengths and row 3 = [0,0,1]")
        )
        K = None
    if W2C is not None:
        R = W2C[:3, :3]
        if abs(np.linalg.det(W2C)) < 1e-9:
            problems.append(Problem(where, "singular-pose", "W2C is not invertible"))
            W2C = None
        elif (
            not np.allclose(W2C[3], [0, 0, 0, 1], atol=RIGID_TOLERANCE)
            or not np.allclose(R.T @ R, np.eye(3), atol=RIGID_TOLERANCE)
            or np.linalg.det(R) < 0
        ):
            problems.append(
                Problem(
                    where,
                    "non-rigid-pose",
                    "W2C is not a rigid transform (rotation must be orthonormal with det +1,"
                    " last row [0,0,0,1]); normalize scale into the scene, not the pose",
                )
            )
            W2C = None
    if K is not None and W2C is not None and size is not None:
        problems += _check_looks_at_sphere(where, K[:3, :3], W2C, int(size[0]), int(size[1]))
    return problems


def _check_looks_at_sphere(where: str, K: np.ndarray, W2C: np.ndarray, W: int, H: int):
    """The unit sphere must be in front of the camera and overlap its field of view."""
    R, t = W2C[:3, :3], W2C[:3, 3]
    center = -R.T @ t
    distance = float(np.linalg.norm(center))
    if distance <= 1.0:
        return [
            Problem(
                where,
                "camera-inside-sphere",
                f"camera centre is inside the unit sphere (|c| = {distance:.3f}); normalize the"
                " scene so the object fits in the unit sphere and cameras are outside it",
            )
        ]
    origin_cam = t  # the world origin in camera coordinates
    if origin_cam[2] <= 0:
        return [Problem(where, "not-looking-at-object", "the unit sphere is behind the camera")]
    # Angle between the direction to the origin and the nearest ray inside the image.
    uv = (K @ origin_cam)[:2] / origin_cam[2]
    nearest = np.array([np.clip(uv[0], 0, W), np.clip(uv[1], 0, H), 1.0])
    ray = np.linalg.solve(K, nearest)
    cos = ray @ origin_cam / (np.linalg.norm(ray) * np.linalg.norm(origin_cam))
    angle = math.acos(float(np.clip(cos, -1, 1)))
    if angle > math.asin(1.0 / distance):
        return [
            Problem(
                where,
                "not-looking-at-object",
                "the unit sphere is outside this camera's field of view",
            )
        ]
    return []


# --------------------------------------------------------------------------------- images
def _check_image(path: Path, size) -> list[Problem]:
    try:
        if is_hdr(path):
            image = read_image(path)
            height, width = image.shape[:2]
            if not np.isfinite(image).all():
                return [Problem(str(path), "non-finite", "image contains NaN or inf pixels")]
        else:
            from PIL import Image, ImageOps

            with Image.open(path) as img:
                img = ImageOps.exif_transpose(img)
                width, height = img.size
                img.load()  # decode fully: catches truncated files
    except Exception as exc:
        return [Problem(str(path), "unreadable-image", f"cannot read image ({exc})")]
    if size is not None and [width, height] != [int(size[0]), int(size[1])]:
        return [
            Problem(
                str(path),
                "size-mismatch",
                f"image is {width}x{height} but img_size says {int(size[0])}x{int(size[1])}",
            )
        ]
    return []
