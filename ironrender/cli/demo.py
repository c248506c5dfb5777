"""``iron demo``: synthesize the built-in default scene and reconstruct it end to end."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_OUT = Path("runs/demo")


def register(sub: argparse._SubParsersAction) -> None:
    from ironrender.cli.run import add_config_arguments

    parser = sub.add_parser(
        "demo",
        help="synthesize the default scene (Spot, 128x128) and run the whole pipeline on it",
        description=(
            "Render the built-in default capture (the 'Spot' cow, 64 training and 16 test views at"
            " 128x128, Mitsuba 3 path tracer, co-located flash) into OUT/data, then reconstruct it"
            " into OUT/run (iron run) and write OUT/run/report.html. Re-running resumes."
        ),
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})"
    )
    add_config_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time

    from ironrender.cli.run import config_request
    from ironrender.pipeline import SynthStep, dataset_steps_for, format_summary, run_pipeline

    started = time.perf_counter()
    config = config_request(args)
    summary = run_pipeline(
        args.out / "data",
        args.out / "run",
        config,
        args.device,
        dataset_steps=(SynthStep(), *dataset_steps_for(args.downscale)),
    )
    print(f"  all     {time.perf_counter() - started:7.1f} s (synth included)")
    print(format_summary(summary))
    return 0
