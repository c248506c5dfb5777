"""Materials against ground truth (``DATA/gt/{diffuse_albedo, specular_albedo, roughness}.exr``
over the GT mesh's UVs, ``DATA/gt/light.json``).

``material_samples`` points are drawn uniformly on the GT surface; their UVs give the GT values
(bilinear lookup). Each point is projected onto the predicted zero level set by Newton steps
``x <- x - s(x) g / |g|^2`` (g = grad s) and the predicted materials are queried there with the
unit normal ``g / |g|``. ``albedo_psnr`` is the diffuse-albedo PSNR (linear values) after the
per-channel least-squares scale (albedo and light are only known up to a common factor;
:func:`~ironrender.evaluation.metrics.aligned_albedo_psnr`), ``albedo_psnr_raw`` without it;
``roughness_error`` is the mean absolute error of the GGX alpha (``roughness_error_perceptual``
of sqrt(alpha)); ``specular_error`` the MAE of F0; ``light_ratio`` = predicted / GT flash
intensity.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import trimesh
from torch import Tensor

from ironrender.data.images import read_image
from ironrender.errors import IronError
from ironrender.evaluation.config import EvalConfig
from ironrender.evaluation.geometry import QUERY_CHUNK
from ironrender.evaluation.metrics import aligned_albedo_psnr, psnr, roughness_error
from ironrender.fields.base import SDFField
from ironrender.fields.materials import MaterialsFn
from ironrender.training.trained_model import TrainedModel

#: Newton projection: gradients with a smaller squared norm leave the point where it is.
MIN_GRAD_NORM2 = 1e-8


def sample_texture(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup of a (H, W, C) map at (N, 2) UVs, clamped at the borders.

    Texel convention (export and ``iron synth`` alike): row ``r``, column ``c`` has its centre at
    ``(u, v) = ((c + 0.5) / W, 1 - (r + 0.5) / H)``.
    """
    height, width = texture.shape[:2]
    x = np.clip(uv[:, 0] * width - 0.5, 0.0, width - 1.0)
    y = np.clip((1.0 - uv[:, 1]) * height - 0.5, 0.0, height - 1.0)
    x0 = np.minimum(np.floor(x).astype(np.int64), width - 2) if width > 1 else np.zeros_like(x, int)
    y0 = (
        np.minimum(np.floor(y).astype(np.int64), height - 2)
        if height > 1
        else np.zeros_like(y, int)
    )
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    wx, wy = (x - x0)[:, None], (y - y0)[:, None]
    top = (1 - wx) * texture[y0, x0] + wx * texture[y0, x1]
    bottom = (1 - wx) * texture[y1, x0] + wx * texture[y1, x1]
    return (1 - wy) * top + wy * bottom


@dataclass
class SurfaceMaterials:
    """GT on the GT surface: points (N, 3), diffuse (N, 3), specular (N, 3), alpha (N, 1)."""

    points: np.ndarray
    diffuse_albedo: np.ndarray
    specular_albedo: np.ndarray
    roughness: np.ndarray


def sample_gt_materials(gt_dir: Path, gt_mesh, count: int, seed: int) -> SurfaceMaterials:
    """Area-uniform points on the GT mesh and the GT maps looked up at their UVs."""
    uv = getattr(gt_mesh.visual, "uv", None)
    if uv is None or len(uv) != len(gt_mesh.vertices):
        raise IronError(f"{gt_dir / 'mesh.obj'}: the GT mesh has no UVs; no material metrics")
    points, face = trimesh.sample.sample_surface(gt_mesh, count, seed=seed)
    bary = trimesh.triangles.points_to_barycentric(gt_mesh.triangles[face], points)
    point_uv = np.einsum("nk,nkd->nd", bary, np.asarray(uv)[gt_mesh.faces[face]])
    maps = {
        name: read_image(gt_dir / f"{name}.exr")
        for name in ("diffuse_albedo", "specular_albedo", "roughness")
    }
    return SurfaceMaterials(
        points=np.asarray(points),
        diffuse_albedo=sample_texture(maps["diffuse_albedo"], point_uv),
        specular_albedo=sample_texture(maps["specular_albedo"], point_uv),
        roughness=sample_texture(maps["roughness"], point_uv)[:, :1],
    )


def project_to_surface(sdf: SDFField, points: Tensor, steps: int) -> tuple[Tensor, Tensor, Tensor]:
    """Newton steps onto the zero level set, ``x <- x - s(x) g / |g|^2``.

    Returns the projected points, their unit normals ``g / |g|`` and the remaining ``|s|``.
    """
    out_points, out_normals, out_residual = [], [], []
    for start in range(0, len(points), QUERY_CHUNK):
        x = points[start : start + QUERY_CHUNK]
        for _ in range(steps):
            sample = sdf.with_gradients(x, create_graph=False)
            g = sample.gradients
            norm2 = (g * g).sum(-1, keepdim=True)
            step = torch.where(norm2 > MIN_GRAD_NORM2, sample.sdf[..., None] * g / norm2, 0.0)
            x = (x - step).detach()
        sample = sdf.with_gradients(x, create_graph=False)
        normals = torch.nn.functional.normalize(sample.gradients, dim=-1)
        out_points.append(x)
        out_normals.append(normals)
        out_residual.append(sample.sdf.abs())
    return torch.cat(out_points), torch.cat(out_normals), torch.cat(out_residual)


def query_materials(fn: MaterialsFn, points: Tensor, normals: Tensor) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {}
    with torch.no_grad():
        for start in range(0, len(points), QUERY_CHUNK):
            values = fn(points[start : start + QUERY_CHUNK], normals[start : start + QUERY_CHUNK])
            for name, value in values.items():
                array = value.detach().cpu().numpy() if isinstance(value, Tensor) else value
                parts.setdefault(name, []).append(np.asarray(array, dtype=np.float64))
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def material_metrics(
    model: TrainedModel,
    gt: SurfaceMaterials,
    config: EvalConfig,
    device: torch.device | str,
    gt_light: float | None = None,
) -> dict[str, float]:
    """Albedo PSNR (aligned and raw), roughness and specular errors, light ratio."""
    if model.materials_fn is None:
        return {}
    points = torch.as_tensor(gt.points, dtype=torch.float32, device=device)
    projected, normals, residual = project_to_surface(model.sdf, points, config.projection_steps)
    pred = query_materials(model.materials_fn, projected, normals)
    albedo, specular = pred["diffuse_albedo"], pred["specular_albedo"]
    specular = np.broadcast_to(specular, (len(specular), 3))  # grey (N, 1) or RGB (N, 3)
    result = {
        "albedo_psnr": aligned_albedo_psnr(albedo[:, None], gt.diffuse_albedo[:, None]),
        "albedo_psnr_raw": psnr(albedo, gt.diffuse_albedo),
        "roughness_error": roughness_error(pred["roughness"][:, :1], gt.roughness),
        "roughness_error_perceptual": roughness_error(
            pred["roughness"][:, :1], gt.roughness, perceptual=True
        ),
        "specular_error": float(np.abs(specular - gt.specular_albedo).mean()),
        "projection_residual": float(residual.mean()),
    }
    if gt_light is not None and model.light_intensity is not None:
        result["light_ratio"] = model.light_intensity / gt_light
    return result


def gt_light_intensity(gt_dir: Path) -> float | None:
    path = gt_dir / "light.json"
    if not path.is_file():
        return None
    value = json.loads(path.read_text()).get("intensity")
    return float(value) if value is not None else None
