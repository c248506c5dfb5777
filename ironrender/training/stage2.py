"""Stage 2: edge-aware physics-based surface rendering (paper §3.2-3.3, reference §4).

Starting from stage 1's SDF and radiance network, stage 2 jointly optimises the SDF, the
material fields (:mod:`ironrender.fields.materials`) and the flash intensity so that images
rendered by sphere tracing with edge sampling (:func:`~ironrender.rendering.surface_renderer.
render_patch`) and the co-located GGX BRDF match the photographs.

One iteration (reference §4):

1. pick a random training image and a random ``patch_size`` square crop of it
   (:meth:`Cameras.crop`), uniformly as IRON; ``object_patch_fraction`` centres that share of
   them on the object instead (where stage 1's surface is in low-resolution masks of the
   views). Off by default: on the real skull it changed no metric measurably (BENCHMARKS.md)
   and made steps slower (every patch then holds surface to shade);
2. render the crop: linear radiance, edge pixels blended (seed Eqs. 4-9); rays that miss the
   object see the background: black (IRON, ``background = "black"``) or, by default, stage 1's
   model of the room, frozen (``"stage1"``; black too when stage 1 found the room black), so
   that a dim room is never explained by geometry;
3. compare in the data's domain: for LDR (gamma-encoded 8-bit) captures
   ``(pred + 1e-6)^(1/2.2)`` against the gamma-encoded photograph (IRON's ``--gamma_pred``),
   for EXR captures linear against linear;
4. loss = pyramid L2 + (1 - SSIM) + 0.1 eikonal + 0.1 roughness range (Eqs. 10-13); the eikonal
   term uses ``patch pixels / 2`` random points in [-1, 1]^3 plus the gradients at the hits;
5. one step of three Adams (SDF, materials, light); constant rates as the reference, or a
   cosine decay to ``lr_alpha`` times them (``fast``).

Runs are resumable exactly: the checkpoint holds the networks, the optimisers, the iteration and
the random generators, so an interrupted run continued with ``resume=True`` takes the same
steps as an uninterrupted one.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ironrender.data.cameras import Cameras
from ironrender.data.dataset import Split, load_split
from ironrender.data.images import GAMMA
from ironrender.errors import IronError
from ironrender.fields.base import SDFField
from ironrender.fields.materials import (
    MaterialConfig,
    MaterialFields,
    MaterialShader,
    least_squares_light,
    paper_material_config,
    reference_light_init,
)
from ironrender.rendering.edges import EdgeConfig
from ironrender.rendering.surface import sphere_trace
from ironrender.rendering.surface_renderer import (
    BackgroundFn,
    RenderedImage,
    SurfaceRenderConfig,
    render_patch,
)
from ironrender.training.checkpoint import load_checkpoint, save_checkpoint
from ironrender.training.losses import (
    LossTerms,
    LossWeights,
    random_eikonal_points,
    stage2_loss,
)
from ironrender.training.runlog import RunLog, normal_image, write_panels
from ironrender.training.schedules import learning_rate_factor

STAGE_DIR = "stage2"
CHECKPOINT_NAME = "checkpoint.pt"
PREVIEW_DIR = "previews"
FINAL_PREVIEW = "final_preview.png"
GAMMA_EPS = 1e-6
"""Added before ``x^(1/2.2)`` so the gamma curve's derivative stays finite at black (IRON)."""
SATURATED = 0.99
"""Linear values at or above this are treated as clipped by the 8-bit camera (light init)."""
STAGE2_BACKGROUNDS = ("stage1", "black")
EDGE_ROW_MARGIN = 4
"""Rows of overlap between the strips of a chunked full-view render: edge detection (Sobel) and
edge points that project one pixel away must see the same neighbourhood as an unchunked render."""


