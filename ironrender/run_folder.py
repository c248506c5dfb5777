"""What a run folder holds, by name, and the record of which steps finished.

::

    RUN/
      config.json      the resolved configuration (RunConfig) the run was started with
      progress.json    {"data": DATA, "done": {step: seconds}}: the dataset and finished steps
      stage1/ stage2/  checkpoints, previews (ironrender.training)
      export/          the asset (ironrender.export)
      eval/            metrics.json, images (ironrender.evaluation); report.html beside them

It sits below training, export, evaluation and the pipeline, which all read these names, so that
none of them has to import another to find a file.
"""

from __future__ import annotations

import json
from pathlib import Path

from ironrender.errors import IronError
from ironrender.storage import atomic_write_text

CONFIG_FILE = "config.json"
PROGRESS_FILE = "progress.json"
EXPORT_DIR = "export"
EVAL_DIR = "eval"
REPORT_FILE = "report.html"


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
