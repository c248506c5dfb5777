"""Profile: where a stage-1 training step's CPU time goes, at the budget ``iron run`` gives DATA.

    .venv/bin/python benchmarks/profile_stage1.py DATA [--label NAME] [--set KEY=VALUE ...]

The configuration is the one ``iron run DATA`` would train with (preset, capture rule,
``--set`` overrides, the background decided from the photographs). The model is stage 1's
initial one with every grid level unlocked (the cost of a step after the coarse-to-fine ramp,
which is most of a run); a step's cost depends on the shapes (rays, samples, grids), not on
what the field has learnt. ``--repeats`` steps (rounded up to whole cycles of the proposal
grid's refresh) are timed without the profiler (the mean over the cycles), then as many are
profiled and broken down as ``profile_table`` explains. The table goes to BENCHMARKS.md under
"Profiles" unless ``--no-write``.
Run it under tcmalloc as ``iron`` does (``LD_PRELOAD=...libtcmalloc_minimal.so.4``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import sys
from pathlib import Path

import torch
from bench_table import cpu_name
from profile_table import markdown, profile_steps, threads_line, wall_seconds, write_profile

from ironrender.fields import fused_grid

PHASES = ("stage 1:", "volume:")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--label", default=None, help="the capture's name in the table")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--repeats", type=int, default=10, help="steps timed, then profiled")
    parser.add_argument(
        "--no-fused", action="store_true", help="F.grid_sample, not the fused grid kernel (before)"
    )
    parser.add_argument("--no-write", action="store_true", help="print, do not touch BENCHMARKS")
    args = parser.parse_args(argv)
    with fused_grid.switched_off() if args.no_fused else contextlib.nullcontext():
        return profile(args)


def profile(args: argparse.Namespace) -> int:

    from ironrender.budget import capture_size
    from ironrender.data.dataset import load_split
    from ironrender.run_config import resolve_config
    from ironrender.training import stage1
    from ironrender.training.pixel_batches import PixelSampler

    torch.set_flush_denormal(True)  # as iron run does
    config = resolve_config(
        args.preset, overrides=args.overrides, capture=capture_size(args.data)
    ).stage1
    train = config.train
    split = load_split(args.data, "train", "cpu", keep_8bit=train.loss_domain == "gamma")
    config, _ = stage1.resolve_background(config, split.images)
    targets = stage1.loss_domain_targets(split.images, train.loss_domain)
    sampler = PixelSampler(targets, train.foreground_fraction, train.foreground_threshold)
    state = stage1._initial_state(config, torch.device("cpu"))
    # Every grid level unlocked, and whole cycles of the proposal grid's refresh (one step in
    # `every` pays for it): the mean over a cycle is what a step of the run costs.
    every = max(train.proposal_refresh_every, 1) if state.cache is not None else 1
    start = -(-(train.grid_ramp_steps + 1) // every) * every
    repeats = -(-args.repeats // every) * every

    def step() -> None:
        stage1._train_step(state, config, split.cameras, sampler, targets)
        state.step += 1

    state.step = start
    wall_seconds(step, 3)  # warm-up: allocator, first-touch of the grids
    state.step = start
    wall = wall_seconds(step, repeats)
    state.step = start
    table = profile_steps(step, repeats, PHASES)
    grid = config.sdf.grid
    label = args.label or args.data.name
    title = (
        f"stage 1, {label} ({cpu_name()}, {threads_line()}, {datetime.date.today()}): "
        f"{train.batch_rays} rays x {config.volume.n_coarse}+{config.volume.n_importance} "
        f"samples, SDF grid {grid.levels} levels to {grid.max_resolution}^3, "
        f"background {config.volume.background}, proposal grid "
        f"{train.proposal_cache_resolution}^3 every {train.proposal_refresh_every} steps, "
        f"grid reads by {'F.grid_sample' if args.no_fused else 'the fused kernel'}"
    )
    text = markdown(table, wall, title, mean=every > 1)
    print(text)
    if not args.no_write:
        write_profile(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