# ----------------------------------------------------------------------------- configuration
@dataclass
class Stage2Config:
    """Stage-2 optimisation settings. Defaults are the ``fast`` preset (2 CPU cores, 128x128).

    ``paper_stage2_config`` gives the reference's values (128x128 patches, 50k iterations,
    learning rates 1e-5 / 1e-4 / 1e-2, loss weights 1 / 1 / 0.1 / 0.1).
    """

    iterations: int = 1000  # 0.25-0.3 s per 64x64 patch on 2 idle cores: 4.6 min in all
    patch_size: int = 64
    lr_sdf: float = 1e-4
    lr_materials: float = 1e-3
    lr_light: float = 1e-2  # on log I (see fields/materials.py)
    grid_lr_factor: float = 10.0  # dense-grid features (SDF, materials) learn this much faster
    lr_alpha: float = 1.0  # cosine decay of every rate to this fraction at the end; 1 = constant
    weights: LossWeights = field(default_factory=LossWeights)
    edges: bool = True  # False: the IDR-style ``--no-edges`` baseline
    background: str = "stage1"  # what missed rays see: stage 1's background model, or black
    object_patch_fraction: float = 0.0  # share of patches centred on the object (0: IRON)
    object_mask_size: int = 64  # longest side of the per-view object masks that guide them
    eikonal_points: int = 0  # random points per step; 0 = half the patch's pixels (reference)
    # Burley diffuse in `fast` (measured better on the default capture; BENCHMARKS.md), Lambert in
    # `paper` (IRON's model).
    materials: MaterialConfig = field(
        default_factory=lambda: MaterialConfig(diffuse_model="burley")
    )
    render: SurfaceRenderConfig = field(default_factory=SurfaceRenderConfig)
    edge_step_pixels: float = 0.25  # walk step in pixels at the object; 0 = render.edges as is
    light_init_views: int = 8  # training views rendered for the least-squares light
    light_init_size: int = 64  # their longest side, pixels (downscaled)
    log_every: int = 10
    preview_every: int = 200
    checkpoint_every: int = 100
    preview_size: int = 128  # longest side of preview renders
    max_bad_steps: int = 20  # consecutive non-finite steps before giving up
    seed: int = 0

    def __post_init__(self) -> None:
        # Checked here, not when stage 2 starts: a typo must not cost a whole stage 1 first.
        if self.background not in STAGE2_BACKGROUNDS:
            raise ValueError(
                f"background must be one of {STAGE2_BACKGROUNDS}, not {self.background!r}"
            )


def fast_stage2_config() -> Stage2Config:
    return Stage2Config()


def paper_stage2_config() -> Stage2Config:
    """The reference schedule (train_scene.sh): 50k steps of one 128x128 patch each."""
    return Stage2Config(
        iterations=50_000,
        patch_size=128,
        lr_sdf=1e-5,
        lr_materials=1e-4,
        lr_light=1e-2,
        grid_lr_factor=1.0,
        materials=paper_material_config(),
        # The paper's Algorithm 1 and area-weighted blend (eq. 13) without our gap filling. The
        # reference code's clamp (centre outside the edge -> w = 0.5) is available as
        # footprint="reference", but it gives a third of the true silhouette gradient
        # (tests/test_edges.py), so the paper preset follows the paper, not that quirk.
        render=SurfaceRenderConfig(edges=EdgeConfig(footprint="circle", fill_gaps=False)),
        edge_step_pixels=0.0,
        background="black",  # IRON's stage 2 renders misses black
        object_patch_fraction=0.0,  # and draws its patches uniformly
        preview_every=500,
        checkpoint_every=1000,
    )


STAGE2_PRESETS = {"fast": fast_stage2_config, "paper": paper_stage2_config}


@dataclass
class Stage2Result:
    """Summary of a finished stage-2 run."""

    run_dir: Path | None
    iterations: int
    loss: float
    light_intensity: float
    seconds: float
    skipped_steps: int
    history: list[dict[str, float]]


# ----------------------------------------------------------------------------- domains
def to_loss_domain(linear: Tensor, hdr: bool) -> Tensor:
    """Prediction in the domain the loss compares: linear for EXR, ``(x + eps)^(1/2.2)`` for LDR."""
    if hdr:
        return linear
    return (linear.clamp_min(0.0) + GAMMA_EPS) ** (1.0 / GAMMA)


def target_to_loss_domain(linear: Tensor, hdr: bool) -> Tensor:
    """Photograph in the loss domain: for LDR the exact gamma-encoded pixel values ``v/255``."""
    if hdr:
        return linear
    return linear.clamp(0.0, 1.0) ** (1.0 / GAMMA)


