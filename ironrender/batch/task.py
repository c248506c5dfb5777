"""One object's work, as a Ray worker runs it: ``iron import`` when needed, then ``iron run``.

:func:`run_object` is plain Python (the driver wraps it in ``ray.remote``), so it runs the same in
a test without Ray. It calls :func:`~ironrender.pipeline.run_pipeline` exactly as ``iron run``
does, into ``OUT/<object>/``, so the folder holds what ``iron run`` writes (plus ``batch.log``,
the object's console output, and ``batch.json``, its :class:`ObjectResult`), and resuming,
locking and error messages are ``iron run``'s own:

* threads: torch and OpenMP get the CPUs Ray gave the task and no more, so objects that share
  a machine do not oversubscribe its cores;
* device: the pipeline's own choice, CUDA when the task was given a GPU (Ray then shows it one),
  else the CPU; one code path either way;
* errors: an :class:`~ironrender.errors.IronError` (a broken capture) or any other exception ends
  as a failed result with a one-line message; the task never raises, so the batch goes on. Only
  the death of the worker process itself reaches Ray, which retries the task; the retry resumes
  from the last checkpoint, as ``iron run`` does after a kill.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import shlex
import socket
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ironrender.batch.objects import PHOTOS, UNKNOWN, BatchObject, unknown_kind_error
from ironrender.data.capture import ImportConfig
from ironrender.errors import IronError
from ironrender.run_config import ConfigRequest
from ironrender.run_folder import (
    EVAL_DIR,
    METRICS_FILE,
    TRAINING_STAGES,
    read_progress,
    stage_checkpoint,
)
from ironrender.storage import atomic_write_text

LOG_FILE = "batch.log"
RESULT_FILE = "batch.json"
FINISHED = "finished"
FAILED = "failed"
DONE_EARLIER = "done earlier"  # finished by an earlier batch, skipped by this one

#: Test hook, read only when set: ``OBJECT:MARKER`` makes the task of ``OBJECT`` kill its own
#: worker process (``os._exit``) as soon as a stage-2 checkpoint exists, once: the marker file
#: records that it did. Lets the tests check that Ray retries a task whose worker died and that
#: the retry resumes from the checkpoint. The driver forwards it to the workers.
KILL_HOOK_ENV = "IRON_BATCH_TEST_KILL_WORKER"


@dataclass(frozen=True)
class ObjectJob:
    """Everything one task needs, sent to the worker (picklable)."""

    obj: BatchObject
    out: Path
    request: ConfigRequest
    steps: tuple[str, ...]
    device: str | None = None
    downscale: int = 1
    import_config: ImportConfig | None = None  # None: iron import's defaults
    threads: int = 1
    command: str = "iron batch"


@dataclass
class ObjectResult:
    """How one object went, one row of ``summary.csv``."""

    name: str
    status: str
    seconds: float = 0.0
    peak_memory_mb: float = 0.0  # the worker's peak resident memory
    peak_gpu_memory_mb: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    host: str = ""
    node_id: str = ""
    device: str = ""
    threads: int = 0
    attempt: int = 1
    resumed_from: list[str] = field(default_factory=list)  # what an earlier attempt left

    @property
    def ok(self) -> bool:
        return self.status in (FINISHED, DONE_EARLIER)


def run_object(job: ObjectJob, node_id: str = "", attempt: int = 1) -> ObjectResult:
    """Import (photos only), train, export and evaluate one object (module docstring)."""
    started = time.perf_counter()
    run_dir = job.obj.run_dir(job.out)
    result = ObjectResult(job.obj.name, FAILED, host=socket.gethostname(), node_id=node_id)
    result.attempt = attempt
    try:
        result.threads = _limit_threads(job.threads)
        run_dir.mkdir(parents=True, exist_ok=True)
        result.resumed_from = _left_by_earlier_attempts(run_dir)
        with _console_to(run_dir / LOG_FILE):
            found = ", ".join(result.resumed_from) or "nothing"
            print(f"\n[batch] {job.obj.name} on {result.host}; found {found}", flush=True)
            _arm_kill_hook(job.obj.name, run_dir)
            summary = _run_pipeline(job, result)
        result.status, result.metrics = FINISHED, dict(summary.metrics)
    except IronError as exc:
        result.error = _one_line(str(exc))
    except Exception as exc:  # a bug, not the capture: the traceback goes to the object's log
        result.error = _one_line(f"{type(exc).__name__}: {exc} (traceback in {LOG_FILE})")
        _append(run_dir / LOG_FILE, traceback.format_exc())
    result.seconds = time.perf_counter() - started
    result.peak_memory_mb, result.peak_gpu_memory_mb = _peak_memory_mb()
    write_result(run_dir, result)
    return result


def write_result(run_dir: Path, result: ObjectResult) -> None:
    """``OUT/<object>/batch.json``: the object's row, read back when a later batch skips it."""
    if run_dir.is_dir():
        atomic_write_text(run_dir / RESULT_FILE, json.dumps(asdict(result), indent=2) + "\n")


