"""What a run folder holds, by name, and the record of which steps finished.

::

    RUN/
      config.json      the resolved configuration (RunConfig) the run was started with
      progress.json    {"data": DATA, "done": {step: seconds}}: the dataset and finished steps
      stage1/          checkpoint.pt, previews/, mesh.ply, plan.json (--minutes), tb/
      stage2/          checkpoint.pt, previews/, final_preview.png, plan.json, tb/
      export/          the asset (ironrender.export)
      eval/            metrics.json, images (ironrender.evaluation); report.html beside them
      .lock            who is writing the run now (pid, command, start time): one writer only

It sits below training, export, evaluation and the pipeline, which all read these names, so that
none of them has to import another to find a file.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ironrender.errors import IronError
from ironrender.storage import atomic_write_text

CONFIG_FILE = "config.json"
PROGRESS_FILE = "progress.json"
STAGE1_DIR = "stage1"
STAGE2_DIR = "stage2"
TRAINING_STAGES = (STAGE1_DIR, STAGE2_DIR)
CHECKPOINT_FILE = "checkpoint.pt"
PREVIEW_DIR = "previews"
FINAL_PREVIEW = "final_preview.png"
STAGE1_MESH = "mesh.ply"
PLAN_FILE = "plan.json"
TENSORBOARD_DIR = "tb"
EXPORT_DIR = "export"
EVAL_DIR = "eval"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.html"
LOCK_FILE = ".lock"


def stage_checkpoint(run_dir: str | Path, stage: str) -> Path:
    """``RUN/<stage>/checkpoint.pt`` (``stage``: ``stage1`` or ``stage2``)."""
    return Path(run_dir) / stage / CHECKPOINT_FILE


def read_progress(run_dir: Path) -> dict:
    """``RUN/progress.json``, or the record of a run that has not started."""
    path = Path(run_dir) / PROGRESS_FILE
    return json.loads(path.read_text()) if path.is_file() else {"done": {}, "data": None}


def write_progress(run_dir: Path, progress: dict) -> None:
    atomic_write_text(Path(run_dir) / PROGRESS_FILE, json.dumps(progress, indent=2) + "\n")


def resolve_data_dir(run_dir: str | Path, data_dir: str | Path | None) -> Path:
    """``data_dir`` if given, else the dataset recorded in ``RUN/progress.json`` (``iron run``)."""
    if data_dir is not None:
        path = Path(data_dir)
    else:
        path = None
        for name, key in ((PROGRESS_FILE, "data"), (CONFIG_FILE, "data")):
            record = Path(run_dir) / name
            if record.is_file():
                value = json.loads(record.read_text()).get(key)
                if value:
                    path = Path(value)
                    break
        if path is None:
            raise IronError(f"{run_dir} does not record its dataset; pass --data DATA")
    if not (path / "test").is_dir():
        raise IronError(f"{path}: no test/ split to evaluate on")
    return path


@contextmanager
def run_lock(run_dir: str | Path, command: str) -> Iterator[None]:
    """Hold ``RUN/.lock`` while writing the run: one writer per run folder.

    The lock is an advisory ``flock`` on the file, which the kernel releases when its process
    ends however it ends (SIGKILL, a crash, a power cut). A second writer is refused with the
    first one's process id and command; a file left by a process that no longer holds the lock
    (killed) is taken over, and the message says so. Where ``fcntl`` does not exist (Windows)
    runs are not locked.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        yield
        return
    path = Path(run_dir) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe_holder(os.pread(fd, 4096, 0))
            raise IronError(
                f"{run_dir} is being written by {holder}; wait for it to finish, stop it, or"
                " choose another run folder"
            ) from None
        previous = os.pread(fd, 4096, 0)
        if previous.strip():
            print(f"note: taking over {path} from {_describe_holder(previous)}, which has ended")
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": command,
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # a clean exit leaves no holder behind
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _describe_holder(raw: bytes) -> str:
    try:
        record = json.loads(raw.decode())
        return (
            f"process {record['pid']} on {record['host']} (`{record['command']}`, started"
            f" {record['started']})"
        )
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return "another process"


def command_line() -> str:
    """This process's command line, for the lock file (``iron run DATA RUN ...``)."""
    return " ".join(["iron", *sys.argv[1:]])
