"""Benchmark of ``iron import``: a larger synthetic ring capture, then stage 1 on the import.

1. Render a textured spot (procedural texture) under a co-located flash from cameras in four
   rings (120 views at 512x384 by default) with Mitsuba: tests/test_import.py's capture.
2. Import the photos alone (SfM with pycolmap) and compare the recovered cameras with the
   true ones after a similarity alignment of the camera centres: rotation and centre errors,
   reprojection of true mesh points, registered fraction, wall time.
3. If ``ironrender.training.stage1`` exists and ``--stage1-steps`` > 0: train stage 1 on the
   imported dataset and compare its mesh with the true mesh mapped into the imported frame
   (Chamfer as % of the object's diameter, F-score).

Appends one row to BENCHMARKS.md (``--no-write`` to skip).

    .venv/bin/python benchmarks/bench_import.py [--views-scale 1.0] [--stage1-steps N]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
from bench_table import append_row

ROOT = Path(__file__).resolve().parents[1]
RINGS = ((-10.0, 36), (15.0, 40), (40.0, 30), (65.0, 14))
SIZE = (512, 384)
SECTION = "## iron import (benchmarks/bench_import.py)\n\n"
TABLE_HEADER = (
    "| date | benchmark | views | registered | SfM+import s | rot err max/mean deg |"
    " centre err max/mean % | reproj median/max px | stage-1 steps | stage-1 s |"
    " chamfer % diam | F-score | machine |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
)


def _load_test_helpers():
    """The capture renderer and the comparison of tests/test_import.py (one implementation)."""
    spec = importlib.util.spec_from_file_location(
        "_iron_test_import", ROOT / "tests" / "test_import.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being created
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--views-scale", type=float, default=1.0, help="scale views per ring")
    parser.add_argument(
        "--stage1-steps", type=int, default=None, help="default: the fast preset's; 0 skips stage 1"
    )
    parser.add_argument("--work", default=None, help="keep files here (default: a temp dir)")
    parser.add_argument("--no-write", action="store_true", help="do not append to BENCHMARKS.md")
    args = parser.parse_args()

    helpers = _load_test_helpers()
    from ironrender.data.capture import ImportConfig, import_photos

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_import_"))
    rings = tuple((e, max(4, round(n * args.views_scale))) for e, n in RINGS)
    started = time.perf_counter()
    capture = helpers.render_capture(work / "photos", rings=rings, size=SIZE, distance=2.6)
    render_s = time.perf_counter() - started
    print(f"rendered {len(capture.names)} views in {render_s:.0f} s")

    data = work / "data"
    started = time.perf_counter()
    report = import_photos(capture.photos, data, ImportConfig(resolution=max(SIZE)), progress=print)
    import_s = time.perf_counter() - started
    print(report.summary())
    result = helpers.compare(capture, data, SIZE)
    row = {
        "views": len(capture.names),
        "registered": len(report.registered),
        "import_s": import_s,
        "rot": (result.rotation_deg.max(), result.rotation_deg.mean()),
        "centre": (100 * result.center_error.max(), 100 * result.center_error.mean()),
        "reproj": (float(np.median(result.reprojection_px)), result.reprojection_px.max()),
        "folding_warnings": report.folding.warnings,
    }
    print(row)

    stage1 = _stage1(args.stage1_steps, data, work, capture, result)
    print(stage1)
    if not args.no_write:
        _append_row(row, stage1)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


def _stage1(steps: int, data: Path, work: Path, capture, result) -> dict | None:
    """Stage 1 on the imported dataset; its mesh against the truth in the imported frame."""
    if steps is not None and steps <= 0:
        return None
    import trimesh

    from ironrender.evaluation.metrics import mesh_metrics
    from ironrender.training.stage1 import fast_stage1_config, train_stage1

    config = fast_stage1_config()
    if steps is not None:
        config.train.steps = steps
    steps = config.train.steps
    config.log.tensorboard = False
    started = time.perf_counter()
    trained = train_stage1(data, work / "run", config, "cpu")
    seconds = time.perf_counter() - started
    truth = trimesh.Trimesh(result.vertices_normalized, capture.faces, process=False)
    predicted = trimesh.load(trained.mesh, force="mesh")
    _, radius = trimesh.nsphere.minimum_nsphere(truth.vertices)
    metrics = mesh_metrics(predicted, truth, f_threshold=0.01 * 2 * radius)
    return {
        "steps": steps,
        "seconds": seconds,
        "chamfer_percent": 100 * metrics.chamfer / (2 * radius),
        "f_score": metrics.f_score,
        "psnr": trained.psnr,
    }


def _append_row(row: dict, stage1: dict | None) -> None:
    """Add a row to this benchmark's table in BENCHMARKS.md."""
    s1 = stage1 or {}
    cells = [
        date.today().isoformat(),
        "ring capture, textured spot, 512x384",
        str(row["views"]),
        str(row["registered"]),
        f"{row['import_s']:.0f}",
        "{:.3f} / {:.3f}".format(*row["rot"]),
        "{:.3f} / {:.3f}".format(*row["centre"]),
        "{:.3f} / {:.3f}".format(*row["reproj"]),
        str(s1.get("steps", "-")),
        f"{s1['seconds']:.0f}" if s1 else "-",
        f"{s1['chamfer_percent']:.2f}" if s1 else "-",
        f"{s1['f_score']:.3f}" if s1 else "-",
        f"{platform.machine()}, {os.cpu_count()} cores",
    ]
    append_row(SECTION, TABLE_HEADER, cells)


if __name__ == "__main__":
    main()
