"""Everything stage 2 learns, as one module: :class:`Stage2Model`.

Stage 2 (IRON section 3.2; docs/architecture.md) renders the photographs from

* the SDF (a copy of stage 1's, refined),
* the material fields (diffuse albedo started from stage 1's radiance net, specular albedo,
  roughness and the flash intensity, :mod:`ironrender.fields.materials`),
* what missed rays see: stage 1's model of the room, frozen (:class:`StageOneBackground`),
* and the photometric models a run fits (:mod:`ironrender.training.photometric`: the room's
  light, the camera gains, the flash's position),

and this module holds them together: one ``state_dict`` for checkpoints, one set of optimiser
groups (:meth:`Stage2Model.parameter_groups`), one way to render a patch or a view under the
capture's light, and one way to build it from a run (:func:`stage2_from_stage1`: stage 1's
checkpoint read once; :func:`load_stage2`: a trained run read back).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor, nn

from ironrender.config import from_dict
from ironrender.data.cameras import Cameras
from ironrender.data.dataset import Split
from ironrender.data.tone_curve import decode, prediction_to_loss_domain
from ironrender.errors import IronError
from ironrender.fields.base import SDFField
from ironrender.fields.materials import MaterialFields
from ironrender.rendering.material_shader import MaterialShader
from ironrender.rendering.surface_renderer import RenderedImage, SurfaceRenderConfig, render_patch
from ironrender.rendering.volume import Background
from ironrender.run_folder import STAGE2_DIR, stage_checkpoint
from ironrender.training.checkpoint import load_checkpoint
from ironrender.training.photometric import (
    CaptureFacts,
    LightScale,
    PhotometricModel,
    photometric_from_state,
    photometric_models,
)
from ironrender.training.stage1 import Stage1Model, load_stage1_run
from ironrender.training.stage1_config import Stage1Config
from ironrender.training.stage2_config import Stage2Config
from ironrender.training.stage2_views import render_view


class StageOneBackground(nn.Module):
    """What missed rays see in stage 2: stage 1's background, frozen, as linear radiance.

    Stage 1 fits the photographs' encoded values by default, so its background ``B`` is decoded
    to the linear radiance stage 2 renders in (``B^2.2``, or the sRGB curve: ``curve``).
    """

    def __init__(self, background: Background, curve: str | None):
        super().__init__()
        self.background = background.requires_grad_(False).eval()
        self.curve = curve

    def train(self, mode: bool = True) -> StageOneBackground:
        return super().train(False)  # frozen: always as evaluated

    def forward(self, origins: Tensor, directions: Tensor) -> Tensor:
        with torch.no_grad():
            value = self.background(origins, directions)
        return decode(value, self.curve) if self.curve is not None else value


class SurfaceLights:
    """The photometric models' light on the surface, summed, in the form the shader takes for
    a room's light (``radiance(diffuse_albedo, normals)``)."""

    def __init__(self, models: list[PhotometricModel]):
        self.models = models

    def radiance(self, diffuse_albedo: Tensor, normals: Tensor) -> Tensor:
        total = None
        for model in self.models:
            value = model.surface_radiance(diffuse_albedo, normals)
            total = value if total is None else total + value
        return total


