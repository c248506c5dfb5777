"""``iron fit DATA RUN``: train stage 1 (NeuS volume), stage 2 (surface + materials), or both.

The pipeline with the training steps it names (:func:`ironrender.pipeline.run_pipeline`): the
same run folder, configuration and progress record as ``iron run``, so a run can be started
with one command and continued with the other. Without ``--resume`` a stage that already has a
checkpoint is refused; with it, a stage continues from its checkpoint, on the saved
``RUN/config.json`` with ``--set`` applied on top (e.g. to train longer).
"""

from __future__ import annotations

import argparse

STAGES = {"1": ("stage1",), "2": ("stage2",), "all": ("stage1", "stage2")}


def register(sub: argparse._SubParsersAction) -> None:
    from ironrender.cli.run import add_config_arguments

    parser = sub.add_parser(
        "fit",
        help="fit the SDF and materials to a capture",
        description=(
            "Fit IRON to a capture. Stage 1 trains a NeuS SDF and radiance field by volume"
            " rendering; stage 2 refines the surface and materials by surface rendering."
            " Writes RUN/config.json, RUN/stage1/ (checkpoint, previews, mesh.ply, tb/) and"
            " RUN/stage2/. `iron run DATA RUN` continues the same run with export and"
            " evaluation."
        ),
    )
    parser.add_argument("data", help="dataset folder (holds train/ and test/)")
    parser.add_argument("run", help="run folder for checkpoints, previews and meshes")
    parser.add_argument("--stage", choices=tuple(STAGES), default="all", help="default: all")
    parser.add_argument(
        "--resume",
        action="store_true",
        help=(
            "continue the stages' checkpoints in RUN, with RUN/config.json and --set on top"
            " (e.g. --set stage1.train.steps=3000 trains a finished stage 1 longer)"
        ),
    )
    add_config_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from ironrender.cli.run import config_request
    from ironrender.pipeline import dataset_steps_for, format_summary, run_pipeline

    request = dataclasses.replace(config_request(args), on_saved=args.resume)
    summary = run_pipeline(
        args.data,
        args.run,
        request,
        args.device,
        STAGES[args.stage],
        dataset_steps_for(args.downscale),
        resume=args.resume,
    )
    print(format_summary(summary))
    return 0
