"""Benchmark: real captures and realistic synthetic ones, each remedy on or off.

Runs ``iron run`` on a dataset folder (a real capture such as the skull, an ``iron import`` of
its photos, or an ``iron synth --room dim --support-plane`` capture) with a label and ``--set``
overrides, then appends one row to BENCHMARKS.md: per-step wall time, peak memory, the load
average (these machines are shared), full-frame and object-only PSNR, the distance of the
structure-from-motion points to the mesh where the dataset has them, and the ground-truth
metrics where it has those. Not a test: a run takes minutes.

    .venv/bin/python benchmarks/bench_real.py ../shared/real/skull_flash/iron_format --label skull
    .venv/bin/python benchmarks/bench_real.py /tmp/spot_room --label "room+plane, no background" \\
        --set stage1.volume.background=black --set stage2.background=black
    .venv/bin/python benchmarks/bench_real.py DATA --label skull --from-run runs/skull

The skull: "Photogrammetry Test Set: Skull - Cameramoves - Flash - No Background" by
alansartlog, CC BY 4.0 (../shared/real/skull_flash/README.md).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench_pipeline import machine
from bench_table import report_row, table_header

SECTION = """
## Real and realistic captures (`benchmarks/bench_real.py`)

Full-frame PSNR compares the whole photo, room included; object PSNR only the pixels the
recovered geometry covers (or the ground-truth mask of a synthetic capture). SfM: distance of the
capture's structure-from-motion points inside the unit sphere to the exported mesh, in % of their
diameter (2 x the 99th percentile of their distance from their median). Load: the 1-minute load
average before and after the run (2 cores: above 2 means the run shared the machine).
"""
COLUMNS = (
    "date",
    "machine",
    "data",
    "variant",
    "overrides",
    "stage1 s",
    "stage2 s",
    "export s",
    "eval s",
    "total s",
    "peak RSS",
    "load",
    "eval size",
    "PSNR",
    "PSNR obj",
    "SSIM",
    "SfM median %",
    "SfM p90 %",
    "SfM within 1 %",
    "Chamfer %",
    "albedo PSNR",
    "relight PSNR",
)
TABLE_HEADER = table_header(COLUMNS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path, help="dataset folder (train/, test/)")
    parser.add_argument("--label", required=True, help="what this row measures")
    parser.add_argument("--preset", default="fast", choices=("fast", "paper"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--work", type=Path, default=Path("/tmp/ironrender-bench/real"))
    parser.add_argument("--from-run", type=Path, default=None, help="record a finished run")
    parser.add_argument("--no-write", action="store_true", help="do not append to BENCHMARKS.md")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()[0]
    if args.from_run is not None:
        run = args.from_run
        peak = "not measured"
    else:
        # The user's command, in a child process: `iron` preloads tcmalloc as it does for users.
        run = args.work / f"{args.data.name}-{int(time.time())}"
        command = [sys.executable, "-m", "ironrender", "run", str(args.data), str(run)]
        command += ["--preset", args.preset, *(f"--set={o}" for o in args.overrides)]
        subprocess.run(command, check=True)
        peak = f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20:.2f} GiB"
    seconds = json.loads((run / "progress.json").read_text())["done"]
    load_after = os.getloadavg()[0]

    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    mean, info = metrics.get("mean", {}), metrics.get("info", {})

    def cell(key: str, fmt: str = "{:.2f}", scale: float = 1.0) -> str:
        value = mean.get(key)
        return fmt.format(value * scale) if isinstance(value, int | float) else "–"

    size = str(info.get("resolution", "")).split(":")[0].split(",")[0]
    row = [
        datetime.date.today().isoformat(),
        machine(recorded=True),
        str(args.data),
        args.label,
        " ".join(f"`{o}`" for o in args.overrides) or "–",
        *(f"{seconds.get(s, float('nan')):.0f}" for s in ("stage1", "stage2", "export", "eval")),
        f"{sum(seconds.values()):.0f}",
        peak,
        "not measured" if args.from_run is not None else f"{load_before:.1f} / {load_after:.1f}",
        size or "–",
        cell("psnr"),
        cell("psnr_object"),
        cell("ssim", "{:.3f}"),
        cell("sfm_median_percent", "{:.3f}"),
        cell("sfm_p90_percent", "{:.3f}"),
        cell("sfm_within_1pct", "{:.0f} %", 100.0),
        cell("chamfer_percent", "{:.3f}"),
        cell("albedo_psnr"),
        cell("relight_psnr"),
    ]
    report_row(SECTION, TABLE_HEADER, row, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