# ----------------------------------------------------------------------------- rendering
def render_view(
    sdf: SDFField,
    materials: MaterialFields,
    cameras: Cameras,
    index: int,
    render: SurfaceRenderConfig | None = None,
    edges: bool = True,
    chunk_rows: int = 64,
    unit_light: bool = False,
    background: BackgroundFn | None = None,
) -> RenderedImage:
    """Render a full view for evaluation: no reparameterisation, no graphs, strips of rows.

    Each strip is rendered with ``EDGE_ROW_MARGIN`` extra rows above and below (so edge
    detection and edge points near a strip border see the same pixels as a whole-image render)
    and only its own rows are kept. Returns a :class:`RenderedImage` without eikonal gradients.
    """
    render = render or SurfaceRenderConfig()
    shader = MaterialShader(materials, unit_light=unit_light)
    W, H = cameras.width(index), cameras.height(index)
    strips: list[RenderedImage] = []
    with torch.no_grad():
        for y0 in range(0, H, chunk_rows):
            y1 = min(H, y0 + chunk_rows)
            top, bottom = max(0, y0 - EDGE_ROW_MARGIN), min(H, y1 + EDGE_ROW_MARGIN)
            crop = cameras.crop(index, 0, top, W, bottom - top)
            image = render_patch(
                sdf, shader, crop, 0, render, edges=edges, training=False, background=background
            )
            strips.append(_rows(image, y0 - top, y1 - top))
    channels = {name: v.shape[-1] for s in strips for name, v in s.extras.items()}
    for s in strips:  # a strip without hits has no extras: zeros there
        for name, count in channels.items():
            if name not in s.extras:
                s.extras[name] = s.color.new_zeros(*s.color.shape[:2], count)
    return RenderedImage(
        color=torch.cat([s.color for s in strips]),
        hit_mask=torch.cat([s.hit_mask for s in strips]),
        edge_mask=torch.cat([s.edge_mask for s in strips]),
        depth=torch.cat([s.depth for s in strips]),
        normals=torch.cat([s.normals for s in strips]),
        eikonal_gradients=strips[0].eikonal_gradients.new_zeros(0, 3),
        extras={k: torch.cat([s.extras[k] for s in strips]) for k in channels},
        edge_uv=strips[0].edge_uv.new_zeros(0, 2),
        edge_weight=strips[0].edge_weight.new_zeros(0),
    )


def _rows(image: RenderedImage, start: int, stop: int) -> RenderedImage:
    return RenderedImage(
        color=image.color[start:stop],
        hit_mask=image.hit_mask[start:stop],
        edge_mask=image.edge_mask[start:stop],
        depth=image.depth[start:stop],
        normals=image.normals[start:stop],
        eikonal_gradients=image.eikonal_gradients,
        extras={k: v[start:stop] for k, v in image.extras.items()},
        edge_uv=image.edge_uv,
        edge_weight=image.edge_weight,
    )


def scene_render_config(config: Stage2Config, cameras: Cameras) -> SurfaceRenderConfig:
    """``config.render`` with the edge-walk step set to ``edge_step_pixels`` pixels at the object.

    A pixel at the object (inside the unit sphere at the origin) spans about
    ``median |camera centre| / f`` world units. IRON's fixed 1e-3 reaches the contour only when
    a pixel is tiny; stating the step in pixels makes the walk resolution-independent.
    """
    render = copy.deepcopy(config.render)
    if config.edge_step_pixels > 0:
        distance = float(cameras.centers.norm(dim=-1).median())
        focal = float(cameras.intrinsics[:, 0, 0].median())
        render.edges.step_size = config.edge_step_pixels * distance / focal
    return render


def _downscale_factor(cameras: Cameras, longest: int) -> float:
    size = int(cameras.sizes.max())
    return min(1.0, longest / size)


def initial_light_intensity(
    sdf: SDFField,
    materials: MaterialFields,
    split: Split,
    config: Stage2Config,
    render: SurfaceRenderConfig,
) -> float:
    """Starting flash intensity: the least-squares fit to the photographs, or IRON's heuristic.

    ``least_squares``: render ``light_init_views`` training views (downscaled) with ``I = 1``,
    then ``I = sum p t / sum p^2`` over the pixels that hit and are not saturated (linear), the
    exact minimiser of the L2 loss over ``I`` at the stage-1 geometry and albedo. Falls back to
    the reference ``8 median(|o|)^2`` when no pixel hits.
    """
    reference = reference_light_init(split.cameras.centers, config.materials.init_light_scale)
    if config.materials.light_init == "reference":
        return reference
    if config.materials.light_init != "least_squares":
        raise IronError("materials.light_init must be least_squares or reference")
    factor = _downscale_factor(split.cameras, config.light_init_size)
    cameras = split.cameras.scaled(factor) if factor < 1 else split.cameras
    count = min(config.light_init_views, len(split))
    views = np.linspace(0, len(split) - 1, count).round().astype(int)
    predictions, targets, weights = [], [], []
    for i in views:
        image = render_view(sdf, materials, cameras, int(i), render, unit_light=True)
        target = _resize(split.images[int(i)], image.color.shape[:2])
        predictions.append(image.color)
        targets.append(target)
        weights.append((image.mask[..., None] & (target < SATURATED)).to(target.dtype))
    try:
        return least_squares_light(torch.cat(predictions), torch.cat(targets), torch.cat(weights))
    except ValueError:
        return reference


