"""Photo-resolution textures: the baked maps optimised against the training photographs.

The bake (:mod:`ironrender.export.bake`) can hold no more detail than stage 2's material
fields, whose grid is coarser than the photographs. This stage keeps the exported mesh fixed
and treats the three maps themselves as the unknowns, texel by texel:

    min_T  mean_p ( develop_p( L(T(uv_p), x_p, n_p) ) - photo_p )^2
           + w_tv TV(T) + w_s |rho_s - rho_s^bake|^2 + w_a |alpha - alpha^bake|^2
           + w_seam mean_seams |T(uv_a) - T(uv_b)|^2

* ``p`` runs over the photographs' pixels whose ray hits the mesh: its hit ``x_p`` (triangle,
  barycentric coordinates, UV ``uv_p``, interpolated vertex normal ``n_p``) and whether the
  flash reaches it are computed once by Mitsuba 3 (:mod:`ironrender.export.photo_hits`): the
  mesh does not move, so a step is only texture lookups and shading.
* ``T(uv)`` is a bilinear lookup (``grid_sample``) in value space, as a viewer reads the map;
  the maps are stored as logits (diffuse in (0, 1), F0 in (0, 1), alpha in (ALPHA_MIN_FIT, 1)),
  starting at the bake.
* ``L`` is stage 2's shading, unchanged: the GGX BRDF under the flash where training put it
  (:func:`ironrender.rendering.brdf.shade_hits`, shadows included), plus the room's light the
  run fitted; ``develop_p`` is stage 2's camera model (vignetting, the photograph's gains,
  tone curve, response: :meth:`Stage2Model.develop`), and the comparison is in the loss domain
  stage 2 compares in (its pyramid L2 at the finest level, per pixel).
* The specular albedo and the roughness are poorly observed (a highlight covers few pixels), so
  they are held near the bake; a total variation (Charbonnier), weighted down where many
  pixels see a texel, smooths what the photographs do not resolve.
* Seams: a point on an edge between two charts has a texel in each; points sampled along every
  seam edge (the same mesh edge with different UVs in its two faces) are asked to read the same
  value on both sides, so the asset shows no crack. After the fit, the texels no lookup reads
  are filled from the nearest one that is (:func:`~ironrender.export.bake.fill_gutters`).

Texel convention as in :mod:`ironrender.export.uv`: ``(u, v) = ((c + 0.5) / W, 1 - (r + 0.5)
/ H)`` for row ``r``, column ``c``; ``grid_sample``'s ``(x, y) = (2u - 1, 1 - 2v)``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.functional import grid_sample
from tqdm.auto import tqdm

from ironrender.config import option
from ironrender.data.cameras import Cameras
from ironrender.data.dataset import Split
from ironrender.export.bake import BakedTextures, fill_gutters
from ironrender.export.photo_hits import PixelMaps, trace_photographs
from ironrender.export.uv import UVMesh
from ironrender.export.writers import DIFFUSE, ROUGHNESS, SPECULAR
from ironrender.rendering.brdf import GGXMaterial, shade_hits
from ironrender.rendering.surface import SurfaceHit
from ironrender.training.schedules import learning_rate_factor
from ironrender.training.stage2_model import Stage2Model

#: The smallest GGX alpha a fitted map may hold (the materials' ``roughness_min``).
ALPHA_MIN_FIT = 0.01
#: Maps are clamped this far inside their range before the logit.
LOGIT_MARGIN = 1e-4
#: The learning rate decays (cosine) to this fraction of ``lr`` at the last step.
FINAL_LR = 0.1
#: Pixels per batch when the photometric error is measured over all of them.
EVAL_CHUNK = 65536


@dataclass
class TextureFitConfig:
    """The texture stage's options; ``steps = 0`` (default) leaves the bake as it is."""

    steps: int = option(0, "texture-stage steps after the bake (0: off; ~300 to use it)")
    seconds: float = option(0.0, "stop the texture stage after this many seconds (0: no limit)")
    batch_pixels: int = option(16384, "photograph pixels shaded per step, drawn at random")
    lr: float = option(0.05, "Adam's learning rate on the maps' logits (cosine decay to 10 %)")
    tv_weight: float = option(
        2e-2, "weight of the maps' total variation, less where many pixels see a texel"
    )
    specular_prior: float = option(1e-2, "weight of |rho_s - baked rho_s|^2 (poorly observed)")
    roughness_prior: float = option(1e-2, "weight of |alpha - baked alpha|^2 (poorly observed)")
    seam_weight: float = option(0.03, "weight of the disagreement of texels across UV seams")
    min_cosine: float = option(0.1, "leave out hits seen more obliquely than this n . v")
    max_pixels: int = option(4_000_000, "at most this many hit pixels kept (a random subset)")
    seed: int = option(0, "seed of the pixel draws")


