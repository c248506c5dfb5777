"""``iron run DATA RUN``: stage 1, stage 2, export and evaluation in one resumable command."""

from __future__ import annotations

import argparse


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``iron run`` and ``iron demo``."""
    parser.add_argument(
        "--preset",
        default="fast",
        choices=("fast", "paper"),
        help="fast: minutes on a 2-core CPU (default); paper: the IRON paper's settings, for GPUs",
    )
    parser.add_argument(
        "--device", default=None, help="cpu or cuda (default: cuda when available, else cpu)"
    )
    parser.add_argument(
        "--no-edges",
        action="store_true",
        help="stage 2 without edge sampling (the IDR/DVR-style baseline, for comparison)",
    )
    parser.add_argument("--config", default=None, help="JSON file overriding preset values")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override one value, e.g. --set stage1.train.steps=500 (repeatable)",
    )
    parser.add_argument(
        "--minutes",
        type=float,
        default=None,
        metavar="N",
        help=(
            "spend about N minutes on this machine (training, export and evaluation): each"
            " stage times a few steps and sets its step count to fit; the end of the run"
            " reports planned against actual time. Default: the step counts the capture rule"
            " derives from the photographs' resolution (RUN/config.json, section budget)"
        ),
    )
    parser.add_argument(
        "--downscale",
        type=int,
        default=1,
        metavar="K",
        help=(
            "train on a copy of the photographs K times smaller per side, written into"
            " RUN/data_xK (for captures too large for this machine's memory; the run says when)"
        ),
    )


def add_steps_argument(parser: argparse.ArgumentParser) -> None:
    """``--steps``, shared by ``iron run`` and ``iron batch``."""
    parser.add_argument(
        "--steps",
        default="stage1,stage2,export,eval",
        help="comma-separated subset of stage1,stage2,export,eval (default: all)",
    )


def requested_steps(args: argparse.Namespace) -> tuple[str, ...]:
    """``--steps`` as a tuple; an unknown step is a one-line error."""
    from ironrender.errors import IronError
    from ironrender.pipeline import STEPS

    steps = tuple(s.strip() for s in args.steps.split(",") if s.strip())
    unknown = set(steps) - set(STEPS)
    if unknown:
        raise IronError(f"unknown step(s) {sorted(unknown)}; choose from {', '.join(STEPS)}")
    return steps


def config_request(args: argparse.Namespace):
    """The :class:`~ironrender.run_config.ConfigRequest` of the options above (resolved once
    the dataset is known)."""
    from ironrender.errors import IronError
    from ironrender.run_config import ConfigRequest

    if args.minutes is not None and not args.minutes > 0:
        raise IronError(f"--minutes must be a positive number, not {args.minutes}")
    return ConfigRequest(
        args.preset, args.config, tuple(args.overrides), not args.no_edges, args.minutes
    )


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "run",
        help="reconstruct a dataset: stage 1, stage 2, export, evaluation",
        description=(
            "Run the whole IRON pipeline on DATA into the folder RUN: stage 1 (NeuS volume"
            " rendering), stage 2 (edge-aware physically based surface rendering), export (mesh,"
            " UVs, material textures, GLB, Mitsuba scene) and evaluation (held-out views, metrics,"
            " report.html). Running the same command again resumes where it stopped."
        ),
    )
    parser.add_argument("data", help="dataset folder (train/, test/, optional gt/)")
    parser.add_argument("run", help="output folder for this run")
    add_steps_argument(parser)
    add_config_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ironrender.pipeline import dataset_steps_for, format_summary, run_pipeline

    steps = requested_steps(args)
    config = config_request(args)
    summary = run_pipeline(
        args.data, args.run, config, args.device, steps, dataset_steps_for(args.downscale)
    )
    print(format_summary(summary))
    return 0
