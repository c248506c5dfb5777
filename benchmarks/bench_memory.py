"""Benchmark: peak memory of training on a large capture (300 views at 1 MP by default).

Writes a capture of ``--views`` photographs of ``--size`` x ``--size`` pixels (a procedural
pattern, PNG, cameras on a ring around the unit sphere; no renderer needed, as only the memory is
measured), then runs ``iron fit DATA RUN --stage 1`` for a few steps in a child process and
records its peak resident memory (``ru_maxrss``) beside the estimate ``iron`` makes before
loading (:func:`ironrender.data.memory.dataset_bytes`). ``--code DIR`` runs another checkout's
``ironrender`` (e.g. a commit before a change) for a side-by-side row.

    .venv/bin/python benchmarks/bench_memory.py                    # 300 x 1 MP
    .venv/bin/python benchmarks/bench_memory.py --code /tmp/before --no-write
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_table import report_row  # noqa: E402

SECTION = "\n## Memory at real sizes (`benchmarks/bench_memory.py`)\n\n"
HEADER = (
    "| date | machine | code | views | size | steps | estimate (GB) | peak RSS (GB) |"
    " load + steps s | notes |\n|---|---|---|---|---|---|---|---|---|---|\n"
)


def write_capture(out: Path, views: int, size: int) -> Path:
    """``views`` PNGs of ``size``^2 px (smooth stripes that compress well) and a camera ring."""
    from PIL import Image

    from ironrender.data.camera_file import CAMERA_FILE, IMAGE_DIR, cameras_to_dict
    from ironrender.data.cameras import look_at
    from ironrender.data.synth.poses import cameras_from_poses

    names = [f"{i:04d}.png" for i in range(views)]
    angles = torch.linspace(0, 2 * torch.pi, views + 1, dtype=torch.float64)[:-1]  # a ring
    heights = 0.8 * torch.sin(3 * angles)
    eye = torch.stack([3 * torch.cos(angles), heights, 3 * torch.sin(angles)], -1)
    up = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64).expand_as(eye)
    w2c = look_at(eye, torch.zeros_like(eye), up)
    cameras = cameras_from_poses(w2c, size, 40.0)
    folder = out / "train" / IMAGE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:size, 0:size] / size
    for i, name in enumerate(names):
        phase = 2 * np.pi * i / views
        rgb = np.stack([np.sin(8 * x + phase), np.cos(6 * y + phase), np.sin(5 * (x + y))], -1)
        Image.fromarray(np.round(127.5 + 100 * rgb).astype(np.uint8)).save(folder / name)
    import json

    (out / "train" / CAMERA_FILE).write_text(json.dumps(cameras_to_dict(names, cameras)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=300)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_memory"))
    parser.add_argument("--code", type=Path, default=None, help="checkout whose code to run")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    from ironrender.data.memory import dataset_bytes

    data = args.work / f"data_{args.views}x{args.size}"
    if not (data / "train").is_dir():
        print(f"writing {args.views} photographs of {args.size}^2 px into {data}")
        write_capture(data, args.views, args.size)
    run = args.work / f"run_{time.strftime('%H%M%S')}"
    # The child runs in the work folder, so that `python -m ironrender` imports the code named
    # by PYTHONPATH (this checkout, or --code), not whatever the current folder holds.
    code_dir = args.code or Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(code_dir))
    command = [sys.executable, "-m", "ironrender", "fit", str(data), str(run), "--stage", "1"]
    for option in (
        f"stage1.train.steps={args.steps}",
        "stage1.log.mesh_resolution=32",
        "stage1.log.tensorboard=false",
        "stage1.log.progress=false",
    ):
        command += ["--set", option]
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=args.work)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"iron fit failed:\n{result.stderr[-2000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # kB on Linux
    estimate = dataset_bytes(data)
    code = str(args.code) if args.code else "this checkout"
    machine = f"{os.cpu_count()} CPU ({platform.machine()}), torch {torch.__version__}"
    report_row(
        SECTION,
        HEADER,
        [
            time.strftime("%Y-%m-%d"),
            machine,
            code,
            str(args.views),
            f"{args.size}x{args.size}",
            str(args.steps),
            f"{estimate / 1e9:.2f}",
            f"{peak / 1e9:.2f}",
            f"{seconds:.0f}",
            f"load average {os.getloadavg()[0]:.1f} at the end",
        ],
        write=not args.no_write,
    )


if __name__ == "__main__":
    main()
