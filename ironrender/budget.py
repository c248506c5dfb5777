"""How much work a run does: counts that follow from the capture, and a time budget.

**The capture rule** (``budget.rule = "capture"``, the ``fast`` preset's default). A preset
sets rates and shapes, tuned on a reference capture (the default scene: 64 views of 128x128,
the unit sphere :math:`D_0 = 130` pixels across). The counts follow from the capture's
*footprint*

.. math::  D = \\operatorname{median}_{\\text{views}} \\; 2 f / d,

the width in pixels of the sphere's diameter at its centre's depth (``f`` the focal length in
pixels, ``d`` the camera's distance to the centre): the pixels across the region the SDF grid
spans, so a finest grid of ``D / pixels_per_cell`` vertices per axis puts about one cell on a
pixel at the object. With the preset's finest resolution ``R_0`` (96 in ``fast``)::

    R      = clamp(round_16(D / pixels_per_cell), R_0, max_grid_resolution)    SDF grid
    s      = R / R_0                                                           detail scale
    stage 1: steps, warm-up, annealing, coarse-to-fine ramp  x s;  proposal grid x s (<= 96)
    stage 2: steps x sqrt(s);  material grid's finest resolution x s;  SDF rate / s^3
    export:  marching cubes 2 R (<= 384);  faces x s^2;  textures the power of two >= 2 D,
             within [preset, 4096]

The default scene (D = 130) keeps the preset's figures exactly (s = 1). Detail is capped by
``max_grid_resolution`` (192: a dense grid's memory and its optimiser step grow as R^3; on two
CPU cores a 192^3 grid costs about as much per step as the rays do). Steps grow with ``s``,
not ``s^2``: the coarse-to-fine ramp has already fitted the coarse levels when the fine ones
start. Stage 2 refines the surface stage 1 found and its material grid is coarse, so it grows
more slowly. Its SDF learning rate falls as ``s^-3`` (the cell volume): measured on a 512x512
capture of the default object (s = 2), 400 stage-2 steps from the same stage 1 took the Chamfer
distance from 0.069 % to 0.102 % at the preset's rate (1e-4: the photometric loss roughens a
fine surface) and to 0.062 % at 1e-5 (BENCHMARKS.md, "Budgets"). The number of views changes
no count: every step draws its rays (stage 1) or patch (stage 2) from all views, and the
unknowns are set by the grids, not by the photographs.
``budget.rule = "preset"`` (the ``paper`` preset's default) uses the preset's counts as they are.

**Progressive detail** is the coarse-to-fine ramp over the grid's levels (stretched with ``s``):
early steps use the coarse levels only, and are about twice as fast as late ones. A pyramid of
the photographs would not make stage 1's early steps cheaper: a step's cost is that of its rays
and the grid levels they read, whatever the resolution of the photo a ray's colour comes from.

**The time budget** (``budget.minutes``, ``iron run --minutes N``): the rule still sets the
shapes; the step counts follow from this machine's measured speed. The run's minutes are split
as :func:`stage_seconds` says: export and evaluation get an estimate from the export settings
and the test views' pixels (:func:`reserve_seconds`, calibrated on 2 CPU cores), stage 1 gets
``stage1_share`` of the rest, stage 2 whatever is left when it starts (so that it absorbs stage
1's error). Each stage times a few throw-away steps before it
starts (:mod:`ironrender.training.time_budget`) and sets its schedule to fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ironrender.config import check_choices, option
from ironrender.data.camera_file import split_cameras
from ironrender.data.cameras import Cameras
from ironrender.data.capture_file import Remedy, capture_remedies, read_capture
from ironrender.errors import IronError

#: The capture the ``fast`` preset was tuned on: the default scene's footprint, in pixels.
REFERENCE_FOOTPRINT = 130.0
MAX_PROPOSAL_RESOLUTION = 96
MAX_EXPORT_RESOLUTION = 384
MAX_TEXTURE_SIZE = 4096


@dataclass
class BudgetConfig:
    """How a run's step counts and resolutions are chosen (module docstring)."""

    rule: Literal["capture", "preset"] = option(
        "capture", "capture: counts follow from the capture; preset: the preset's as they are"
    )
    minutes: float = option(
        0.0, "> 0: fit the whole run (training, export, evaluation) to this time"
    )
    pixels_per_cell: float = option(1.35, "the finest SDF cell's width in pixels at the object")
    max_grid_resolution: int = option(192, "the finest SDF grid's cap (dense grids grow as R^3)")
    stage1_share: float = option(0.5, "stage 1's share of the training time, with --minutes")
    # What the rule found (written when it is applied; config.json then says why):
    footprint: float = option(
        0.0, "what the rule found: D, pixels across the unit sphere at the object's depth"
    )
    scale: float = option(1.0, "what the rule found: s = R / R_0")

    def __post_init__(self) -> None:
        check_choices(self)
        if not math.isfinite(self.minutes) or self.minutes < 0:
            raise ValueError(
                f"minutes must be a positive number (0: no time budget), not {self.minutes}"
            )
        if not 0.0 < self.stage1_share < 1.0:
            raise ValueError(f"stage1_share must lie between 0 and 1, not {self.stage1_share}")
        if self.pixels_per_cell <= 0:
            raise ValueError(f"pixels_per_cell must be positive, not {self.pixels_per_cell}")


