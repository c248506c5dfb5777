"""Choosing Mitsuba 3's variant once per process, safely.

Mitsuba's fast CPU variant ``llvm_ad_rgb`` JIT-compiles kernels with the system's libLLVM. With
LLVM 14/15 (Debian's default) the compiler hits ``LLVM ERROR: Cannot select ... fminimum`` and
**aborts the whole process** (platform-notes.md), so it cannot be tried in-process. Instead a
child ``python -c`` sets the variant and renders a tiny scene; only if that child succeeds is the
variant set here. Dr.Jit loads libLLVM when it is imported, reading ``DRJIT_LIBLLVM_PATH`` at
that moment, so the path to a new enough libLLVM (19 or newer) is exported *before* the first
``import mitsuba``.

Usage (everyone who renders with Mitsuba)::

    from ironrender.data.mitsuba_backend import select_variant
    variant = select_variant()          # before any other `import mitsuba` in the process
    import mitsuba as mi

If the fast variant is unavailable, ``scalar_rgb`` is used and one line is printed to stderr.
``IRON_MITSUBA_VARIANT=<variant>`` forces a variant without probing.
"""

from __future__ import annotations

import glob
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ironrender.errors import IronError

FAST_VARIANT = "llvm_ad_rgb"
FALLBACK_VARIANT = "scalar_rgb"
VARIANT_ENV = "IRON_MITSUBA_VARIANT"
LLVM_PATH_ENV = "DRJIT_LIBLLVM_PATH"

# LLVM 14/15 abort on Dr.Jit's IR; 19 is the oldest release measured to work (platform-notes.md).
MIN_LLVM_MAJOR = 19
# Where a libLLVM shared library may live; the newest major version found is tried first.
LLVM_SEARCH_GLOBS = (
    "/usr/lib/x86_64-linux-gnu/libLLVM*.so*",
    "/usr/lib/aarch64-linux-gnu/libLLVM*.so*",
    "/usr/lib/llvm-*/lib/libLLVM*.so*",
    "/usr/lib64/libLLVM*.so*",
    "/usr/local/lib/libLLVM*.so*",
    "/opt/homebrew/opt/llvm/lib/libLLVM*.dylib",
    "~/.rustup/toolchains/*/lib/libLLVM*.so*",  # rustc ships a full libLLVM with the C API
)
LLVM_VERSION_PATTERN = re.compile(r"libLLVM(?:\.so)?[.-](\d+)")
# At most this many candidate libraries are probed (each probe is a Python start-up, ~1 s).
MAX_PROBES = 3
PROBE_TIMEOUT_S = 120.0

# The child renders a diffuse sphere under a constant environment; a finite positive mean means
# the JIT compiled and ran kernels end to end.
_PROBE_SCRIPT = """
import mitsuba as mi
mi.set_variant({variant!r})
scene = mi.load_dict({{
    "type": "scene",
    "integrator": {{"type": "path"}},
    "sensor": {{"type": "perspective", "film": {{"type": "hdrfilm", "width": 8, "height": 8}},
               "sampler": {{"type": "independent", "sample_count": 4}}}},
    "light": {{"type": "constant"}},
    "shape": {{"type": "sphere", "center": [0, 0, 5]}},
}})
import numpy as np
print("IRON_PROBE", float(np.asarray(mi.render(scene)).mean()))
"""


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of probing the fast variant in a child process."""

    ok: bool
    llvm_path: str | None
    reason: str


_selected: str | None = None


def select_variant(prefer_fast: bool = True) -> str:
    """Pick Mitsuba's variant once per process, set it and return its name.

    ``prefer_fast=True`` probes ``llvm_ad_rgb`` in a child process (never in this one, where a
    failure would abort Python) and falls back to ``scalar_rgb`` with a one-line note on stderr.
    Later calls return the cached choice (and re-set it if someone switched variants).
    """
    global _selected
    if _selected is None:
        _selected = _choose(prefer_fast)
    import mitsuba as mi  # lazy: DRJIT_LIBLLVM_PATH must be set before the first import

    if mi.variant() != _selected:
        mi.set_variant(_selected)
    _pool_of_at_least_two()
    return _selected


def _pool_of_at_least_two() -> None:
    """Dr.Jit sizes its thread pool to the CPUs this process may use. With one (``taskset -c
    0``, a one-CPU container), loading a bitmap texture (every exported scene has them) waits
    forever on work queued behind itself (mitsuba 3.9.1 / drjit 1.5.0: ``iron eval`` hung in
    ``mi.load_file``). A second thread on one CPU costs nothing and ends the deadlock."""
    import drjit as dr

    if dr.thread_count() < 2:
        dr.set_thread_count(2)


def _choose(prefer_fast: bool) -> str:
    forced = os.environ.get(VARIANT_ENV)
    if forced:
        return forced
    if not prefer_fast:
        return FALLBACK_VARIANT
    probe = probe_fast_variant()
    if probe.ok:
        reason = _adopt_llvm_path(probe.llvm_path)
        if reason is None:
            return FAST_VARIANT
    else:
        reason = probe.reason
    print(
        f"note: Mitsuba's fast LLVM variant is unavailable ({reason}); using {FALLBACK_VARIANT}",
        file=sys.stderr,
    )
    return FALLBACK_VARIANT


def _adopt_llvm_path(llvm_path: str | None) -> str | None:
    """Point this process's Dr.Jit at ``llvm_path``; return why not possible, or None if done."""
    if "drjit" not in sys.modules:
        if llvm_path is not None:
            os.environ[LLVM_PATH_ENV] = llvm_path
        return None
    # Dr.Jit was imported already and loaded some libLLVM: usable only if it is new enough.
    import drjit as dr  # lazy: importing Dr.Jit loads libLLVM (module docstring)

    loaded = dr.detail.llvm_version() if dr.has_backend(dr.JitBackend.LLVM) else None
    if loaded and loaded[0] >= MIN_LLVM_MAJOR:
        return None
    return (
        f"Dr.Jit was imported before select_variant() with LLVM {loaded}; call select_variant()"
        " before importing mitsuba"
    )


