"""Atomic writes: a failed write leaves the old file, and results get ordinary permissions."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from ironrender.storage import atomic_write, atomic_write_text
from ironrender.training.checkpoint import load_checkpoint, save_checkpoint


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "config.json"
    atomic_write_text(path, "old")

    def explode(_handle):
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(path, explode)
    assert path.read_text() == "old"
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_written_files_are_readable_like_normal_files(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "report.html", "<html>")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "report.html").stat().st_mode)
    assert mode == 0o644


def test_checkpoint_round_trip(tmp_path):
    state = {"step": 7, "weights": torch.arange(5.0)}
    save_checkpoint(tmp_path / "c.pt", state)
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert loaded["step"] == 7 and torch.equal(loaded["weights"], state["weights"])
