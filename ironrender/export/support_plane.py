"""Support planes: the table top, floor or cloth under the object, found so it can be cut away.

In the SDF a support (table top, floor, cloth) is a large flat sheet that runs out to the edge of
the reconstructed volume, while the object lies inside the unit sphere, around its centre (the
normalisation centres it). :func:`find_support_plane` finds the dominant plane of a
marching-cubes mesh and tests whether it is such a support, or only a flat face of the object;
:func:`ironrender.export.select.select_object` (mode ``auto``) cuts the supports away. The method:

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
  most of the inlier area (the sheet) has a vertex on the volume's boundary (:func:`on_boundary`:
  at radius >= 0.97 of the unit sphere, or within one grid cell of the grid's faces, where
  marching cubes leaves open cuts) beyond 50 % of the disc's radius. The first catches a table
  clipped at the sphere; the second a cloth whose flat middle bends up or down before the edge
  (as a learned surface may there). A flat face of the object (a box's side, a plate) reaches
  neither; a stand leaving the sphere under the object leaves it near the disc's axis, in a
  sector or two;
  (d) *below the object*: the origin lies on the kept side, farther from the plane than the band
  (a support does not pass through the object's centre, and the cameras see its object side).

The outcome is a :class:`PlaneFit`: the plane, the measures of the tests, and whether it passed.
The volume's boundary (:func:`on_boundary`) and the grid's cell size (:func:`estimate_spacing`)
are defined here and shared with :mod:`ironrender.export.select`, which imports this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import trimesh

#: The object lies inside this sphere at the origin (the dataset convention).
UNIT_SPHERE_RADIUS = 1.0
#: A vertex at this radius or beyond is on the volume's boundary (:func:`on_boundary`).
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
#: With a ``direction`` (a later pass, looking for a slab's other side), hypotheses are drawn
#: only from faces within this angle of parallel to it.
PARALLEL_DEGREES = 10.0


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
    boundary = vertices[on_boundary(vertices, bound, spacing)]
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


# ------------------------------------------------------------------------------- grid and boundary
def estimate_spacing(mesh: trimesh.Trimesh) -> float:
    """Grid cell size of a marching-cubes mesh: its median edge length (measured equal)."""
    if len(mesh.faces) == 0:
        return 0.0
    return float(np.median(mesh.edges_unique_length))


def on_boundary(vertices: np.ndarray, bound: float, spacing: float) -> np.ndarray:
    """Vertices at the unit sphere's edge or within one cell of the grid's faces (open cuts)."""
    radius = np.linalg.norm(vertices, axis=1)
    return (radius >= BOUNDARY_RADIUS * UNIT_SPHERE_RADIUS) | (
        np.abs(vertices).max(axis=1) >= bound - spacing
    )