def _resize(image: Tensor, size: tuple[int, int]) -> Tensor:
    """(H, W, 3) -> size, area-averaged (antialiased) when shrinking."""
    if tuple(image.shape[:2]) == tuple(size):
        return image
    resized = torch.nn.functional.interpolate(image.permute(2, 0, 1)[None], size=size, mode="area")
    return resized[0].permute(1, 2, 0)


# ----------------------------------------------------------------------------- training
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

    def state_dict(self) -> dict:
        return {
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
    sdf: SDFField, materials: MaterialFields, config: Stage2Config
) -> dict[str, torch.optim.Optimizer]:
    """Three Adams, as the reference: SDF, materials (all three nets), light.

    ``fused=True``: one kernel per tensor instead of a dozen; on the CPU it made the update of
    a dense-grid SDF (millions of features, every step) 7x faster (0.23 s -> 0.03 s).
    """
    material_named = [(n, p) for n, p in materials.named_parameters() if n != "log_light"]
    factor = config.grid_lr_factor
    sdf_groups = _parameter_groups(sdf.named_parameters(), config.lr_sdf, factor)
    material_groups = _parameter_groups(material_named, config.lr_materials, factor)
    return {
        "sdf": torch.optim.Adam(sdf_groups, fused=True),
        "materials": torch.optim.Adam(material_groups, fused=True),
        "light": torch.optim.Adam([materials.log_light], lr=config.lr_light, fused=True),
    }


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
    """One training sample: the cropped camera and the photograph's pixels (P, P, 3) linear."""

    camera: Cameras
    target: Tensor


@torch.no_grad()
def object_masks(
    sdf: SDFField, cameras: Cameras, render: SurfaceRenderConfig, longest: int
) -> Tensor:
    """Where the object is in every view (N, h, w), bool: the pixel centres of the views
    downscaled to ``longest`` pixels whose rays hit the SDF's surface (sphere-traced)."""
    factor = _downscale_factor(cameras, longest)
    small = cameras.scaled(factor) if factor < 1 else cameras
    masks = []
    for i in range(len(small)):
        rays = small.image_rays(i).reshape(-1)
        trace = sphere_trace(sdf, rays.origins, rays.directions, render.trace)
        masks.append(trace.hit.reshape(small.height(i), small.width(i)))
    return torch.stack(masks)


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
    return Patch(split.cameras.crop(i, x0, y0, pw, ph), split.images[i, y0 : y0 + ph, x0 : x0 + pw])


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
    return Patch(split.cameras.crop(i, x0, y0, pw, ph), split.images[i, y0 : y0 + ph, x0 : x0 + pw])


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
    shader = MaterialShader(state.materials)
    image = render_patch(
        state.sdf, shader, patch.camera, 0, render, edges=config.edges, background=background
    )
    pixels = image.color.shape[0] * image.color.shape[1]
    count = config.eikonal_points or pixels // 2
    points = random_eikonal_points(count, device, state.generator)
    random_gradients = state.sdf.with_gradients(points).gradients
    roughness = image.extras.get("roughness", image.color.new_zeros(*image.color.shape[:2], 1))
    terms = stage2_loss(
        to_loss_domain(image.color, split.hdr),
        target_to_loss_domain(patch.target, split.hdr),
        image.mask,
        [random_gradients, image.eikonal_gradients],
        roughness,
        config.weights,
    )
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
            state.optimizers, learning_rate_factor(step, 0, config.iterations, config.lr_alpha)
        )
    for optimizer in state.optimizers.values():
        optimizer.step()
    return terms


