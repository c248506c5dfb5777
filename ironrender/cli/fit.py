"""``iron fit DATA RUN``: train stage 1 (NeuS volume), stage 2 (surface + materials), or both.

The resolved configuration is written to ``RUN/config.json`` before training; ``--resume``
reads it back (``--set`` still applies on top, e.g. to train longer).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

CONFIG_NAME = "config.json"


def register(sub: argparse._SubParsersAction) -> None:
    from ironrender.cli.run import add_config_arguments

    parser = sub.add_parser(
        "fit",
        help="fit the SDF and materials to a capture",
        description=(
            "Fit IRON to a capture. Stage 1 trains a NeuS SDF and radiance field by volume"
            " rendering; stage 2 refines the surface and materials by surface rendering."
            " Writes RUN/config.json, RUN/stage1/ (checkpoint, previews, mesh.ply, tb/) and"
            " RUN/stage2/."
        ),
    )
    parser.add_argument("data", help="dataset folder (holds train/ and test/)")
    parser.add_argument("run", help="run folder for checkpoints, previews and meshes")
    parser.add_argument("--stage", choices=("1", "2", "all"), default="all", help="default: all")
    parser.add_argument("--resume", action="store_true", help="continue the run in RUN")
    add_config_arguments(parser)
    parser.set_defaults(func=run)


def resolve_config(args: argparse.Namespace, data: Path | None = None):
    """Preset (or the saved RUN/config.json on --resume), then --config, then --set overrides.

    The configuration is the same :class:`~ironrender.pipeline.RunConfig` that ``iron run``
    saves, so a run can be started with one command and continued with the other. With
    ``data``, the capture rule sizes the run from it (:mod:`ironrender.budget`).
    """
    import json

    from ironrender import config as cfg
    from ironrender.budget import capture_size
    from ironrender.cli.run import config_request
    from ironrender.pipeline import RunConfig

    saved = Path(args.run) / CONFIG_NAME
    if args.resume and saved.is_file():
        config = cfg.load(RunConfig, saved)
        if args.config:
            config = cfg.merge(config, json.loads(Path(args.config).read_text()), args.config)
        config = cfg.apply_overrides(config, args.overrides)
        if args.minutes is not None:
            config = cfg.merge(config, {"budget": {"minutes": args.minutes}}, "--minutes")
        if args.no_edges:
            stage2 = dataclasses.replace(config.stage2, edges=False)
            config = dataclasses.replace(config, stage2=stage2)
        return config
    return config_request(args).resolve(capture_size(data) if data is not None else None)


def run(args: argparse.Namespace) -> int:
    import time

    import torch

    from ironrender import config as cfg
    from ironrender.budget import stage_seconds
    from ironrender.errors import IronError
    from ironrender.run_folder import command_line, run_lock
    from ironrender.training.stage1 import CHECKPOINT_NAME, STAGE_DIR, train_stage1

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise IronError("--device cuda: no CUDA device is available here; use --device cpu")
    torch.set_flush_denormal(True)  # Softplus(100) MLPs produce denormals: 5x slower on CPU
    resolve_config(args)  # option errors before anything is written
    existing = Path(args.run) / STAGE_DIR / CHECKPOINT_NAME
    if args.stage in ("1", "all") and existing.exists() and not args.resume:
        raise IronError(
            f"{existing} exists: pass --resume to continue it, or choose a new run folder"
        )
    stages = {"1": ("stage1",), "2": ("stage2",), "all": ("stage1", "stage2")}[args.stage]
    started = time.perf_counter()
    with run_lock(args.run, command_line()):
        Path(args.run).mkdir(parents=True, exist_ok=True)
        data = fit_data(args, torch.device(device))
        config = resolve_config(args, data)
        cfg.save(config, Path(args.run) / CONFIG_NAME)

        def seconds(stage: str) -> float | None:
            if config.budget.minutes <= 0:
                return None
            spent = time.perf_counter() - started
            return stage_seconds(config.budget, stage, spent, 0.0, stages)

        if "stage1" in stages:
            result = train_stage1(
                data, args.run, config.stage1, device, args.resume, seconds=seconds("stage1")
            )
            print(
                f"stage 1: {result.steps} steps, loss {result.loss:.4f}, PSNR {result.psnr:.2f} dB,"
                f" {result.seconds:.0f} s; mesh {result.mesh}"
            )
        if "stage2" in stages:
            from ironrender.training.stage2 import train_stage2

            # --resume continues stage 2 only if it had started; otherwise it begins from stage 1.
            resume = args.resume and (Path(args.run) / "stage2" / CHECKPOINT_NAME).is_file()
            train_stage2(data, args.run, config.stage2, device, resume, seconds=seconds("stage2"))
    if config.budget.minutes > 0:
        took = (time.perf_counter() - started) / 60
        print(f"time budget {config.budget.minutes:g} min; took {took:.1f} min")
    return 0


def fit_data(args: argparse.Namespace, device) -> Path:
    """The dataset to train on: DATA, or its ``--downscale`` copy in the run folder; checked for
    memory before anything is loaded (:func:`ironrender.data.memory.check_memory`)."""
    from ironrender.data.check import check_dataset, raise_on_errors
    from ironrender.data.memory import check_memory
    from ironrender.pipeline import Run, dataset_steps_for

    run = Run(Path(args.data), Path(args.run), device)
    for step in dataset_steps_for(args.downscale):
        if not step.done(run):
            step.run(run, None)
        run.data_dir = step.output(run)
    raise_on_errors(check_dataset(run.data_dir))
    check_memory(run.data_dir, run.device)
    return run.data_dir
