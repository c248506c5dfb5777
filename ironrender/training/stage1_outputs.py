"""Stage 1's outputs besides the checkpoint: preview panels and the marching-cubes mesh."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ironrender.data.dataset import Split
from ironrender.data.tone_curve import target_to_loss_domain
from ironrender.fields.level_set import extract_mesh
from ironrender.fields.sdf import NeuralSDF
from ironrender.rendering.volume import render_image
from ironrender.training.pixel_batches import PixelTargets
from ironrender.training.runlog import normal_image, write_panels
from ironrender.training.stage1_config import Stage1Config

PREVIEW_DIR = "previews"


@torch.no_grad()
def write_previews(
    state, config: Stage1Config, split: Split, targets: PixelTargets, stage_dir: Path
) -> None:
    """``previews/step_XXXXXX_view_Y.png``: ground truth | rendering | normals.

    ``state`` is stage 1's training state (``.model``, a
    :class:`~ironrender.training.stage1.Stage1Model`, ``.cache`` and ``.step``); a linear loss
    domain is gamma-encoded for display.
    """
    model, cache, step = state.model, state.cache, state.step
    # At half the size of a 1 MP photo a preview renders 190k rays, the forward pass of ~500
    # training steps of 384 rays; 320 px keeps it to a few dozen.
    longest = int(split.cameras.sizes.max())
    scale = min(config.log.preview_scale, config.log.preview_max_size / longest)
    cameras = split.cameras.scaled(scale) if scale != 1.0 else split.cameras
    for view in config.log.preview_views:
        if view >= len(split):
            continue
        out = render_image(
            cameras,
            view,
            model.sdf,
            model.radiance,
            model.variance.inv_s(),
            model.background,
            config.volume,
            chunk=config.log.render_chunk,
            proposal=cache,
        )
        height, width = out.rgb.shape[:2]
        gt = F.interpolate(
            targets.view(view).permute(2, 0, 1)[None], size=(height, width), mode="area"
        )[0].permute(1, 2, 0)
        rgb, gt = out.rgb, gt
        if config.train.loss_domain != "gamma":
            rgb, gt = (target_to_loss_domain(x, "gamma2.2") for x in (rgb, gt))
        name = f"step_{step:06d}_view_{view}.png"
        write_panels(
            stage_dir / PREVIEW_DIR / name, [gt, rgb, normal_image(out.normal, out.opacity)]
        )


def write_mesh(sdf: NeuralSDF, path: Path, resolution: int, device: torch.device) -> Path:
    """Marching cubes on the SDF (largest component kept, as IRON's export) to ``path``."""
    mesh = extract_mesh(sdf.sdf, resolution, bound=1.0, device=device, keep_largest_component=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    mesh.export(path)
    return path