def probe_fast_variant() -> ProbeResult:
    """Render a tiny scene with ``llvm_ad_rgb`` in child processes, trying each libLLVM."""
    candidates: list[str | None] = []
    if os.environ.get(LLVM_PATH_ENV):
        candidates.append(os.environ[LLVM_PATH_ENV])
    candidates += find_new_llvm()
    candidates.append(None)  # Dr.Jit's own default search (works where the system LLVM is new)
    reasons = []
    for path in _unique(candidates)[:MAX_PROBES]:
        ok, reason = _probe_once(path)
        if ok:
            return ProbeResult(True, path, "")
        reasons.append(f"{path or 'default libLLVM'}: {reason}")
    return ProbeResult(False, None, "; ".join(reasons) or "no libLLVM found")


def find_new_llvm() -> list[str]:
    """libLLVM shared libraries of major version >= MIN_LLVM_MAJOR, newest first."""
    found: dict[str, int] = {}
    for pattern in LLVM_SEARCH_GLOBS:
        for path in glob.glob(os.path.expanduser(pattern)):
            match = LLVM_VERSION_PATTERN.search(Path(path).name)
            if match and int(match.group(1)) >= MIN_LLVM_MAJOR and os.path.isfile(path):
                found.setdefault(os.path.realpath(path), int(match.group(1)))
    return sorted(found, key=lambda p: (-found[p], p))


def _probe_once(llvm_path: str | None) -> tuple[bool, str]:
    env = dict(os.environ)
    env.pop(VARIANT_ENV, None)
    if llvm_path is None:
        env.pop(LLVM_PATH_ENV, None)
    else:
        env[LLVM_PATH_ENV] = llvm_path
    command = [sys.executable, "-c", _PROBE_SCRIPT.format(variant=FAST_VARIANT)]
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, type(exc).__name__
    for line in done.stdout.splitlines():
        if line.startswith("IRON_PROBE "):
            value = float(line.split()[1])
            if done.returncode == 0 and math.isfinite(value) and value > 0:
                return True, ""
    errors = [line for line in done.stderr.splitlines() if "ERROR" in line or "Error" in line]
    detail = errors[0].strip()[:80] if errors else f"exit status {done.returncode}"
    return False, detail


def _unique(items: list[str | None]) -> list[str | None]:
    return list(dict.fromkeys(items))  # keeps the first occurrence, in order


