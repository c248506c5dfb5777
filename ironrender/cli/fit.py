"""``iron fit DATA RUN``: train stage 1 (NeuS volume), stage 2 (surface + materials), or both.

The resolved configuration is written to ``RUN/config.json`` before training; ``--resume``
reads it back (``--set`` still applies on top, e.g. to train longer).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
from pathlib import Path
from types import ModuleType

CONFIG_NAME = "config.json"
STAGE2_MODULE = "ironrender.training.stage2"


def register(sub: argparse._SubParsersAction) -> None:
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
    parser.add_argument(
        "--preset",
        choices=("fast", "paper"),
        default="fast",
        help="fast: minutes on a laptop CPU (default); paper: IRON's reference settings",
    )
    parser.add_argument("--config", help="JSON config file (e.g. a previous RUN/config.json)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override one setting, e.g. --set stage1.train.steps=500 (repeatable)",
    )
    parser.add_argument("--device", help="cpu or cuda (default: cuda if available, else cpu)")
    parser.add_argument("--resume", action="store_true", help="continue the run in RUN")
    parser.set_defaults(func=run)


def stage2_module() -> ModuleType | None:
    """The stage-2 trainer, when it is installed (it is developed separately)."""
    try:
        return importlib.import_module(STAGE2_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name == STAGE2_MODULE:
            return None
        raise


def fit_config_class(stage2: ModuleType | None) -> type:
    """``FitConfig``: a ``stage1`` section, plus ``stage2`` when stage 2 is available."""
    from ironrender.training.stage1 import Stage1Config

    fields = [("stage1", Stage1Config, dataclasses.field(default_factory=Stage1Config))]
    if stage2 is not None:
        fields.append(
            ("stage2", stage2.Stage2Config, dataclasses.field(default_factory=stage2.Stage2Config))
        )
    return dataclasses.make_dataclass("FitConfig", fields)


def resolve_config(args: argparse.Namespace, stage2: ModuleType | None):
    """Preset (or the saved config on --resume), then --config, then --set overrides."""
    from ironrender import config as cfg
    from ironrender.training.stage1 import stage1_preset

    cls = fit_config_class(stage2)
    saved = Path(args.run) / CONFIG_NAME
    if args.resume and saved.is_file():
        config = cfg.load(cls, saved)
    else:
        sections = {"stage1": stage1_preset(args.preset)}
        if stage2 is not None:
            sections["stage2"] = getattr(stage2, f"{args.preset}_stage2_config")()
        config = cls(**sections)
    if args.config:
        import json

        config = cfg.merge(config, json.loads(Path(args.config).read_text()), args.config)
    return cfg.apply_overrides(config, args.overrides)


def run(args: argparse.Namespace) -> int:
    import torch

    from ironrender import config as cfg
    from ironrender.errors import IronError
    from ironrender.training.stage1 import CHECKPOINT_NAME, STAGE_DIR, train_stage1

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise IronError("--device cuda: no CUDA device is available here; use --device cpu")
    stage2 = stage2_module()
    if args.stage in ("2", "all") and stage2 is None:
        raise IronError("stage 2 is not available yet; run with --stage 1")
    config = resolve_config(args, stage2)
    existing = Path(args.run) / STAGE_DIR / CHECKPOINT_NAME
    if args.stage in ("1", "all") and existing.exists() and not args.resume:
        raise IronError(
            f"{existing} exists: pass --resume to continue it, or choose a new run folder"
        )
    Path(args.run).mkdir(parents=True, exist_ok=True)
    cfg.save(config, Path(args.run) / CONFIG_NAME)

    if args.stage in ("1", "all"):
        result = train_stage1(args.data, args.run, config.stage1, device, resume=args.resume)
        print(
            f"stage 1: {result.steps} steps, loss {result.loss:.4f}, PSNR {result.psnr:.2f} dB,"
            f" {result.seconds:.0f} s; mesh {result.mesh}"
        )
    if args.stage in ("2", "all"):
        stage2.train_stage2(args.data, args.run, config.stage2, device, resume=args.resume)
    return 0
