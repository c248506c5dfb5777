"""Stage 1's schedule: the step counts a plan fixed, the rates, grid levels and sharpness floor
at each step (:func:`apply_schedules`, from :mod:`ironrender.training.schedules`), and the run
lengthening itself when the floor, not the photographs, makes the surface.

At the anneal's end, NeuS's own ``inv_s`` below the floor (:func:`floor_holds`) means a shiny or
dark object whose surface the floor is making; such a surface keeps some of the fog's shape, and
steps reduce it (BENCHMARKS.md, "Stage 1 on shiny objects"). The run then trains
``floor_extension`` times its remaining steps more (:func:`extend`), every schedule read at its
place on the plan stretched after the anneal (:func:`schedule_position`), and records the plan
it came from (``train.extended_from``) so that a resumed run goes on the same way
(:func:`extension_of`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ironrender.training import schedules
from ironrender.training.stage1_config import Stage1Config, TrainConfig


def extension_of(config: Stage1Config, saved: dict) -> Stage1Config:
    """``config`` lengthened as the saved one was, if its run extended itself (:func:`extend`)."""
    planned = int(saved["train"].get("extended_from", 0))
    if not planned or config.train.extended_from:
        return config
    steps = int(saved["train"]["steps"])
    return dataclasses.replace(
        config, train=dataclasses.replace(config.train, steps=steps, extended_from=planned)
    )


def floor_holds(state: Any, train: TrainConfig, seconds: float | None) -> bool:
    """Whether stage 1 should lengthen itself now: the sharpness floor, not the photographs,
    holds ``inv_s`` (NeuS's own value below it) at the anneal's end, the run was not extended
    yet and has no time budget (``--minutes`` plans the steps that fit, no more)."""
    variance = state.model.variance
    return (
        train.floor_extension > 0
        and not train.extended_from
        and seconds is None
        and float(variance.learnt_inv_s().detach()) < float(variance.floor)
    )


def extend(config: Stage1Config) -> Stage1Config:
    """Stage 1 with ``floor_extension`` times its remaining steps more, the schedule after the
    anneal stretched over them (:func:`schedule_position`). Why: a surface the floor makes
    keeps some of the fog's shape, and steps reduce it (BENCHMARKS.md, "Stage 1 on shiny
    objects"); a capture that forms its surface alone never pays for them."""
    train = config.train
    remaining = train.steps - train.anneal_end
    steps = train.steps + round(train.floor_extension * remaining)
    return dataclasses.replace(
        config, train=dataclasses.replace(train, steps=steps, extended_from=train.steps)
    )


def extension_line(train: TrainConfig, floor: float) -> str:
    return (
        f"stage 1: the sharpness floor ({floor:.0f}), not the photographs, holds inv_s at the"
        f" anneal's end (a shiny or dark object?): {train.extended_from} -> {train.steps} steps,"
        " the rest of the schedule stretched over them (stage1.train.floor_extension=0: never)"
    )


def schedule_position(step: int, train: TrainConfig) -> tuple[float, int]:
    """``(position, length)`` of the planned schedule that ``step`` reads: the step itself, or,
    in a run that extended itself, its place on the plan stretched after the anneal."""
    if not train.extended_from:
        return float(step), train.steps
    position = schedules.stretched_step(step, train.anneal_end, train.extended_from, train.steps)
    return position, train.extended_from


def schedule_of(config: Stage1Config, saved: dict) -> Stage1Config:
    """``config`` with the step counts of a saved (planned) configuration."""
    keys = ("steps", "warmup_steps", "anneal_end", "grid_ramp_steps")
    train = dataclasses.replace(config.train, **{k: int(saved["train"][k]) for k in keys})
    return dataclasses.replace(config, train=train)


def apply_schedules(state: Any, config: Stage1Config) -> float:
    """Set the learning rates and grid levels for ``state.step``; returns the anneal ratio."""
    train = config.train
    step, steps = schedule_position(state.step, train)
    factor = schedules.learning_rate_factor(step, train.warmup_steps, steps, train.lr_alpha)
    for group in state.optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
    if config.sdf.use_grid:
        levels = schedules.active_levels(
            step, train.grid_initial_levels, config.sdf.grid.levels, train.grid_ramp_steps
        )
        state.model.sdf.set_active_levels(levels)
    floor = (round(train.min_inv_s_from * train.anneal_end), steps, train.min_inv_s_start)
    state.model.variance.floor.fill_(schedules.sharpness_floor(step, *floor, train.min_inv_s))
    return schedules.cos_anneal_ratio(state.step, train.anneal_end)
