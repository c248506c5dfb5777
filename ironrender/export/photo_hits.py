"""Which texel each photograph pixel sees, on a fixed exported mesh: computed once.

For the texture stage (:mod:`ironrender.export.texture_fit`) the mesh does not move, so the ray
through every pixel centre of every training photograph is intersected with it once, by
Mitsuba 3's ray tracer (``ray_intersect_preliminary``: triangle and barycentric coordinates
``(b1, b2)``, the hit being ``(1 - b1 - b2) x0 + b1 x1 + b2 x2``), and only what a step needs
is kept, for the pixels that hit: the UV, the point, the interpolated vertex normal (the shading
normal the bake and the OBJ use), the image-plane coordinates (the vignetting's), the
photograph's value in the loss domain and, for a flash beside the lens, whether the flash
reaches the point (a shadow ray, ``ray_test``, as stage 2 traces one).

Left out: pixels on the silhouette (one of their four neighbours misses: in the photograph they
mix object and room), hits seen at a grazing angle (``n . v`` below a threshold: there a small
error of the mesh moves the texel a lot), and, above a cap, a random share of the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import binary_erosion
from torch import Tensor

from ironrender.data.cameras import Cameras
from ironrender.data.dataset import Split
from ironrender.data.mitsuba_backend import mesh_scene, ray_batch
from ironrender.data.tone_curve import target_to_loss_domain
from ironrender.errors import IronError
from ironrender.export.uv import UVMesh
from ironrender.rendering.surface import SHADOW_RAY_OFFSET

#: A pixel is kept when it and these neighbours hit the mesh (not on the silhouette).
FOUR_NEIGHBOURS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)


@dataclass
class PixelMaps:
    """The photographs' pixels that see the mesh (one row each), computed once.

    ``view`` (P,) training photograph; ``uv`` (P, 2); ``points``, ``normals`` (P, 3) hit and
    unit shading normal; ``plane`` (P, 2) :meth:`Cameras.image_plane` coordinates (vignetting);
    ``target`` (P, 3) the photograph in the loss domain; ``visibility`` (P, 1) 1 where the
    flash reaches the hit, None when no shadow ray was traced (a flash in the lens).
    """

    view: Tensor
    uv: Tensor
    points: Tensor
    normals: Tensor
    plane: Tensor
    target: Tensor
    visibility: Tensor | None

    def __len__(self) -> int:
        return len(self.view)

    def select(self, index: Tensor) -> PixelMaps:
        vis = None if self.visibility is None else self.visibility[index]
        return PixelMaps(
            self.view[index], self.uv[index], self.points[index], self.normals[index],
            self.plane[index], self.target[index], vis,
        )  # fmt: skip


def trace_photographs(
    uv_mesh: UVMesh,
    split: Split,
    cameras: Cameras,
    shadows: bool,
    min_cosine: float = 0.1,
    max_pixels: int = 4_000_000,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> PixelMaps:
    """Every photograph's pixels that see the mesh, once (module docstring).

    A pixel centre's ray is intersected with the mesh by Mitsuba; kept are hits whose four
    neighbours hit too (a silhouette pixel mixes object and room) and whose ``n . v`` is at
    least ``min_cosine``; at most ``max_pixels`` in all (a random subset per photograph, drawn
    with ``seed``). ``shadows``: trace a ray from each hit to its view's flash
    (``cameras.flash_positions``; needed only for a flash beside the lens, as stage 2).
    """
    mi, scene = mesh_scene(
        uv_mesh.vertices, uv_mesh.faces, "the texture stage (set export.texture.steps=0)"
    )
    faces, rng = uv_mesh.faces, np.random.default_rng(seed)
    keep_per_view = max(1, max_pixels // len(split))
    curve = None if split.hdr else split.tone_curve
    lights = cameras.flash_positions.detach().cpu().double().numpy()
    parts: dict[str, list] = {k: [] for k in ("view", "face", "bary", "plane", "target", "vis")}
    for i in range(len(split)):
        rays = cameras.image_rays(i)
        height, width = rays.shape
        origins = rays.origins.reshape(-1, 3).detach().cpu().double().numpy()
        directions = rays.directions.reshape(-1, 3).detach().cpu().double().numpy()
        hit = scene.ray_intersect_preliminary(ray_batch(mi, origins, directions))
        valid = np.asarray(hit.is_valid(), dtype=bool)
        interior = binary_erosion(valid.reshape(height, width), FOUR_NEIGHBOURS)
        pixels = np.flatnonzero(interior)
        b12 = np.asarray(hit.prim_uv, dtype=np.float64).reshape(2, -1)[:, pixels].T
        bary = np.column_stack([1.0 - b12.sum(1), b12])
        face = np.asarray(hit.prim_index, dtype=np.int64)[pixels]
        cosine = -(_normals(uv_mesh, face, bary) * directions[pixels]).sum(-1)
        keep = np.flatnonzero(cosine >= min_cosine)
        if len(keep) > keep_per_view:
            keep = np.sort(rng.choice(keep, keep_per_view, replace=False))
        pixels, face, bary = pixels[keep], face[keep], bary[keep]
        vis = np.ones(len(pixels), dtype=bool)
        if shadows and len(pixels):
            points = np.einsum("pk,pkd->pd", bary, uv_mesh.vertices[faces[face]])
            vis = _lit(mi, scene, points, _normals(uv_mesh, face, bary), lights[i])
        image = split.images[i].reshape(-1, 3)[torch.as_tensor(pixels, device=split.images.device)]
        parts["view"].append(np.full(len(pixels), i))
        parts["face"].append(face)
        parts["bary"].append(bary)
        parts["plane"].append(cameras.image_plane(i).reshape(-1, 2)[pixels].cpu().numpy())
        parts["target"].append(target_to_loss_domain(split.linear(image), curve).cpu().numpy())
        parts["vis"].append(vis)
    face, bary = np.concatenate(parts["face"]), np.concatenate(parts["bary"])
    if len(face) == 0:
        raise IronError("the texture stage found no photograph pixel on the exported mesh")
    corners = faces[face]

    def tensor(values: np.ndarray, dtype=torch.float32) -> Tensor:
        return torch.as_tensor(np.ascontiguousarray(values), dtype=dtype, device=device)

    visibility = None
    if shadows:
        visibility = tensor(np.concatenate(parts["vis"])[:, None])
    return PixelMaps(
        view=tensor(np.concatenate(parts["view"]), torch.long),
        uv=tensor(np.einsum("pk,pkd->pd", bary, uv_mesh.uvs[corners])),
        points=tensor(np.einsum("pk,pkd->pd", bary, uv_mesh.vertices[corners])),
        normals=tensor(_normals(uv_mesh, face, bary)),
        plane=tensor(np.concatenate(parts["plane"])),
        target=tensor(np.concatenate(parts["target"])),
        visibility=visibility,
    )


def _normalise(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def _normals(uv_mesh: UVMesh, face: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """Interpolated vertex normals (the bake's and the OBJ's shading normals), unit."""
    return _normalise(np.einsum("pk,pkd->pd", bary, uv_mesh.normals[uv_mesh.faces[face]]))


def _lit(mi, scene, points: np.ndarray, normals: np.ndarray, light: np.ndarray) -> np.ndarray:
    """1 where nothing lies between a hit and the point light (stage 2's shadow ray: it starts
    ``SHADOW_RAY_OFFSET`` off the surface on the light's side and stops short of the light)."""
    to_light = light - points
    distance = np.linalg.norm(to_light, axis=-1)
    directions = to_light / distance[:, None]
    side = np.where((normals * directions).sum(-1) >= 0, 1.0, -1.0)
    origins = points + SHADOW_RAY_OFFSET * side[:, None] * normals
    rays = ray_batch(mi, origins, directions)
    rays.maxt = mi.Float((distance - 2 * SHADOW_RAY_OFFSET).astype(np.float32))
    return ~np.asarray(scene.ray_test(rays), dtype=bool)
