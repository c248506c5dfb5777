"""Shared by the step profilers (``profile_stage1.py``, ``profile_stage2.py``): where a training
step's CPU time goes, by phase and by kind of operation.

The library marks a step's phases with ``torch.profiler.record_function`` ranges ("stage 1:
backward", "volume: radiance", ...; free when no profiler runs). Every operator the profiler
records is charged its *self* time to the innermost such range around it (so a phase's row is
exactly the time spent inside it, nested phases apart) and to a kind, from its name:

* ``grid``: trilinear reads of the dense grids and their gradients (``grid_sampler_3d`` and
  its backward, whatever order), the hash grid's gathers and index-adds;
* ``matmul``: the MLPs' matrix products (``addmm``, ``mm``, ``bmm``, ``linear``);
* ``activation``: Softplus / ReLU / sigmoid and their derivatives;
* ``optimizer``: the fused Adam kernels;
* ``other``: element-wise arithmetic, reductions, sorting, indexing, allocation.

The profiler's own cost inflates small operators; the tables therefore give each cell as a
share of the profiled step, and the step's wall time measured without the profiler beside it.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Callable

import torch
from bench_table import BENCHMARKS
from torch.profiler import ProfilerActivity, profile

KINDS = ("grid", "matmul", "activation", "optimizer", "other")
_KIND_WORDS = {
    "grid": ("grid_sampler", "densegrid", "index_add", "embedding"),
    "matmul": ("addmm", "aten::mm", "bmm", "aten::linear", "matmul"),
    "activation": ("softplus", "relu", "sigmoid", "threshold"),
    "optimizer": ("adam",),
}
OUTSIDE = "(outside any phase)"


def kind_of(name: str) -> str:
    lowered = name.lower()
    for kind, words in _KIND_WORDS.items():
        if any(word in lowered for word in words):
            return kind
    return "other"


def wall_seconds(step: Callable[[], None], repeats: int) -> list[float]:
    """Wall time of each of ``repeats`` calls of ``step``, no profiler running."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return times


def profile_steps(
    step: Callable[[], None], repeats: int, prefixes: tuple[str, ...]
) -> dict[str, dict[str, float]]:
    """Seconds per step, ``{phase: {kind: s}}``, over ``repeats`` profiled calls of ``step``;
    a phase is a ``record_function`` range whose name starts with one of ``prefixes``."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            step()
    table: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for event in prof.events():
        if event.name.startswith(prefixes):
            phase = event.name  # the range's own time: Python between its operators
            kind = "other"
        else:
            phase, parent = OUTSIDE, event.cpu_parent
            while parent is not None:
                if parent.name.startswith(prefixes):
                    phase = parent.name
                    break
                parent = parent.cpu_parent
            kind = kind_of(event.name)
        table[phase][kind] += event.self_cpu_time_total / 1e6 / repeats
    return {phase: dict(kinds) for phase, kinds in table.items()}


def markdown(
    table: dict[str, dict[str, float]], wall: list[float], title: str, mean: bool = False
) -> str:
    """The profile as a Markdown table: per phase the share of the profiled step in each kind,
    its row total, and a total row; the unprofiled wall time per step in the title line, the
    median of the steps or, with ``mean`` (steps of unequal cost: a periodic refresh), their
    mean."""
    total = sum(sum(kinds.values()) for kinds in table.values())
    typical = statistics.mean(wall) if mean else statistics.median(wall)
    statistic = "mean over whole refresh cycles" if mean else "median"
    lines = [
        f"{title}: {typical * 1000:.0f} ms a step ({statistic} of {len(wall)}, no profiler); "
        f"profiled {total * 1000:.0f} ms",
        "",
        "| phase | " + " | ".join(KINDS) + " | total |",
        "|---|" + "---|" * (len(KINDS) + 1),
    ]
    order = sorted(table, key=lambda phase: -sum(table[phase].values()))
    for phase in order:
        kinds = table[phase]
        cells = [_share(kinds.get(kind, 0.0), total) for kind in KINDS]
        lines.append(
            f"| {phase} | " + " | ".join(cells) + f" | {_share(sum(kinds.values()), total)} |"
        )
    columns = [sum(table[p].get(kind, 0.0) for p in table) for kind in KINDS]
    lines.append("| **all** | " + " | ".join(_share(c, total) for c in columns) + " | 100 % |")
    return "\n".join(lines)


def _share(seconds: float, total: float) -> str:
    share = 100 * seconds / total if total > 0 else 0.0
    return f"{share:.0f} %" if share >= 0.5 else "."


def threads_line() -> str:
    return f"torch threads {torch.get_num_threads()}"


SECTION = """## Profiles (`benchmarks/profile_stage1.py`, `benchmarks/profile_stage2.py`)

Where a training step's CPU time goes, by phase (the library's `record_function` ranges) and by
kind of operator (`benchmarks/profile_table.py`); shares of the profiled step."""


def write_profile(text: str) -> None:
    """Append a profile table to BENCHMARKS.md's "Profiles" section (created when missing)."""
    path = BENCHMARKS
    content = path.read_text()
    if SECTION.splitlines()[0] not in content:
        content = content.rstrip("\n") + "\n\n" + SECTION + "\n"
    path.write_text(content.rstrip("\n") + "\n\n" + text + "\n")
