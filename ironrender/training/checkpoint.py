"""Training checkpoints, written atomically (:mod:`ironrender.storage`): a kill at any moment
leaves either the old checkpoint or the new one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ironrender.storage import atomic_write


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save`` through an atomic rename."""
    atomic_write(path, lambda handle: torch.save(state, handle))


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    return torch.load(path, map_location=device, weights_only=False)
