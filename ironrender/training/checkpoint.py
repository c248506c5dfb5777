"""Training checkpoints, written atomically (:mod:`ironrender.storage`): a kill at any moment
leaves either the old checkpoint or the new one.

Loading is safe: ``torch.load(weights_only=True)`` unpickles only tensors and plain containers
(dicts, lists, tuples, numbers, strings), so a checkpoint from someone else cannot run code.
Ours need nothing more; a file that does (or is not a checkpoint at all) is refused with one
line.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from ironrender.errors import IronError
from ironrender.storage import atomic_write


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save`` through an atomic rename."""
    atomic_write(path, lambda handle: torch.save(state, handle))


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """A checkpoint's dictionary, tensors on ``device``; :class:`IronError` if it cannot be
    loaded safely (it holds objects other than tensors and plain data) or is damaged."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise IronError(f"{path}: checkpoint not found") from None
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise IronError(
            f"{path}: refused: not a checkpoint ironrender can load safely ({first[:200]});"
            " it may come from another program or have been tampered with"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise IronError(f"{path}: damaged or not a checkpoint ({first[:200]})") from None
    if not isinstance(state, dict):
        raise IronError(f"{path}: not an ironrender checkpoint (a {type(state).__name__})")
    return state
