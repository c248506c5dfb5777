"""What is the object? Choosing the part of the exported surface that is the captured object.

Marching cubes on the SDF returns everything opaque in ``[-bound, bound]^3``: the object, and in
real captures the clutter beside it inside the unit sphere too, a table top or cloth under it,
a stick or stand it sits on, floaters. Keeping the largest connected component (IRON's rule)
fails when the clutter is larger than the object: a cloth under a small object becomes the
export. :func:`select_object` decides what to keep, in this order:

1. **Explicit controls** (normalised frame, where the object lies in the unit sphere), applied
   first and exactly (triangles are split at the planes):

   * crop box ``crop_min``/``crop_max``: keep the part inside the box;
   * cut plane ``(nx, ny, nz, d)``: keep the half-space ``n . x + d > 0`` (``n`` need not be a
     unit vector; the half-space is the same).

2. **The mode**:

   * ``all``: keep everything that is left;
   * ``largest`` (the default, IRON's rule): the connected component with the largest area;
   * ``auto``: cut away support planes, then choose a component, as follows.

``auto``, support planes (:func:`~ironrender.export.support_plane.find_support_plane`; the method
and its tests are in :mod:`ironrender.export.support_plane`). A support (table top, floor,
cloth) is a large flat sheet that runs out to the edge of the reconstructed volume, below the
object: RANSAC over the faces finds the dominant plane, oriented towards the cameras' side, and
it counts as a support only if it is large, flat, reaches the boundary all around (a flat face of
the object does not) and has the object's centre on its cameras' side. Then:

* **Cut**: remove everything within ``band`` (the fit's ``tolerance``, ``max(2 grid cells,
  0.015)``) of the plane and everything beyond it (keep ``n . x + d > band``, triangles split
  exactly). The object's contact region, a cap of height ``band`` where it touches the support,
  goes too: the cameras never see it anyway.
* **Repeat once** when less than a quarter of the plane's area faces the cameras: a slab
  thicker than the tolerance was fitted on its lower side, which leaves its upper side for a
  second pass (planes within 10 degrees of parallel). A top side, or both sides fitted
  together, ends the search: repeating there would creep up into the object on a rough cloth.

``auto``, component. What is left is split into connected components. A component that touches
the boundary of the reconstructed volume (a vertex at radius >= 0.97 of the unit sphere, or
within one grid cell of the grid's faces, where marching cubes leaves open cuts) is a clutter
candidate: the rest of a support (a cloth's walls), a stand leaving the sphere, background. The
largest component that does not touch the boundary is kept when its area is at least 10 % of the
largest component's; otherwise the largest component is kept (an object that itself reaches the
boundary must not lose to a floater). Without a support and with one component, ``auto`` keeps
the surface unchanged.

Not handled by ``auto``: a thin stick or stand *attached* to the object is part of the object's
component and stays (it touches the boundary, but so does the object through it); so does a
support without a flat part, or a fold of a cloth that touches the object. The crop box and the
cut plane handle these.

The outcome is an :class:`ObjectSelection`; :meth:`~ObjectSelection.summary` is one line, e.g.
``object auto: support plane found: normal (0.00, 0.00, 1.00), offset 0.419, removed 73 % of
the area; kept the only component; kept 27 % of the area (9246 of 26076 faces)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import trimesh

from ironrender.errors import IronError
from ironrender.export.support_plane import (
    PlaneFit,
    estimate_spacing,
    find_support_plane,
    on_boundary,
)

#: Modes of :func:`select_object` (``ExportConfig.object``).
OBJECT_MODES = ("largest", "all", "auto")
#: At most this many supports are cut (a slab's lower side, then its upper side); the second
#: only after a plane seen from below, and within ``support_plane.PARALLEL_DEGREES`` of
#: parallel to it.
MAX_SUPPORTS = 2
#: A plane is a slab's lower side when less than this share of its area faces the cameras.
LOWER_SIDE_SHARE = 0.25
#: A component away from the boundary wins over larger boundary-touching ones from this share.
MIN_INNER_SHARE = 0.1


@dataclass
class ObjectSelection:
    """What :func:`select_object` did: the mode, each step, and the area and faces kept."""

    mode: str
    faces_before: int
    faces_after: int
    area_before: float
    area_after: float
    steps: list[str] = field(default_factory=list)
    supports: list[PlaneFit] = field(default_factory=list)

    @property
    def removed_fraction(self) -> float:
        """Fraction of the marching-cubes surface area removed by the selection."""
        if self.area_before <= 0:
            return 0.0
        return 1.0 - self.area_after / self.area_before

    def summary(self) -> str:
        """One line for the log: the mode, each step, what is left."""
        steps = "; ".join(self.steps) if self.steps else "kept every component"
        return (
            f"object {self.mode}: {steps}; kept {100 * (1 - self.removed_fraction):.0f} % of the"
            f" area ({self.faces_after} of {self.faces_before} faces)"
        )


# ------------------------------------------------------------------------------- options
def check_object_options(
    mode: str,
    crop_min: Sequence[float] | None = None,
    crop_max: Sequence[float] | None = None,
    cut_plane: Sequence[float] | None = None,
) -> None:
    """Raise :class:`IronError` with a one-line message for an invalid mode, box or plane."""
    if mode not in OBJECT_MODES:
        raise IronError(f"object must be one of {', '.join(OBJECT_MODES)}, not {mode!r}")
    low = _numbers("crop_min", crop_min, "x, y, z")
    high = _numbers("crop_max", crop_max, "x, y, z")
    if low is not None and high is not None and not np.all(low < high):
        raise IronError(
            f"the crop box is empty: crop_min {low.tolist()} must be below crop_max {high.tolist()}"
            " on every axis"
        )
    plane = _numbers("cut_plane", cut_plane, "nx, ny, nz, d")
    if plane is not None and not np.any(plane[:3]):
        raise IronError("cut_plane's normal (nx, ny, nz) must not be zero")


def _numbers(name: str, values: Sequence[float] | None, labels: str) -> np.ndarray | None:
    """``values`` as finite floats, as many as ``labels`` names, or :class:`IronError`."""
    if values is None:
        return None
    size = len(labels.split(","))
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        array = np.array([])
    if array.shape != (size,) or not np.all(np.isfinite(array)):
        raise IronError(f"{name} must be {size} finite numbers ({labels}), got {values!r}")
    return array


# ------------------------------------------------------------------------------- cutting
def cut_by_plane(mesh: trimesh.Trimesh, normal: np.ndarray, offset: float) -> trimesh.Trimesh:
    """The part of ``mesh`` where ``normal . x + offset > 0`` (``normal`` a unit vector).

    Triangles crossing the plane are split exactly, keeping their winding; the cut stays open
    (no cap). A new vertex is computed once per cut edge, so both triangles that share the edge
    share it and connectivity survives. (trimesh's ``slice_plane`` needs shapely, which is not a
    dependency.)
    """
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    side = vertices @ np.asarray(normal, dtype=np.float64) + offset
    positive = side > 0
    count = positive[faces].sum(axis=1)
    if np.all(count == 3):
        return mesh
    # Split triangles, rotated (cyclic order kept) so that the vertex alone on its side is first:
    # one kept vertex a -> (a, p_ab, p_ac); one dropped vertex a -> (p_ab, b, c), (p_ab, c, p_ac).
    rotated = {}
    for k in (1, 2):
        crossing = faces[count == k]
        alone = positive[crossing] if k == 1 else ~positive[crossing]
        order = (alone.argmax(axis=1)[:, None] + np.arange(3)) % 3
        rotated[k] = np.take_along_axis(crossing, order, axis=1)
    ends = np.concatenate([r[:, [0, 0]] for r in rotated.values()])  # a, a
    others = np.concatenate([r[:, [1, 2]] for r in rotated.values()])  # b, c
    edges = np.sort(np.stack([ends.ravel(), others.ravel()], axis=1), axis=1)
    unique, inverse = np.unique(edges, axis=0, return_inverse=True)
    lo, hi = unique[:, 0], unique[:, 1]
    t = side[lo] / (side[lo] - side[hi])
    points = vertices[lo] + t[:, None] * (vertices[hi] - vertices[lo])
    new_index = (len(vertices) + inverse.reshape(-1)).reshape(-1, 2)  # p_ab, p_ac per face
    n1 = len(rotated[1])
    p1, p2 = new_index[:n1], new_index[n1:]
    one, two = rotated[1], rotated[2]
    pieces = [
        faces[count == 3],
        np.stack([one[:, 0], p1[:, 0], p1[:, 1]], axis=1),
        np.stack([p2[:, 0], two[:, 1], two[:, 2]], axis=1),
        np.stack([p2[:, 0], two[:, 2], p2[:, 1]], axis=1),
    ]
    out = trimesh.Trimesh(np.concatenate([vertices, points]), np.concatenate(pieces), process=True)
    out.update_faces(out.nondegenerate_faces())
    out.remove_unreferenced_vertices()
    return out


def crop_to_box(mesh: trimesh.Trimesh, lo: np.ndarray, hi: np.ndarray) -> trimesh.Trimesh:
    """The part of ``mesh`` inside the axis-aligned box ``[lo, hi]`` (infinite sides allowed)."""
    for axis in range(3):
        unit = np.eye(3)[axis]
        if np.isfinite(lo[axis]):
            mesh = cut_by_plane(mesh, unit, -lo[axis])  # x_axis - lo > 0
        if np.isfinite(hi[axis]):
            mesh = cut_by_plane(mesh, -unit, hi[axis])  # hi - x_axis > 0
    return mesh


# ------------------------------------------------------------------------------- components
def touches_boundary(mesh: trimesh.Trimesh, bound: float, spacing: float) -> bool:
    """Whether ``mesh`` reaches the unit sphere's edge or the grid's faces (open cuts)."""
    return bool(on_boundary(np.asarray(mesh.vertices).reshape(-1, 3), bound, spacing).any())


def choose_component(
    mesh: trimesh.Trimesh, bound: float, spacing: float
) -> tuple[trimesh.Trimesh, str]:
    """``auto``'s component (module docstring) and a note saying which and why."""
    parts = mesh.split(only_watertight=False) if len(mesh.faces) else []
    if len(parts) <= 1:
        return mesh, "kept the only component"
    areas = np.array([part.area for part in parts])
    touching = np.array([touches_boundary(part, bound, spacing) for part in parts])
    largest = int(areas.argmax())
    if touching[largest] and not touching.all():
        inner = int(np.where(touching, -1.0, areas).argmax())
        if areas[inner] >= MIN_INNER_SHARE * areas[largest]:
            return parts[inner], (
                f"kept the largest of {len(parts)} components away from the boundary"
                f" ({int(touching.sum())} touch it)"
            )
    return parts[largest], f"kept the largest of {len(parts)} components"