@dataclass
class SeamSamples:
    """Points along the seam edges: ``uv_a`` (S, 2) in one chart, ``uv_b`` (S, 2) the same
    surface points in the other."""

    uv_a: np.ndarray
    uv_b: np.ndarray


@dataclass
class TextureFitResult:
    """The fitted maps and what the fit changed. Errors: mean squared difference over the hit
    pixels and RGB, in the loss domain (encoded values for 8-bit photographs)."""

    textures: BakedTextures
    error_before: float
    error_after: float
    pixels: int
    views: int
    steps: int
    seconds: float
    observed: np.ndarray  # (H, W) bilinear weight of the hit pixels on each texel

    def summary(self) -> str:
        def psnr(mse: float) -> float:
            return -10.0 * math.log10(max(mse, 1e-12))

        return (
            f"[texture] photometric error {self.error_before:.3g} -> {self.error_after:.3g}"
            f" (PSNR {psnr(self.error_before):.1f} -> {psnr(self.error_after):.1f} dB) over"
            f" {self.pixels} pixels of {self.views} photographs, {self.steps} steps,"
            f" {self.seconds:.1f} s"
        )


# ----------------------------------------------------------------------------- seams
def seam_samples(uv_mesh: UVMesh, size: int, per_texel: float = 2.0) -> SeamSamples:
    """``per_texel`` points per texel of length (at least two) along every seam edge: a mesh
    edge (by the input mesh's vertices, ``vertex_map``) of exactly two faces whose UVs differ
    in them. Each point is sampled at the same fraction of the edge in both charts."""
    faces, uvs = uv_mesh.faces, uv_mesh.uvs
    start = faces.reshape(-1)  # edge k of face f runs from corner k to corner k + 1
    end = np.roll(faces, -1, axis=1).reshape(-1)
    flip = uv_mesh.vertex_map[start] > uv_mesh.vertex_map[end]
    start, end = np.where(flip, end, start), np.where(flip, start, end)  # one orientation
    key = uv_mesh.vertex_map[start] * (int(uv_mesh.vertex_map.max()) + 1)
    key = key + uv_mesh.vertex_map[end]
    order = np.argsort(key, kind="stable")
    _, first, count = np.unique(key[order], return_index=True, return_counts=True)
    one, other = order[first[count == 2]], order[first[count == 2] + 1]
    differ = (np.abs(uvs[start[one]] - uvs[start[other]]).max(1) > 1e-9) | (
        np.abs(uvs[end[one]] - uvs[end[other]]).max(1) > 1e-9
    )
    one, other = one[differ], other[differ]
    lengths = np.maximum(
        np.linalg.norm(uvs[end[one]] - uvs[start[one]], axis=1),
        np.linalg.norm(uvs[end[other]] - uvs[start[other]], axis=1),
    )
    n = np.maximum(np.ceil(per_texel * lengths * size), 2).astype(np.int64)
    edge = np.repeat(np.arange(len(n)), n)
    t = ((np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n) + 0.5) / n[edge])[:, None]

    def along(side: np.ndarray) -> np.ndarray:
        return (1.0 - t) * uvs[start[side[edge]]] + t * uvs[end[side[edge]]]

    return SeamSamples(along(one), along(other))


def seam_mismatch(texture: np.ndarray, seams: SeamSamples) -> np.ndarray:
    """``|T(uv_a) - T(uv_b)|`` (S, C) of a map (H, W, C) at the seams' point pairs."""
    image = torch.as_tensor(texture, dtype=torch.float32).permute(2, 0, 1)[None]
    a = lookup(image, torch.as_tensor(seams.uv_a, dtype=torch.float32))
    b = lookup(image, torch.as_tensor(seams.uv_b, dtype=torch.float32))
    return (a - b).abs().numpy()


