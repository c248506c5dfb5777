"""Trustworthy under abuse: checkpoints that cannot run code, a full disk, Ctrl-C and SIGTERM,
two writers on one run, captures too large for memory, and a storm of SIGKILLs.

Each test drives the real ``iron`` command in a subprocess where the behaviour is about a
process (signals, locks, exit codes), and the library where it is about a function.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from ironrender.errors import IronError
from ironrender.pipeline import dataset_steps_for, resolve_config, run_pipeline
from ironrender.run_folder import LOCK_FILE, run_lock
from ironrender.storage import atomic_write, atomic_write_text
from ironrender.training.checkpoint import load_checkpoint, save_checkpoint
from tests.tiny_runs import TINY, set_args, tiny_capture


def iron(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ironrender", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def run_args(data: Path, run: Path) -> list[str]:
    return ["run", str(data), str(run), *set_args(TINY)]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return tiny_capture(tmp_path_factory.mktemp("reliability") / "data")


# ----------------------------------------------------------------------------- safe loading
class _Payload:
    """Unpickling this runs ``os.system``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoint.pt"
    torch.save({"step": 1, "model": {}, "extra": _Payload(marker)}, path)
    with pytest.raises(IronError, match="refused: not a checkpoint ironrender can load safely"):
        load_checkpoint(path)
    assert not marker.exists()


def test_damaged_checkpoints_are_one_line_errors(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 3, "weights": torch.ones(1000)})
    assert load_checkpoint(path)["step"] == 3
    path.write_bytes(path.read_bytes()[:300])  # truncated
    with pytest.raises(IronError, match="damaged or not a checkpoint"):
        load_checkpoint(path)
    path.write_text("not a checkpoint at all")
    with pytest.raises(IronError, match="checkpoint"):
        load_checkpoint(path)


def test_iron_export_refuses_a_malicious_run_folder(tmp_path, tiny_data):
    """A shared run folder whose stage-2 checkpoint carries a payload: one line, exit 2, and
    the payload never runs."""
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    (run / "stage2").mkdir(parents=True)
    torch.save({"iteration": 1, "config": _Payload(marker)}, run / "stage2" / "checkpoint.pt")
    process = iron("export", str(run), "--data", str(tiny_data))
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
    assert "refused" in stderr and not marker.exists()


