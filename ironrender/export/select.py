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

``auto``, support planes (:func:`find_support_plane`). In the SDF a support (table top, floor,
cloth) is a large flat sheet that runs out to the edge of the reconstructed volume, while the
object lies inside the unit sphere, around its centre (the normalisation centres it). So:

* **Fit**: RANSAC over the faces. A hypothesis is the plane of one face drawn with probability
  proportional to its area; its score is the area of the faces within ``tolerance`` of the plane
  whose normals lie within 25 degrees of its normal, in either orientation (a slab has two
  sides), counted on a random subset of 20k faces. The best of :data:`RANSAC_HYPOTHESES` is
  refined by area-weighted principal component analysis of its inliers (three passes).
  ``tolerance`` is ``max(2 grid cells, 0.015)``.
* **Orient** the normal towards the kept side, the side the cameras are on: along ``up`` when the
  plane is roughly horizontal (``|n . up| >= 0.5``); otherwise, or without ``up``, towards the
  origin (the object's centre).
* **Accept** it as a support only if

  (a) *large*: its inlier faces inside the unit sphere cover at least 10 % of the disc in which
  the plane cuts the unit sphere;
  (b) *flat*: at least 75 % of the inlier area lies within half the tolerance of its side's
  median height (each side of a slab on its own). A curved surface near a plane spreads its
  patch evenly over the tolerance band (a sphere zone's area grows linearly with its height),
  so about half of it is that close; a flat sheet has nearly all of it there (measured: 0.9 to
  1 on tables and bent cloths, 0.5 to 0.65 on spheres, Spot and a curved blob). A rough cloth
  passes up to a height noise of about 0.4 tolerance (standard deviation; measured on a
  192^3 grid: 0.008 passes, 0.012 does not);
  (c) *reaching the boundary*: in at least half of 24 angular sectors around the disc's centre,
  either an inlier lies beyond 90 % of the disc's radius, or the connected component holding
  most of the inlier area (the sheet) has a vertex on the volume's boundary (below) beyond 50 %
  of the disc's radius. The first catches a table clipped at the sphere; the second a cloth
  whose flat middle bends up or down before the edge (as a learned surface may there). A flat
  face of the object (a box's side, a plate) reaches neither; a stand leaving the sphere under
  the object leaves it near the disc's axis, in a sector or two;
  (d) *below the object*: the origin lies on the kept side, farther from the plane than the band
  (a support does not pass through the object's centre, and the cameras see its object side).

* **Cut**: remove everything within ``band`` (= ``tolerance``) of the plane and everything beyond
  it (keep ``n . x + d > band``, triangles split exactly). The object's contact region, a cap of
  height ``band`` where it touches the support, goes too: the cameras never see it anyway.
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

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import trimesh

from ironrender.errors import IronError

#: Modes of :func:`select_object` (``ExportConfig.object``).
OBJECT_MODES = ("largest", "all", "auto")
#: The object lies inside this sphere at the origin (the dataset convention).
UNIT_SPHERE_RADIUS = 1.0
#: A component with a vertex at this radius or beyond touches the boundary (clutter candidate).
BOUNDARY_RADIUS = 0.97
#: Plane inlier distance, in grid cells, and its floor in scene units.
PLANE_TOLERANCE_CELLS = 2.0
MIN_PLANE_TOLERANCE = 0.015
#: Inlier faces' normals lie within this angle of the plane normal (either orientation).
PLANE_NORMAL_DEGREES = 25.0
#: RANSAC: hypotheses, faces scored per hypothesis (a random subset), hypotheses per batch.
RANSAC_HYPOTHESES = 256
RANSAC_FACES = 20_000
RANSAC_BATCH = 32
#: Refinement passes (area-weighted PCA of the inliers).
REFINE_PASSES = 3
#: Support test: inlier area / area of the plane's disc in the unit sphere, at least.
MIN_DISC_COVERAGE = 0.1
#: Support test: share of the inlier area within half the tolerance of its side's median height
#: (flat, not a curved surface near the plane: measured 0.9-1 on tables, 0.5-0.65 on curves).
MIN_FLATNESS = 0.75
#: Support test, reaching the boundary: inliers beyond this fraction of the disc radius are on
#: its rim; boundary vertices of the patch's sheet count beyond this fraction (not near the
#: axis, where a stand under the object leaves the sphere) ...
RIM_FRACTION = 0.9
SHEET_FRACTION = 0.5
#: ... and one or the other must be found in at least this fraction of the angular sectors.
RIM_SECTORS = 24
MIN_RIM_SECTORS = 0.5
#: Orient a plane by ``up`` when ``|n . up|`` is at least this (roughly horizontal plane).
UP_COS = 0.5
#: At most this many supports are cut (a slab's lower side, then its upper side); the second
#: only after a plane seen from below, and within this angle of parallel to it.
MAX_SUPPORTS = 2
PARALLEL_DEGREES = 10.0
#: A plane is a slab's lower side when less than this share of its area faces the cameras.
LOWER_SIDE_SHARE = 0.25
#: A component away from the boundary wins over larger boundary-touching ones from this share.
MIN_INNER_SHARE = 0.1


@dataclass
class PlaneFit:
    """The best plane of :func:`find_support_plane`: ``normal . x + offset = 0``.

    ``normal`` is a unit vector pointing to the kept side (the cameras' side); ``band`` is the
    inlier tolerance, also the width cut away; ``area`` the inlier area inside the unit sphere,
    ``disc_coverage`` that area over the area of the disc in which the plane cuts the unit
    sphere, ``rim_coverage`` the share of angular sectors in which the plane's patch or sheet
    reaches the boundary, ``flatness`` the share of the inlier area within half the tolerance of
    its side's median height, ``facing_cameras`` the share of the inlier area whose normals point
    to the kept side (1 for a table's top, 0 for a slab's lower side, about 0.5 for both).
    ``support`` says whether it passed the support test; ``reason`` says why not (empty when it
    did).
    """

    normal: np.ndarray
    offset: float
    band: float
    area: float = 0.0
    disc_coverage: float = 0.0
    rim_coverage: float = 0.0
    flatness: float = 1.0
    facing_cameras: float = 1.0
    support: bool = True
    reason: str = ""

    def describe(self) -> str:
        n = ", ".join(f"{v:.2f}" for v in self.normal)
        return f"normal ({n}), offset {self.offset:.3f}"

    def reject(self, why: str) -> None:
        """Mark the plane as no support, adding ``why`` to the reason."""
        self.support = False
        self.reason = (
            self.reason + ", " if self.reason else f"best plane {self.describe()}: "
        ) + why


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
    :func:`ironrender.evaluation.relight.capture_up`), used by ``auto`` to orient support planes.
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


def estimate_spacing(mesh: trimesh.Trimesh) -> float:
    """Grid cell size of a marching-cubes mesh: its median edge length (measured equal)."""
    if len(mesh.faces) == 0:
        return 0.0
    return float(np.median(mesh.edges_unique_length))


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


# ------------------------------------------------------------------------------- support planes
def find_support_plane(
    mesh: trimesh.Trimesh,
    up: np.ndarray | None = None,
    bound: float = 1.0,
    spacing: float | None = None,
    seed: int = 0,
    direction: np.ndarray | None = None,
) -> PlaneFit | None:
    """The dominant plane of ``mesh`` and whether it is a support (module docstring).

    ``direction``: draw hypotheses only from faces whose normals lie within
    :data:`PARALLEL_DEGREES` of it (the later passes look for the other side of a slab).
    Returns ``None`` for a mesh with fewer than 3 faces or no face in that direction.
    """
    if len(mesh.faces) < 3:
        return None
    spacing = estimate_spacing(mesh) if spacing is None else float(spacing)
    tolerance = max(PLANE_TOLERANCE_CELLS * spacing, MIN_PLANE_TOLERANCE)
    min_cos = math.cos(math.radians(PLANE_NORMAL_DEGREES))
    centres = np.asarray(mesh.triangles_center, dtype=np.float64)
    normals = np.asarray(mesh.face_normals, dtype=np.float64)
    areas = np.asarray(mesh.area_faces, dtype=np.float64)
    weights = areas.copy()
    if direction is not None:
        parallel = math.cos(math.radians(PARALLEL_DEGREES))
        weights[np.abs(normals @ np.asarray(direction, dtype=np.float64)) <= parallel] = 0.0
    if weights.sum() <= 0:
        return None

    normal, offset = _ransac_plane(centres, normals, areas, weights, tolerance, min_cos, seed)
    for _ in range(REFINE_PASSES):
        inlier = _inliers(centres, normals, normal, offset, tolerance, min_cos)
        if inlier.sum() < 3:
            break
        normal, offset = _weighted_plane(centres[inlier], areas[inlier], normal)
    normal, offset = _orient(normal, offset, up)
    inlier = _inliers(centres, normals, normal, offset, tolerance, min_cos)
    if not inlier.any():
        return None
    heights = centres[inlier] @ normal + offset
    facing = normals[inlier] @ normal > 0
    fit = _support_test(mesh, inlier, normal, offset, tolerance, bound, spacing)
    fit.flatness = _flatness(heights, facing, areas[inlier], tolerance)
    fit.facing_cameras = float(areas[inlier][facing].sum() / areas[inlier].sum())
    if fit.flatness < MIN_FLATNESS:  # test (b) in the module docstring
        fit.reject(f"curved ({100 * fit.flatness:.0f} % of its patch within half the tolerance)")
    return fit


def _inliers(centres, normals, normal, offset, tolerance, min_cos) -> np.ndarray:
    distance = np.abs(centres @ normal + offset)
    return (distance < tolerance) & (np.abs(normals @ normal) > min_cos)


def _ransac_plane(
    centres, normals, areas, weights, tolerance, min_cos, seed
) -> tuple[np.ndarray, float]:
    """The plane of the face (drawn by ``weights``) whose plane has the largest inlier area."""
    rng = np.random.default_rng(seed)
    probability = weights / weights.sum()
    hypotheses = rng.choice(len(areas), size=RANSAC_HYPOTHESES, p=probability)
    subset = rng.choice(len(areas), size=min(RANSAC_FACES, len(areas)), replace=False)
    c, n, a = centres[subset], normals[subset], areas[subset]
    best_score, best = -1.0, hypotheses[0]
    for start in range(0, len(hypotheses), RANSAC_BATCH):
        batch = hypotheses[start : start + RANSAC_BATCH]
        h_normal = normals[batch]  # (B, 3)
        h_offset = -np.sum(h_normal * centres[batch], axis=1)  # (B,)
        distance = np.abs(c @ h_normal.T + h_offset)  # (S, B)
        agree = np.abs(n @ h_normal.T) > min_cos
        score = (a[:, None] * ((distance < tolerance) & agree)).sum(axis=0)
        i = int(score.argmax())
        if score[i] > best_score:
            best_score, best = float(score[i]), batch[i]
    normal = normals[best]
    return normal, float(-normal @ centres[best])


def _flatness(heights, facing, areas, tolerance) -> float:
    """Share of the inlier area within ``tolerance / 2`` of the area-weighted median height of
    its side (faces facing along the normal, and against it: a slab's two sides)."""
    close = 0.0
    for side in (facing, ~facing):
        if side.any():
            order = np.argsort(heights[side])
            cumulative = np.cumsum(areas[side][order])
            median = heights[side][order][np.searchsorted(cumulative, cumulative[-1] / 2)]
            close += areas[side][np.abs(heights[side] - median) < tolerance / 2].sum()
    return float(close / areas.sum())


def _weighted_plane(points, weights, previous) -> tuple[np.ndarray, float]:
    """Area-weighted least-squares plane (smallest principal axis), oriented like ``previous``."""
    mean = np.average(points, axis=0, weights=weights)
    centred = points - mean
    covariance = (centred * weights[:, None]).T @ centred
    _, vectors = np.linalg.eigh(covariance)
    normal = vectors[:, 0]
    if normal @ previous < 0:
        normal = -normal
    return normal, float(-normal @ mean)


def _orient(normal, offset, up) -> tuple[np.ndarray, float]:
    """Point the normal to the cameras' side: along ``up`` for a roughly horizontal plane, else
    towards the origin (the object's centre)."""
    if up is not None:
        up = np.asarray(up, dtype=np.float64)
        up = up / np.linalg.norm(up)
        if abs(normal @ up) >= UP_COS:
            sign = 1.0 if normal @ up > 0 else -1.0
            return sign * normal, sign * offset
    sign = 1.0 if offset >= 0 else -1.0  # offset = signed distance of the origin
    return sign * normal, sign * offset


def _support_test(mesh, inlier, normal, offset, band, bound, spacing) -> PlaneFit:
    """Tests (a), (c) and (d) of the module docstring: large, reaching the boundary all around,
    with the origin on the kept side."""
    centres = np.asarray(mesh.triangles_center)
    areas = np.asarray(mesh.area_faces)
    disc_radius = math.sqrt(max(UNIT_SPHERE_RADIUS**2 - offset**2, 0.0))
    inside = np.linalg.norm(centres, axis=1) <= UNIT_SPHERE_RADIUS
    area = float(areas[inlier & inside].sum())
    disc_area = math.pi * disc_radius**2
    disc_coverage = area / disc_area if disc_area > 0 else 0.0
    # In-plane polar coordinates around the disc's centre (the origin's foot, u = v = 0).
    e1 = np.cross(normal, [1.0, 0.0, 0.0] if abs(normal[0]) < 0.9 else [0.0, 1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(normal, e1)

    def sectors(points: np.ndarray, min_radius: float) -> np.ndarray:
        u, v = points @ e1, points @ e2
        far = np.hypot(u, v) >= min_radius
        angle = np.arctan2(v[far], u[far]) + math.pi
        return np.clip(np.floor(angle / (2 * math.pi) * RIM_SECTORS), 0, RIM_SECTORS - 1)

    # The patch reaches its disc's rim, or its sheet (connected component) reaches the boundary.
    on_rim = sectors(centres[inlier], RIM_FRACTION * disc_radius)
    labels = trimesh.graph.connected_component_labels(mesh.face_adjacency, len(mesh.faces))
    sheet = np.bincount(labels[inlier], weights=areas[inlier]).argmax()
    vertices = np.asarray(mesh.vertices)[np.unique(mesh.faces[labels == sheet])]
    boundary = vertices[_on_boundary(vertices, bound, spacing)]
    reached = np.unique(np.concatenate([on_rim, sectors(boundary, SHEET_FRACTION * disc_radius)]))
    rim_coverage = len(reached) / RIM_SECTORS
    reasons = []
    if disc_radius == 0:
        reasons.append("the plane misses the unit sphere")
    if disc_coverage < MIN_DISC_COVERAGE:
        reasons.append(f"covers {100 * disc_coverage:.0f} % of its disc in the unit sphere")
    if rim_coverage < MIN_RIM_SECTORS:
        reasons.append(f"reaches the boundary in {100 * rim_coverage:.0f} % of directions")
    if offset <= band:
        reasons.append("the object's centre is not on the cameras' side of it")
    fit = PlaneFit(normal, offset, band, area, disc_coverage, rim_coverage)
    for reason in reasons:
        fit.reject(reason)
    return fit


# ------------------------------------------------------------------------------- components
def _on_boundary(vertices: np.ndarray, bound: float, spacing: float) -> np.ndarray:
    """Vertices at the unit sphere's edge or within one cell of the grid's faces (open cuts)."""
    radius = np.linalg.norm(vertices, axis=1)
    return (radius >= BOUNDARY_RADIUS * UNIT_SPHERE_RADIUS) | (
        np.abs(vertices).max(axis=1) >= bound - spacing
    )


def touches_boundary(mesh: trimesh.Trimesh, bound: float, spacing: float) -> bool:
    """Whether ``mesh`` reaches the unit sphere's edge or the grid's faces (open cuts)."""
    return bool(_on_boundary(np.asarray(mesh.vertices).reshape(-1, 3), bound, spacing).any())


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