# ----------------------------------------------------------------------------- the maps
def lookup(texture: Tensor, uv: Tensor) -> Tensor:
    """Bilinear values (P, C) of a map (1, C, H, W) at UVs (P, 2) (the module's convention)."""
    grid = torch.stack([2.0 * uv[:, 0] - 1.0, 1.0 - 2.0 * uv[:, 1]], dim=-1).to(texture.dtype)
    out = grid_sample(texture, grid[None, None], "bilinear", "border", align_corners=False)
    return out[0, :, 0].T


def footprint(uv: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: the texels a bilinear lookup at any of ``uv`` (P, 2) reads."""
    height, width = size
    col = np.floor(uv[:, 0] * width - 0.5).astype(np.int64)
    row = np.floor((1.0 - uv[:, 1]) * height - 0.5).astype(np.int64)
    mask = np.zeros(size, dtype=bool)
    for dr in (0, 1):
        for dc in (0, 1):
            mask[np.clip(row + dr, 0, height - 1), np.clip(col + dc, 0, width - 1)] = True
    return mask


def observed_weight(uv: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W): the summed bilinear weights of lookups at ``uv``: how many photograph pixels a
    texel was seen by."""
    height, width = size
    x, y = uv[:, 0] * width - 0.5, (1.0 - uv[:, 1]) * height - 0.5
    col, row = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = x - col, y - row
    total = np.zeros(height * width)
    for dr, wy in ((0, 1.0 - fy), (1, fy)):
        for dc, wx in ((0, 1.0 - fx), (1, fx)):
            flat = np.clip(row + dr, 0, height - 1) * width + np.clip(col + dc, 0, width - 1)
            total += np.bincount(flat, weights=wx * wy, minlength=height * width)
    return total.reshape(height, width)


class MaterialTextures(nn.Module):
    """Diffuse albedo, specular albedo (grey: one channel) and GGX alpha as logits
    (1, C, H, W); a map's value is ``low + (high - low) sigmoid(logit)``."""

    RANGES = {DIFFUSE: (0.0, 1.0), SPECULAR: (0.0, 1.0), ROUGHNESS: (ALPHA_MIN_FIT, 1.0)}

    def __init__(self, maps: dict[str, np.ndarray], device: torch.device | str = "cpu"):
        super().__init__()
        self.logits = nn.ParameterDict()
        for name, (low, high) in self.RANGES.items():
            value = np.asarray(maps[name], dtype=np.float32)
            if name != DIFFUSE and np.allclose(value, value[..., :1]):
                value = value[..., :1]  # grey specular, and alpha: one channel
            share = np.clip((value - low) / (high - low), LOGIT_MARGIN, 1.0 - LOGIT_MARGIN)
            logit = torch.logit(torch.as_tensor(share, device=device)).permute(2, 0, 1)[None]
            self.logits[name] = nn.Parameter(logit.contiguous())

    def values(self) -> dict[str, Tensor]:
        return {
            name: low + (high - low) * torch.sigmoid(self.logits[name])
            for name, (low, high) in self.RANGES.items()
        }


def total_variation(texture: Tensor, weights: Tensor, eps: float = 1e-3) -> Tensor:
    """Charbonnier ``sqrt(d^2 + eps^2) - eps`` of the differences between neighbouring texels
    (edges are kept, noise not), each pair weighted by the smaller of its two ``weights``
    (1, 1, H, W), summed and divided by the number of pairs of positive weight."""
    terms, pairs = texture.new_zeros(()), texture.new_zeros(())
    for dim in (-1, -2):
        n = texture.shape[dim] - 1
        d = texture.narrow(dim, 1, n) - texture.narrow(dim, 0, n)
        both = torch.minimum(weights.narrow(dim, 1, n), weights.narrow(dim, 0, n))
        terms = terms + ((d.square() + eps**2).sqrt() - eps).mul(both).sum()
        pairs = pairs + (both > 0).sum() * texture.shape[1]
    return terms / pairs.clamp_min(1)


# ----------------------------------------------------------------------------- shading
class _PixelPlane:
    """What :meth:`Stage2Model.develop` reads of its camera (``image_plane(0)``), for pixels
    scattered over photographs rather than a crop: their image-plane coordinates (P, 2)."""

    def __init__(self, plane: Tensor):
        self.plane = plane

    def image_plane(self, i: int = 0) -> Tensor:
        return self.plane


class PhotoShading:
    """Stage 2's light and camera, frozen, for pixels of the training photographs: the GGX
    shading under each view's flash (:func:`shade_hits`, as :class:`MaterialShader`), the room's
    light, then the camera (:meth:`Stage2Model.develop`, each pixel at its photograph's gains),
    in the loss domain of ``curve``."""

    def __init__(self, stage2: Stage2Model, cameras: Cameras, curve: str | None):
        self.stage2, self.curve = stage2, curve
        self.colocated = cameras.colocated
        self.lights = cameras.flash_positions.detach()
        self.centres = cameras.centers.detach()
        self.intensity = stage2.materials.light_intensity.detach()
        self.diffuse_model = stage2.materials.config.diffuse_model
        self.room = stage2.shader().ambient
        self.gains = stage2.camera_gains()

    def __call__(self, values: dict[str, Tensor], pixels: PixelMaps) -> Tensor:
        diffuse = lookup(values[DIFFUSE], pixels.uv)
        material = GGXMaterial(
            diffuse, lookup(values[SPECULAR], pixels.uv), lookup(values[ROUGHNESS], pixels.uv)
        )
        n = len(pixels)  # shade_hits reads a hit's points, normals, view_dirs and visibility
        view_dirs = torch.nn.functional.normalize(self.centres[pixels.view] - pixels.points, dim=-1)
        hit = SurfaceHit(
            pixels.points, pixels.normals, pixels.normals, pixels.points.new_zeros(n),
            pixels.points.new_zeros(n, 0), view_dirs, pixels.points.new_zeros(n),
            torch.ones(n, dtype=torch.bool, device=pixels.points.device), pixels.visibility,
        )  # fmt: skip
        radiance = shade_hits(
            material, hit, self.lights[pixels.view], self.colocated, self.intensity,
            self.diffuse_model,
        )  # fmt: skip
        if self.room is not None:
            radiance = radiance + self.room.radiance(diffuse, pixels.normals)
        gains = None if self.gains is None else self.gains[pixels.view]
        return self.stage2.develop(radiance, _PixelPlane(pixels.plane), self.curve, gains=gains)


def photometric_error(values: dict[str, Tensor], pixels: PixelMaps, shading: PhotoShading) -> float:
    """Mean squared difference over all ``pixels`` and RGB, in the loss domain."""
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(pixels), EVAL_CHUNK):
            batch = pixels.select(slice(start, start + EVAL_CHUNK))
            total += float((shading(values, batch) - batch.target).square().sum())
    return total / (3 * len(pixels))


