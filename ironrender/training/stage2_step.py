"""One stage-2 training step and everything it changes (reference §4, steps 1-5 of
:mod:`ironrender.training.stage2`): the checkpointed state, the three Adams, patch sampling and
:func:`training_step`."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ironrender.data.cameras import Cameras
from ironrender.data.dataset import Split
from ironrender.data.tone_curve import DEFAULT_TONE_CURVE, GAMMA, encode
from ironrender.fields.ambient import AmbientLight
from ironrender.fields.base import SDFField
from ironrender.fields.materials import MaterialFields
from ironrender.rendering.material_shader import MaterialShader
from ironrender.rendering.surface_renderer import BackgroundFn, SurfaceRenderConfig, render_patch
from ironrender.training.camera_gains import CameraGains
from ironrender.training.flash_offset import FlashOffset
from ironrender.training.losses import LossTerms, random_eikonal_points, stage2_loss
from ironrender.training.schedules import learning_rate_factor
from ironrender.training.stage2_config import Stage2Config

GAMMA_EPS = 1e-6
"""Added before ``x^(1/2.2)`` so the gamma curve's derivative stays finite at black (IRON)."""


def to_loss_domain(linear: Tensor, hdr: bool, curve: str = DEFAULT_TONE_CURVE) -> Tensor:
    """Prediction in the domain the loss compares: linear for EXR; for LDR the tone curve,
    ``(x + eps)^(1/2.2)`` (IRON) or sRGB (finite slope at black), not clipped at white."""
    if hdr:
        return linear
    if curve == DEFAULT_TONE_CURVE:
        return (linear.clamp_min(0.0) + GAMMA_EPS) ** (1.0 / GAMMA)
    return encode(linear, curve, clip=False)


def target_to_loss_domain(linear: Tensor, hdr: bool, curve: str = DEFAULT_TONE_CURVE) -> Tensor:
    """Photograph in the loss domain: for LDR the exact encoded pixel values ``v/255``."""
    if hdr:
        return linear
    return encode(linear, curve)