class Stage2Model(nn.Module):
    """The SDF, the materials, the frozen room and the photometric models (module docstring).

    ``background`` None renders misses black (IRON's stage 2, or a dark room).
    """

    def __init__(
        self,
        sdf: SDFField,
        materials: MaterialFields,
        background: StageOneBackground | None = None,
        photometric: Iterable[PhotometricModel] = (),
    ):
        super().__init__()
        self.sdf = sdf
        self.materials = materials
        self.background = background
        self.photometric = nn.ModuleDict()
        self.add_photometric(photometric)

    def add_photometric(self, models: Iterable[PhotometricModel]) -> None:
        """Fit these photometric models too (on the materials' device)."""
        device = self.materials.log_light.device
        for model in models:
            self.photometric[model.name] = model.to(device)

    # ----------------------------------------------------------------------------- parameters
    def parameter_groups(self, config: Stage2Config) -> dict[str, list[dict]]:
        """Adam parameter groups per optimiser, as the reference's three: ``sdf``,
        ``materials`` (all three nets), ``light`` (log I); and ``photometric``, one group per
        photometric model, when the run fits any.

        Grid features (the ``grid`` encodings' tables) get ``lr * grid_lr_factor``: looked up by
        trilinear interpolation, each receives the gradient of a few points per step; like
        Instant-NGP (and our stage 1) they need larger steps than weights.
        """
        factor = config.grid_lr_factor
        materials = [(n, p) for n, p in self.materials.named_parameters() if n != "log_light"]
        groups = {
            "sdf": _grid_split(self.sdf.named_parameters(), config.lr_sdf, factor),
            "materials": _grid_split(materials, config.lr_materials, factor),
            "light": [{"params": [self.materials.log_light], "lr": config.lr_light}],
        }
        photometric = [model.parameter_group(config) for model in self.photometric.values()]
        if photometric:
            groups["photometric"] = photometric
        return groups

    # ----------------------------------------------------------------------------- rendering
    def place(self, cameras: Cameras) -> Cameras:
        """``cameras`` with the flash where the photometric models put it."""
        for model in self.photometric.values():
            cameras = model.place(cameras)
        return cameras

    def shader(self, unit_light: bool = False) -> MaterialShader:
        """The materials under the flash, plus what the photometric models add on the surface
        (the room's light); ``unit_light``: the flash alone at ``I = 1``."""
        lights = [
            m for m in self.photometric.values()
            if type(m).surface_radiance is not PhotometricModel.surface_radiance
        ]  # fmt: skip
        extra = SurfaceLights(lights) if lights else None
        return MaterialShader(self.materials, unit_light=unit_light, ambient=extra)

    def render_patch(
        self, camera: Cameras, render: SurfaceRenderConfig, edges: bool = True
    ) -> RenderedImage:
        """A training patch (camera 0 of ``camera``), differentiable, under the capture's light."""
        return render_patch(
            self.sdf, self.shader(), self.place(camera), 0, render, edges=edges,
            background=self.background,
        )  # fmt: skip

    def render_view(
        self,
        cameras: Cameras,
        index: int,
        render: SurfaceRenderConfig,
        edges: bool = True,
        chunk_rows: int = 64,
    ) -> RenderedImage:
        """A whole view without graphs (previews, evaluation), under the capture's light; the
        camera gains are not applied (held-out views are rendered at gain 1)."""
        with torch.no_grad():
            cameras = self.place(cameras)
        return render_view(
            self.sdf, self.shader(), cameras, index, render, edges=edges,
            chunk_rows=chunk_rows, background=self.background,
        )  # fmt: skip

    def develop(
        self,
        color: Tensor,
        camera: Cameras,
        curve: str | None,
        view: int | None = None,
        gains: Tensor | None = None,
    ) -> Tensor:
        """A render (H, W, 3) of camera 0 of ``camera`` as the photograph records it, in the
        loss domain (:func:`prediction_to_loss_domain`: encoded by ``curve``, linear for None):
        training view ``view``'s gains (None: a held-out photograph, at ``gains`` if given, else
        1), the vignetting, the standard curve, then the camera's response correction."""
        plane = camera.image_plane(0)
        for model in self.photometric.values():
            color = model.observe(color, view, plane)
        if gains is not None:
            color = color * gains
        encoded = prediction_to_loss_domain(color, curve)
        if curve is None:
            return encoded
        for model in self.photometric.values():
            encoded = model.respond(encoded)
        return encoded

    def camera_gains(self) -> Tensor | None:
        """The training photographs' gains (views, 3), None when the run fits none."""
        if "gains" not in self.photometric:
            return None
        return self.photometric["gains"].centred().detach().exp()

    def penalties(self, config: Stage2Config) -> dict[str, tuple[float, Tensor]]:
        """The photometric models' ``(weight, term)`` added to the loss, by name."""
        terms = {}
        for name, model in self.photometric.items():
            penalty = model.penalty(config)
            if penalty is not None:
                terms[name] = penalty
        return terms

    def report(self, cameras: Cameras) -> str:
        """One line on what the photometric models came to (empty when the run fits none)."""
        scale = LightScale(
            float(self.materials.light_intensity.detach()),
            float(cameras.centers.norm(dim=-1).median()),
        )
        return "; ".join(model.describe(scale) for model in self.photometric.values())


