"""Fitting a stage's schedule to a number of seconds on this machine (``--minutes``).

Before a stage starts training it times ``PROBE_STEPS`` steps on a throw-away copy of its fresh
state (the copy's changes are dropped, so the run trains exactly as it would have without the
probe), takes the mean step time ``t`` (stage 1: the mean over its coarse-to-fine ramp of
the times at both ends), and sets its step count to ``seconds / t``, with the
schedule's ramps (warm-up, annealing, coarse-to-fine) scaled in proportion
(:func:`scale_stage1_schedule`, :func:`scale_stage2_schedule`). The plan is saved in the
stage's checkpoint, so a resumed stage keeps it instead of planning again with another
machine load. :class:`StagePlan` is what ``RUN/<stage>/plan.json`` records: planned and actual
seconds.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ironrender.budget import scaled_count
from ironrender.storage import atomic_write_text
from ironrender.training.stage1_config import Stage1Config
from ironrender.training.stage2_config import Stage2Config

PROBE_STEPS = 8  # timed steps (stage 2 times more: its steps vary more)
STAGE2_PROBE_STEPS = 24
PROBE_WARMUP = 2  # untimed first steps (allocations, caches)
PLAN_FILE = "plan.json"
MIN_STAGE1_STEPS = 200
MIN_STAGE2_STEPS = 50


def mean_step_seconds(step: Callable[[], object], count: int = PROBE_STEPS) -> float:
    """Mean wall time of ``count`` calls of ``step`` after ``PROBE_WARMUP`` untimed ones.

    The mean, not the median: stage-2 steps whose patch misses the object cost a fraction of
    those that hit it, and a budget is spent at the mean rate (a median of 8 steps planned a
    512x512 stage 2 at 136 ms a step that took about 300 ms)."""
    for _ in range(PROBE_WARMUP):
        step()
    started = time.perf_counter()
    for _ in range(count):
        step()
    return (time.perf_counter() - started) / count


def steps_for(seconds: float, step_seconds: float, minimum: int) -> int:
    """The step count that fills ``seconds`` at ``step_seconds`` each (at least ``minimum``)."""
    return max(int(seconds / max(step_seconds, 1e-9)), minimum)


def scale_stage1_schedule(config: Stage1Config, factor: float) -> Stage1Config:
    """Stage 1 with ``factor`` times the steps, and its warm-up, NeuS annealing and
    coarse-to-fine ramp stretched alike (so the schedule keeps its shape)."""
    train = config.train
    scaled = dataclasses.replace(
        train,
        steps=scaled_count(train.steps, factor),
        warmup_steps=scaled_count(train.warmup_steps, factor),
        anneal_end=scaled_count(train.anneal_end, factor),
        grid_ramp_steps=scaled_count(train.grid_ramp_steps, factor),
    )
    return dataclasses.replace(config, train=scaled)


def scale_stage2_schedule(config: Stage2Config, factor: float) -> Stage2Config:
    """Stage 2 with ``factor`` times the steps (its learning-rate decay follows the count)."""
    return dataclasses.replace(config, steps=scaled_count(config.steps, factor))


@dataclass
class StagePlan:
    """A stage's time plan: what was measured and decided, and (at the end) what happened."""

    stage: str
    seconds: float  # the stage's share of the budget
    step_seconds: float  # measured mean step time
    steps: int  # planned steps
    actual_seconds: float = 0.0  # training loop's wall time, filled at the end

    def save(self, stage_dir: Path) -> None:
        atomic_write_text(stage_dir / PLAN_FILE, json.dumps(dataclasses.asdict(self), indent=2))

    def line(self) -> str:
        return (
            f"{self.stage}: time budget {self.seconds:.0f} s, {self.step_seconds * 1e3:.0f} ms per"
            f" step measured -> {self.steps} steps"
        )


def read_plan(stage_dir: Path) -> StagePlan | None:
    path = stage_dir / PLAN_FILE
    if not path.is_file():
        return None
    try:
        return StagePlan(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        return None
