"""Benchmark: does stage 1 form a surface on a shiny, dark object? One factor at a time.

The reproduction of the fogged gilt-bronze capture (issue 21) is ``gilded``: ``iron synth
--material gilded`` (gold's coloured F0, near-black diffuse, rough patina) standing on black
cloth (``--support-plane --support-albedo 0.02``) in a dim room, the flash 5 degrees off the
lens. The other cases change one factor each: ``matte`` (the default dielectric texture instead
of the gilding), ``no_cloth``, ``on_lens`` (the flash in the lens), ``no_room`` (a black
background), and ``bare`` (the gilding alone: no cloth, no room, flash in the lens); the
``bare_*`` cases add one factor to ``bare``.

For each case the capture is rendered once (cached under ``--work``), stage 1 trains
(``iron fit --stage 1``, the ``fast`` preset's own step count) and one row goes to
BENCHMARKS.md: inv_s over the steps, the surface check (:mod:`ironrender.training.surface_check`)
and the Chamfer distance of stage 1's mesh to the ground truth, the support's contact cap cut
from both (the cameras never see it), in % of the ground truth's diameter.

    .venv/bin/python benchmarks/bench_shiny.py gilded
    .venv/bin/python benchmarks/bench_shiny.py matte --set stage1.train.steps=3000
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

import numpy as np
import torch
import trimesh
from bench_pipeline import machine
from bench_table import cpu_name, report_row, synthesize_once, table_header

from ironrender.evaluation.geometry import bounding_diameter, load_gt_mesh
from ironrender.evaluation.metrics import chamfer
from ironrender.evaluation.report import read_scalars
from ironrender.export.select import cut_by_plane
from ironrender.run_folder import STAGE1_DIR, stage_checkpoint
from ironrender.training.surface_check import read_surface_check

SYNTH = ["--resolution", "128", "--views", "80", "--test-views", "4", "--no-relight"]
GILDED = ["--material", "gilded"]
CLOTH = ["--support-plane", "--support-albedo", "0.02"]
ROOM = ["--room", "dim"]
OFF_LENS = ["--flash-angle", "5"]
CASES = {
    "gilded": GILDED + CLOTH + ROOM + OFF_LENS,
    "matte": CLOTH + ROOM + OFF_LENS,
    "no_cloth": GILDED + ROOM + OFF_LENS,
    "on_lens": GILDED + CLOTH + ROOM,
    "no_room": GILDED + CLOTH + OFF_LENS,
    "bare": GILDED,
    "bare_room": GILDED + ROOM,
    "bare_cloth": GILDED + CLOTH,
    "bare_off_lens": GILDED + OFF_LENS,
}
RUN = ["--set", "budget.rule=preset"]
CONTACT_BAND = 0.015  # the support's contact cap, cut from both meshes (export's band)

SECTION = """
## Stage 1 on shiny objects (`benchmarks/bench_shiny.py`)
"""
COLUMNS = (
    "date",
    "machine",
    "cpu",
    "case",
    "stage-1 settings",
    "stage 1 s",
    "load",
    "inv_s 500 / 1000 / end",
    "concentration",
    "surface",
    "Chamfer %",
)
TABLE_HEADER = table_header(COLUMNS)


def synthesize(case: str, work: Path) -> Path:
    return synthesize_once(work / "data" / case, [*SYNTH, *CASES[case]])


def stage1_chamfer_percent(run: Path, data: Path) -> float:
    """Chamfer of stage 1's mesh to the ground truth, both cut above the support's contact cap
    (the plane touches the object's lowest point along +Y), in % of the GT's diameter."""
    gt = load_gt_mesh(data / "gt")
    pred = trimesh.load(run / "stage1" / "mesh.ply", force="mesh", process=False)
    if "support_plane" in json.loads((data / "gt" / "light.json").read_text())["scene"]:
        floor = float(np.asarray(gt.vertices)[:, 1].min()) + CONTACT_BAND
        up = np.array([0.0, 1.0, 0.0])
        gt, pred = (cut_by_plane(m, up, -floor) for m in (gt, pred))
        parts = pred.split(only_watertight=False)
        pred = max(parts, key=lambda m: m.area) if len(parts) else pred
    return 100.0 * chamfer(pred, gt) / bounding_diameter(gt)


def settings(run: Path, overrides: list[str]) -> str:
    """The sharpness floor the run used (from its config.json) and any other override."""
    train = json.loads((run / "config.json").read_text())["stage1"]["train"]
    floor = train.get("min_inv_s", 0.0)
    cells = [
        f"`min_inv_s={floor:g}` `min_inv_s_start={train['min_inv_s_start']:g}`"
        f" `min_inv_s_from={train.get('min_inv_s_from', 1.0):g}`"
    ]
    if not floor:
        cells = ["`min_inv_s=0`"]
    rest = [o for o in overrides if "min_inv_s" not in o]
    saved = torch.load(stage_checkpoint(run, STAGE1_DIR), map_location="cpu", weights_only=False)
    planned, steps = (saved["config"]["train"].get(k, 0) for k in ("extended_from", "steps"))
    if planned:
        cells.append(f"lengthened itself {planned} -> {steps}")
    return " ".join(cells + [f"`{o.removeprefix('stage1.').removeprefix('train.')}`" for o in rest])


def inv_s_at(run: Path, steps: tuple[int, ...]) -> list[float]:
    """inv_s at ``steps`` and at the last logged step (a floored run may lengthen itself)."""
    curve = dict(read_scalars(run / "stage1").get("inv_s", []))
    last = max(curve) if curve else 0
    return [curve.get(min(s, last), float("nan")) for s in (*steps, last)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("case", choices=sorted(CASES))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--work", type=Path, default=Path("/tmp/ironrender-bench/shiny"))
    parser.add_argument("--no-write", action="store_true", help="do not append to BENCHMARKS.md")
    args = parser.parse_args(argv)

    data = synthesize(args.case, args.work)
    run = args.work / "runs" / f"{args.case}-{int(time.time())}"
    load_before = os.getloadavg()[0]
    command = [sys.executable, "-m", "ironrender", "fit", str(data), str(run), "--stage", "1"]
    subprocess.run([*command, *RUN, *(f"--set={o}" for o in args.overrides)], check=True)
    load_after = os.getloadavg()[0]
    seconds = json.loads((run / "progress.json").read_text())["done"]["stage1"]
    check = read_surface_check(run / "stage1")
    chamfer_percent = stage1_chamfer_percent(run, data)
    curve = inv_s_at(run, (500, 1000))
    row = [
        datetime.date.today().isoformat(),
        machine(recorded=True),
        cpu_name(),
        args.case,
        settings(run, args.overrides),
        f"{seconds:.0f}",
        f"{load_before:.1f} / {load_after:.1f}",
        " / ".join(f"{v:.0f}" for v in curve),
        f"{check.concentration:.2f}",
        "formed" if check.formed else "**fog**",
        f"{chamfer_percent:.3f}",
    ]
    print(f"run folder: {run}")
    report_row(SECTION, TABLE_HEADER, row, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
