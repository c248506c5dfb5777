"""A trained run loaded back for use: the inverse of saving its checkpoints.

:func:`load_trained_model` gives a :class:`TrainedModel` (geometry, a view renderer, the
materials and the flash intensity) from ``RUN/stage2`` if it has a checkpoint, else from
``RUN/stage1`` with a stand-in asset. Export (:mod:`ironrender.export.run`) and evaluation
(:mod:`ironrender.evaluation.evaluate`) both start from it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ironrender.data.cameras import Cameras
from ironrender.data.tone_curve import DEFAULT_TONE_CURVE, decode
from ironrender.errors import IronError
from ironrender.fields.base import SDFField
from ironrender.fields.materials import MaterialsFn, materials_function
from ironrender.rendering.volume import render_image
from ironrender.run_folder import STAGE1_DIR, STAGE2_DIR, stage_checkpoint
from ironrender.training.stage1 import load_stage1_run, loss_domain_curve
from ironrender.training.stage2_model import load_stage2
from ironrender.training.stage2_views import scene_render_config

#: The stage-1 stand-in asset's specular albedo (F0 of a common dielectric) and GGX alpha.
STAND_IN_SPECULAR = 0.04
STAND_IN_ROUGHNESS = 0.3
#: Camera distance assumed for the stage-1 stand-in light when no dataset is known
#: (``iron synth``'s default).
FALLBACK_CAMERA_DISTANCE = 3.0
#: A stage-1 pixel belongs to the object when the volume's opacity along its ray exceeds this.
OPACITY_THRESHOLD = 0.5


@dataclass
class ViewRender:
    """One rendered view: ``color`` (H, W, 3) linear radiance, ``mask`` (H, W) bool, the pixels
    the recovered object covers."""

    color: Tensor
    mask: Tensor


@dataclass
class TrainedModel:
    """What evaluation needs from a run, whatever stage produced it.

    ``render(cameras, index) -> ViewRender`` of one full view under the capture's flash (and
    the room's light, where the run fitted one; gain 1);
    ``materials_fn(points, unit normals) -> {diffuse_albedo, specular_albedo, roughness}`` (GGX
    alpha); ``light_intensity`` the flash intensity I those materials go with.
    """

    sdf: SDFField
    render: Callable[[Cameras, int], ViewRender]
    materials_fn: MaterialsFn | None = None
    light_intensity: float | None = None
    stage: str = "stage2"
    diffuse_model: str = "lambert"  # the diffuse lobe the materials go with (rendering/brdf.py)
    notice: str = ""
    tone_curve: str = DEFAULT_TONE_CURVE  # how the capture's 8-bit files encode radiance
    #: ``develop(linear render, cameras, index, gains or None)``: the render as the camera
    #: records it (vignetting, curve, response; encoded, in [0, 1]); None: encode by the curve
    develop: Callable[[Tensor, Cameras, int, Tensor | None], Tensor] | None = None
    #: the training photographs' gains (views, 3) in training order, where the run fitted them
    train_gains: Tensor | None = None


def load_trained_model(
    run_dir: str | Path,
    device: torch.device | str = "cpu",
    camera_distance: float | None = None,
    edges: bool = True,
    chunk_rows: int = 64,
) -> TrainedModel:
    """Stage 2 if ``RUN/stage2`` has a checkpoint, else stage 1 with a stand-in asset.

    Stage 1 only: the views are NeuS volume renderings of the radiance field; the materials are
    a stand-in (notice in ``TrainedModel.notice``): diffuse albedo = the radiance field seen
    along ``-n`` (decoded to linear), F0 = 0.04, alpha = 0.3, and the light ``I = pi d^2`` with
    ``d`` the typical camera distance, so that a frontal surface at the capture distance renders
    at its stage-1 colour (``L = I / d^2 rho / pi``). A stage-2 view's object mask is
    ``RenderedImage.mask`` (hit or edge pixel), a stage-1 view's the pixels of opacity > 0.5.
    """
    run_dir = Path(run_dir)
    device = torch.device(device)
    if stage_checkpoint(run_dir, STAGE2_DIR).is_file():
        return _load_stage2_model(run_dir, device, edges, chunk_rows)
    if stage_checkpoint(run_dir, STAGE1_DIR).is_file():
        return _load_stage1_model(run_dir, device, camera_distance)
    raise IronError(f"{run_dir}: no stage-1 or stage-2 checkpoint; train it first (`iron run`)")


def _load_stage2_model(
    run_dir: Path, device: torch.device, edges: bool, chunk_rows: int
) -> TrainedModel:
    model, config = load_stage2(run_dir, device)

    def render(cameras: Cameras, index: int) -> ViewRender:
        """Under the flash where training put it, the room as stage 1 saw it and the room's
        light where the run fitted one; at gain 1."""
        settings = scene_render_config(config, cameras)
        image = model.render_view(
            cameras, index, settings, edges=edges and config.edges, chunk_rows=chunk_rows
        )
        return ViewRender(image.color, image.mask)

    def develop(color: Tensor, cameras: Cameras, index: int, gains: Tensor | None) -> Tensor:
        """Through the capture's camera (not a training view's own gains: ``gains``)."""
        with torch.no_grad():
            camera = cameras[index : index + 1]
            encoded = model.develop(color, camera, config.tone_curve, gains=gains)
        return encoded.clamp(0.0, 1.0)

    return TrainedModel(
        sdf=model.sdf,
        render=render,
        materials_fn=materials_function(model.sdf, model.materials),
        light_intensity=float(model.materials.light_intensity.detach()),
        stage="stage2",
        diffuse_model=config.materials.diffuse_model,
        tone_curve=config.tone_curve,
        develop=develop,
        train_gains=model.camera_gains(),
    )


def _load_stage1_model(
    run_dir: Path, device: torch.device, camera_distance: float | None
) -> TrainedModel:
    model, config = load_stage1_run(run_dir, device)
    curve = loss_domain_curve(config.train.loss_domain)

    def to_linear(rgb: Tensor) -> Tensor:
        return decode(rgb, curve) if curve is not None else rgb

    def render(cameras: Cameras, index: int) -> ViewRender:
        with torch.no_grad():
            out = render_image(
                cameras, index, model.sdf, model.radiance, model.variance.inv_s(),
                model.background, config.volume, chunk=config.log.render_chunk,
            )  # fmt: skip
        return ViewRender(to_linear(out.rgb), out.opacity > OPACITY_THRESHOLD)

    def materials_fn(points: Tensor, normals: Tensor) -> dict[str, Tensor]:
        features = model.sdf(points).features
        albedo = to_linear(model.radiance(points, normals, -normals, features))
        ones = points.new_ones(len(points), 1)
        return {
            "diffuse_albedo": albedo,
            "specular_albedo": STAND_IN_SPECULAR * ones,
            "roughness": STAND_IN_ROUGHNESS * ones,
        }

    distance = camera_distance or FALLBACK_CAMERA_DISTANCE
    return TrainedModel(
        sdf=model.sdf,
        render=render,
        materials_fn=materials_fn,
        light_intensity=math.pi * distance**2,
        stage="stage1",
        notice=(
            "no stage-2 checkpoint: using stage 1 (views: volume rendering of the radiance"
            " field; materials: the radiance field as a view-independent albedo stand-in,"
            f" F0 {STAND_IN_SPECULAR}, alpha {STAND_IN_ROUGHNESS}, light pi d^2 at d ="
            f" {distance:.3g})"
        ),
    )
