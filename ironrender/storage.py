"""Atomic file writes: a kill at any moment leaves either the old file or the new one.

A file is written to a temporary name in the same folder, flushed, fsynced, then renamed over the
target (``os.replace`` is atomic on POSIX and Windows). Everything a run folder holds that a later
step reads (configuration, progress, checkpoints, metrics) is written this way. This module sits
below every package so that any of them can use it.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from ironrender.errors import IronError

#: Write failures that mean "the disk (or the user's quota) is full", not a bug.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(handle)`` on a temporary file beside ``path``, then rename it over ``path``.

    A full disk raises :class:`IronError` saying so, with ``path``'s previous content intact and
    the temporary file removed (``torch.save`` reports a full disk as a ``RuntimeError`` that
    wraps the ``OSError``; both are recognised).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600 files; give the result the permissions of a normal new file.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if _disk_full(exc):
            raise IronError(
                f"{path}: no space left on the device ({_free_space(path.parent)} free); the"
                " previous version of the file is intact: free some space and run the same"
                " command again to resume"
            ) from exc
        raise


def _disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:
        return True
    cause = exc.__cause__ or exc.__context__
    text = str(exc).lower()
    return (cause is not None and _disk_full(cause)) or "no space left on device" in text


def _free_space(folder: Path) -> str:
    try:
        return f"{shutil.disk_usage(folder).free / 1e6:.0f} MB"
    except OSError:
        return "unknown space"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text.encode()))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda handle: handle.write(data))
