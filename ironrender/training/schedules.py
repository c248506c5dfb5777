"""Training schedules: pure functions of the step, so a resumed run needs no scheduler state.

* learning rate: linear warm-up, then cosine decay to ``alpha`` times the base rate (NeuS/IRON's
  ``learning_rate_alpha``);
* NeuS cos-annealing ratio: linear ramp from 0 to 1 over ``anneal_end`` steps;
* coarse-to-fine grid levels: start with a few coarse levels and unlock the finer ones linearly;
* the sharpness floor: a lower bound on NeuS's ``inv_s`` that rises from half-way through the
  anneal (off in IRON's schedule; see :func:`sharpness_floor`);
* a schedule stretched after some step (:func:`stretched_step`): stage 1 lengthens itself when
  the floor, not the photographs, is making the surface.
"""

from __future__ import annotations

import math


def learning_rate_factor(step: float, warmup_steps: int, total_steps: int, alpha: float) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based).

    ``step / warmup`` during warm-up; afterwards ``(1 - alpha) * (1 + cos(pi p)) / 2 + alpha``
    with ``p`` the fraction of the post-warm-up steps done.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / span, 1.0)
    return (1.0 - alpha) * 0.5 * (1.0 + math.cos(math.pi * progress)) + alpha


def cos_anneal_ratio(step: int, anneal_end: int) -> float:
    """NeuS's ``cos_anneal_ratio``: 0 at the start, 1 from ``anneal_end`` on (0: always 1)."""
    if anneal_end <= 0:
        return 1.0
    return min(1.0, step / anneal_end)


def active_levels(step: float, initial: int, total: int, ramp_steps: int) -> int:
    """Grid levels in use at ``step``: ``initial`` at first, all ``total`` after ``ramp_steps``."""
    if ramp_steps <= 0 or initial >= total:
        return total
    return min(total, initial + int((total - initial) * step / ramp_steps))


def sharpness_floor(
    step: float, first_step: int, total_steps: int, start: float, end: float
) -> float:
    """Lower bound on NeuS's ``inv_s`` at ``step``: 0 (none) before ``first_step``, then rising
    geometrically from ``start`` to ``end`` at the last step, ``start (end/start)^p`` with ``p``
    the fraction of the steps from ``first_step`` done; ``end <= 0`` turns it off.

    Why: a field can fit shiny or dark objects with semi-transparent fog, and then nothing in
    the photometric loss pulls the learnt ``inv_s`` up (BENCHMARKS.md, "Stage 1 on shiny
    objects"). The floor makes the density a surface by the end of stage 1 whatever the
    photographs allow, and the earlier it starts, the less of the fog's shape survives (from
    half-way through NeuS's anneal: stage-1 Chamfer 0.96 % on the gilded reproduction, from the
    anneal's end 1.40 %). Where the learnt ``inv_s`` is above it (every run measured that forms
    a surface on its own), it changes nothing.
    """
    if end <= 0 or step < first_step:
        return 0.0
    progress = min((step - first_step) / max(total_steps - 1 - first_step, 1), 1.0)
    return start * (end / start) ** progress


def stretched_step(step: int, pivot: int, planned: int, total: int) -> float:
    """Where ``step`` falls on a schedule planned for ``planned`` steps whose part after
    ``pivot`` now runs over ``total`` steps: ``step`` up to ``pivot``, then
    ``pivot + (step - pivot) (planned - pivot) / (total - pivot)``. Every schedule read at this
    position goes on from the pivot without a jump and ends where it was planned to end.
    """
    if total <= planned or step <= pivot:
        return float(step)
    return pivot + (step - pivot) * (planned - pivot) / (total - pivot)
