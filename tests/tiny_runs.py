"""Tiny whole runs for tests that drive the real pipeline: a capture rendered in seconds and
``--set`` overrides that make ``iron run`` take seconds, with frequent checkpoints (so a kill
always has one to resume from). Shared by the reliability and batch tests."""

from __future__ import annotations

from pathlib import Path

from ironrender.data.synth import SynthConfig, synthesize

#: A whole run in seconds: every step, every checkpoint kind, frequent checkpoints.
TINY = [
    "stage1.train.steps=40",
    "stage1.train.warmup_steps=5",
    "stage1.train.anneal_end=15",
    "stage1.train.grid_ramp_steps=15",
    "stage1.log.mesh_resolution=48",
    "stage1.log.checkpoint_every=10",
    "stage2.steps=9",
    "stage2.patch_size=24",
    "stage2.checkpoint_every=3",
    "export.resolution=48",
    "export.max_faces=2000",
    "export.texture_size=128",
]


def set_args(overrides: list[str] = TINY) -> list[str]:
    """``--set A --set B ...`` for a command line."""
    return [arg for item in overrides for arg in ("--set", item)]


def tiny_capture(folder: Path) -> Path:
    """A synthetic capture of 8 + 2 views at 32 x 32 pixels (about 2 s to render)."""
    config = SynthConfig(views=8, test_views=2, resolution=32, spp=4, relight_spp=4)
    return synthesize(config, folder, progress=False)
