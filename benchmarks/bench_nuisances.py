"""Benchmark: what each nuisance of a real capture costs, and what its remedy recovers.

For one case (a nuisance, all of them, or none) this script renders the synthetic capture once
(``iron synth`` of the default object at 256x256, 100 training and 8 test views; cached under
``--work``), runs ``iron run`` on it with the remedy off or on, and appends one row to
BENCHMARKS.md with the metrics against ground truth: Chamfer distance, test PSNR, albedo PSNR,
roughness MAE and relighting PSNR. Not a test: a run takes minutes.

    .venv/bin/python benchmarks/bench_nuisances.py clean
    .venv/bin/python benchmarks/bench_nuisances.py flash5 --variant without
    .venv/bin/python benchmarks/bench_nuisances.py flash5 --variant with

Cases: ``clean``; ``flash5`` (the light 5 degrees off the axis, above the lens); ``ambient5``
(a uniform room light with 5 % of the flash's irradiance); ``jitter15`` (exposure +-15 % per
photo); ``camera`` (sRGB JPEG of quality 90 with shot noise 0.02); ``all`` (all of them).
Without the remedy a run models what IRON models: the flash in the lens (the camera file's
``"flash"`` keys removed), a dark room, gamma 2.2, locked exposure.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench_pipeline import machine
from bench_table import report_row, synthesize_once, table_header

SYNTH = ["--resolution", "256", "--views", "100", "--test-views", "8"]
NUISANCES = {
    "flash5": ["--flash-angle", "5"],
    "ambient5": ["--ambient", "0.05"],
    "jitter15": ["--exposure-jitter", "0.15"],
    "camera": ["--tone-curve", "srgb", "--jpeg-quality", "90", "--noise", "0.02"],
}
REMEDIES = {  # run overrides that model each nuisance; the flash's is the camera file's key
    "flash5": [],
    "ambient5": ["stage2.ambient=sh2"],
    "jitter15": ["stage2.exposure_gains=true"],
    "camera": ["stage2.tone_curve=srgb"],
}
CASES = {"clean": [], **{name: [name] for name in NUISANCES}, "all": list(NUISANCES)}
# The benchmark's training budget: the fast preset's own counts (as the default scene), not
# the capture rule's (twice the steps at 256x256), so that a dozen runs fit an afternoon.
RUN = ["--set", "budget.rule=preset"]

SECTION = """
## Nuisances of real captures (`benchmarks/bench_nuisances.py`)

The default object rendered by Mitsuba at 256x256, 100 training and 8 test views, `fast` preset
with its own counts (`budget.rule=preset`), each nuisance alone and all together, without and
with the remedy (the run's overrides say which). Chamfer in % of the bounding-box diagonal,
PSNR in dB on the 8-bit images, roughness as mean absolute error of GGX alpha.
"""
COLUMNS = (
    "date",
    "machine",
    "case",
    "remedy",
    "overrides",
    "total s",
    "load",
    "Chamfer %",
    "test PSNR",
    "albedo PSNR",
    "roughness MAE",
    "relight PSNR",
    "light ratio",
)
TABLE_HEADER = table_header(COLUMNS)


def synthesize(case: str, work: Path) -> Path:
    """The case's capture (rendered once; same cameras, seed and gains in every case)."""
    args = [a for name in CASES[case] for a in NUISANCES[name]]
    return synthesize_once(work / "data" / case, [*SYNTH, *args])


def without_flash_keys(data: Path, work: Path) -> Path:
    """A copy of ``data`` whose camera files say nothing of the flash (IRON's format)."""
    copy = work / "data" / f"{data.name}-colocated"
    if not copy.exists():
        shutil.copytree(data, copy, copy_function=os.link)  # images hard-linked
        for split in ("train", "test"):
            path = copy / split / "cam_dict_norm.json"
            entries = json.loads(path.read_text())
            for entry in entries.values():
                entry.pop("flash", None)
            path.unlink()  # a new file, not the hard-linked original
            path.write_text(json.dumps(entries, indent=1))
    return copy


def share_stage1(source: Path, run: Path, data: Path, overrides: list[str]) -> None:
    """A new run folder holding ``source``'s stage 1, its configuration with ``overrides``, and
    a progress record that says stage 1 is done (``iron run`` then starts at stage 2)."""
    from ironrender.config import apply_overrides, from_dict, save
    from ironrender.run_config import RunConfig
    from ironrender.run_folder import CONFIG_FILE, PROGRESS_FILE

    saved = json.loads((source / CONFIG_FILE).read_text())
    config = apply_overrides(from_dict(RunConfig, saved), list(overrides))
    run.mkdir(parents=True)
    shutil.copytree(source / "stage1", run / "stage1")
    save(config, run / CONFIG_FILE)
    done = json.loads((source / PROGRESS_FILE).read_text())["done"]
    progress = {"done": {"stage1": done["stage1"]}, "data": str(data.resolve())}
    (run / PROGRESS_FILE).write_text(json.dumps(progress, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("case", choices=sorted(CASES))
    parser.add_argument("--variant", choices=("without", "with"), default="with")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--work", type=Path, default=Path("/tmp/ironrender-bench/nuisances"))
    parser.add_argument("--from-run", type=Path, default=None, help="record a finished run")
    parser.add_argument(
        "--stage1-from",
        type=Path,
        default=None,
        help="start from this run's stage 1 (the remedies act in stage 2 only, so a with-remedy"
        " run of the same capture would train exactly the same stage 1)",
    )
    parser.add_argument("--no-write", action="store_true", help="do not append to BENCHMARKS.md")
    args = parser.parse_args(argv)

    data = synthesize(args.case, args.work)
    overrides = list(args.overrides)
    if args.variant == "without":
        data = without_flash_keys(data, args.work) if "flash5" in CASES[args.case] else data
    else:
        overrides = [o for name in CASES[args.case] for o in REMEDIES[name]] + overrides
    load_before = os.getloadavg()[0]
    run = args.from_run or args.work / "runs" / f"{args.case}-{args.variant}-{int(time.time())}"
    if args.from_run is None and args.stage1_from is not None:
        share_stage1(args.stage1_from, run, data, overrides)
    if args.from_run is None:
        command = [sys.executable, "-m", "ironrender", "run", str(data), str(run), *RUN]
        subprocess.run([*command, *(f"--set={o}" for o in overrides)], check=True)
    seconds = json.loads((run / "progress.json").read_text())["done"]
    load_after = os.getloadavg()[0]
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    mean = metrics.get("mean", {})

    def cell(key: str, fmt: str = "{:.2f}") -> str:
        value = mean.get(key)
        return fmt.format(value) if isinstance(value, int | float) else "–"

    row = [
        datetime.date.today().isoformat(),
        machine(recorded=True),
        args.case,
        "–" if args.case == "clean" else args.variant,
        " ".join(f"`{o}`" for o in overrides) or "–",
        f"{sum(seconds.values()):.0f}",
        "not measured" if args.from_run else f"{load_before:.1f} / {load_after:.1f}",
        cell("chamfer_percent", "{:.3f}"),
        cell("psnr"),
        cell("albedo_psnr"),
        cell("roughness_error", "{:.3f}"),
        cell("relight_psnr"),
        cell("light_ratio", "{:.3f}"),
    ]
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20:.2f} GiB")
    report_row(SECTION, TABLE_HEADER, row, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
