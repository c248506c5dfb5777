"""The object of a synthetic capture: its textured mesh and material maps, read and written.

* **Object**: a textured mesh (default: Keenan Crane's public-domain "spot" cow), centred and
  scaled so that its minimum bounding sphere has radius ``bounding_radius`` (< 1, the object
  lies inside the unit sphere). ``x_normalized = scale * (x_source - center)``.
* **Material maps** over the mesh UVs: the base colour is the texture (linear), the perceptual
  roughness a given map, else one derived from the texture (:func:`procedural_roughness`), and
  one ``specular`` level s for the whole object (F0 = 0.08 s; s = 0.5 gives F0 = 0.04); or a
  gilt bronze (:func:`gilded_materials`): gold's coloured F0, a dark diffuse albedo and a
  textured patina. How Mitsuba renders them: :mod:`ironrender.data.synth.render`.

The ground truth ``gt/`` holds the normalized mesh (:func:`write_obj`) and these maps
(:func:`write_materials`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ironrender.data.images import read_image, write_data_png, write_image
from ironrender.errors import IronError

ASSET_DIR = Path(__file__).resolve().parents[2] / "assets" / "spot"
DEFAULT_MESH = ASSET_DIR / "spot_triangulated.obj"
DEFAULT_TEXTURE = ASSET_DIR / "spot_texture.png"

# Reflectance at normal incidence per unit of principled's `specular` (Mitsuba 3 docs).
F0_PER_SPECULAR = 0.08
# Procedural roughness: weights of luminance and edge strength, and smoothing (texels).
ROUGHNESS_LUMINANCE_WEIGHT = 0.8
ROUGHNESS_EDGE_WEIGHT = 0.4
ROUGHNESS_BLUR_SIGMA = 2.0
EDGE_NORMALIZATION_PERCENTILE = 99.0
LUMINANCE_WEIGHTS = (0.2126, 0.7152, 0.0722)  # Rec. 709


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
    f0_map: np.ndarray | None = None  # (H, W, 3) coloured F0 (a metal); None: f0 everywhere

    @property
    def f0(self) -> float:
        """The dielectric F0 of principled's ``specular`` level (when there is no ``f0_map``)."""
        return F0_PER_SPECULAR * self.specular

    @property
    def specular_albedo(self) -> np.ndarray:
        """F0 per texel and channel (H, W, 3): the map, else the constant ``f0``."""
        if self.f0_map is not None:
            return self.f0_map.astype(np.float32)
        shape = (*self.perceptual_roughness.shape, 3)
        return np.full(shape, self.f0, dtype=np.float32)

    @property
    def alpha(self) -> np.ndarray:
        """GGX alpha = perceptual roughness^2 (Mitsuba's principled BSDF)."""
        return self.perceptual_roughness**2


# --------------------------------------------------------------------------------- loading
def load_textured_mesh(path: str | Path) -> TexturedMesh:
    """Load a triangle mesh with UVs; smooth normals are computed over welded positions.

    Vertices split at UV seams get the same normal on both sides, so shading has no seams.
    """
    import trimesh  # lazy: ~1 s to import, and `iron --help` loads this module (cli/synth)

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
    import trimesh  # lazy: ~1 s to import, and `iron --help` loads this module (cli/synth)

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
    from skimage.filters import gaussian, sobel  # lazy: ~0.5 s, on `iron --help`'s path

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


# Gilt bronze (:func:`gilded_materials`). Gold's reflectance at normal incidence in linear sRGB
# (Real-Time Rendering, 4th ed., Table 9.2); a dark bronze patina (diffuse, F0 of a dielectric).
GOLD_F0 = (1.00, 0.71, 0.29)
GOLD_DIFFUSE = (0.02, 0.015, 0.01)
PATINA_DIFFUSE = (0.05, 0.045, 0.03)
PATINA_F0 = 0.04
GOLD_ALPHA = (0.1, 0.3)  # GGX alpha range of the gilding, from the texture's luminance
PATINA_ALPHA = 0.5
PATINA_EDGE = 0.05  # the patina's edge: soft over this span of texture luminance


