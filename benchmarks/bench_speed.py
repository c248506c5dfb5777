"""Benchmark: a bare ``iron run`` with an older revision of the code and with this tree, one
after the other on one machine; one row each in BENCHMARKS.md ("Speed, side by side").

    .venv/bin/python benchmarks/bench_speed.py DATA --old REV [--label NAME] [--set K=V ...]

The older revision is checked out once as a git worktree (``/tmp/ironrender-rev-REV``) and
run with this virtual environment, its tree first on ``PYTHONPATH``; the new one is this
working tree (or ``--new REV``, checked out likewise). Both runs start from nothing in fresh run
folders under ``--work`` (a tree's compiled kernels built beforehand, not timed), under
tcmalloc as ``iron`` runs. Reported per run: the wall time of each step (``progress.json``),
the total, and the quality the evaluation measured (test PSNR, the object's PSNR, the Chamfer
distance on a synthetic capture, the SfM distances on a real one). Old runs first: on a busy
machine, read the ratio of the two rows, not the absolute times.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench_table import cpu_name, report_row, table_header

ROOT = Path(__file__).resolve().parent.parent
SECTION = "\n## Speed, side by side (`benchmarks/bench_speed.py`)\n\n"
COLUMNS = (
    "date",
    "machine",
    "capture",
    "code",
    "stage1 s",
    "stage2 s",
    "export s",
    "eval s",
    "total",
    "test PSNR",
    "object PSNR",
    "Chamfer / SfM median, p90",
)
STEPS = ("stage1", "stage2", "export", "eval")


def worktree(revision: str) -> Path:
    """A checkout of ``revision`` (made once)."""
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", revision],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    tree = Path(f"/tmp/ironrender-rev-{commit}")
    if not (tree / "ironrender").is_dir():
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), commit], check=True
        )
    return tree


def run(tree: Path, data: Path, run_dir: Path, overrides: list[str]) -> float:
    """``iron run DATA RUN`` with the code of ``tree``; its wall time."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    build = "import importlib.util as u\nif u.find_spec('ironrender.fields.fused_grid'):\n"
    build += "    from ironrender.fields import fused_grid; fused_grid.kernel()"
    subprocess.run([sys.executable, "-c", build], check=True, env=env, cwd=tree)
    command = [sys.executable, "-m", "ironrender", "run", str(data), str(run_dir)]
    for item in overrides:
        command += ["--set", item]
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, cwd=tree)
    return time.perf_counter() - started


def row(label: str, code: str, run_dir: Path, wall: float) -> list[str]:
    done = json.loads((run_dir / "progress.json").read_text())["done"]
    mean = json.loads((run_dir / "eval" / "metrics.json").read_text())["mean"]
    if "chamfer_percent" in mean:
        shape = f"{mean['chamfer_percent']:.4f} %"
    elif "sfm_median_percent" in mean:
        shape = f"{mean['sfm_median_percent']:.3f} %, {mean['sfm_p90_percent']:.2f} %"
    else:
        shape = "-"
    cells = [str(datetime.date.today()), f"{cpu_name()}, {os.cpu_count()} cores", label, code]
    cells += [f"{done.get(step, float('nan')):.0f}" for step in STEPS]
    cells += [f"{wall / 60:.1f} min", f"{mean['psnr']:.2f}"]
    cells += [f"{mean['psnr_object']:.2f}" if "psnr_object" in mean else "-", shape]
    return cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--old", required=True, help="the revision to compare with (git)")
    parser.add_argument("--label", default=None, help="the capture's name in the table")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ironrender-speed"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument(
        "--new", default=None, help="a revision for the new side (default: this working tree)"
    )
    parser.add_argument("--only-new", action="store_true", help="skip the old revision's run")
    parser.add_argument("--no-write", action="store_true", help="print, do not touch BENCHMARKS")
    args = parser.parse_args(argv)
    label = args.label or args.data.name
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    trees = [] if args.only_new else [(f"old ({args.old})", worktree(args.old))]
    if args.new is not None:  # a checkout: edits to this tree during the runs do not leak in
        new = worktree(args.new)
        trees.append((f"new ({new.name.rsplit('-', 1)[-1]})", new))
    else:
        trees.append((f"new ({head})", ROOT))
    for name, tree in trees:
        run_dir = args.work / f"{label.replace(' ', '_')}-{name.split()[0]}"
        if run_dir.exists():
            subprocess.run(["rm", "-rf", str(run_dir)], check=True)
        wall = run(tree, args.data, run_dir, args.overrides)
        cells = row(label, name, run_dir, wall)
        report_row(SECTION, table_header(COLUMNS), cells, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