@dataclass(frozen=True)
class CaptureSize:
    """What the rule reads from a capture's camera files (no photograph is loaded)."""

    views: int
    width: int
    height: int
    footprint: float  # D = median 2 f / d over the training views, pixels
    test_pixels: int  # pixels of all test views (what evaluation renders)
    test_longest: int = 0  # their largest side, pixels
    #: the defaults the dataset's capture file calls for (:mod:`ironrender.data.capture_file`)
    remedies: tuple[Remedy, ...] = ()

    def eval_pixels(self, max_size: int) -> float:
        """Test pixels evaluation renders when it shrinks views to ``max_size`` at most."""
        if self.test_longest <= max_size or max_size <= 0:
            return float(self.test_pixels)
        return self.test_pixels * (max_size / self.test_longest) ** 2


def footprint_pixels(cameras: Cameras) -> float:
    """``D = median 2 f / d``: the unit sphere's diameter in pixels at its centre's depth."""
    focal = cameras.intrinsics[:, 0, 0]
    distance = cameras.centers.norm(dim=-1).clamp_min(1e-6)
    return float((2.0 * focal / distance).median())


def capture_size(data_dir: str | Path) -> CaptureSize:
    """The :class:`CaptureSize` of a dataset (train split; test split when there is one)."""
    cameras = split_cameras(Path(data_dir), "train")
    if cameras is None or len(cameras) == 0:
        raise IronError(f"{data_dir}: no training cameras to size the run from")
    footprint = footprint_pixels(cameras)
    test = split_cameras(Path(data_dir), "test")
    test_pixels = int(test.sizes.prod(-1).sum()) if test is not None else 0
    test_longest = int(test.sizes.max()) if test is not None and len(test) else 0
    width, height = (int(v) for v in cameras.sizes.max(0).values)
    flash_known = cameras.flash is not None
    remedies = tuple(capture_remedies(read_capture(data_dir), flash_known))
    return CaptureSize(len(cameras), width, height, footprint, test_pixels, test_longest, remedies)


@dataclass(frozen=True)
class CaptureBudget:
    """The counts the rule derives (module docstring), to be applied to a preset."""

    footprint: float
    grid_resolution: int  # R
    scale: float  # s = R / R_0
    texture_size: int


def capture_budget(
    capture: CaptureSize, budget: BudgetConfig, preset_resolution: int, preset_texture: int
) -> CaptureBudget:
    """The rule of the module docstring for a preset whose finest SDF grid is
    ``preset_resolution`` and whose textures are ``preset_texture`` texels wide."""
    wanted = capture.footprint / budget.pixels_per_cell
    cap = max(preset_resolution, budget.max_grid_resolution)
    resolution = int(min(max(16 * round(wanted / 16), preset_resolution), cap))
    texture = 1 << max(0, math.ceil(math.log2(max(2.0 * capture.footprint, 1.0))))
    texture = int(min(max(texture, preset_texture), max(MAX_TEXTURE_SIZE, preset_texture)))
    return CaptureBudget(capture.footprint, resolution, resolution / preset_resolution, texture)


def scaled_count(count: int, factor: float) -> int:
    """``count * factor`` rounded, and never 0 when ``count`` was not."""
    return max(int(round(count * factor)), 1 if count > 0 else 0)


# ----------------------------------------------------------------------------- time budget
#: Export and evaluation seconds on 2 CPU cores, from the fixed-budget runs in BENCHMARKS.md
#: (default scene: export 9 s, evaluation 15 s for 0.26 MP of test views; 512x512: export
#: 13 s at 192^3 and 90 s at 384^3, evaluation 134 s for 4.2 MP: 86 s rendering the views, 35 s
#: Mitsuba's relit views).
#: On a faster machine the estimate is merely generous.
EXPORT_FIXED_SECONDS = 5.0
EXPORT_SECONDS_AT_192 = 9.0  # marching cubes, decimation, unwrapping at 192^3, growing as R^3
BAKE_SECONDS_AT_1K = 2.0  # texture baking at 1024^2, growing with the texel count
EVAL_FIXED_SECONDS = 10.0
EVAL_SECONDS_PER_PIXEL = 30e-6  # test views rendered, relit by Mitsuba and scored


def reserve_seconds(
    capture: CaptureSize, mesh_resolution: int, texture_size: int, eval_max_size: int
) -> float:
    """Estimated wall time of export and evaluation after training (2 CPU cores); evaluation
    renders the test views shrunk to ``eval_max_size`` pixels at most."""
    export = (
        EXPORT_FIXED_SECONDS
        + EXPORT_SECONDS_AT_192 * (mesh_resolution / 192) ** 3
        + BAKE_SECONDS_AT_1K * (texture_size / 1024) ** 2
    )
    pixels = capture.eval_pixels(eval_max_size)
    return export + EVAL_FIXED_SECONDS + EVAL_SECONDS_PER_PIXEL * pixels


def stage_seconds(
    budget: BudgetConfig, stage: str, spent: float, reserve: float, stages: tuple[str, ...]
) -> float:
    """Seconds the ``stage`` ("stage1" or "stage2") may train for under ``budget.minutes``.

    ``spent``: seconds the run has already used; ``reserve``: what the steps after training
    need (:func:`reserve_seconds`; 0 when they are not run). Stage 1 gets ``stage1_share`` of
    the training time when stage 2 follows, all of it otherwise; stage 2 gets what is left.
    """
    left = budget.minutes * 60.0 - spent - reserve
    if stage == "stage1" and "stage2" in stages:
        left *= budget.stage1_share
    return max(left, 0.0)
