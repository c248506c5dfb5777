"""Benchmark: stage 1 ``fast`` on the default synthetic capture; appends a row to BENCHMARKS.md.

    .venv/bin/python benchmarks/bench_stage1.py [--scene spot|bob] [--set stage1.train.steps=...]

The capture is synthesized once (``ironrender.data.synth``, Mitsuba) into ``--cache``. Reported:
wall time of ``train_stage1`` (training, previews, mesh), steps/s, peak resident memory
(``getrusage``), and the Chamfer distance of the stage-1 mesh to the ground-truth mesh, IRON's
definition (``eval_mesh.py``): the mean of the two directed mean point-to-surface distances,
as a percentage of the ground-truth bounding-sphere diameter. For the genus-1 ``bob`` the
mesh's genus is printed too (``1 - euler/2`` for a closed surface).
Run it under tcmalloc (``iron`` preloads it; here: ``LD_PRELOAD=...libtcmalloc_minimal.so.4``).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import trimesh
from bench_table import append_row

SECTION = "## Stage 1 (`benchmarks/bench_stage1.py`)"
TABLE_HEADER = (
    "| date | machine | command | wall | steps/s | peak RSS | Chamfer / diameter | genus |"
    " train PSNR (dB) |\n|---|---|---|---|---|---|---|---|---|\n"
)

BOB = Path("/work/shared/assets/bob")


def ensure_scene(name: str, cache: Path) -> Path:
    from ironrender.data.synth import SynthConfig, synthesize

    out = cache / name
    if (out / "train").is_dir():
        return out
    config = SynthConfig(relight=False)
    if name == "bob":
        config = SynthConfig(
            relight=False, mesh=str(BOB / "bob_tri.obj"), texture=str(BOB / "bob_diffuse.png")
        )
    synthesize(config, out, progress=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", choices=("spot", "bob"), default="spot")
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "ironcache"))
    parser.add_argument("--run", default=None, help="run folder (default: a temp folder)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--device", default="cpu", help="torch device: cpu or cuda")
    parser.add_argument("--no-write", action="store_true", help="do not append to BENCHMARKS.md")
    args = parser.parse_args(argv)
    device = args.device

    from ironrender.config import apply_overrides
    from ironrender.evaluation.metrics import chamfer
    from ironrender.training.stage1 import fast_stage1_config, train_stage1

    data = ensure_scene(args.scene, Path(args.cache))
    config = apply_overrides(fast_stage1_config(), args.overrides)
    run = Path(args.run or tempfile.mkdtemp(prefix=f"bench_stage1_{args.scene}_"))
    start = time.perf_counter()
    result = train_stage1(data, run, config, device)
    wall = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    mesh = trimesh.load(result.mesh)
    gt = trimesh.load(data / "gt" / "mesh.obj", force="mesh")
    diameter = 2.0 * float(np.linalg.norm(gt.vertices - gt.bounding_sphere.center, axis=-1).max())
    score = chamfer(mesh, gt)
    genus = 1 - mesh.euler_number // 2 if mesh.is_watertight else None
    tcmalloc = "tcmalloc" in os.environ.get("LD_PRELOAD", "")
    command = "benchmarks/bench_stage1.py " + " ".join(
        [f"--scene {args.scene}"]
        + ([f"--device {device}"] if device != "cpu" else [])
        + [f"--set {o}" for o in args.overrides]
    )
    cells = [
        time.strftime("%Y-%m-%d"),
        f"{platform.machine()}, {device}, {torch.get_num_threads()} threads"
        f"{', tcmalloc' if tcmalloc else ''}",
        f"`{command}`",
        f"{wall:.0f} s",
        f"{result.steps / wall:.2f}",
        f"{peak_mib:.0f} MiB"
        + (
            f" (GPU {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB)"
            if device.startswith("cuda")
            else ""
        ),
        f"{100 * score / diameter:.2f} %",
        str(genus),
        f"{result.psnr:.2f}",
    ]
    print("| " + " | ".join(cells) + " |")
    print(f"run folder: {run}; chamfer {score:.5f} (diameter {diameter:.3f})")
    if not args.no_write:
        append_row(SECTION, TABLE_HEADER, cells)
    return 0


if __name__ == "__main__":
    sys.exit(main())
