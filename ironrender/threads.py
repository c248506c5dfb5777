"""How many CPU threads a run uses: the CPUs this process may actually run on.

PyTorch's default thread count is the machine's core count, which in a container or a batch
slot is often far more than the process may use: 64 threads on a 2-CPU quota spend their time
waiting for each other (on a loaded 2-core machine two OpenMP threads can already be 10x
slower than one, BENCHMARKS.md). The usable count is the smallest of

* the CPU affinity mask (``os.sched_getaffinity``: ``taskset``, Slurm, Ray),
* the cgroup's CPU quota, rounded up (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` /
  ``cpu.cfs_period_us``: Docker's ``--cpus``, Kubernetes limits),

and the run never raises a lower count set before it (``OMP_NUM_THREADS``, ``torch.
set_num_threads``, ``iron batch``'s share of a node).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def cgroup_cpu_quota(root: Path = CGROUP) -> float | None:
    """The cgroup's CPU limit in CPUs (``quota / period``), or None when there is none."""
    try:  # cgroup v2: "max 100000" or "200000 100000"
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def usable_cpus(root: Path = CGROUP) -> tuple[int, str]:
    """The number of CPUs this process may use, and where that number comes from."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        affinity = os.cpu_count() or 1
    quota = cgroup_cpu_quota(root)
    if quota is not None and math.ceil(quota) < affinity:
        return max(1, math.ceil(quota)), f"cgroup quota {quota:g} CPUs, affinity {affinity}"
    return affinity, f"affinity {affinity} CPUs, " + (
        f"cgroup quota {quota:g}" if quota is not None else "no cgroup quota"
    )


def configure_threads() -> str:
    """Set torch's CPU threads to the usable CPUs (never above a count already set lower);
    returns the line a run logs."""
    import torch

    usable, source = usable_cpus()
    current = torch.get_num_threads()
    threads = min(current, usable)
    if threads != current:
        torch.set_num_threads(threads)
    kept = " (set lower before the run)" if current < usable else ""
    return f"[threads] {threads} CPU threads{kept}: {source}"
