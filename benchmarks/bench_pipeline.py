"""Benchmark: the whole pipeline (synth, stages 1 and 2, export, eval) on named scenes.

Appends one row per run to BENCHMARKS.md: machine, scene, preset, wall time per step, peak
resident memory and every headline metric. Not a test: a fast-preset run takes minutes.

    .venv/bin/python benchmarks/bench_pipeline.py                 # spot, fast (the demo)
    .venv/bin/python benchmarks/bench_pipeline.py --scene bob --no-edges
    .venv/bin/python benchmarks/bench_pipeline.py --set stage2.steps=300

Scenes: ``spot`` (built in) or a folder of ``../shared/assets`` holding one OBJ with UVs and a
diffuse PNG (e.g. ``bob``).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import time
from pathlib import Path

from bench_table import report_row, table_header

TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"
ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT.parent / "shared" / "assets"
SECTION = "\n## Whole pipeline (`benchmarks/bench_pipeline.py`)\n\n"
COLUMNS = (
    "date",
    "machine",
    "scene",
    "preset",
    "edges",
    "synth s",
    "stage1 s",
    "stage2 s",
    "export s",
    "eval s",
    "total s",
    "peak RSS",
    "PSNR",
    "PSNR obj",
    "SSIM",
    "Chamfer %",
    "F-score",
    "normal cons.",
    "albedo PSNR",
    "rough. MAE",
    "relight PSNR",
    "relight PSNR (scaled)",
)
TABLE_HEADER = table_header(COLUMNS)


def machine(recorded: bool = False) -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"{os.cpu_count()} CPU"
    preload = "tcmalloc" if "tcmalloc" in os.environ.get("LD_PRELOAD", "") else "glibc malloc"
    if recorded:  # the run was made by `iron`, which preloads tcmalloc when installed
        preload = "tcmalloc" if os.path.exists(TCMALLOC) else "glibc malloc"
    return f"{device} ({cpu}), torch {torch.__version__}, {preload}"


def scene_config(name: str):
    from ironrender.data.synth import SynthConfig

    if name == "spot":
        return SynthConfig()
    folder = ASSETS / name
    meshes = sorted(folder.glob("*.obj"))
    textures = sorted(folder.glob("*.png"))
    if not meshes or not textures:
        raise SystemExit(f"scene {name!r}: need an OBJ and a PNG texture in {folder}")
    return SynthConfig(mesh=str(meshes[0]), texture=str(textures[0]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scene", default="spot")
    parser.add_argument("--preset", default="fast", choices=("fast", "paper"))
    parser.add_argument("--no-edges", action="store_true")
    parser.add_argument("--device", default=None)
    parser.add_argument("--work", type=Path, default=Path("/tmp/ironrender-bench"))
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="an existing dataset to reconstruct instead of synthesizing --scene (which then"
        " only names the row)",
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--minutes", type=float, default=None, help="iron run --minutes N")
    parser.add_argument("--no-write", action="store_true", help="do not append to BENCHMARKS.md")
    parser.add_argument(
        "--from-run",
        type=Path,
        default=None,
        help="record a finished run (e.g. runs/demo/run of `make demo`) instead of running one;"
        " its per-step times come from RUN/progress.json, its synth time is not known",
    )
    args = parser.parse_args(argv)

    import json

    from ironrender.data.synth import synthesize
    from ironrender.pipeline import ConfigRequest, format_summary, run_pipeline

    if args.from_run is not None:
        run = args.from_run
        progress = json.loads((run / "progress.json").read_text())
        seconds = progress["done"]
        synth_seconds = float("nan")
        peak = "not measured"
    else:
        data = args.data or args.work / args.scene / "data"
        tag = f"{args.preset}{'-noedges' if args.no_edges else ''}"
        run = args.work / args.scene / f"run-{tag}-{int(time.time())}"
        started = time.perf_counter()
        if not (data / "gt").is_dir():
            synthesize(scene_config(args.scene), data, overwrite=True)
        synth_seconds = time.perf_counter() - started
        config = ConfigRequest(
            args.preset, None, tuple(args.overrides), not args.no_edges, args.minutes
        )
        summary = run_pipeline(data, run, config, args.device)
        print(f"  synth   {synth_seconds:7.1f} s")
        print(format_summary(summary))
        seconds = summary.seconds
        peak = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB"

    metrics_file = run / "eval" / "metrics.json"
    everything = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    mean = everything.get("mean", {})

    def cell(key: str, fmt: str = "{:.3f}") -> str:
        value = mean.get(key)
        return fmt.format(value) if isinstance(value, int | float) else "–"

    row = [
        datetime.date.today().isoformat(),
        machine(recorded=args.from_run is not None),
        args.scene,
        args.preset,
        "off" if args.no_edges else "on",
        "–" if synth_seconds != synth_seconds else f"{synth_seconds:.0f}",
        *(f"{seconds.get(s, float('nan')):.0f}" for s in ("stage1", "stage2", "export", "eval")),
        f"{sum(seconds.values()) + (0 if synth_seconds != synth_seconds else synth_seconds):.0f}",
        peak,
        cell("psnr", "{:.2f}"),
        cell("psnr_object", "{:.2f}"),
        cell("ssim"),
        cell("chamfer_percent", "{:.3f}"),
        cell("f_score"),
        cell("normal_consistency"),
        cell("albedo_psnr", "{:.2f}"),
        cell("roughness_error"),
        cell("relight_psnr", "{:.2f}"),
        cell("relight_psnr_scaled", "{:.2f}"),
    ]
    report_row(SECTION, TABLE_HEADER, row, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
