"""Benchmark of ``iron batch``: N small objects as one batch against N ``iron run`` one after
the other, the two ways to share the cores (one thread per object with objects side by side,
or all threads for one object at a time), and Ray's own start-up.

The objects are copies of one tiny synthetic capture (``tests/tiny_runs.py``: 8 + 2 views at
32 px, the test suite's ``TINY`` overrides: about 20 s for a whole ``iron run`` on one idle
core), so every variant does the same work. Appends one row per variant to BENCHMARKS.md
(``--no-write`` to skip), with the load average before and after: the machine may be shared.

    .venv/bin/python benchmarks/bench_batch.py [--objects 4] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from bench_table import report_row, table_header

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.tiny_runs: one definition of the tiny capture and run

from tests.tiny_runs import TINY, set_args, tiny_capture  # noqa: E402

SECTION = """## Many objects: `iron batch` on Ray (`benchmarks/bench_batch.py`)

N copies of the tiny capture (8 + 2 views, 32 px, the suite's `TINY` overrides: every step,
evaluation included). "sequential" is N `iron run` one after the other with the default threads;
"batch" rows are one `iron batch` (local Ray) with the CPUs per object shown; "Ray start-up"
is `ray.init` on this machine, the first task (a fresh worker process), the first task that
imports torch and the pipeline, and `ray.shutdown`. Load: 1-minute load average before / after."""
COLUMNS = ("date", "variant", "objects", "wall s", "s per object", "load", "machine")
HEADER = table_header(COLUMNS)


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def timed(command: list[str], env: dict | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=False, env={**os.environ, **(env or {})},
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - started


def iron(*args: str) -> list[str]:
    return [sys.executable, "-m", "ironrender", *args]


def ray_start_up() -> str:
    """Seconds of ``ray.init``, a first empty task, a first task importing the pipeline, and
    ``ray.shutdown``, on a fresh local Ray."""
    import ray

    started = time.perf_counter()
    ray.init(address="local", include_dashboard=None, log_to_driver=False)
    init = time.perf_counter() - started

    @ray.remote(max_calls=1)
    def empty() -> int:
        return os.getpid()

    @ray.remote(max_calls=1)
    def pipeline() -> int:
        import ironrender.pipeline  # noqa: F401  (torch, training, evaluation)

        return os.getpid()

    mark = time.perf_counter()
    ray.get(empty.remote())
    first = time.perf_counter() - mark
    mark = time.perf_counter()
    ray.get(pipeline.remote())
    imports = time.perf_counter() - mark
    mark = time.perf_counter()
    ray.shutdown()
    down = time.perf_counter() - mark
    return (
        f"init {init:.1f} s, first task {first:.1f} s, first task importing the pipeline"
        f" {imports:.1f} s, shutdown {down:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=4)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    n, today, write = args.objects, date.today().isoformat(), not args.no_write

    def row(variant: str, seconds: float, before: str) -> None:
        cells = [today, variant, str(n), f"{seconds:.1f}", f"{seconds / n:.1f}"]
        report_row(SECTION, HEADER, [*cells, f"{before} / {load()}", machine()], write)

    with tempfile.TemporaryDirectory(prefix="bench_batch_") as tmp:
        work = Path(tmp)
        captures = work / "captures"
        tiny_capture(captures / "object0")
        for i in range(1, n):
            shutil.copytree(captures / "object0", captures / f"object{i}")

        before = load()
        started = time.perf_counter()
        for i in range(n):
            timed(iron("run", str(captures / f"object{i}"), str(work / "seq" / str(i)),
                       *set_args(TINY)))  # fmt: skip
        row("sequential `iron run` (2 threads each)", time.perf_counter() - started, before)

        for cpus in (1, 2):
            before = load()
            out = work / f"batch{cpus}"
            command = iron("batch", str(captures), str(out), *set_args(TINY))
            seconds = timed([*command, "--cpus-per-object", str(cpus)])
            at_once = max(1, (os.cpu_count() or 1) // cpus)
            row(f"`iron batch`, {cpus} CPU per object ({at_once} at once)", seconds, before)

        before = load()
        cells = [today, f"Ray start-up: {ray_start_up()}", "-", "-", "-"]
        report_row(SECTION, HEADER, [*cells, f"{before} / {load()}", machine()], write)


if __name__ == "__main__":
    main()