# ------------------------------------------------------------------------------ ray tracing
def mesh_scene(vertices: np.ndarray, faces: np.ndarray, purpose: str):
    """``(mi, scene)``: a triangle mesh (positions and faces only) as a Mitsuba scene, to trace
    many rays at once (``ray_intersect_preliminary``, ``ray_test``); ``purpose`` names the
    caller in the error a scalar-only Mitsuba gives."""
    variant = select_variant()
    if variant.startswith("scalar"):
        raise IronError(
            f"{purpose} traces its rays with Mitsuba's vectorised variants;"
            f" only {variant} works here"
        )
    import mitsuba as mi  # after select_variant: it sets where Dr.Jit finds LLVM

    mesh = mi.Mesh("surface", len(vertices), len(faces))
    params = mi.traverse(mesh)
    params["vertex_positions"] = mi.Float(np.asarray(vertices, dtype=np.float32).ravel())
    params["faces"] = mi.UInt32(np.asarray(faces, dtype=np.uint32).ravel())
    params.update()
    return mi, mi.load_dict({"type": "scene", "surface": mesh})


def ray_batch(mi, origins: np.ndarray, directions: np.ndarray):
    """Mitsuba rays (single precision, as its ray tracer) from (N, 3) arrays."""
    o, d = (np.ascontiguousarray(np.asarray(a, dtype=np.float32).T) for a in (origins, directions))
    return mi.Ray3f(mi.Point3f(*o), mi.Vector3f(*d))


# ------------------------------------------------------------------------------ cameras
# Mitsuba's camera frame is x left, y up, z forward; ours (OpenCV) is x right, y down, z forward.
OPENCV_TO_MITSUBA_AXES = np.diag([-1.0, -1.0, 1.0, 1.0])
# Principal points this far (in pixels) from the image centre are rejected (not supported).
PRINCIPAL_POINT_TOLERANCE = 1e-4
NEAR_CLIP = 1e-2
FAR_CLIP = 1e3


def mitsuba_to_world(c2w: np.ndarray) -> np.ndarray:
    """Mitsuba's sensor ``to_world`` (4x4) for an OpenCV camera-to-world matrix."""
    return np.asarray(c2w, dtype=np.float64) @ OPENCV_TO_MITSUBA_AXES


def horizontal_fov_degrees(K: np.ndarray, width: int, height: int) -> float:
    """Mitsuba's ``fov`` (along x) for square pixels and a centred principal point.

    Raises ValueError for skew, non-square pixels or an off-centre principal point, which the
    perspective sensor built here does not model.
    """
    K = np.asarray(K, dtype=np.float64)
    fx, fy, cx, cy, skew = K[0, 0], K[1, 1], K[0, 2], K[1, 2], K[0, 1]
    if abs(fx - fy) > 1e-6 * fx or abs(skew) > 1e-9 * fx:
        raise ValueError("Mitsuba sensor: only square pixels without skew are supported")
    if abs(cx - width / 2) > PRINCIPAL_POINT_TOLERANCE or abs(cy - height / 2) > (
        PRINCIPAL_POINT_TOLERANCE
    ):
        raise ValueError("Mitsuba sensor: only a centred principal point is supported")
    return math.degrees(2.0 * math.atan(width / (2.0 * fx)))


def multijitter_sample_count(spp: int) -> int:
    """The sample count Mitsuba's ``multijitter`` sampler uses for a request of ``spp``.

    It jitters an n x m grid with n = floor(sqrt(spp)), m = ceil(spp / n) and warns when it has
    to round; asking for the rounded count up front keeps the output quiet and the count known.
    """
    n = max(1, math.isqrt(int(spp)))
    return n * math.ceil(int(spp) / n)


def perspective_sensor(
    K: np.ndarray,
    c2w: np.ndarray,
    width: int,
    height: int,
    spp: int,
    pixel_format: str = "rgb",
    sampler: str = "multijitter",
) -> dict:
    """A Mitsuba ``perspective`` sensor dict matching one of our cameras exactly.

    A box reconstruction filter makes pixel (i, j) the average radiance over the square
    [i, i+1) x [j, j+1), whose centre is our ray through (i + 0.5, j + 0.5).
    Call :func:`select_variant` first. The ``multijitter`` count is rounded up with
    :func:`multijitter_sample_count`.
    """
    import mitsuba as mi  # lazy: DRJIT_LIBLLVM_PATH must be set before the first import

    if sampler == "multijitter":
        spp = multijitter_sample_count(spp)
    return {
        "type": "perspective",
        "fov": horizontal_fov_degrees(K, width, height),
        "fov_axis": "x",
        "near_clip": NEAR_CLIP,
        "far_clip": FAR_CLIP,
        "to_world": mi.ScalarTransform4f(mitsuba_to_world(c2w).tolist()),
        "film": {
            "type": "hdrfilm",
            "width": int(width),
            "height": int(height),
            "rfilter": {"type": "box"},
            "pixel_format": pixel_format,
        },
        "sampler": {"type": sampler, "sample_count": int(spp)},
    }
