"""Has stage 1 formed a surface, or is the object fog? The fog alarm.

NeuS turns a signed distance ``S`` into weights along a ray with the logistic density of
sharpness ``s`` (``inv_s``, docs/architecture.md (A4)-(A6)): at a surface crossed head-on the
weight is spread over a depth of about ``4 / s`` (the logistic's central 96 %). A field that fits
shiny or dark objects with semi-transparent fog instead keeps ``s`` low and spreads each ray's
weight over a long stretch of the ray, and stage 2, which sphere-traces the zero level set, then
starts from a ball. Two measurements tell the cases apart:

* ``inv_s`` against what the capture can resolve: the surface counts as formed when its band
  ``4 / s`` is at most ``CELLS`` (2) of the finer of a pixel at the object (``2 / D``, ``D`` the
  unit sphere's diameter in pixels, :func:`ironrender.budget.footprint_pixels`) and a cell of
  the SDF's finest grid (``2 / R``), that is ``s >= 2 min(D, R) / CELLS``. A fixed number would
  not do: a 32-pixel test capture forms its surface at ``s`` about 40, the default scene
  (``min(D, R)`` = 96) at 200-240, the skull (192) at about 280.
* **concentration**: over rays through the object (opacity >= ``OPAQUE``), the share of each
  ray's weight within ``BAND`` of its weighted median depth, median over the rays. A surface
  puts nearly all weight within the band; fog, or a sharp field with several layers, spreads it.
* **a shell**: the share of those rays whose median depth lies within ``BAND`` of where they
  enter the bounding sphere. A field can also be sharp and wrong: floored from its first step on
  the gilded reproduction, stage 1 closed the whole unit sphere into a shell (inv_s 194,
  concentration 1.0, the normals panel a disc filling the frame, Chamfer 48 %; BENCHMARKS.md,
  "Stage 1 on shiny objects"), and a real fog ball made sharp by the floor would look the same.
  An object inside the sphere is met deeper than that by all but the rays that graze its edge
  or a support leaving the sphere.

The check runs on rays through the training photographs' foreground pixels (the pixel sampler's),
drawn with a fixed seed so that it does not touch the training RNG. It is saved as
``RUN/stage1/surface.json``; the pipeline's summary and ``report.html`` repeat a failed check
with what to try.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ironrender.budget import footprint_pixels
from ironrender.data.cameras import Cameras
from ironrender.rendering.samplers import sphere_bounds
from ironrender.rendering.volume import render_rays
from ironrender.storage import atomic_write_text
from ironrender.training.pixel_batches import PixelSampler, pixel_rays

SURFACE_FILE = "surface.json"
CHECK_RAYS = 4096  # rays rendered for the check (a few training steps' worth of forward passes)
CHECK_SEED = 0
OPAQUE = 0.5  # a ray "goes through the object" when its opacity is at least this
BAND = 0.05  # half-width (scene units; the unit sphere has radius 1) of the surface band
CELLS = 2.0  # the thickest surface band, in cells or pixels, that still counts as formed
# Measured (BENCHMARKS.md, "Stage 1 on shiny objects", at min(D, R) = 96, so s >= 96): runs that
# form a surface reach inv_s 206-242 with concentrations of 1.0; fogged runs stay at 14-27 (the
# real gilt capture 13.7) with 0.59-0.65; gilding on black cloth alone reaches 39 and 0.72, its
# normals a fuzzy blob and its Chamfer 2.1 %: not formed either.
MIN_CONCENTRATION = 0.6
MAX_AT_SPHERE = 0.5  # a shell: more than this share of the object's rays stop at the sphere

ADVICE = (
    "stage 1 did not form a surface (the object is fog, and stage 2, export and evaluation"
    " start from it). Try: the sharpness floor if it is off or low (--set"
    " stage1.train.min_inv_s=200, off in the paper preset), more stage-1 steps (--minutes, or"
    " --set stage1.train.steps=N), photographs that cover the object from more sides, a"
    " backdrop lighter than the object,"
    " and look at RUN/stage1/previews (the normals panel shows the shape stage 1 found)"
)
FLOORED_NOTE = (
    "the sharpness floor, not the photographs, made this surface sharp (NeuS's own inv_s is"
    " {learnt:.0f}, the floor {floor:.0f}): a shiny or dark object, or one the"
    " photographs see poorly. Such a surface keeps some of the fog's shape, and stage-1 steps"
    " reduce it: stage 1 lengthens itself when the floor holds at the anneal's end"
    " (stage1.train.floor_extension, not under --minutes); for more, --set stage1.train.steps=N."
    " A gilt, brass or copper object: --set stage2.materials.metal=true (a coloured specular)"
)
SHELL_ADVICE = (
    "stage 1 did not form a surface: a closed shell at the edge of the bounding sphere hides the"
    " object (stage 2, export and evaluation start from it). Try: a later sharpness floor (--set"
    " stage1.train.min_inv_s_from=1) or none (--set stage1.train.min_inv_s=0), the room as a"
    " field if it is not (--set stage1.volume.background=field), a normalisation that puts the"
    " object well inside the unit sphere, and look at RUN/stage1/previews (a disc filling the"
    " normals panel is the shell)"
)


@dataclass
class SurfaceCheck:
    """The measurements (module docstring) and their verdict."""

    inv_s: float
    required_inv_s: float  # 2 min(D, R) / CELLS (module docstring)
    concentration: float  # median share of a ray's weight within BAND of its median depth
    opaque_rays: float  # share of the checked rays with opacity >= OPAQUE
    formed: bool
    at_sphere: float = 0.0  # share of the opaque rays stopping at the bounding sphere (a shell)
    learnt_inv_s: float = 0.0  # exp(10 v), NeuS's own, beneath the floor; 0: not recorded

    @property
    def floored(self) -> bool:
        """The sharpness floor, not the photographs, made this surface sharp."""
        return 0 < self.learnt_inv_s < self.inv_s

    @property
    def shell(self) -> bool:
        return self.at_sphere > MAX_AT_SPHERE

    @property
    def advice(self) -> str:
        """What went wrong and what to try, for a check that failed."""
        return SHELL_ADVICE if self.shell else ADVICE

    def line(self) -> str:
        verdict = "a surface formed" if self.formed else "NO SURFACE: the object is fog"
        if self.shell:
            verdict = "NO SURFACE: a shell at the bounding sphere hides the object"
        return (
            f"stage 1 surface check: {verdict} (inv_s {self.inv_s:.1f}, need >="
            f" {self.required_inv_s:.0f} for a band of {CELLS:g} cells or pixels;"
            f" weight within +-{BAND:g} of the surface {self.concentration:.0%}, need >="
            f" {MIN_CONCENTRATION:.0%}; {self.opaque_rays:.0%} of foreground rays opaque,"
            f" {self.at_sphere:.0%} of them stop at the bounding sphere, need <="
            f" {MAX_AT_SPHERE:.0%})"
        )


def required_inv_s(footprint: float, grid_resolution: int | None) -> float:
    """``2 min(D, R) / CELLS``: the sharpness whose band ``4 / s`` spans ``CELLS`` pixels
    (``D`` = ``footprint`` across the unit sphere) or finest grid cells (``R``; None: no grid)."""
    finest = footprint if grid_resolution is None else min(footprint, grid_resolution)
    return 2.0 * finest / CELLS


def judge(
    inv_s: float,
    required: float,
    concentration: float,
    opaque_rays: float,
    at_sphere: float = 0.0,
    learnt_inv_s: float = 0.0,
) -> SurfaceCheck:
    """The verdict on measured values (``learnt_inv_s`` is recorded, it does not judge)."""
    formed = inv_s >= required and concentration >= MIN_CONCENTRATION
    formed = formed and at_sphere <= MAX_AT_SPHERE
    return SurfaceCheck(
        inv_s, required, concentration, opaque_rays, formed, at_sphere, learnt_inv_s
    )


def weight_concentration(
    weights: torch.Tensor,
    depths: torch.Tensor,
    band: float = BAND,
    median: torch.Tensor | None = None,
):
    """Per ray (R,): the share of its weight (R, S) at depths (R, S, sorted) within ``band`` of
    its weighted median depth (``median``, when the caller has it), and its opacity (the weights'
    sum)."""
    opacity = weights.sum(-1)
    if median is None:
        median = median_depth(weights, depths)
    near = (depths - median[:, None]).abs() <= band
    share = (weights * near).sum(-1) / opacity.clamp(min=1e-8)
    return share, opacity


def median_depth(weights: torch.Tensor, depths: torch.Tensor) -> torch.Tensor:
    """Per ray (R,): the depth (R, S, sorted) where its cumulative weight reaches half its sum."""
    cumulative = weights.cumsum(-1)
    half = 0.5 * weights.sum(-1, keepdim=True)
    median_index = (cumulative < half).sum(-1).clamp(max=weights.shape[1] - 1)
    return depths.gather(1, median_index[:, None]).squeeze(1)


@torch.no_grad()
def check_surface(
    model, cache, volume_config, cameras: Cameras, sampler: PixelSampler, rays: int = CHECK_RAYS
) -> SurfaceCheck:
    """Measure a stage-1 ``model`` (:class:`~ironrender.training.stage1.Stage1Model`) on
    ``rays`` foreground rays of the training views."""
    device = sampler.foreground.device
    generator = torch.Generator(device=device).manual_seed(CHECK_SEED)
    saved = sampler.fraction
    sampler.fraction = 1.0 if len(sampler.foreground) else 0.0  # the object's pixels only
    try:
        flat = sampler.sample(rays, generator)
    finally:
        sampler.fraction = saved
    bundle = pixel_rays(cameras, flat, sampler.shape)
    shares, opacities, at_sphere = [], [], []
    inv_s = model.variance.inv_s()
    for start in range(0, rays, 1024):
        part = bundle[start : start + 1024]
        out = render_rays(
            part, model.sdf, model.radiance, inv_s, model.background, volume_config,
            proposal=cache, create_graph=False,
        )  # fmt: skip
        depths = ((out.points - part.origins[:, None]) * part.directions[:, None]).sum(-1)
        median = median_depth(out.weights, depths)
        share, opacity = weight_concentration(out.weights, depths, median=median)
        shares.append(share)
        opacities.append(opacity)
        near, _, _ = sphere_bounds(part.origins, part.directions, volume_config.sphere_radius)
        at_sphere.append(median - near <= BAND)
    share, opacity, stops = torch.cat(shares), torch.cat(opacities), torch.cat(at_sphere)
    opaque = opacity >= OPAQUE
    concentration = float(share[opaque].median()) if opaque.any() else 0.0
    shell = float(stops[opaque].float().mean()) if opaque.any() else 0.0
    grid = model.sdf.grid.config.max_resolution if model.sdf.grid is not None else None
    required = required_inv_s(footprint_pixels(cameras), grid)
    opaque_share = float(opaque.float().mean())
    learnt = float(model.variance.learnt_inv_s().detach())
    return judge(float(inv_s), required, concentration, opaque_share, shell, learnt)


def save_surface_check(stage_dir: Path, check: SurfaceCheck) -> None:
    atomic_write_text(Path(stage_dir) / SURFACE_FILE, json.dumps(asdict(check), indent=2) + "\n")


def read_surface_check(stage_dir: Path) -> SurfaceCheck | None:
    """The saved check of a finished stage 1, or None (not finished, or from an older run)."""
    path = Path(stage_dir) / SURFACE_FILE
    if not path.is_file():
        return None
    try:
        return SurfaceCheck(**json.loads(path.read_text()))
    except (TypeError, ValueError):  # another version's file: no verdict rather than a wrong one
        return None


def check_and_save(
    model, cache, volume_config, cameras: Cameras, sampler: PixelSampler, stage_dir: Path,
    verbose: bool = True,
) -> SurfaceCheck:  # fmt: skip
    """Check a finished stage 1, save the result into ``stage_dir`` and say it: the line when
    ``verbose``, the line and what to try always when no surface formed."""
    check = check_surface(model, cache, volume_config, cameras, sampler)
    save_surface_check(stage_dir, check)
    if verbose or not check.formed:
        print(check.line())
    if not check.formed:
        print(f"WARNING: {check.advice}")
    elif check.floored:
        print(f"note: {FLOORED_NOTE.format(learnt=check.learnt_inv_s, floor=check.inv_s)}")
    return check
