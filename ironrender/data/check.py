"""Dataset validation: one line per problem, shared by ``iron check`` and every loader.

Each :class:`Problem` names a file and says what is wrong in words a user can act on. Its
``kind`` is a short stable tag (tests and scripts match on it).

Nothing in a dataset is trusted: an image name from ``cam_dict_norm.json`` must name a file
directly inside its split's ``image/`` folder (:func:`unsafe_name`, :func:`resolve_inside`), so
a name like ``../../etc/passwd``, an absolute path or a link to a file outside the dataset is
refused before anything is opened; every number is type-checked before it is used, and a file
that cannot be decoded is a problem, not a traceback. ``tests/test_fuzz.py`` holds this to
hundreds of randomly broken datasets.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

import numpy as np

from ironrender.data.camera_file import CAMERA_FILE, FLASH_KEY, IMAGE_DIR, SPLITS, parse_camera_dict
from ironrender.data.images import (
    IMAGE_SUFFIXES,
    MAX_PIXELS,
    ImageSizeError,
    is_hdr,
    one_line,
    read_image,
)
from ironrender.errors import DatasetError

RIGID_TOLERANCE = 1e-3
#: Longest file name most file systems allow, in bytes.
MAX_NAME_BYTES = 255


@dataclass(frozen=True)
class Problem:
    path: str
    kind: str
    message: str
    fatal: bool = True

    def __str__(self) -> str:
        level = "error" if self.fatal else "warning"
        return one_line(f"{level}: {self.path}: {self.message}")


def check_dataset(root: str | Path) -> list[Problem]:
    """Every problem found in a dataset (both splits); an empty list means it is usable."""
    root = Path(root)
    if not root.is_dir():
        found = "is not a folder" if root.exists() else "dataset folder not found"
        return [Problem(str(root), "missing-dataset", found)]
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
        problems += check_split(split_dir, root)
    return problems


def check_split(split_dir: str | Path, root: str | Path | None = None) -> list[Problem]:
    """Problems of one split folder (``<scene>/train`` or ``<scene>/test``).

    ``root`` is the dataset folder no file may lie outside of (default: the split's parent).
    """
    split_dir = Path(split_dir)
    root = Path(root) if root is not None else split_dir.parent
    camera_path = split_dir / CAMERA_FILE
    if camera_path.is_symlink() and (reason := _outside(camera_path, root)):
        return [Problem(str(camera_path), "unsafe-path", reason)]
    try:
        entries, duplicates = parse_camera_dict(camera_path)
    except DatasetError as exc:
        kind = "missing-cameras" if not camera_path.is_file() else "bad-json"
        return [Problem(str(camera_path), kind, _without_path(exc, camera_path))]

    problems = [Problem(str(camera_path), "duplicate-key", d) for d in duplicates]
    if not entries:
        problems.append(Problem(str(camera_path), "empty", "no cameras in the file"))

    image_dir = split_dir / IMAGE_DIR
    files, folder_problem = _list_images(image_dir, root)
    if folder_problem:
        problems.append(folder_problem)
    safe = {}
    for name, entry in entries.items():
        where = f"{camera_path}[{name}]"
        reason = unsafe_name(name)
        if reason:
            problems.append(Problem(where, "unsafe-path", reason))
            continue
        safe[name] = entry
        problems += _check_entry(where, entry)

    twins = {Path(name).with_suffix(".exr").name for name in safe if not is_hdr(name)}
    for name in sorted(set(files) - set(entries) - twins):
        problems.append(
            Problem(str(image_dir / name), "image-without-camera", f"no entry in {CAMERA_FILE}")
        )
    if folder_problem:
        return problems

    for name, entry in safe.items():
        image_path = image_dir / name
        if name not in files:
            problems.append(
                Problem(str(image_path), "camera-without-image", "camera entry has no image file")
            )
            continue
        size = _valid_size(entry.get("img_size")) if isinstance(entry, dict) else None
        problems += _check_image(image_path, root, size)
        twin = Path(name).with_suffix(".exr").name
        if twin != name and twin in files and not is_hdr(name):
            problems += _check_image(image_dir / twin, root, size)  # what linear=True reads
    problems += _check_one_size(camera_path, safe)
    return problems


def raise_on_errors(problems: list[Problem]) -> None:
    """Raise one :class:`DatasetError` naming the first fatal problem and how many more exist."""
    fatal = [p for p in problems if p.fatal]
    if fatal:
        more = f" (and {len(fatal) - 1} more; run `iron check` for all)" if len(fatal) > 1 else ""
        raise DatasetError(one_line(f"{fatal[0].path}: {fatal[0].message}{more}"))


# ----------------------------------------------------------------------------------- paths
def unsafe_name(name) -> str | None:
    """Why ``name`` cannot be an image file directly inside ``image/``, or None if it can."""
    if not isinstance(name, str) or not name:
        return "empty image name"
    if "\x00" in name:
        return "image name contains a NUL byte"
    if "/" in name or "\\" in name or PureWindowsPath(name).drive:
        return (
            "image name is a path, not a file name: each image must lie directly in image/"
            " (no folders, no '..', no absolute paths)"
        )
    if name in (".", ".."):
        return f"{name!r} is a folder, not an image file name"
    if any(not c.isprintable() for c in name):
        return "image name contains control or invalid characters"
    try:
        encoded = os.fsencode(name)
    except UnicodeError:
        return "image name cannot be a file name here (invalid Unicode)"
    if len(encoded) > MAX_NAME_BYTES:
        return f"image name is longer than {MAX_NAME_BYTES} bytes"
    return None


def resolve_inside(path: Path, root: Path) -> Path:
    """``path`` with every link resolved, or :class:`DatasetError` if that lies outside
    ``root`` (a link out of the dataset) or cannot be resolved."""
    reason = _outside(path, root)
    if reason:
        raise DatasetError(f"{path}: {reason}")
    return path.resolve()


def _outside(path: Path, root: Path) -> str | None:
    try:
        real = path.resolve(strict=True)
        real_root = root.resolve(strict=True)
    except (OSError, RuntimeError) as exc:  # a broken link, a link loop
        return f"cannot resolve the path ({type(exc).__name__}: {exc})"
    if real != real_root and real_root not in real.parents:
        return (
            f"links to {real}, outside the dataset folder {real_root}; copy the file into the"
            " dataset instead"
        )
    return None


def _list_images(image_dir: Path, root: Path) -> tuple[set[str], Problem | None]:
    """Image file names directly in ``image_dir``, or a problem with the folder itself."""
    if not image_dir.exists() and not image_dir.is_symlink():
        return set(), Problem(str(image_dir), "missing-images", "no image/ folder")
    if (reason := _outside(image_dir, root)) is not None:
        return set(), Problem(str(image_dir), "unsafe-path", reason)
    if not image_dir.is_dir():
        return set(), Problem(str(image_dir), "missing-images", "image/ is not a folder")
    try:
        names = {p.name for p in image_dir.iterdir()}
    except OSError as exc:
        return set(), Problem(str(image_dir), "missing-images", f"cannot list ({exc.strerror})")
    return {n for n in names if Path(n).suffix.lower() in IMAGE_SUFFIXES}, None


# --------------------------------------------------------------------------------- cameras
def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _describe(value) -> str:
    """What a JSON value is, in a few words (for "must be ..., not ..." messages)."""
    names = {dict: "an object", str: "a string", bool: "true/false", type(None): "null"}
    if not isinstance(value, list):
        return names.get(type(value), "a number")
    if not value:
        return "an empty list"
    if all(map(_is_number, value)):
        return f"{len(value)} numbers"
    odd = next(v for v in value if not _is_number(v))
    what = "a list" if isinstance(odd, list) else names.get(type(odd), "a number")
    return f"a list of {len(value)} holding {what}"


def _as_matrix(value, where: str, field: str) -> tuple[np.ndarray | None, list[Problem]]:
    if not isinstance(value, list) or len(value) != 16 or not all(map(_is_number, value)):
        return None, [
            Problem(
                where,
                "bad-camera",
                f"{field} must be a list of 16 numbers (row-major 4x4), not {_describe(value)}",
            )
        ]
    try:
        matrix = np.array(value, dtype=np.float64).reshape(4, 4)
    except OverflowError:  # an integer beyond float64
        matrix = np.full((4, 4), np.inf)
    with np.errstate(over="ignore"):
        finite = np.isfinite(matrix.astype(np.float32)).all()  # the loaders use float32
    if not finite:
        return None, [
            Problem(where, "non-finite", f"{field} contains NaN, inf or numbers beyond float32")
        ]
    return matrix.astype(np.float32).astype(np.float64), []  # checked as the loaders see it


def _valid_size(size) -> tuple[int, int] | None:
    if (
        isinstance(size, list)
        and len(size) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size)
        and size[0] * size[1] <= MAX_PIXELS
    ):
        return int(size[0]), int(size[1])
    return None


def _check_entry(where: str, entry) -> list[Problem]:
    if not isinstance(entry, dict):
        return [Problem(where, "bad-camera", "entry must be an object with K, W2C and img_size")]
    missing = [key for key in ("K", "W2C", "img_size") if key not in entry]
    if missing:
        return [Problem(where, "bad-camera", f"entry lacks {', '.join(missing)}")]
    K, problems = _as_matrix(entry["K"], where, "K")
    W2C, more = _as_matrix(entry["W2C"], where, "W2C")
    problems += more
    size = _valid_size(entry["img_size"])
    if size is None:
        shown = one_line(json.dumps(entry["img_size"]))
        problems.append(
            Problem(
                where,
                "bad-camera",
                f"img_size must be [W, H], two positive integers, at most {MAX_PIXELS} pixels"
                f" in all, not {shown[:40]}",
            )
        )
    if K is not None and (
        K[0, 0] <= 0
        or K[1, 1] <= 0
        or not np.allclose(K[2, :3], [0, 0, 1])
        or not np.linalg.det(K[:3, :3]) > 1e-9 * K[0, 0] * K[1, 1]
    ):
        problems.append(
            Problem(
                where,
                "bad-intrinsics",
                "K needs positive focal lengths, row 3 = [0,0,1] and an inverse",
            )
        )
        K = None
    if W2C is not None:
        with np.errstate(all="ignore"):
            problems += (pose := _check_pose(where, W2C))
        W2C = None if pose else W2C
    if K is not None and W2C is not None and size is not None:
        with np.errstate(all="ignore"):
            problems += _check_looks_at_sphere(where, K[:3, :3], W2C, *size)
    if FLASH_KEY in entry:
        problems += _check_flash(where, entry[FLASH_KEY], W2C)
    return problems


def _check_flash(where: str, flash, W2C: np.ndarray | None) -> list[Problem]:
    """``flash``: three finite numbers, the light's position in the camera's coordinates; the
    light must lie outside the unit sphere (it lights the object from outside)."""
    if not isinstance(flash, list) or len(flash) != 3 or not all(map(_is_number, flash)):
        shown = _describe(flash)
        return [Problem(where, "bad-flash", f"flash must be [x, y, z], three numbers, not {shown}")]
    with np.errstate(over="ignore"):
        position = np.array(flash, dtype=np.float64)
        if not np.isfinite(position.astype(np.float32)).all():
            return [Problem(where, "non-finite", "flash contains NaN, inf or huge numbers")]
    if W2C is None:
        return []
    R, t = W2C[:3, :3], W2C[:3, 3]
    world = R.T @ (position - t)
    if not np.linalg.norm(world) > 1.0:
        return [
            Problem(
                where,
                "bad-flash",
                f"the flash lies inside the unit sphere (|p| = {np.linalg.norm(world):.3f}): its"
                " position is in camera coordinates, scene units (the lens is [0, 0, 0])",
            )
        ]
    return []


def _check_pose(where: str, W2C: np.ndarray) -> list[Problem]:
    R = W2C[:3, :3]
    if not abs(np.linalg.det(W2C)) >= 1e-9:
        return [Problem(where, "singular-pose", "W2C is not invertible")]
    if (
        not np.allclose(W2C[3], [0, 0, 0, 1], atol=RIGID_TOLERANCE)
        or not np.allclose(R.T @ R, np.eye(3), atol=RIGID_TOLERANCE)
        or np.linalg.det(R) < 0
    ):
        return [
            Problem(
                where,
                "non-rigid-pose",
                "W2C is not a rigid transform (rotation must be orthonormal with det +1,"
                " last row [0,0,0,1]); normalize scale into the scene, not the pose",
            )
        ]
    return []


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
    ray = np.linalg.solve(K, nearest)  # K is invertible (checked above)
    cos = ray @ origin_cam / (np.linalg.norm(ray) * np.linalg.norm(origin_cam))
    angle = math.acos(float(np.clip(cos, -1, 1)))
    if not angle <= math.asin(1.0 / distance):  # NaN (absurd K) fails too
        return [
            Problem(
                where,
                "not-looking-at-object",
                "the unit sphere is outside this camera's field of view",
            )
        ]
    radius_px = min(K[0, 0], K[1, 1]) / math.sqrt(distance**2 - 1.0)
    if not radius_px >= 0.5:
        return [
            Problem(
                where,
                "not-looking-at-object",
                f"the unit sphere covers less than a pixel (camera {distance:.3g} from the"
                " origin); normalize the scene so the object fills the unit sphere",
            )
        ]
    return []


def _check_one_size(camera_path: Path, entries: dict) -> list[Problem]:
    """One split, one image size: the loaders stack the images into one array."""
    sizes = {
        size
        for entry in entries.values()
        if isinstance(entry, dict) and (size := _valid_size(entry.get("img_size"))) is not None
    }
    if len(sizes) <= 1:
        return []
    shown = ", ".join(f"{w}x{h}" for w, h in sorted(sizes)[:4])
    return [
        Problem(
            str(camera_path),
            "mixed-sizes",
            f"img_size differs between views ({shown}); resize the images to one size",
        )
    ]


# --------------------------------------------------------------------------------- images
def _check_image(path: Path, root: Path, size: tuple[int, int] | None) -> list[Problem]:
    if (reason := _outside(path, root)) is not None:
        return [Problem(str(path), "unsafe-path", reason)]
    try:
        image = read_image(path, size)
    except ImageSizeError as exc:
        return [Problem(str(path), "size-mismatch", _without_path(exc, path))]
    except DatasetError as exc:
        return [Problem(str(path), "unreadable-image", _without_path(exc, path))]
    if is_hdr(path) and not np.isfinite(image).all():
        return [Problem(str(path), "non-finite", "image contains NaN or inf pixels")]
    return []


def _without_path(exc: Exception, path: Path) -> str:
    return str(exc).removeprefix(f"{path}: ")