# ----------------------------------------------------------------------------- full disk
def test_a_full_disk_keeps_the_previous_checkpoint(tmp_path):
    """A real write failure: the file-size limit (RLIMIT_FSIZE) makes the write fail with
    EFBIG, as a full disk fails with ENOSPC, in a child process."""
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 1, "weights": torch.zeros(10)})
    script = textwrap.dedent(
        f"""
        import resource, signal, sys, torch
        from ironrender.errors import IronError
        from ironrender.training.checkpoint import save_checkpoint
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
        try:
            save_checkpoint({str(path)!r}, {{"step": 2, "weights": torch.zeros(1_000_000)}})
        except IronError as exc:
            print(exc)
            sys.exit(2)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert "no space left" in result.stdout and "previous version of the file is intact" in (
        result.stdout
    )
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]  # no temp file


def test_disk_full_errors_are_recognised_when_wrapped(tmp_path):
    """``torch.save`` reports a failed write as a RuntimeError around the OSError."""
    path = tmp_path / "metrics.json"
    atomic_write_text(path, "old")

    def wrapped(_handle):
        try:
            raise OSError(28, "No space left on device")
        except OSError as exc:
            raise RuntimeError("[enforce fail at inline_container.cc] write failed") from exc

    with pytest.raises(IronError, match="no space left"):
        atomic_write(path, wrapped)
    assert path.read_text() == "old"


# ----------------------------------------------------------------------------- signals
def _wait_for(path: Path, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_ctrl_c_stop_with_a_checkpoint_and_a_way_to_resume(tmp_path, tiny_data, signum):
    run = tmp_path / "run"
    args = ["fit", str(tiny_data), str(run), "--stage", "1"]
    args += ["--set", "stage1.train.steps=400", "--set", "stage1.log.checkpoint_every=1000"]
    process = iron(*args)
    _wait_for(run / "stage1" / "tb", process, timeout=120)  # training has started
    time.sleep(1.0)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr
    assert f"stopped by {signal.Signals(signum).name}" in stderr and "resume" in stderr
    # The checkpoint is the state when the signal came, not the last periodic one (none yet).
    step = load_checkpoint(run / "stage1" / "checkpoint.pt")["step"]
    assert 0 < step < 400
    assert not json.loads((run / LOCK_FILE).read_text() or "null")  # the lock is released


# ----------------------------------------------------------------------------- one writer
def test_a_second_writer_is_refused_with_the_first_ones_name(tmp_path, tiny_data):
    run = tmp_path / "run"
    with run_lock(run, "iron run DATA RUN (the first one)"):
        process = iron(*run_args(tiny_data, run))
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2, stderr
    assert len(stderr.strip().splitlines()) == 1
    assert f"process {os.getpid()}" in stderr and "(the first one)" in stderr
    assert not (run / "config.json").exists()  # the refused run wrote nothing


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path, capsys):
    run = tmp_path / "run"
    child = subprocess.Popen(
        [sys.executable, "-c", "import time, sys; from ironrender.run_folder import run_lock\n"
         f"with run_lock({str(run)!r}, 'iron fit (killed)'):\n"
         "    print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdout.readline().strip() == "locked"
    with pytest.raises(IronError, match=f"process {child.pid}"), run_lock(run, "second"):
        pass
    child.kill()
    child.wait()
    with run_lock(run, "third"):
        assert "third" in (run / LOCK_FILE).read_text()
    assert f"taking over {run / LOCK_FILE} from process {child.pid}" in capsys.readouterr().out


# ----------------------------------------------------------------------------- memory
def test_a_capture_too_large_for_memory_is_stopped_before_loading(tmp_path, tiny_data, monkeypatch):
    """Claim 30 kB free: the 8 training views at 32x32, 8-bit PNGs kept as bytes
    (8 x 32 x 32 x 3 B = 24.6 kB), exceed the 60 % the photographs may take; the message
    proposes --downscale 2, which fits (6.1 kB), and the run trains on the smaller copy."""
    from ironrender.data import memory

    assert memory.dataset_bytes(tiny_data) == 8 * 32 * 32 * 3
    monkeypatch.setattr(memory, "available_bytes", lambda device: 30_000)
    config = resolve_config("fast", None, TINY)
    with pytest.raises(IronError, match="add `--downscale 2`"):
        run_pipeline(tiny_data, tmp_path / "run", config, "cpu", steps=("stage1",))
    assert not (tmp_path / "run" / "stage1").exists()  # nothing was loaded or trained

    summary = run_pipeline(
        tiny_data, tmp_path / "run", config, "cpu", ("stage1",), dataset_steps_for(2)
    )
    assert "stage1" in summary.seconds
    small = tmp_path / "run" / "data_x2"
    progress = json.loads((tmp_path / "run" / "progress.json").read_text())
    assert progress["data"] == str(small.resolve())


def test_downscaled_copy_is_an_area_average_with_matching_cameras(tmp_path, tiny_data):
    from ironrender.data.dataset import load_split
    from ironrender.data.memory import downscale_dataset

    downscale_dataset(tiny_data, tmp_path / "small", 2)
    full = load_split(tiny_data, "train")
    small = load_split(tmp_path / "small", "train")
    assert small.images.shape == (8, 16, 16, 3)
    # Area averaging in linear radiance, then the 8-bit PNG's quantisation.
    blocks = full.images.reshape(8, 16, 2, 16, 2, 3).mean(dim=(2, 4))
    encoded = small.images.clamp(0, 1) ** (1 / 2.2)
    assert torch.allclose(encoded, blocks.clamp(0, 1) ** (1 / 2.2), atol=1.0 / 255)
    # A world point projects to the same place in units of the image size.
    point = torch.tensor([[0.1, -0.2, 0.05]])
    for i in range(8):
        uv_full = full.cameras[i].project(point)[0] / full.cameras.sizes[i]
        uv_small = small.cameras[i].project(point)[0] / small.cameras.sizes[i]
        torch.testing.assert_close(uv_full, uv_small, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- kill storm
def _final_metrics(run: Path) -> dict[str, float]:
    return json.loads((run / "eval" / "metrics.json").read_text())["mean"]


@pytest.mark.slow
def test_kill_storm_loses_nothing(tmp_path, tiny_data):
    """``iron run`` killed with SIGKILL at 10 random (seeded) moments and re-run each time ends
    with the metrics of an uninterrupted run, and every re-run could continue the folder."""
    started = time.monotonic()
    reference = iron(*run_args(tiny_data, tmp_path / "reference"))
    out, err = reference.communicate(timeout=600)
    assert reference.returncode == 0, err
    uninterrupted = time.monotonic() - started
    expected = _final_metrics(tmp_path / "reference")

    rng = random.Random(2026)
    kills, storms, spent = 0, 0, 0.0
    horizon = uninterrupted  # the length of a whole run; re-measured if the machine speeds up
    while kills < 10:
        storms += 1
        run = tmp_path / f"storm{storms}"
        fresh = True
        while True:
            attempt = time.monotonic()
            process = iron(*run_args(tiny_data, run))
            deadline = attempt + rng.uniform(0.5, 0.9 * horizon)
            while process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            if process.poll() is None and kills < 10:
                process.kill()  # SIGKILL: no handler, no cleanup
                process.communicate()
                kills += 1
                spent += time.monotonic() - attempt
                fresh = False
                continue
            _, err = process.communicate(timeout=600)
            spent += time.monotonic() - attempt
            assert process.returncode == 0, err  # the folder was always resumable
            if fresh:  # a whole run finished before its kill: runs are faster than measured
                horizon = time.monotonic() - attempt
            break
        got = _final_metrics(run)
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    lost = (spent - storms * uninterrupted) / kills
    print(
        f"\nkill storm: {kills} SIGKILLs over {storms} run(s), uninterrupted run"
        f" {uninterrupted:.1f} s, time lost per kill {lost:.1f} s (restart included)"
    )