@dataclass
class Stage2State:
    """Everything a step changes, and therefore everything a checkpoint must hold."""

    sdf: SDFField
    materials: MaterialFields
    optimizers: dict[str, torch.optim.Optimizer]
    generator: torch.Generator
    iteration: int = 0
    skipped_steps: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    ambient: AmbientLight | None = None  # the room's light (stage2.ambient)
    gains: CameraGains | None = None  # per-photograph gains (stage2.exposure_gains)
    flash: FlashOffset | None = None  # a learnt flash position (stage2.flash=learn)

    def state_dict(self) -> dict:
        extra = {name: m.state_dict() for name, m in self._photometric().items()}
        return extra | {
            "iteration": self.iteration,
            "skipped_steps": self.skipped_steps,
            "history": self.history,
            "sdf": self.sdf.state_dict(),
            "materials": self.materials.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.iteration = int(state["iteration"])
        self.skipped_steps = int(state["skipped_steps"])
        self.history = list(state["history"])
        self.sdf.load_state_dict(state["sdf"])
        self.materials.load_state_dict(state["materials"])
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        self.generator.set_state(state["generator"].cpu())
        torch.set_rng_state(state["torch_rng"].cpu())
        for name, module in self._photometric().items():
            module.load_state_dict(state[name])

    def _photometric(self) -> dict[str, torch.nn.Module]:
        modules = {"ambient": self.ambient, "gains": self.gains, "flash": self.flash}
        return {name: module for name, module in modules.items() if module is not None}


def _parameter_groups(named, lr: float, grid_factor: float) -> list[dict]:
    """One group at ``lr``, and the grid features (the ``grid`` encoding's tables) at ``lr * f``.

    Grid features are looked up by trilinear interpolation, so each receives the gradient of a
    few points per step; like Instant-NGP (and our stage 1) they need larger steps than weights.
    """
    named = list(named)
    grids = [p for name, p in named if ".grid." in f".{name}"]
    others = [p for name, p in named if ".grid." not in f".{name}"]
    groups = [{"params": others, "lr": lr}]
    if grids:
        groups.append({"params": grids, "lr": lr * grid_factor})
    return groups


def make_optimizers(
    sdf: SDFField,
    materials: MaterialFields,
    config: Stage2Config,
    ambient: AmbientLight | None = None,
    gains: CameraGains | None = None,
    flash: FlashOffset | None = None,
) -> dict[str, torch.optim.Optimizer]:
    """Three Adams, as the reference: SDF, materials (all three nets), light; and a fourth for
    the room's light and the camera gains when they are fitted.

    ``fused=True``: one kernel per tensor instead of a dozen; on the CPU it made the update of
    a dense-grid SDF (millions of features, every step) 7x faster (0.23 s -> 0.03 s).
    """
    material_named = [(n, p) for n, p in materials.named_parameters() if n != "log_light"]
    factor = config.grid_lr_factor
    sdf_groups = _parameter_groups(sdf.named_parameters(), config.lr_sdf, factor)
    material_groups = _parameter_groups(material_named, config.lr_materials, factor)
    optimizers = {
        "sdf": torch.optim.Adam(sdf_groups, fused=True),
        "materials": torch.optim.Adam(material_groups, fused=True),
        "light": torch.optim.Adam([materials.log_light], lr=config.lr_light, fused=True),
    }
    photometric = []
    if ambient is not None:
        photometric.append({"params": [ambient.coefficients], "lr": config.lr_ambient})
    if gains is not None:
        photometric.append({"params": [gains.log_gains], "lr": config.lr_gains})
    if flash is not None:
        photometric.append({"params": [flash.offset], "lr": config.lr_flash})
    if photometric:
        optimizers["photometric"] = torch.optim.Adam(photometric, fused=True)
    return optimizers


def set_learning_rates(optimizers: dict[str, torch.optim.Optimizer], factor: float) -> None:
    """Every group at ``base_lr * factor`` (the schedule is a pure function of the iteration).

    ``base_lr`` is the group's rate when first scheduled (the configured one, since the schedule
    runs from the first step); it travels in the optimiser's state, so a resumed run keeps it.
    """
    for optimizer in optimizers.values():
        for group in optimizer.param_groups:
            group["lr"] = group.setdefault("base_lr", group["lr"]) * factor


@dataclass
class Patch:
    """One training sample: the cropped camera, the photograph's pixels (P, P, 3) linear, and
    which training view it is."""

    camera: Cameras
    target: Tensor
    view: int


def sample_patch(
    split: Split,
    size: int,
    generator: torch.Generator,
    masks: Tensor | None = None,
    object_fraction: float = 0.0,
) -> Patch:
    """A random image and a random ``size``-square window inside it.

    Uniform over images and windows (IRON) unless ``masks`` (N, h, w) say where the object is:
    then with probability ``object_fraction`` the window is centred on a uniformly drawn object
    pixel of any view (clamped into the image). In a real photograph the object may cover a
    quarter of the frame; a window on the room alone (a frozen background in stage 2) changes
    no parameter, and would be a step lost.
    """
    focused = masks is not None and object_fraction > 0 and bool(masks.any())
    if focused and float(torch.rand((), generator=generator)) < object_fraction:
        return _object_patch(split, size, generator, masks)
    i = int(torch.randint(len(split), (1,), generator=generator))
    W, H = split.cameras.width(i), split.cameras.height(i)
    pw, ph = min(size, W), min(size, H)
    x0 = int(torch.randint(W - pw + 1, (1,), generator=generator))
    y0 = int(torch.randint(H - ph + 1, (1,), generator=generator))
    return Patch(
        split.cameras.crop(i, x0, y0, pw, ph),
        split.linear(split.images[i, y0 : y0 + ph, x0 : x0 + pw]),
        i,
    )


def _object_patch(split: Split, size: int, generator: torch.Generator, masks: Tensor) -> Patch:
    flat = masks.reshape(-1).nonzero().squeeze(-1)
    pick = int(flat[int(torch.randint(len(flat), (1,), generator=generator))])
    _, h, w = masks.shape
    i, row, col = pick // (h * w), (pick // w) % h, pick % w
    W, H = split.cameras.width(i), split.cameras.height(i)
    jitter = torch.rand(2, generator=generator)
    x = (col + float(jitter[0])) * W / w  # a full-resolution point inside the mask cell
    y = (row + float(jitter[1])) * H / h
    pw, ph = min(size, W), min(size, H)
    x0 = min(max(int(x) - pw // 2, 0), W - pw)
    y0 = min(max(int(y) - ph // 2, 0), H - ph)
    return Patch(
        split.cameras.crop(i, x0, y0, pw, ph),
        split.linear(split.images[i, y0 : y0 + ph, x0 : x0 + pw]),
        i,
    )


def training_step(
    state: Stage2State,
    split: Split,
    config: Stage2Config,
    render: SurfaceRenderConfig,
    background: BackgroundFn | None = None,
    masks: Tensor | None = None,
) -> LossTerms | None:
    """One patch, one backward pass, one step of each optimiser (reference §4).

    Returns the loss terms, or None when the loss or a gradient was not finite: then no
    parameter changes (the NaN guard) and the step is counted in ``skipped_steps``.
    """
    device = split.images.device
    patch = sample_patch(
        split, config.patch_size, state.generator, masks, config.object_patch_fraction
    )
    shader = MaterialShader(state.materials, ambient=state.ambient)
    camera = patch.camera if state.flash is None else state.flash.place(patch.camera)
    image = render_patch(
        state.sdf, shader, camera, 0, render, edges=config.edges, background=background
    )
    color = image.color if state.gains is None else image.color * state.gains(patch.view)
    pixels = image.color.shape[0] * image.color.shape[1]
    count = config.eikonal_points or pixels // 2
    points = random_eikonal_points(count, device, state.generator)
    random_gradients = state.sdf.with_gradients(points).gradients
    roughness = image.extras.get("roughness", image.color.new_zeros(*image.color.shape[:2], 1))
    terms = stage2_loss(
        to_loss_domain(color, split.hdr, split.tone_curve),
        target_to_loss_domain(patch.target, split.hdr, split.tone_curve),
        image.mask,
        [random_gradients, image.eikonal_gradients],
        roughness,
        config.weights,
    )
    if state.gains is not None:
        terms.gains = state.gains.penalty()
        terms.total = terms.total + config.gains_weight * terms.gains
    for optimizer in state.optimizers.values():
        optimizer.zero_grad(set_to_none=True)
    finite = bool(torch.isfinite(terms.total))
    if finite:
        terms.total.backward()
        grads = [
            p.grad
            for o in state.optimizers.values()
            for group in o.param_groups
            for p in group["params"]
            if p.grad is not None
        ]
        # one fused pass: the norm of all gradients is finite iff every entry is
        finite = bool(torch.isfinite(torch.nn.utils.get_total_norm(grads)))
    state.iteration += 1
    if not finite:
        state.skipped_steps += 1
        for optimizer in state.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        return None
    if config.lr_alpha != 1.0:
        step = state.iteration - 1
        set_learning_rates(
            state.optimizers, learning_rate_factor(step, 0, config.steps, config.lr_alpha)
        )
    for optimizer in state.optimizers.values():
        optimizer.step()
    return terms