# ----------------------------------------------------------------------------- the fit
def fit_textures(
    uv_mesh: UVMesh,
    baked: BakedTextures,
    split: Split,
    stage2: Stage2Model,
    config: TextureFitConfig,
    shadows: bool = True,
    progress: bool = False,
) -> TextureFitResult:
    """The baked maps optimised against the training photographs ``split`` (module docstring),
    under ``stage2``'s light and camera (frozen; on its device); ``shadows``: shadow rays for a
    flash beside the lens (stage 2's ``render.shadows``). Extra baked maps pass through."""
    started = time.perf_counter()
    device = stage2.materials.log_light.device
    frozen = [p for p in stage2.parameters() if p.requires_grad]
    for parameter in frozen:
        parameter.requires_grad_(False)
    try:
        with torch.no_grad():
            cameras = stage2.place(split.cameras.to(device))
        shadows = shadows and not cameras.colocated
        pixels = trace_photographs(
            uv_mesh, split, cameras, shadows, config.min_cosine, config.max_pixels, config.seed,
            device,
        )  # fmt: skip
        curve = None if split.hdr else split.tone_curve
        shading = PhotoShading(stage2, cameras, curve)
        textures = MaterialTextures(baked.maps, device)
        size = baked.coverage.shape
        seams = seam_samples(uv_mesh, size[0])
        uv = pixels.uv.cpu().numpy()
        read = baked.coverage | footprint(uv, size)
        if len(seams.uv_a):
            read |= footprint(seams.uv_a, size) | footprint(seams.uv_b, size)
        observed = observed_weight(uv, size)
        before = photometric_error(textures.values(), pixels, shading)
        steps = _optimise(textures, pixels, shading, seams, read, observed, config, progress)
        fitted = dict(baked.maps)
        for name, value in textures.values().items():
            value = value.detach()[0].permute(1, 2, 0).cpu().numpy()
            value = fill_gutters(value, read)
            fitted[name] = np.broadcast_to(value, baked.maps[name].shape).copy()
        after = photometric_error(MaterialTextures(fitted, device).values(), pixels, shading)
    finally:
        for parameter in frozen:
            parameter.requires_grad_(True)
    return TextureFitResult(
        textures=BakedTextures(fitted, baked.coverage),
        error_before=before,
        error_after=after,
        pixels=len(pixels),
        views=len(split),
        steps=steps,
        seconds=time.perf_counter() - started,
        observed=observed,
    )


