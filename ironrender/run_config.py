"""A run's whole configuration (:class:`RunConfig`) and how it is resolved.

Order: the preset, then the capture rule (:mod:`ironrender.budget`: counts that follow from
the capture, when the preset's ``budget.rule`` is ``capture`` and the dataset is known), then
a JSON file, then ``section.field=value`` overrides; so a user's ``--set stage1.train.steps=500``
always wins over the rule. :class:`ConfigRequest` is that recipe, resolved when the dataset
exists (``iron demo`` and ``iron import`` make it first); the resolved configuration is saved
as ``RUN/config.json``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ironrender.budget import (
    MAX_EXPORT_RESOLUTION,
    MAX_PROPOSAL_RESOLUTION,
    BudgetConfig,
    CaptureSize,
    capture_budget,
    scaled_count,
)
from ironrender.config import apply_overrides, from_dict, merge
from ironrender.errors import IronError
from ironrender.export.asset import ExportConfig, fast_export_config
from ironrender.run_folder import CONFIG_FILE
from ironrender.training.stage1_config import Stage1Config, stage1_preset
from ironrender.training.stage2_config import STAGE2_PRESETS, Stage2Config
from ironrender.training.time_budget import scale_stage1_schedule, scale_stage2_schedule


@dataclass
class RunConfig:
    """Everything a run needs; ``iron run --set stage1.train.steps=500`` edits any field."""

    preset: str = "fast"
    stage1: Stage1Config = field(default_factory=Stage1Config)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    export: ExportConfig = field(default_factory=fast_export_config)
    budget: BudgetConfig = field(default_factory=BudgetConfig)


def run_preset(name: str) -> RunConfig:
    if name not in STAGE2_PRESETS:
        raise IronError(f"unknown preset {name!r}; choose one of {sorted(STAGE2_PRESETS)}")
    export = fast_export_config() if name == "fast" else ExportConfig()
    # The paper preset is IRON's schedule, whatever the capture.
    budget = BudgetConfig(rule="capture" if name == "fast" else "preset")
    return RunConfig(name, stage1_preset(name), STAGE2_PRESETS[name](), export, budget)


def scale_to_capture(config: RunConfig, capture: CaptureSize) -> RunConfig:
    """``config`` with the counts :func:`ironrender.budget.capture_budget` derives for
    ``capture`` (the table in :mod:`ironrender.budget`)."""
    stage1, stage2, export = config.stage1, config.stage2, config.export
    rule = capture_budget(
        capture, config.budget, stage1.sdf.grid.max_resolution, export.texture_size
    )
    s = rule.scale
    sdf = dataclasses.replace(
        stage1.sdf, grid=dataclasses.replace(stage1.sdf.grid, max_resolution=rule.grid_resolution)
    )
    cache = stage1.train.proposal_cache_resolution
    if cache > 0:
        cache = max(cache, min(scaled_count(cache, s), MAX_PROPOSAL_RESOLUTION))
    stage1 = scale_stage1_schedule(dataclasses.replace(stage1, sdf=sdf), s)
    stage1 = dataclasses.replace(
        stage1, train=dataclasses.replace(stage1.train, proposal_cache_resolution=cache)
    )
    materials = stage2.materials
    if materials.use_grid:
        grid = dataclasses.replace(
            materials.grid, max_resolution=scaled_count(materials.grid.max_resolution, s)
        )
        materials = dataclasses.replace(materials, grid=grid)
    # A finer grid's features move the surface in smaller cells: at the preset's rate the
    # photometric loss roughened a 192^3 surface (module docstring of ironrender.budget).
    stage2 = dataclasses.replace(stage2, materials=materials, lr_sdf=stage2.lr_sdf / s**3)
    stage2 = scale_stage2_schedule(stage2, math.sqrt(s))
    resolution = max(export.resolution, min(2 * rule.grid_resolution, MAX_EXPORT_RESOLUTION))
    export = dataclasses.replace(
        export,
        resolution=resolution,
        max_faces=scaled_count(export.max_faces, s * s),
        texture_size=rule.texture_size,
    )
    budget = dataclasses.replace(config.budget, footprint=round(rule.footprint, 1), scale=s)
    return dataclasses.replace(config, stage1=stage1, stage2=stage2, export=export, budget=budget)


@dataclass(frozen=True)
class ConfigRequest:
    """What the command line asked for, resolved once the dataset is known (module docstring)."""

    preset: str = "fast"
    config_file: str | Path | None = None
    overrides: tuple[str, ...] = ()
    edges: bool = True
    minutes: float | None = None

    @property
    def explicit(self) -> bool:
        """Does it ask for anything beyond the defaults?"""
        return bool(
            self.config_file is not None
            or self.overrides
            or not self.edges
            or self.preset != "fast"
            or self.minutes is not None
        )

    def resolve(self, capture: CaptureSize | None = None) -> RunConfig:
        return resolve_config(
            self.preset, self.config_file, self.overrides, self.edges, capture, self.minutes
        )

    def for_run(self, run_dir: str | Path, capture: CaptureSize | None) -> RunConfig:
        """The configuration a run was started with when the request asks for nothing else
        (a bare ``iron run DATA RUN`` resumes a run started with ``--set``); explicit options
        resolve afresh (and must match to resume)."""
        saved = Path(run_dir) / CONFIG_FILE
        if saved.is_file() and not self.explicit:
            return from_dict(RunConfig, json.loads(saved.read_text()), str(saved))
        return self.resolve(capture)


def resolve_config(
    preset: str = "fast",
    config_file: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    edges: bool = True,
    capture: CaptureSize | None = None,
    minutes: float | None = None,
) -> RunConfig:
    """Preset, the capture rule (with ``capture``), a JSON file (partial or whole), then
    ``section.field=value`` overrides; ``minutes`` sets ``budget.minutes``."""
    file_data = _read_config_file(config_file)

    def finish(config: RunConfig) -> RunConfig:
        if file_data is not None:
            config = merge(config, file_data, str(config_file))
        config = apply_overrides(config, list(overrides))
        if minutes is not None:
            config = merge(config, {"budget": {"minutes": minutes}}, "--minutes")
        if not edges:
            stage2 = dataclasses.replace(config.stage2, edges=False)
            config = dataclasses.replace(config, stage2=stage2)
        return config

    config = finish(run_preset(preset))
    if capture is not None and config.budget.rule == "capture":
        # The rule scales the preset's counts; the file and the overrides then win over it.
        base = run_preset(preset)
        base = dataclasses.replace(base, budget=config.budget)
        config = finish(scale_to_capture(base, capture))
    return config


def _read_config_file(config_file: str | Path | None) -> dict | None:
    if config_file is None:
        return None
    path = Path(config_file)
    if not path.is_file():
        raise IronError(f"{path}: config file not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise IronError(f"{path}: not valid JSON ({exc})") from exc
