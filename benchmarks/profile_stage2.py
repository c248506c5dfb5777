"""Profile: where a stage-2 training step's CPU time goes, at the budget ``iron run`` gives DATA.

    .venv/bin/python benchmarks/profile_stage2.py DATA RUN [--label NAME] [--set KEY=VALUE ...]

``RUN`` holds a finished stage 1 of ``DATA`` (stage 2 starts from it, as ``iron run`` does:
the SDF, the light's first estimate, the room). The configuration is the one ``iron run DATA``
would use. ``--repeats`` steps are timed without the profiler (median), then as many are
profiled and broken down as ``profile_table`` explains (phases: "stage 2: ..." and the surface
renderer's "surface: ..."). The table goes to BENCHMARKS.md under "Profiles" unless
``--no-write``. Run it under tcmalloc as ``iron`` does.
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

PHASES = ("stage 2:", "surface:")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("run", type=Path, help="a run folder with stage 1 finished")
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
    from ironrender.training.stage2 import (
        initial_light_intensity,
        object_masks,
        scene_render_config,
        start_stage2,
    )
    from ironrender.training.stage2_step import Stage2State, training_step

    torch.set_flush_denormal(True)  # as iron run does
    config = resolve_config(
        args.preset, overrides=args.overrides, capture=capture_size(args.data)
    ).stage2
    split = load_split(args.data, "train", "cpu", keep_8bit=True, curve=config.tone_curve)
    model = start_stage2(args.run, config, "cpu", split)
    render = scene_render_config(config, split.cameras)
    masks = None
    if config.object_patch_fraction > 0:
        masks = object_masks(model.sdf, split.cameras, render, config.object_mask_size)
    model.materials.set_light_intensity(
        initial_light_intensity(model.sdf, model.materials, split, config, render)
    )
    state = Stage2State.start(model, config)

    def step() -> None:
        training_step(state, split, config, render, masks)

    wall_seconds(step, 3)  # warm-up
    wall = wall_seconds(step, args.repeats)
    table = profile_steps(step, args.repeats, PHASES)
    label = args.label or args.data.name
    title = (
        f"stage 2, {label} ({cpu_name()}, {threads_line()}, {datetime.date.today()}): "
        f"{config.patch_size}x{config.patch_size} patches, edges {config.edges}, SDF grid to "
        f"{model.sdf.grid.config.max_resolution}^3, grid reads by "
        f"{'F.grid_sample' if args.no_fused else 'the fused kernel'}"
    )
    text = markdown(table, wall, title)
    print(text)
    if not args.no_write:
        write_profile(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