def _optimise(
    textures: MaterialTextures,
    pixels: PixelMaps,
    shading: PhotoShading,
    seams: SeamSamples,
    read: np.ndarray,
    observed: np.ndarray,
    config: TextureFitConfig,
    progress: bool,
) -> int:
    """Adam on the logits, a random batch of pixels (and of seam points) per step, for
    ``config.steps`` steps or ``config.seconds``; returns the steps taken.

    The smoothness weighs a texel by ``1 / (1 + m)``, ``m`` the photograph pixels that see it
    (:func:`observed_weight`): where many pixels tell its value they decide it, where none do
    its neighbours do (a texture finer than the photographs gets the data's detail, no noise).
    """
    device = pixels.uv.device
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    support = torch.as_tensor(read, dtype=torch.float32, device=device)[None, None]
    smoothing = support / (1.0 + torch.as_tensor(observed, dtype=torch.float32, device=device))
    with torch.no_grad():
        baked = {name: value.detach() for name, value in textures.values().items()}
    seam_a = torch.as_tensor(seams.uv_a, dtype=torch.float32, device=device)
    seam_b = torch.as_tensor(seams.uv_b, dtype=torch.float32, device=device)
    priors = {SPECULAR: config.specular_prior, ROUGHNESS: config.roughness_prior}
    optimizer = torch.optim.Adam(textures.parameters(), lr=config.lr)
    start, taken = time.perf_counter(), 0
    bar = tqdm(total=config.steps, desc="texture fit", unit="step", disable=not progress)
    for step in range(config.steps):
        if config.seconds > 0 and time.perf_counter() - start > config.seconds:
            break
        for group in optimizer.param_groups:
            group["lr"] = config.lr * learning_rate_factor(step, 0, config.steps, FINAL_LR)
        index = torch.randint(len(pixels), (config.batch_pixels,), generator=generator)
        batch = pixels.select(index.to(device))
        values = textures.values()
        loss = (shading(values, batch) - batch.target).square().mean()
        if len(seam_a):  # the same seam points for every map
            pick = torch.randint(len(seam_a), (config.batch_pixels,), generator=generator)
            pick = pick.to(device)
        for name, value in values.items():
            loss = loss + config.tv_weight * total_variation(value, smoothing)
            if name in priors:
                change = (value - baked[name]).square().mean(1, keepdim=True)
                loss = loss + priors[name] * (change * support).sum() / support.sum()
            if len(seam_a):
                gap = lookup(value, seam_a[pick]) - lookup(value, seam_b[pick])
                loss = loss + config.seam_weight * gap.square().mean()
        optimizer.zero_grad(set_to_none=True)
        if torch.isfinite(loss):
            loss.backward()
            optimizer.step()
        taken += 1
        bar.set_postfix_str(f"loss {float(loss.detach()):.3g}", refresh=False)
        bar.update()
    bar.close()
    return taken