def _run_pipeline(job: ObjectJob, result: ObjectResult):
    from ironrender.pipeline import (
        ImportStep,
        dataset_steps_for,
        default_device,
        format_summary,
        run_pipeline,
    )

    obj = job.obj
    if obj.kind == UNKNOWN:
        raise IronError(unknown_kind_error(obj))
    dataset_steps = dataset_steps_for(job.downscale)
    if obj.kind == PHOTOS:
        config = job.import_config or ImportConfig()
        if config.num_threads <= 0:  # "all cores": the task's share of them
            config = dataclasses.replace(config, num_threads=result.threads)
        dataset_steps = (ImportStep(obj.capture, config), *dataset_steps)
    device = job.device or str(default_device())
    result.device = device
    sys.argv = ["iron", *shlex.split(job.command)[1:], f"[object {obj.name}]"]  # for the lock
    summary = run_pipeline(
        obj.data_dir(job.out), obj.run_dir(job.out), job.request, device, job.steps, dataset_steps
    )
    print(format_summary(summary), flush=True)
    return summary


def _limit_threads(threads: int) -> int:
    """Give torch ``threads`` threads; OpenMP reads ``OMP_NUM_THREADS``, which the driver sets
    for the worker process. Mitsuba (evaluation's relighting, a few seconds) keeps its own pool:
    Dr.Jit 1.5 hangs in rendering after ``drjit.set_thread_count(1)`` (seen here)."""
    import torch

    threads = max(1, int(threads))
    torch.set_num_threads(threads)
    return threads


def _left_by_earlier_attempts(run_dir: Path) -> list[str]:
    """The finished steps and the training checkpoints found when this attempt starts."""
    found = [f"{name} done" for name in read_progress(run_dir).get("done", {})]
    for stage in TRAINING_STAGES:
        if f"{stage} done" not in found and stage_checkpoint(run_dir, stage).is_file():
            found.append(f"{stage} checkpoint")
    return found


@contextmanager
def _console_to(log: Path):
    """Send this process's stdout and stderr, Python's and C libraries' alike, to ``log``
    (appended: every attempt's output stays), and restore them afterwards."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    target = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(target, 1)
        os.dup2(target, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, target):
            os.close(fd)


def _arm_kill_hook(name: str, run_dir: Path) -> None:
    """The test hook :data:`KILL_HOOK_ENV` (does nothing unless it is set for this object)."""
    value = os.environ.get(KILL_HOOK_ENV, "")
    target, _, marker = value.partition(":")
    if target != name or not marker or Path(marker).exists():
        return
    checkpoint = stage_checkpoint(run_dir, "stage2")

    def kill_when_checkpointed() -> None:
        while not checkpoint.exists():
            time.sleep(0.01)
        Path(marker).write_text(f"killed worker {os.getpid()}\n")
        os._exit(1)

    threading.Thread(target=kill_when_checkpointed, daemon=True).start()


def _peak_memory_mb() -> tuple[float, float]:
    """The worker's peak resident memory (each task has a fresh worker process: the peak is
    this object's) and, on CUDA, the peak of allocated GPU memory, in MiB."""
    resident = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    import torch

    gpu = 0.0
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        gpu = torch.cuda.max_memory_allocated() / 2**20
    return resident, gpu


def read_result(run_dir: Path) -> ObjectResult | None:
    """``OUT/<object>/batch.json`` as an :class:`ObjectResult`, with the metrics of
    ``eval/metrics.json`` (None when there is no such record)."""
    path = run_dir / RESULT_FILE
    try:
        record = json.loads(path.read_text())
        result = ObjectResult(**record)
    except (OSError, ValueError, TypeError):
        return None
    metrics = run_dir / EVAL_DIR / METRICS_FILE
    if metrics.is_file():
        result.metrics = json.loads(metrics.read_text()).get("mean", {})
    return result


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _append(path: Path, text: str) -> None:
    with open(path, "a") as handle:
        handle.write(text)