def _grid_split(named, lr: float, grid_factor: float) -> list[dict]:
    """One group at ``lr``, and the grid features at ``lr * grid_factor``."""
    named = list(named)
    grids = [p for name, p in named if ".grid." in f".{name}"]
    others = [p for name, p in named if ".grid." not in f".{name}"]
    groups = [{"params": others, "lr": lr}]
    if grids:
        groups.append({"params": grids, "lr": lr * grid_factor})
    return groups


# ----------------------------------------------------------------------------- building
def stage2_from_stage1(
    stage1: Stage1Model, stage1_config: Stage1Config, config: Stage2Config
) -> Stage2Model:
    """Stage 2's starting point: stage 1's SDF (copied), materials whose diffuse albedo is
    stage 1's radiance net (copied), and stage 1's room when ``config.background`` is
    ``stage1`` and the room was not black; no photometric model yet.

    The new networks (specular, roughness) are initialised from ``config.seed`` alone, not from
    whatever the process drew before: a run resumed in a fresh process after stage 1 (or after a
    kill before stage 2's first checkpoint) starts stage 2 exactly as an uninterrupted one does.
    The caller seeds torch's generator with it before building ``stage1`` (whose construction
    draws from it): :func:`start_stage2`.
    """
    encoded = stage1_config.train.loss_domain == "gamma"
    sdf = copy.deepcopy(stage1.sdf)
    materials = MaterialFields.from_stage1(
        stage1.radiance, config.materials, stage1_gamma_encoded=encoded, curve=config.tone_curve
    )
    background = None
    if config.background == "stage1" and stage1.background.mode != "black":
        room = copy.deepcopy(stage1.background)
        background = StageOneBackground(room, config.tone_curve if encoded else None)
    return Stage2Model(sdf, materials, background).train()


def start_stage2(
    run_dir: str | Path,
    config: Stage2Config,
    device: torch.device | str,
    split: Split | None = None,
) -> Stage2Model:
    """:func:`stage2_from_stage1` from ``RUN/stage1`` (its checkpoint read once, torch's
    generator seeded first), with the photometric models ``config`` asks for on the training
    ``split`` (none without it)."""
    torch.manual_seed(config.seed)
    stage1, stage1_config = load_stage1_run(run_dir, device)
    model = stage2_from_stage1(stage1, stage1_config, config)
    if split is not None:
        room_lit = model.background is not None  # stage 1 found the room not dark
        capture = CaptureFacts(
            len(split), split.cameras.colocated, room_lit, split.cameras.field_radius(), split.hdr
        )
        model.add_photometric(photometric_models(config, capture))
    return model


def load_stage2(
    run_dir: str | Path, device: torch.device | str = "cpu"
) -> tuple[Stage2Model, Stage2Config]:
    """A trained run's stage 2 (eval mode) and its configuration, from one read of each
    stage's checkpoint."""
    path = stage_checkpoint(run_dir, STAGE2_DIR)
    if not path.is_file():
        raise IronError(
            f"{run_dir}: no stage-2 checkpoint ({STAGE2_DIR}/{path.name}); run stage 2 first"
        )
    state = load_checkpoint(path, device)
    config = from_dict(Stage2Config, state["config"], str(path))
    model = start_stage2(run_dir, config, device)
    weights = model_state(state, model)
    model.add_photometric(photometric_from_state(weights, "photometric."))
    model.load_state_dict(weights)
    return model.eval(), config


#: Where a stage-2 checkpoint written before :class:`Stage2Model` kept each part.
_LEGACY_PARTS = {
    "sdf": "sdf.",
    "materials": "materials.",
    "ambient": "photometric.ambient.light.",
    "gains": "photometric.gains.",
    "flash": "photometric.flash.",
}


def model_state(checkpoint: dict, model: Stage2Model) -> dict[str, Tensor]:
    """The model's weights in ``checkpoint``; a checkpoint from before :class:`Stage2Model`
    (parts side by side, no room) is read into the new layout, with ``model``'s own room."""
    if "model" in checkpoint:
        return checkpoint["model"]
    weights = {}
    for part, prefix in _LEGACY_PARTS.items():
        weights |= {prefix + k: v for k, v in checkpoint.get(part, {}).items()}
    if model.background is not None:
        own = model.state_dict()
        weights |= {k: v for k, v in own.items() if k.startswith("background.")}
    return weights
