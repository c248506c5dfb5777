"""Synthetic co-located flash captures with ground truth, rendered by Mitsuba 3.

Mitsuba is an independent renderer: a dataset written here tests our whole pipeline against
physics we did not write. The capture follows IRON's setting (Sec. 3 of the paper):

* **Object**: a textured mesh (default: Keenan Crane's public-domain "spot" cow), centred and
  scaled so that its minimum bounding sphere has radius ``bounding_radius`` (< 1, the object
  lies inside the unit sphere). ``x_normalized = scale * (x_source - center)``.
* **Material**: Mitsuba's ``principled`` BSDF, metallic 0, ``base_color`` = the texture (linear),
  spatially varying perceptual ``roughness`` (a given map, else one derived from the texture),
  ``specular`` level s (F0 = 0.08 s; s = 0.5 gives F0 = 0.04).
* **Light**: one ``point`` emitter at each camera centre, nothing else, black background
  (unless a room is asked for, below). Integrator ``direct`` with emitter samples only:
  single-bounce light transport, exactly the image formation IRON models (Eq. 8 of the
  paper, no interreflection),

      L(x -> camera) = (I / d^2) * f_r(x; v, v) * (n . v),      d = |x - camera centre|.

  A point light is a delta emitter, so every sample is exact; the only Monte Carlo error is the
  average over each pixel's footprint (a box filter over [i, i+1) x [j, j+1), antialiasing
  silhouettes and texture edges). ``spp`` = 64 multi-jittered samples (8 x 8) give a converged
  image at 128^2 (59.5 dB PSNR against 1024 spp, measured).
* **Exposure**: the views are rendered with I = 1; a global exposure E (automatic: the
  ``exposure_percentile`` of object pixels maps to ``exposure_target``, so a few specular
  highlights clip at most) scales every image. Rendering is linear in I, so the dataset is
  exactly the image of a light of intensity ``I = E`` (``gt/light.json``).

Co-located ground truth in the project's parameterization (``gt/``, maps over the mesh UVs):
at a co-located light the half vector is the view direction, so Fresnel is exactly F0 and
Mitsuba's principled BSDF (times cos) at c = n . v is, measured against ``BSDF.eval``,

    specular: F0 * D_GGX(c; alpha) * G1(c; alpha)^2 / (4 c),    alpha = roughness^2,
    diffuse:  base / pi * c * [(1 - F/2)^2 + R (2 F + F^2 (R - 1))],
              F = (1 - c)^5,  R = 2 roughness.

The Disney diffuse factor in brackets is 1 at normal incidence and differs from Lambert towards
grazing angles (about +17 % at c = 0.3 for roughness 0.5); ``light.json`` repeats this.
Relit test views use a procedural HDR environment map (``gt/envmap.exr``, Mitsuba's lat-long
layout: :mod:`ironrender.data.envmap`) with the ``direct`` integrator (shadows, no
interreflection) and the emitter hidden (black background).

Nuisances of real captures (off by default; the default capture is unchanged by this code):

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
object: checked) and the relit views (the object alone). ``gt/light.json`` records the up axis,
the room and the plane under ``scene``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ironrender.data.envmap import SkyConfig, procedural_sky
from ironrender.data.images import read_image, write_data_png, write_image
from ironrender.errors import IronError

if TYPE_CHECKING:  # torch is imported where it is used: `iron --help` must stay fast
    import torch

    from ironrender.data.cameras import Cameras

ASSET_DIR = Path(__file__).resolve().parents[1] / "assets" / "spot"
DEFAULT_MESH = ASSET_DIR / "spot_triangulated.obj"
DEFAULT_TEXTURE = ASSET_DIR / "spot_texture.png"

WORLD_UP = (0.0, 1.0, 0.0)  # spot stands on +Y; Mitsuba's envmap also has +Y up
# Cameras whose viewing direction is this close to +-up use +Z as their up vector instead.
POLE_COS = 0.99
# Reflectance at normal incidence per unit of principled's `specular` (Mitsuba 3 docs).
F0_PER_SPECULAR = 0.08
# Intensity (W/sr) of the point light in the raw renders; the exposure scales it.
RENDER_INTENSITY = 1.0
# A pixel belongs to the object when at least half of its footprint hits the mesh.
COVERAGE_THRESHOLD = 0.5
# Distinct Mitsuba seeds per view: seed * SEED_STRIDE + view counter.
SEED_STRIDE = 100_003
# Procedural roughness: weights of luminance and edge strength, and smoothing (texels).
ROUGHNESS_LUMINANCE_WEIGHT = 0.8
ROUGHNESS_EDGE_WEIGHT = 0.4
ROUGHNESS_BLUR_SIGMA = 2.0
EDGE_NORMALIZATION_PERCENTILE = 99.0
LUMINANCE_WEIGHTS = (0.2126, 0.7152, 0.0722)  # Rec. 709


BSDFS = ("principled", "iron")
"""``SynthConfig.bsdf``: Mitsuba's principled, or exactly stage 2's model (see the field)."""

ROOMS = ("none", "dim")
"""``SynthConfig.room``: black background, or a dim box room lit only by the flash."""

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


@dataclass
class SynthConfig:
    """Everything that defines a synthetic capture (saved into ``gt/light.json``)."""

    mesh: str | None = None  # an OBJ/PLY/GLB with UVs; None: the built-in spot cow
    texture: str | None = None  # base colour image over the UVs; None: spot's texture
    roughness_map: str | None = None  # perceptual roughness in [0, 1]; None: procedural
    views: int = 64
    test_views: int = 16
    resolution: int = 128
    # Direct light from a point light is exact per sample; spp only antialiases edges and texture:
    # 64 multi-jittered samples give 59.5 dB PSNR against a 1024-spp render (16 spp: 52 dB).
    spp: int = 64
    relight: bool = True
    # Environment lighting is noisier (light *and* BSDF samples, MIS): 64 spp gives about
    # 43 dB PSNR between two renders' gamma-encoded object pixels (46 dB at 128 for 2x time).
    relight_spp: int = 64
    seed: int = 0
    bounding_radius: float = 0.85  # radius of the object's bounding sphere after normalization
    camera_distance: float = 3.0  # distance of every camera centre from the origin
    frame_fill: float = 0.9  # the object's widest view spans this fraction of the image
    exposure: float | None = None  # None: automatic (percentile -> target)
    exposure_percentile: float = 99.9
    exposure_target: float = 0.9
    relight_exposure: float | None = None  # scale of the environment map; None: automatic
    specular: float = 0.5  # principled `specular`; F0 = 0.08 * specular
    # "principled" (a real-world-like material the model only approximates: Disney diffuse) or
    # "iron": exactly stage 2's model, Lambert + GGX with F = F0 (to isolate model mismatch)
    bsdf: str = "principled"
    roughness_range: tuple[float, float] = (0.3, 0.8)  # perceptual, procedural map only
    sky: SkyConfig = field(default_factory=SkyConfig)
    prefer_fast_variant: bool = True
    # Nuisances of real captures (module docstring); ground truth stays the object's.
    room: str = "none"  # "dim": textured walls lit only by the flash, dim but not black
    support_plane: bool = False  # a textured table top touching the object's lowest point
    support_albedo: float = 0.35  # its mean diffuse albedo (0.04: a black cloth)
    # With a support plane, cameras lie at least this high (degrees above the horizontal plane
    # through the origin, so higher still over the plane itself, which lies below the origin).
    min_elevation: float = 10.0


@dataclass
class Normalization:
    """``x_normalized = scale * (x_source - center)``."""

    center: np.ndarray
    scale: float

    @property
    def matrix(self) -> np.ndarray:
        """The 4x4 source-to-normalized transform."""
        m = np.eye(4)
        m[:3, :3] *= self.scale
        m[:3, 3] = -self.scale * np.asarray(self.center)
        return m

    def apply(self, points: np.ndarray) -> np.ndarray:
        return self.scale * (np.asarray(points) - self.center)


@dataclass
class TexturedMesh:
    """Per-vertex positions, UVs (OBJ convention: v up) and unit normals; triangle faces."""

    vertices: np.ndarray
    uvs: np.ndarray
    normals: np.ndarray
    faces: np.ndarray


@dataclass
class Materials:
    """Material maps over the mesh UVs (H, W, ...), row 0 = v of 1 (image convention)."""

    base_color: np.ndarray  # (H, W, 3) linear
    perceptual_roughness: np.ndarray  # (H, W) in [0, 1]
    specular: float

    @property
    def f0(self) -> float:
        return F0_PER_SPECULAR * self.specular

    @property
    def alpha(self) -> np.ndarray:
        """GGX alpha = perceptual roughness^2 (Mitsuba's principled BSDF)."""
        return self.perceptual_roughness**2


# --------------------------------------------------------------------------------- inputs
def load_textured_mesh(path: str | Path) -> TexturedMesh:
    """Load a triangle mesh with UVs; smooth normals are computed over welded positions.

    Vertices split at UV seams get the same normal on both sides, so shading has no seams.
    """
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise IronError(f"{path}: mesh file not found")
    try:
        mesh = trimesh.load(path, force="mesh", process=False)
    except Exception as exc:  # any loader failure is a bad file
        raise IronError(f"{path}: cannot read mesh ({type(exc).__name__}: {exc})") from exc
    if len(mesh.faces) == 0:
        raise IronError(f"{path}: mesh has no triangles")
    uv = getattr(mesh.visual, "uv", None)
    if uv is None or len(uv) != len(mesh.vertices):
        raise IronError(
            f"{path}: mesh has no texture coordinates (UVs); unwrap it first (e.g. xatlas)"
        )
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    welded, index = np.unique(vertices, axis=0, return_inverse=True)
    index = index.reshape(-1)
    shape = trimesh.Trimesh(welded, index[faces], process=False)
    normals = np.asarray(shape.vertex_normals)[index]
    return TexturedMesh(vertices, np.asarray(uv, dtype=np.float64), normals, faces)


def normalize_mesh(mesh: TexturedMesh, radius: float) -> tuple[TexturedMesh, Normalization]:
    """Centre the minimum bounding sphere at the origin and scale it to ``radius``."""
    import trimesh

    center, sphere_radius = trimesh.nsphere.minimum_nsphere(mesh.vertices)
    normalization = Normalization(np.asarray(center, dtype=np.float64), radius / sphere_radius)
    moved = dataclasses.replace(mesh, vertices=normalization.apply(mesh.vertices))
    return moved, normalization


def load_texture(path: str | Path) -> np.ndarray:
    """A base-colour texture as linear RGB in [0, 1] (PNG/JPG decoded with gamma 2.2)."""
    return np.clip(read_image(path), 0.0, 1.0)


def load_roughness_map(path: str | Path) -> np.ndarray:
    """A perceptual roughness map (H, W) in [0, 1]: PNG/JPG as raw data (no gamma), EXR as is."""
    path = Path(path)
    if not path.is_file():
        raise IronError(f"{path}: roughness map not found")
    if path.suffix.lower() == ".exr":
        values = read_image(path)[..., 0]
    else:
        from PIL import Image

        try:
            with Image.open(path) as img:
                values = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
        except Exception as exc:
            raise IronError(f"{path}: cannot read roughness map ({exc})") from exc
    return np.clip(values, 0.0, 1.0).astype(np.float32)


def procedural_roughness(base_color: np.ndarray, low: float, high: float) -> np.ndarray:
    """A spatially varying perceptual roughness (H, W) derived from a texture.

    ``r = low + (high - low) * clip(w_L * L + w_E * E, 0, 1)`` where L is the normalized
    luminance of the gamma-encoded texture (bright regions rough, dark ones glossy) and E the
    normalized Sobel edge strength (material boundaries rougher), then smoothed so the map has
    no texel-scale aliasing.
    """
    from skimage.filters import gaussian, sobel

    encoded = np.clip(base_color, 0.0, 1.0) ** (1.0 / 2.2)
    luminance = encoded @ np.asarray(LUMINANCE_WEIGHTS)
    span = luminance.max() - luminance.min()
    lum = (luminance - luminance.min()) / span if span > 0 else np.zeros_like(luminance)
    edges = sobel(gaussian(luminance, sigma=ROUGHNESS_BLUR_SIGMA))
    scale = np.percentile(edges, EDGE_NORMALIZATION_PERCENTILE)
    edges = np.clip(edges / scale, 0.0, 1.0) if scale > 0 else np.zeros_like(edges)
    mix = np.clip(ROUGHNESS_LUMINANCE_WEIGHT * lum + ROUGHNESS_EDGE_WEIGHT * edges, 0.0, 1.0)
    mix = gaussian(mix, sigma=ROUGHNESS_BLUR_SIGMA)
    return (low + (high - low) * mix).astype(np.float32)


# --------------------------------------------------------------------------------- cameras
def sample_poses(
    n_train: int,
    n_test: int,
    distance: float,
    seed: int,
    min_elevation: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint train and test world-to-camera matrices (float64) looking at the origin.

    A Fibonacci lattice of ``n_train + n_test`` directions (even coverage), rotated by a random
    rotation drawn from ``seed``; a seeded random subset is the test set, so test views lie
    between training views. The image's up is world +Y (+Z for views along +-Y).

    ``min_elevation`` (degrees) restricts the lattice to the cap of directions at least that
    far above the horizontal plane (normal ``WORLD_UP``), evenly in area (heights uniform), and
    the random rotation to one about the up axis, so the cap stays above: a capture of an
    object on a table. None keeps the whole sphere (and the exact poses of earlier versions).
    """
    import torch
    from scipy.spatial.transform import Rotation

    from ironrender.data.cameras import look_at

    n = n_train + n_test
    k = np.arange(n) + 0.5
    phi = math.pi * (3.0 - math.sqrt(5.0)) * k  # golden angle
    rng = np.random.default_rng(seed)
    if min_elevation is None:
        z = 1.0 - 2.0 * k / n
        r = np.sqrt(1.0 - z**2)
        points = np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=-1)
        points = Rotation.random(random_state=rng).apply(points)
    else:
        up = np.asarray(WORLD_UP)
        lowest = math.sin(math.radians(min_elevation))
        height = 1.0 - (1.0 - lowest) * k / n  # uniform in height = uniform in area on the cap
        r = np.sqrt(1.0 - height**2)
        across = np.stack([np.cos(phi), np.zeros(n), np.sin(phi)], axis=-1)  # horizontal: +Y up
        points = r[:, None] * across + height[:, None] * up
        points = Rotation.from_rotvec(rng.uniform(0.0, 2.0 * math.pi) * up).apply(points)
    order = rng.permutation(n)
    test_index, train_index = np.sort(order[:n_test]), np.sort(order[n_test:])

    def make(index: np.ndarray) -> torch.Tensor:
        eye = torch.from_numpy(distance * points[index])
        up = torch.tensor(WORLD_UP, dtype=torch.float64).expand_as(eye).clone()
        near_pole = (eye @ up[0]).abs() / distance > POLE_COS
        up[near_pole] = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
        return look_at(eye, torch.zeros_like(eye), up)

    return make(train_index), make(test_index)


def fit_field_of_view(vertices: np.ndarray, w2c: torch.Tensor, fill: float) -> float:
    """Field of view (degrees, square images) in which the object's widest view spans ``fill``.

    For every camera and vertex, tan of the angle off the optical axis along x or y is
    max(|x|, |y|) / z in camera coordinates; the largest one must reach ``fill`` of tan(fov/2),
    so the object touches no image border in any view (margin (1 - fill) / 2 at least).
    """
    w2c = w2c.detach().cpu().double().numpy()
    p = np.einsum("nij,vj->nvi", w2c[:, :3, :3], vertices) + w2c[:, None, :3, 3]
    if (p[..., 2] <= 0).any():
        raise IronError("a camera is inside the object; increase the camera distance")
    tan_max = float((np.abs(p[..., :2]).max(-1) / p[..., 2]).max())
    return math.degrees(2.0 * math.atan(tan_max / fill))


def cameras_from_poses(w2c: torch.Tensor, resolution: int, fov_degrees: float) -> Cameras:
    """Square pinhole cameras with a centred principal point (float64, CPU)."""
    import torch

    from ironrender.data.cameras import Cameras, intrinsics_from_fov

    K = intrinsics_from_fov(resolution, resolution, fov_degrees).to(torch.float64)
    sizes = torch.tensor([[resolution, resolution]]).expand(len(w2c), 2).clone()
    return Cameras(K.expand(len(w2c), 3, 3).clone(), w2c, sizes)


# --------------------------------------------------------------------------------- nuisances
def smooth_noise(rng: np.random.Generator, size: int, sigmas) -> np.ndarray:
    """Tileable multi-scale noise (size, size) in [0, 1].

    White noise blurred (wrapping around, so the texture repeats without seams) at each scale
    in ``sigmas`` (texels, a number or a (rows, columns) pair for streaks), each layer weighted
    equally by its standard deviation, then stretched to [0, 1].
    """
    from scipy.ndimage import gaussian_filter

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


# --------------------------------------------------------------------------------- writing
def write_obj(path: Path, mesh: TexturedMesh, material_file: str | None = None) -> None:
    """Wavefront OBJ with ``v``, ``vt``, ``vn`` sharing one index per vertex."""
    lines = [f"mtllib {material_file}", "usemtl material"] if material_file else []
    lines += [f"v {x:.9g} {y:.9g} {z:.9g}" for x, y, z in mesh.vertices]
    lines += [f"vt {u:.9g} {v:.9g}" for u, v in mesh.uvs]
    lines += [f"vn {x:.9g} {y:.9g} {z:.9g}" for x, y, z in mesh.normals]
    lines += [f"f {a}/{a}/{a} {b}/{b}/{b} {c}/{c}/{c}" for a, b, c in mesh.faces + 1]
    path.write_text("\n".join(lines) + "\n")


def _write_mtl(path: Path, texture_file: str) -> None:
    path.write_text(f"newmtl material\nKd 1 1 1\nKs 0 0 0\nmap_Kd {texture_file}\n")


def _write_materials(gt: Path, materials: Materials) -> None:
    write_image(gt / "diffuse_albedo.exr", materials.base_color)
    write_image(gt / "diffuse_albedo.png", materials.base_color)  # gamma 2.2, like photos
    constant = np.full(materials.perceptual_roughness.shape, materials.f0, dtype=np.float32)
    write_image(gt / "specular_albedo.exr", constant)
    write_image(gt / "roughness.exr", materials.alpha)
    write_data_png(gt / "roughness.png", materials.alpha)  # raw data, no gamma
    write_image(gt / "perceptual_roughness.exr", materials.perceptual_roughness)


# --------------------------------------------------------------------------------- rendering
def _bsdf(mi, materials: Materials, kind: str = "principled") -> dict:
    def bitmap(data: np.ndarray) -> dict:
        return {"type": "bitmap", "bitmap": mi.Bitmap(np.ascontiguousarray(data)), "raw": True}

    if kind == "iron":
        # 0.5 * diffuse(2 rho_d) + 0.5 * roughconductor(GGX, F = 1, 2 F0) is exactly our BRDF
        # (tests/test_brdf.py checks this blend against ironrender.rendering.brdf).
        return {
            "type": "twosided",
            "material": {
                "type": "blendbsdf",
                "weight": 0.5,
                "bsdf_0": {
                    "type": "diffuse",
                    "reflectance": bitmap((2 * materials.base_color).astype(np.float32)),
                },
                "bsdf_1": {
                    "type": "roughconductor",
                    "distribution": "ggx",
                    "alpha": bitmap(materials.alpha[..., None].astype(np.float32)),
                    "material": "none",
                    "specular_reflectance": {"type": "rgb", "value": [2 * materials.f0] * 3},
                },
            },
        }
    principled = {
        "type": "principled",
        "base_color": bitmap(materials.base_color.astype(np.float32)),
        "roughness": bitmap(materials.perceptual_roughness[..., None].astype(np.float32)),
        "metallic": 0.0,
        "specular": float(materials.specular),
        "spec_tint": 0.0,
        "anisotropic": 0.0,
        "sheen": 0.0,
        "clearcoat": 0.0,
        "spec_trans": 0.0,
    }
    # Two-sided only guards against meshes with inverted faces; a closed, outward-oriented mesh
    # shows the cameras front faces only.
    return {"type": "twosided", "material": principled}


def _scene(
    mi,
    mesh_file: Path,
    materials: Materials,
    sensor: dict,
    emitter: dict,
    integrator,
    bsdf: str,
    extra_shapes: dict | None = None,
):
    return mi.load_dict(
        {
            "type": "scene",
            "integrator": integrator,
            "sensor": sensor,
            "light": emitter,
            "object": {
                "type": "obj",
                "filename": str(mesh_file),
                "bsdf": _bsdf(mi, materials, bsdf),
            },
            **(extra_shapes or {}),
        }
    )


def _render_views(mi, scene, cameras: Cameras, seeds: list[int], move_light: bool, bar=None):
    """Render every camera by moving the scene's sensor (and the point light onto it)."""
    from ironrender.data.mitsuba_backend import horizontal_fov_degrees, mitsuba_to_world

    params = mi.traverse(scene)
    c2w = cameras.c2w.detach().cpu().double().numpy()
    K = cameras.intrinsics.detach().cpu().double().numpy()
    out = []
    for i, seed in enumerate(seeds):
        W, H = cameras.width(i), cameras.height(i)
        params["sensor.to_world"] = mi.ScalarTransform4f(mitsuba_to_world(c2w[i]).tolist())
        params["sensor.x_fov"] = horizontal_fov_degrees(K[i], W, H)
        if move_light:
            params["light.position"] = mi.Point3f(*(float(x) for x in c2w[i, :3, 3]))
        params.update()
        out.append(np.array(mi.render(scene, seed=seed), dtype=np.float32))
        if bar is not None:
            bar.update(1)
    return np.stack(out)


def auto_exposure(images: np.ndarray, coverage: np.ndarray, percentile: float, target: float):
    """Scale mapping the ``percentile`` of object pixels' max channel to ``target``."""
    values = images.max(axis=-1)[coverage >= COVERAGE_THRESHOLD]
    if values.size == 0:
        raise IronError("the object is not visible in any view; check the mesh and cameras")
    level = float(np.percentile(values, percentile))
    if not level > 0:
        raise IronError("the rendered object is black; check the texture")
    return target / level


# --------------------------------------------------------------------------------- main
def synthesize(
    config: SynthConfig, out_dir: str | Path, progress: bool = True, overwrite: bool = False
) -> Path:
    """Render a synthetic IRON dataset with ground truth into ``out_dir``; returns it.

    Writes ``train/``, ``test/`` (gamma PNG + linear EXR twin, ``cam_dict_norm.json``) and
    ``gt/`` (mesh, material maps, ``light.json``, masks, environment map, relit test views).
    ``overwrite`` replaces those three folders if they exist; otherwise existing ones are an
    error.
    """
    import torch
    from tqdm import tqdm

    from ironrender.data.dataset import save_split
    from ironrender.data.mitsuba_backend import (
        multijitter_sample_count,
        perspective_sensor,
        select_variant,
    )

    start = time.perf_counter()
    _validate(config)
    out = Path(out_dir)
    mesh_path = Path(config.mesh) if config.mesh else DEFAULT_MESH
    texture_path = Path(config.texture) if config.texture else DEFAULT_TEXTURE
    mesh, normalization = normalize_mesh(load_textured_mesh(mesh_path), config.bounding_radius)
    base_color = load_texture(texture_path)
    if config.roughness_map:
        roughness = load_roughness_map(config.roughness_map)
    else:
        roughness = procedural_roughness(base_color, *config.roughness_range)
    materials = Materials(base_color, roughness, config.specular)

    _prepare_output(out, overwrite)
    gt = out / "gt"
    gt.mkdir(parents=True)
    write_obj(gt / "mesh.obj", mesh, "mesh.mtl")
    _write_mtl(gt / "mesh.mtl", "diffuse_albedo.png")
    _write_materials(gt, materials)

    min_elevation = config.min_elevation if config.support_plane else None
    train_w2c, test_w2c = sample_poses(
        config.views, config.test_views, config.camera_distance, config.seed, min_elevation
    )
    all_w2c = torch.cat([train_w2c, test_w2c])
    fov = fit_field_of_view(mesh.vertices, all_w2c, config.frame_fill)
    train = cameras_from_poses(train_w2c, config.resolution, fov)
    test = cameras_from_poses(test_w2c, config.resolution, fov)
    variant = select_variant(config.prefer_fast_variant)
    import mitsuba as mi

    n_renders = len(train) + len(test) + (len(test) if config.relight else 0)
    bar = tqdm(total=n_renders, desc="iron synth", unit="view", disable=not progress)
    seed0 = config.seed * SEED_STRIDE

    # Flash views: unit-intensity point light at the camera centre.
    flash_sensor = perspective_sensor(
        train.intrinsics[0].numpy(), train.c2w[0].numpy(), config.resolution,
        config.resolution, config.spp, pixel_format="rgba",
    )  # fmt: skip
    point = {"type": "point", "position": [0.0, 0.0, 0.0], "intensity": {"type": "uniform",
             "value": RENDER_INTENSITY}}  # fmt: skip
    direct_flash = {"type": "direct", "emitter_samples": 1, "bsdf_samples": 0}
    nuisances, scene_info = nuisance_shapes(mi, config, mesh)
    check_nuisances_cannot_occlude(torch.cat([train.centers, test.centers]).numpy(), scene_info)
    scene = _scene(
        mi, gt / "mesh.obj", materials, flash_sensor, point, direct_flash, config.bsdf, nuisances
    )
    t_flash = time.perf_counter()
    train_seeds = [seed0 + i for i in range(len(train))]
    test_seeds = [seed0 + len(train) + i for i in range(len(test))]
    train_rgba = _render_views(mi, scene, train, train_seeds, True, bar)
    test_rgba = _render_views(mi, scene, test, test_seeds, True, bar)
    if nuisances:
        # Alpha now covers the room and plane too: the object's own coverage comes from the
        # object alone, with the same seeds, hence the same pixel samples (the depth integrator
        # traces camera rays only; its alpha equals the flash render's).
        coverage_scene = _scene(
            mi, gt / "mesh.obj", materials, flash_sensor, point, {"type": "depth"}, config.bsdf
        )
        train_coverage = _render_views(mi, coverage_scene, train, train_seeds, False)[..., 3]
        test_coverage = _render_views(mi, coverage_scene, test, test_seeds, False)[..., 3]
    else:
        train_coverage, test_coverage = train_rgba[..., 3], test_rgba[..., 3]
    t_flash = time.perf_counter() - t_flash

    all_rgba = np.concatenate([train_rgba, test_rgba])
    exposure = config.exposure or auto_exposure(
        all_rgba[..., :3],
        np.concatenate([train_coverage, test_coverage]),
        config.exposure_percentile,
        config.exposure_target,
    )
    intensity = exposure * RENDER_INTENSITY
    names = {"train": _names(len(train)), "test": _names(len(test))}
    splits = (
        ("train", train_rgba, train_coverage, train),
        ("test", test_rgba, test_coverage, test),
    )
    for split, rgba, coverage, cameras in splits:
        save_split(out, split, names[split], exposure * rgba[..., :3], cameras, linear_twins=True)
        for name, mask in zip(names[split], coverage, strict=True):
            write_data_png(gt / "masks" / split / name, mask)
    flash_saturated = float(np.mean(exposure * all_rgba[..., :3].max(-1) >= 1.0))

    relight_info = None
    t_relight = 0.0
    if config.relight:
        t_relight = time.perf_counter()
        relight_info = _relight(mi, config, gt, materials, test, names["test"], seed0, bar)
        t_relight = time.perf_counter() - t_relight
    bar.close()

    light = {
        "intensity": intensity,
        "exposure": exposure,
        "model": "radiance = (intensity / d^2) * f_r * cos(n, v); d = |x - camera centre|",
        "note_exposure": (
            "views rendered with a point light of intensity 1 W/sr at the camera centre, then"
            " multiplied by the exposure (rendering is linear in intensity): the dataset is"
            " exactly the image of a light of `intensity` = exposure"
        ),
        "flash_saturated_fraction": flash_saturated,
        "normalization": {
            "source_mesh": str(mesh_path),
            "center": normalization.center.tolist(),
            "scale": normalization.scale,
            "matrix": normalization.matrix.tolist(),
            "formula": "x_normalized = scale * (x_source - center)",
            "bounding_radius": config.bounding_radius,
        },
        "bsdf": {
            "mitsuba": (
                "principled (in twosided), metallic 0, no sheen/clearcoat/transmission"
                if config.bsdf == "principled"
                else "blendbsdf 0.5: diffuse(2 base) + roughconductor(ggx, material none, 2 F0)"
            ),
            "texture": str(texture_path),
            "specular": config.specular,
            "f0": materials.f0,
            "maps": {
                "diffuse_albedo": "base colour, linear (.exr); .png gamma 2.2",
                "specular_albedo": "F0 = 0.08 * specular (Fresnel at a co-located light)",
                "roughness": "GGX alpha = perceptual_roughness^2 (.png: alpha as raw data)",
                "perceptual_roughness": "Mitsuba's principled `roughness` input",
                "uv": "OBJ convention: v = 0 is the bottom row of a map",
            },
            "colocated_formula": {
                "specular": "F0 * D_GGX(c; alpha) * G1(c; alpha)^2 / (4 c)",
                "diffuse": (
                    "base / pi * c * [(1 - F/2)^2 + R (2F + F^2 (R - 1))],"
                    " F = (1 - c)^5, R = 2 perceptual_roughness; c = n . v"
                ),
            },
            "note": (
                "principled's Disney diffuse equals Lambert (base/pi) only at normal incidence;"
                " it is brighter towards grazing angles (about +17% at n.v = 0.3, roughness 0.5)"
            ),
        },
        "render": {
            "mitsuba_variant": variant,
            "integrator": "direct, emitter samples only (single bounce, no interreflection)",
            "spp": multijitter_sample_count(config.spp),
            "sampler": "multijitter",
            "reconstruction_filter": "box (pixel = mean over its footprint)",
            "field_of_view_x_degrees": fov,
            "camera_distance": config.camera_distance,
        },
        "relight": relight_info,
        "scene": scene_info,
        "timing_seconds": {
            "flash_views": t_flash,
            "relit_views": t_relight,
            "total": time.perf_counter() - start,
        },
        "config": _config_dict(config),
    }
    (gt / "light.json").write_text(json.dumps(light, indent=1))
    return out


def _relight(mi, config, gt, materials, test: Cameras, names, seed0, bar) -> dict:
    """Render the test cameras under the procedural environment map (emitter hidden).

    The object alone, whatever room or support the flash views had: relit views are the ground
    truth of relighting the *object* (what a reconstruction exports), and a room or table would
    shadow and occlude the environment differently from the scene an exported asset is put in.
    """
    from ironrender.data.mitsuba_backend import multijitter_sample_count, perspective_sensor

    sky = procedural_sky(config.sky)
    sensor = perspective_sensor(
        test.intrinsics[0].numpy(), test.c2w[0].numpy(), config.resolution, config.resolution,
        config.relight_spp, pixel_format="rgba",
    )  # fmt: skip
    emitter = {"type": "envmap", "bitmap": mi.Bitmap(sky), "scale": 1.0}
    integrator = {"type": "direct", "hide_emitters": True}
    scene = _scene(mi, gt / "mesh.obj", materials, sensor, emitter, integrator, config.bsdf)
    first = seed0 + 2 * len(test) + config.views  # after the seeds of the flash views
    seeds = [first + i for i in range(len(test))]
    rgba = _render_views(mi, scene, test, seeds, False, bar)
    scale = config.relight_exposure or auto_exposure(
        rgba[..., :3], rgba[..., 3], config.exposure_percentile, config.exposure_target
    )
    write_image(gt / "envmap.exr", scale * sky)
    for name, image in zip(names, rgba, strict=True):
        write_image((gt / "relit" / name).with_suffix(".exr"), scale * image[..., :3])
        write_image(gt / "relit" / name, scale * image[..., :3])
    return {
        "envmap": "envmap.exr",
        "envmap_scale": scale,
        "envmap_layout": (
            "Mitsuba 3 lat-long, +Y up, identity to_world: u = atan2(x, -z) / 2pi,"
            " v = acos(y) / pi; column i at u = (i + 0.5) / W, row j at v = j / (H - 1)"
        ),
        "integrator": "direct (MIS: emitter + BSDF samples, shadows, no interreflection),"
        " emitter hidden (black background)",
        "scene": "the object alone (no room, no support plane, even if the flash views have them)",
        "spp": multijitter_sample_count(config.relight_spp),
        "views": "the test cameras; gt/relit/<name>.exr (linear) and .png (gamma 2.2)",
    }


def _names(n: int) -> list[str]:
    return [f"{i:03d}.png" for i in range(n)]


def _config_dict(config: SynthConfig) -> dict:
    return dataclasses.asdict(config)


def _validate(config: SynthConfig) -> None:
    if config.views < 1 or config.test_views < 1:
        raise IronError("need at least one training and one test view")
    if config.resolution < 8:
        raise IronError(f"resolution {config.resolution} is too small (at least 8)")
    if config.spp < 1 or config.relight_spp < 1:
        raise IronError("samples per pixel must be positive")
    if config.bsdf not in BSDFS:
        raise IronError(f"bsdf must be one of {BSDFS}, not {config.bsdf!r}")
    if not 0 < config.bounding_radius < 1:
        raise IronError("bounding_radius must lie in (0, 1): the object must fit the unit sphere")
    if config.camera_distance <= 1:
        raise IronError("camera_distance must exceed 1: cameras lie outside the unit sphere")
    if not 0 < config.frame_fill <= 1:
        raise IronError("frame_fill must lie in (0, 1]")
    if config.exposure is not None and not config.exposure > 0:
        raise IronError("exposure must be positive")
    if not 0 <= config.specular <= 1:
        raise IronError("specular must lie in [0, 1]")
    low, high = config.roughness_range
    if not 0 <= low <= high <= 1:
        raise IronError("roughness_range must satisfy 0 <= low <= high <= 1")
    if config.room not in ROOMS:
        raise IronError(f"room must be one of {ROOMS}, not {config.room!r}")
    if not 0 < config.support_albedo * (1 + SUPPORT_CONTRAST) <= 1:
        limit = 1 / (1 + SUPPORT_CONTRAST)
        raise IronError(f"support_albedo must lie in (0, {limit:.3g}]: its texture stays <= 1")
    if not 0 <= config.min_elevation < 90:
        raise IronError("min_elevation must lie in [0, 90) degrees")


def _prepare_output(out: Path, overwrite: bool) -> None:
    owned = [out / "train", out / "test", out / "gt"]
    existing = [p for p in owned if p.exists()]
    if existing and not overwrite:
        raise IronError(f"{existing[0]} already exists; choose a new folder or overwrite (--force)")
    for path in existing:
        shutil.rmtree(path)
    out.mkdir(parents=True, exist_ok=True)