# ------------------------------------------------------------------------------- selection
def select_object(
    mesh: trimesh.Trimesh,
    mode: str = "largest",
    *,
    crop_min: Sequence[float] | None = None,
    crop_max: Sequence[float] | None = None,
    cut_plane: Sequence[float] | None = None,
    up: np.ndarray | None = None,
    bound: float = 1.0,
    spacing: float | None = None,
    seed: int = 0,
) -> tuple[trimesh.Trimesh, ObjectSelection]:
    """The object's part of a marching-cubes ``mesh`` (module docstring) and what was done.

    ``up``: a vector towards the cameras' side (the capture's up,
    :func:`ironrender.data.cameras.capture_up`), used by ``auto`` to orient support planes.
    ``bound``: the half-size of the marching-cubes grid; ``spacing``:
    its cell size (estimated from the edge lengths when ``None``). ``seed``: RANSAC's seed.
    Raises :class:`IronError` for invalid options or when nothing is left.
    """
    check_object_options(mode, crop_min, crop_max, cut_plane)
    spacing = estimate_spacing(mesh) if spacing is None else float(spacing)
    area_before = float(mesh.area)
    selection = ObjectSelection(mode, len(mesh.faces), len(mesh.faces), area_before, area_before)

    def removed(before: float, after: trimesh.Trimesh) -> str:
        """``removed N % of the area`` (of the whole surface), or nothing when N rounds to 0."""
        percent = 100 * (before - after.area) / max(area_before, 1e-30)
        return f", removed {percent:.0f} % of the area" if percent >= 0.5 else ""

    if crop_min is not None or crop_max is not None:
        lo = np.full(3, -np.inf) if crop_min is None else np.asarray(crop_min, float)
        hi = np.full(3, np.inf) if crop_max is None else np.asarray(crop_max, float)
        before = mesh.area
        mesh = crop_to_box(mesh, lo, hi)
        _require_surface(mesh, "inside the crop box")
        selection.steps.append(f"crop box {_fmt(lo)}..{_fmt(hi)}{removed(before, mesh)}")
    if cut_plane is not None:
        plane = np.asarray(cut_plane, dtype=np.float64)
        scale = np.linalg.norm(plane[:3])
        before = mesh.area
        mesh = cut_by_plane(mesh, plane[:3] / scale, plane[3] / scale)
        _require_surface(mesh, "on the kept side of the cut plane (n . x + d > 0)")
        selection.steps.append(f"cut plane {_fmt(plane)}{removed(before, mesh)}")

    if mode == "auto":
        for _ in range(MAX_SUPPORTS):
            direction = selection.supports[0].normal if selection.supports else None
            fit = find_support_plane(mesh, up, bound, spacing, seed, direction)
            if fit is None or not fit.support:
                if not selection.supports:
                    why = f" ({fit.reason})" if fit is not None else ""
                    selection.steps.append(f"no support plane{why}")
                break
            before = mesh.area
            cut = cut_by_plane(mesh, fit.normal, fit.offset - fit.band)
            if len(cut.faces) == 0:
                selection.steps.append(f"support plane {fit.describe()} not cut: nothing left")
                break
            mesh = cut
            selection.supports.append(fit)
            selection.steps.append(f"support plane found: {fit.describe()}{removed(before, mesh)}")
            if fit.facing_cameras >= LOWER_SIDE_SHARE:
                break  # its cameras' side is cut: the rest is above the support
        before = mesh.area
        mesh, note = choose_component(mesh, bound, spacing)
        selection.steps.append(f"{note}{removed(before, mesh)}")
    elif mode == "largest":
        before = mesh.area
        parts = mesh.split(only_watertight=False)
        if len(parts) > 1:
            mesh = max(parts, key=lambda part: part.area)
            selection.steps.append(
                f"kept the largest of {len(parts)} components{removed(before, mesh)}"
            )
        else:
            selection.steps.append("kept the only component")
    selection.faces_after = len(mesh.faces)
    selection.area_after = float(mesh.area)
    return mesh, selection


def _require_surface(mesh: trimesh.Trimesh, where: str) -> None:
    if len(mesh.faces) == 0:
        raise IronError(f"no surface is left {where}; check the crop box and cut plane")


def _fmt(values: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.3g}" for v in values) + ")"