def gilded_materials(texture: np.ndarray, patina: float) -> Materials:
    """A gilt-bronze statuette's materials over the texture's UVs (a rendering target that
    reproduces what fogs stage 1 on a real one: coloured highlights, a diffuse albedo near the
    black cloth's, rough dark patina in the recesses).

    The darkest ``patina`` fraction of the texture (by luminance, edge softened) becomes patina:
    ``m`` in [0, 1] blends, per texel,

        rho_d = (1 - m) GOLD_DIFFUSE + m PATINA_DIFFUSE,    F0 = (1 - m) GOLD_F0 + m PATINA_F0,
        alpha = (1 - m) lerp(GOLD_ALPHA, L) + m PATINA_ALPHA,

    ``L`` the normalized luminance (so the gold's roughness varies with the texture). Rendered
    with the ``iron`` BSDF (exactly the model's Lambert + GGX with F = F0).
    """
    from skimage.filters import gaussian  # lazy: ~0.5 s, on `iron --help`'s path

    luminance = np.clip(texture, 0.0, 1.0) @ np.asarray(LUMINANCE_WEIGHTS)
    span = luminance.max() - luminance.min()
    lum = (luminance - luminance.min()) / span if span > 0 else np.zeros_like(luminance)
    threshold = np.quantile(lum, patina) if patina > 0 else -np.inf
    m = np.clip((threshold - lum) / PATINA_EDGE + 0.5, 0.0, 1.0)[..., None]
    m = gaussian(m, sigma=ROUGHNESS_BLUR_SIGMA, channel_axis=-1) if patina > 0 else 0 * m
    diffuse = (1 - m) * np.asarray(GOLD_DIFFUSE) + m * np.asarray(PATINA_DIFFUSE)
    f0 = (1 - m) * np.asarray(GOLD_F0) + m * PATINA_F0
    low, high = GOLD_ALPHA
    alpha = (1 - m[..., 0]) * (low + (high - low) * lum) + m[..., 0] * PATINA_ALPHA
    return Materials(
        diffuse.astype(np.float32),
        np.sqrt(alpha).astype(np.float32),
        specular=PATINA_F0 / F0_PER_SPECULAR,
        f0_map=f0.astype(np.float32),
    )


# --------------------------------------------------------------------------------- writing
def write_obj(path: Path, mesh: TexturedMesh, material_file: str | None = None) -> None:
    """Wavefront OBJ with ``v``, ``vt``, ``vn`` sharing one index per vertex."""
    lines = [f"mtllib {material_file}", "usemtl material"] if material_file else []
    lines += [f"v {x:.9g} {y:.9g} {z:.9g}" for x, y, z in mesh.vertices]
    lines += [f"vt {u:.9g} {v:.9g}" for u, v in mesh.uvs]
    lines += [f"vn {x:.9g} {y:.9g} {z:.9g}" for x, y, z in mesh.normals]
    lines += [f"f {a}/{a}/{a} {b}/{b}/{b} {c}/{c}/{c}" for a, b, c in mesh.faces + 1]
    path.write_text("\n".join(lines) + "\n")


def write_mtl(path: Path, texture_file: str) -> None:
    path.write_text(f"newmtl material\nKd 1 1 1\nKs 0 0 0\nmap_Kd {texture_file}\n")


def write_materials(gt: Path, materials: Materials) -> None:
    write_image(gt / "diffuse_albedo.exr", materials.base_color)
    write_image(gt / "diffuse_albedo.png", materials.base_color)  # gamma 2.2, like photos
    write_image(gt / "specular_albedo.exr", materials.specular_albedo)
    write_image(gt / "roughness.exr", materials.alpha)
    write_data_png(gt / "roughness.png", materials.alpha)  # raw data, no gamma
    write_image(gt / "perceptual_roughness.exr", materials.perceptual_roughness)
