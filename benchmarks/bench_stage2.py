"""Benchmark of stage 2 (``fast`` preset) on the default synthetic capture, with and without edges.

1. Synthesize the default capture (``iron synth`` defaults: the spot cow, 64 + 16 views at
   128x128, known mesh, materials and flash) unless ``--data`` points at one.
2. Train stage 1 (``fast``) once; both stage-2 runs start from a copy of it.
3. Evaluate stage 1 alone (its stand-in materials; the reference point), then train stage 2
   (``fast``) with edge sampling and without it (the ``--no-edges`` baseline).
4. Evaluate each run on the test views with :func:`ironrender.evaluation.evaluate.evaluate_run`
   (no export, no relighting): test-view PSNR/SSIM (8-bit gamma images, full frame, as IRON),
   Chamfer as % of the GT bounding-sphere diameter, diffuse-albedo PSNR after per-channel scale
   alignment, GGX-alpha mean absolute error, learnt/true light ratio.

Appends one row per stage-2 variant to BENCHMARKS.md (``--no-write`` to skip). Not a test.

    .venv/bin/python benchmarks/bench_stage2.py [--work DIR] [--stage1-steps N] [--set k=v ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import re
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

from bench_table import append_row

SECTION = "## stage 2, fast preset (benchmarks/bench_stage2.py)\n\n"
TABLE_HEADER = (
    "| date | capture | variant | stage-1 steps | stage-1 s | stage-2 steps | stage-2 s |"
    " test PSNR | test SSIM | chamfer % diam | albedo PSNR (aligned) | roughness MAE |"
    " light ratio | machine |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
)
VARIANTS = (("edges", True), ("no-edges", False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None, help="an existing capture (default: synthesize)")
    parser.add_argument("--work", default=None, help="keep files here (default: a temp dir)")
    parser.add_argument("--stage1-steps", type=int, default=0, help="0: the preset's")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-baseline", action="store_true", help="skip the stage-1-only row")
    parser.add_argument(
        "--variant",
        choices=[name for name, _ in VARIANTS],
        action="append",
        help="run only these stage-2 variants (default: all)",
    )
    parser.add_argument("--label", default="", help="appended to the variant name in the row")
    parser.add_argument("--no-write", action="store_true", help="do not append to BENCHMARKS.md")
    args = parser.parse_args()

    from ironrender.evaluation.evaluate import EvalConfig, evaluate_run
    from ironrender.pipeline import resolve_config
    from ironrender.training.stage1 import train_stage1
    from ironrender.training.stage2 import train_stage2

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_stage2_"))
    work.mkdir(parents=True, exist_ok=True)
    data = Path(args.data) if args.data else _default_capture(work / "data")

    overrides = list(args.overrides)
    if args.stage1_steps > 0:
        overrides.append(f"stage1.train.steps={args.stage1_steps}")
    config = resolve_config("fast", overrides=overrides)

    stage1_run = work / "stage1_run"
    stage1_seconds = float("nan")
    if not (stage1_run / "stage1" / "checkpoint.pt").is_file():
        started = time.perf_counter()
        train_stage1(data, stage1_run, config.stage1, args.device)
        stage1_seconds = time.perf_counter() - started
        print(f"stage 1: {stage1_seconds:.0f} s")

    eval_config = EvalConfig(relight=False, turntable_frames=0, export_if_missing=False)
    if not args.no_baseline:
        baseline = evaluate_run(stage1_run, data, args.device, eval_config)["mean"]
        row = {
            "capture": _describe(data),
            "variant": "stage 1 only (reference point)",
            "stage1_steps": config.stage1.train.steps,
            "stage1_s": stage1_seconds,
            "stage2_steps": 0,
            "stage2_s": float("nan"),
        } | baseline
        print(_format(row))
        if not args.no_write:
            _append_row(row)
    for name, edges in VARIANTS:
        if args.variant and name not in args.variant:
            continue
        label = f"{name} ({args.label})" if args.label else name
        run = work / ("run_" + re.sub(r"[^A-Za-z0-9_.=-]+", "_", label).strip("_"))
        if run.exists():
            shutil.rmtree(run)
        shutil.copytree(stage1_run / "stage1", run / "stage1")
        stage2 = dataclasses.replace(config.stage2, edges=edges)
        started = time.perf_counter()
        result = train_stage2(data, run, stage2, args.device)
        seconds = time.perf_counter() - started
        metrics = evaluate_run(run, data, args.device, eval_config)["mean"]
        row = {
            "capture": _describe(data),
            "variant": label,
            "stage1_steps": config.stage1.train.steps,
            "stage1_s": stage1_seconds,
            "stage2_steps": result.steps,
            "stage2_s": seconds,
        } | metrics
        print(_format(row))
        if not args.no_write:
            _append_row(row)


def _default_capture(out: Path) -> Path:
    if (out / "train").is_dir():
        return out
    from ironrender.data.synth import SynthConfig, synthesize

    return synthesize(SynthConfig(relight=False), out, progress=True)


def _describe(data: Path) -> str:
    from ironrender.data.dataset import load_split

    split = load_split(data, "train")
    width, height = split.cameras.width(0), split.cameras.height(0)
    return f"{data.name}: {len(split)} views, {width}x{height}"


def _number(row: dict, key: str, fmt: str) -> str:
    value = row.get(key)
    return "-" if value is None or value != value else format(value, fmt)


def _format(row: dict) -> str:
    keys = ("psnr", "ssim", "chamfer_percent", "albedo_psnr", "roughness_error", "light_ratio")
    values = ", ".join(f"{k} {_number(row, k, '.4g')}" for k in keys)
    return f"{row['variant']}: stage 2 {_number(row, 'stage2_s', '.0f')} s, {values}"


def _append_row(row: dict) -> None:
    """Add a row to this benchmark's table in BENCHMARKS.md."""
    cells = [
        date.today().isoformat(),
        row["capture"],
        row["variant"],
        str(row["stage1_steps"]),
        _number(row, "stage1_s", ".0f"),
        str(row["stage2_steps"]),
        _number(row, "stage2_s", ".0f"),
        _number(row, "psnr", ".2f"),
        _number(row, "ssim", ".4f"),
        _number(row, "chamfer_percent", ".3f"),
        _number(row, "albedo_psnr", ".2f"),
        _number(row, "roughness_error", ".3f"),
        _number(row, "light_ratio", ".3f"),
        f"{platform.machine()}, {os.cpu_count()} cores",
    ]
    append_row(SECTION, TABLE_HEADER, cells)


if __name__ == "__main__":
    main()
