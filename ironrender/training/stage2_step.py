"""One stage-2 training step and everything it changes (steps 1-5 of
:mod:`ironrender.training.stage2`): the checkpointed state, the optimisers, patch sampling and
:func:`training_step`."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.profiler import record_function

from ironrender.data.cameras import Cameras
from ironrender.data.dataset import Split
from ironrender.data.tone_curve import target_to_loss_domain
from ironrender.rendering.surface_renderer import SurfaceRenderConfig
from ironrender.training.losses import LossTerms, random_eikonal_points, stage2_loss
from ironrender.training.schedules import learning_rate_factor
from ironrender.training.stage2_config import Stage2Config
from ironrender.training.stage2_model import Stage2Model, model_state


@dataclass
class Stage2State:
    """Everything a step changes, and therefore everything a checkpoint must hold."""

    model: Stage2Model
    optimizers: dict[str, torch.optim.Optimizer]
    generator: torch.Generator
    step: int = 0
    skipped_steps: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    @classmethod
    def start(cls, model: Stage2Model, config: Stage2Config) -> Stage2State:
        """Step 0: the optimisers made, the step generator seeded with ``config.seed``."""
        generator = torch.Generator(device="cpu").manual_seed(config.seed)
        return cls(model, make_optimizers(model, config), generator)

    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "skipped_steps": self.skipped_steps,
            "history": self.history,
            "model": self.model.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a checkpoint (also one from before :class:`Stage2Model`:
        :func:`~ironrender.training.stage2_model.model_state`)."""
        self.step = int(state.get("step", state.get("iteration")))
        self.skipped_steps = int(state["skipped_steps"])
        self.history = list(state["history"])
        self.model.load_state_dict(model_state(state, self.model))
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        self.generator.set_state(state["generator"].cpu())
        torch.set_rng_state(state["torch_rng"].cpu())


def make_optimizers(model: Stage2Model, config: Stage2Config) -> dict[str, torch.optim.Optimizer]:
    """One Adam per group of :meth:`Stage2Model.parameter_groups`: SDF, materials and light as
    the reference, and one for the photometric models when the run fits any.

    ``fused=True``: one kernel per tensor instead of a dozen; on the CPU it made the update of
    a dense-grid SDF (millions of features, every step) 7x faster (0.23 s -> 0.03 s).
    """
    return {
        name: torch.optim.Adam(groups, fused=True)
        for name, groups in model.parameter_groups(config).items()
    }


def set_learning_rates(optimizers: dict[str, torch.optim.Optimizer], factor: float) -> None:
    """Every group at ``base_lr * factor`` (the schedule is a pure function of the step).

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
    masks: Tensor | None = None,
) -> LossTerms | None:
    """One patch, one backward pass, one step of each optimiser.

    Returns the loss terms, or None when the loss or a gradient was not finite: then no
    parameter changes (the NaN guard) and the step is counted in ``skipped_steps``.
    """
    model = state.model
    device = split.images.device
    with record_function("stage 2: draw a patch"):  # profile labels: profile_stage2.py
        patch = sample_patch(
            split, config.patch_size, state.generator, masks, config.object_patch_fraction
        )
    image = model.render_patch(patch.camera, render, edges=config.edges)
    pixels = image.color.shape[0] * image.color.shape[1]
    count = config.eikonal_points or pixels // 2
    with record_function("stage 2: eikonal points"):
        points = random_eikonal_points(count, device, state.generator)
        random_gradients = model.sdf.with_gradients(points).gradients
    roughness = image.extras.get("roughness", image.color.new_zeros(*image.color.shape[:2], 1))
    curve = None if split.hdr else split.tone_curve
    with record_function("stage 2: loss"):
        terms = stage2_loss(
            model.develop(image.color, patch.camera, curve, view=patch.view),
            target_to_loss_domain(patch.target, curve),
            image.mask,
            [random_gradients, image.eikonal_gradients],
            roughness,
            config.weights,
        )
    for name, (weight, value) in model.penalties(config).items():
        terms.penalties[name] = value
        terms.total = terms.total + weight * value
    for optimizer in state.optimizers.values():
        optimizer.zero_grad(set_to_none=True)
    finite = bool(torch.isfinite(terms.total))
    if finite:
        with record_function("stage 2: backward"):
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
    state.step += 1
    if not finite:
        state.skipped_steps += 1
        for optimizer in state.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        return None
    if config.lr_alpha != 1.0:
        step = state.step - 1
        set_learning_rates(
            state.optimizers, learning_rate_factor(step, 0, config.steps, config.lr_alpha)
        )
    with record_function("stage 2: optimisers"):
        for optimizer in state.optimizers.values():
            optimizer.step()
    return terms
