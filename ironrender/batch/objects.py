"""What a batch is made of: the objects under ``CAPTURES`` and what each one's folder holds.

Every sub-folder of ``CAPTURES`` is one object, named by its folder: either a dataset in our
format (``train/``, ``test/``; ``iron run`` reads it as it is) or a folder of photographs (``iron
import`` turns it into ``OUT/<object>/data`` first). Hidden folders and files directly in
``CAPTURES`` are not objects. An object is *finished* when its run folder records every requested
step with the configuration asked for now, so running the batch again skips it; anything less
(half-trained, failed, another configuration) goes to a task, which resumes or explains.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ironrender.budget import capture_size
from ironrender.config import from_dict
from ironrender.errors import IronError
from ironrender.run_config import ConfigRequest, RunConfig
from ironrender.run_folder import CONFIG_FILE, read_progress

#: Where the dataset imported from an object's photographs goes, inside its run folder.
IMPORTED_DATA_DIR = "data"
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
DATASET = "dataset"
PHOTOS = "photos"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class BatchObject:
    """One object of a batch: its name (the folder's), its capture folder and what that holds
    (:data:`DATASET`, :data:`PHOTOS` or :data:`UNKNOWN`, which fails with a clear message)."""

    name: str
    capture: Path
    kind: str

    def run_dir(self, out: Path) -> Path:
        return out / self.name

    def data_dir(self, out: Path) -> Path:
        """The dataset ``iron run`` reads: the capture itself, or its import."""
        return self.run_dir(out) / IMPORTED_DATA_DIR if self.kind == PHOTOS else self.capture


def find_objects(captures: str | Path, out: str | Path) -> list[BatchObject]:
    """The objects under ``captures``, sorted by name (module docstring). ``out`` is left out
    when it lies inside ``captures``."""
    captures, out = Path(captures).absolute(), Path(out).absolute()  # workers start elsewhere
    if not captures.is_dir():
        raise IronError(f"{captures}: not found (CAPTURES must be a folder of object folders)")
    if captures.resolve() == out.resolve():
        raise IronError("CAPTURES and OUT must be different folders")
    folders = [
        path
        for path in sorted(captures.iterdir())
        if path.is_dir() and not path.name.startswith(".") and path.resolve() != out.resolve()
    ]
    if not folders:
        raise IronError(
            f"{captures}: no object folders inside; put each object's photos (or dataset) in"
            " a sub-folder of its own"
        )
    return [BatchObject(path.name, path, _kind(path)) for path in folders]


def _kind(folder: Path) -> str:
    if (folder / "train").is_dir():
        return DATASET
    if any(p.suffix.lower() in PHOTO_SUFFIXES for p in folder.iterdir() if p.is_file()):
        return PHOTOS
    return UNKNOWN


def unknown_kind_error(obj: BatchObject) -> str:
    return (
        f"{obj.capture}: neither a dataset (train/, test/) nor a folder of photos"
        f" ({', '.join(PHOTO_SUFFIXES)})"
    )


def finished_earlier(run_dir: Path, request: ConfigRequest, steps: tuple[str, ...]) -> bool:
    """Does ``run_dir`` already hold every step of ``steps``, made with the configuration that
    ``request`` asks for? (A bare request accepts the saved configuration, as ``iron run``
    does when resuming.) Anything unreadable counts as not finished: the task will say why."""
    progress = read_progress(run_dir)
    if not set(steps) <= set(progress.get("done", {})):
        return False
    if not request.explicit:
        return True
    try:
        saved_path = run_dir / CONFIG_FILE
        saved = from_dict(RunConfig, json.loads(saved_path.read_text()), str(saved_path))
        wanted = request.for_run(run_dir, capture_size(Path(progress["data"])))
    except (IronError, OSError, ValueError, KeyError, TypeError):
        return False
    return saved == wanted