def fit_stage2(
    split: Split,
    sdf: SDFField,
    materials: MaterialFields,
    config: Stage2Config,
    run_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    background: BackgroundFn | None = None,
    masks: Tensor | None = None,
) -> Stage2Result:
    """Optimise ``sdf`` and ``materials`` (in place) on ``split``; see the module docstring.

    ``background`` colours the rays that miss (:func:`stage1_background`); None: black.
    ``masks`` (N, h, w) where the object is (:func:`object_masks`) for patch sampling.
    With ``run_dir``: checkpoints to ``run_dir/stage2/checkpoint.pt`` every
    ``checkpoint_every`` steps and at the end, previews and TensorBoard scalars under
    ``run_dir/stage2``; ``resume=True`` continues from the checkpoint there, exactly.
    The light intensity is NOT initialised here (see :func:`initial_light_intensity`).
    """
    stage_dir = Path(run_dir) / STAGE_DIR if run_dir is not None else None
    if stage_dir is not None and not resume and (stage_dir / CHECKPOINT_NAME).exists():
        raise IronError(
            f"{stage_dir / CHECKPOINT_NAME} exists: pass --resume to continue it, or choose a"
            " new run folder"
        )
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    state = Stage2State(sdf, materials, make_optimizers(sdf, materials, config), generator)
    if resume:
        if stage_dir is None or not (stage_dir / CHECKPOINT_NAME).is_file():
            raise IronError(f"cannot resume stage 2: no {STAGE_DIR}/{CHECKPOINT_NAME} in {run_dir}")
        state.load_state_dict(load_checkpoint(stage_dir / CHECKPOINT_NAME, "cpu"))
    render = scene_render_config(config, split.cameras)
    logger = RunLog(
        stage_dir if stage_dir is not None else ".",
        config.iterations,
        state.iteration,
        progress,
        tensorboard=stage_dir is not None,
        description="stage 2",
    )
    start = time.perf_counter()
    bad_in_a_row = 0
    last_loss = math.nan
    try:
        while state.iteration < config.iterations:
            terms = training_step(state, split, config, render, background, masks)
            if terms is None:
                bad_in_a_row += 1
                if bad_in_a_row >= config.max_bad_steps:
                    raise IronError(
                        f"stage 2 diverged: {bad_in_a_row} non-finite steps in a row at step "
                        f"{state.iteration}; lower the learning rates (--set stage2.lr_sdf=...)"
                    )
                continue
            bad_in_a_row = 0
            values = terms.as_floats() | {"light": float(materials.light_intensity.detach())}
            last_loss = values["total"]
            if state.iteration % config.log_every == 0 or state.iteration == config.iterations:
                state.history.append({"iteration": state.iteration} | values)
            logger.step(state.iteration, values, write=state.iteration % config.log_every == 0)
            if stage_dir is not None:
                if state.iteration % config.preview_every == 0:
                    _write_preview(
                        stage_dir / PREVIEW_DIR / f"{state.iteration:06d}.png",
                        state,
                        split,
                        config,
                        render,
                        background,
                    )
                if state.iteration % config.checkpoint_every == 0:
                    save_checkpoint(stage_dir / CHECKPOINT_NAME, _checkpoint(state, config))
    finally:
        logger.close()
    if stage_dir is not None:
        save_checkpoint(stage_dir / CHECKPOINT_NAME, _checkpoint(state, config))
        _write_preview(stage_dir / FINAL_PREVIEW, state, split, config, render, background)
    return Stage2Result(
        run_dir=Path(run_dir) if run_dir is not None else None,
        iterations=state.iteration,
        loss=last_loss,
        light_intensity=float(materials.light_intensity.detach()),
        seconds=time.perf_counter() - start,
        skipped_steps=state.skipped_steps,
        history=state.history,
    )


def _checkpoint(state: Stage2State, config: Stage2Config) -> dict:
    return state.state_dict() | {"config": dataclasses.asdict(config)}


def _write_preview(
    path: Path,
    state: Stage2State,
    split: Split,
    config: Stage2Config,
    render: SurfaceRenderConfig,
    background: BackgroundFn | None = None,
) -> None:
    """Photograph | render | diffuse albedo | roughness | normals of training view 0.

    Images and albedo gamma-encoded for display; roughness as alpha itself (grey level).
    """
    factor = _downscale_factor(split.cameras, config.preview_size)
    cameras = split.cameras.scaled(factor) if factor < 1 else split.cameras
    image = render_view(
        state.sdf, state.materials, cameras, 0, render, edges=config.edges, background=background
    )
    target = _resize(split.images[0], image.color.shape[:2])
    blank = image.color.new_zeros(*image.color.shape[:2], 1)  # a view without any hit
    panels = [
        target_to_loss_domain(target, hdr=False),
        target_to_loss_domain(image.color, hdr=False),
        target_to_loss_domain(image.extras.get("diffuse_albedo", blank), hdr=False).expand(
            -1, -1, 3
        ),
        image.extras.get("roughness", blank).expand(-1, -1, 3),
        normal_image(image.normals, image.mask.to(image.normals.dtype)),
    ]
    write_panels(path, panels)


