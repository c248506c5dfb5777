"""The run's CPU thread count: affinity and cgroup quotas (ironrender/threads.py)."""

from __future__ import annotations

import os

import torch

from ironrender import threads


def _cgroup(tmp_path, v2=None, v1=None):
    tmp_path.mkdir(parents=True)
    if v2 is not None:
        (tmp_path / "cpu.max").write_text(v2)
    if v1 is not None:
        (tmp_path / "cpu").mkdir()
        (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(str(v1[0]))
        (tmp_path / "cpu" / "cpu.cfs_period_us").write_text(str(v1[1]))
    return tmp_path


def test_cgroup_quotas_v2_v1_and_none(tmp_path):
    assert threads.cgroup_cpu_quota(_cgroup(tmp_path / "a", v2="150000 100000\n")) == 1.5
    assert threads.cgroup_cpu_quota(_cgroup(tmp_path / "b", v2="max 100000\n")) is None
    assert threads.cgroup_cpu_quota(_cgroup(tmp_path / "c", v1=(300000, 100000))) == 3.0
    assert threads.cgroup_cpu_quota(_cgroup(tmp_path / "d", v1=(-1, 100000))) is None
    assert threads.cgroup_cpu_quota(tmp_path / "missing") is None


def test_usable_cpus_is_the_smaller_of_affinity_and_quota(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    count, source = threads.usable_cpus(_cgroup(tmp_path / "a", v2="50000 100000"))
    assert count == 1 and "quota 0.5" in source  # half a CPU still needs one thread
    count, source = threads.usable_cpus(_cgroup(tmp_path / "b", v2="max 100000"))
    assert count == affinity and "no cgroup quota" in source
    big = f"{(affinity + 4) * 100000} 100000"
    assert threads.usable_cpus(_cgroup(tmp_path / "c", v2=big))[0] == affinity


def test_configure_threads_never_raises_a_lower_count():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        line = threads.configure_threads()
        assert torch.get_num_threads() == 1 and line.startswith("[threads] 1 CPU threads")
        torch.set_num_threads(threads.usable_cpus()[0] + 3)
        threads.configure_threads()
        assert torch.get_num_threads() == threads.usable_cpus()[0]
    finally:
        torch.set_num_threads(before)