# ----------------------------------------------------------------------------- entry points
def build_stage2(
    run_dir: str | Path, config: Stage2Config, device: torch.device | str
) -> tuple[SDFField, MaterialFields]:
    """Stage 1's SDF and materials whose diffuse albedo is stage 1's radiance net (copied)."""
    from ironrender.training.stage1 import load_stage1

    stage1 = load_stage1(run_dir, device)
    sdf = copy.deepcopy(stage1.sdf)
    encoded = _stage1_gamma_encoded(run_dir)
    materials = MaterialFields.from_stage1(
        stage1.radiance, config.materials, stage1_gamma_encoded=encoded
    )
    return sdf.train(), materials.train()


def stage1_background(
    run_dir: str | Path, config: Stage2Config, device: torch.device | str
) -> BackgroundFn | None:
    """What missed rays see in stage 2: stage 1's background, frozen, as linear radiance.

    None (black) when ``config.background`` is ``black`` or stage 1's background was black.
    Stage 1 fits gamma-encoded colours by default, so its background ``B`` is decoded to
    linear ``B^2.2`` here, the domain stage 2 renders in.
    """
    if config.background == "black":
        return None
    if config.background != "stage1":
        raise IronError(f"stage2.background must be stage1 or black, not {config.background!r}")
    from ironrender.training.stage1 import load_stage1

    model = load_stage1(run_dir, device).background
    if model.mode == "black":
        return None
    model.requires_grad_(False)
    encoded = _stage1_gamma_encoded(run_dir)

    def colour(origins: Tensor, directions: Tensor) -> Tensor:
        with torch.no_grad():
            value = model(origins, directions)
        return value.clamp(0.0, 1.0) ** GAMMA if encoded else value

    return colour


def _stage1_gamma_encoded(run_dir: str | Path) -> bool:
    """Did stage 1 fit gamma-encoded colours (its ``train.loss_domain``)?"""
    from ironrender.training import stage1

    path = Path(run_dir) / stage1.STAGE_DIR / stage1.CHECKPOINT_NAME
    saved = load_checkpoint(path, "cpu")["config"]
    return saved.get("train", {}).get("loss_domain", "gamma") == "gamma"


def train_stage2(
    data_dir: str | Path,
    run_dir: str | Path,
    config: Stage2Config,
    device: torch.device | str,
    resume: bool = False,
    progress: bool = True,
) -> Stage2Result:
    """``iron fit DATA RUN --stage 2``: load the capture and stage 1, initialise, optimise."""
    device = torch.device(device)
    checkpoint = Path(run_dir) / STAGE_DIR / CHECKPOINT_NAME
    resume = resume and checkpoint.exists()  # as stage 1: resuming a run not yet here starts it
    if checkpoint.exists() and not resume:
        raise IronError(
            f"{checkpoint} exists: pass --resume to continue it, or choose a new run folder"
        )
    split = load_split(data_dir, "train", device)
    sdf, materials = build_stage2(run_dir, config, device)
    background = stage1_background(run_dir, config, device)
    render = scene_render_config(config, split.cameras)
    masks = None  # from stage 1's surface, so that a resumed run draws the same patches
    if config.object_patch_fraction > 0:
        masks = object_masks(sdf, split.cameras, render, config.object_mask_size)
    if not resume:
        materials.set_light_intensity(
            initial_light_intensity(sdf, materials, split, config, render)
        )
    return fit_stage2(split, sdf, materials, config, run_dir, resume, progress, background, masks)


def load_stage2(run_dir: str | Path, device: torch.device | str) -> tuple[SDFField, MaterialFields]:
    """The trained SDF and materials of a run (export, evaluation), in eval mode."""
    path = Path(run_dir) / STAGE_DIR / CHECKPOINT_NAME
    if not path.is_file():
        raise IronError(
            f"{run_dir}: no stage-2 checkpoint ({STAGE_DIR}/{CHECKPOINT_NAME}); run stage 2 first"
        )
    state = load_checkpoint(path, device)
    from ironrender.config import from_dict

    config = from_dict(Stage2Config, state["config"], str(path))
    sdf, materials = build_stage2(run_dir, config, device)
    sdf.load_state_dict(state["sdf"])
    materials.load_state_dict(state["materials"])
    return sdf.eval(), materials.eval()
