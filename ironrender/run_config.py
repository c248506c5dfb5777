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
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ironrender.budget import (
    MAX_EXPORT_RESOLUTION,
    MAX_PROPOSAL_RESOLUTION,
    BudgetConfig,
    CaptureSize,
    capture_budget,
    scaled_count,
)
from ironrender.config import (
    check_choices,
    from_dict,
    leaf_values,
    merge,
    named_keys,
    option,
    override_data,
)
from ironrender.errors import IronError
from ironrender.export.asset import ExportConfig, fast_export_config
from ironrender.run_folder import CONFIG_FILE
from ironrender.training.stage1_config import Stage1Config, stage1_preset
from ironrender.training.stage2_config import STAGE2_PRESETS, Stage2Config
from ironrender.training.time_budget import scale_stage1_schedule, scale_stage2_schedule


@dataclass
class RunConfig:
    """Everything a run needs; ``iron run --set stage1.train.steps=500`` edits any field."""

    preset: Literal["fast", "paper"] = option(
        "fast", "the preset the run started from (README, Presets)"
    )
    stage1: Stage1Config = option(
        factory=Stage1Config, help="stage 1: NeuS volume rendering of an SDF and a radiance net"
    )
    stage2: Stage2Config = option(
        factory=Stage2Config, help="stage 2: edge-aware surface rendering with a GGX BRDF"
    )
    export: ExportConfig = option(
        factory=fast_export_config, help="mesh, UVs, material textures, GLB, Mitsuba scene"
    )
    budget: BudgetConfig = option(
        factory=BudgetConfig, help="how step counts and resolutions are chosen"
    )

    def __post_init__(self) -> None:
        check_choices(self)


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
    on_saved: bool = False  # iron fit --resume: the saved RUN/config.json, the options on top

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
        return self.steps(capture)[-1].config

    def steps(self, capture: CaptureSize | None = None) -> list[ResolveStep]:
        """:func:`resolve_steps` of this request (``iron config`` shows where values came from)."""
        return resolve_steps(
            self.preset, self.config_file, self.overrides, self.edges, capture, self.minutes
        )

    def for_run(self, run_dir: str | Path, capture: CaptureSize | None) -> RunConfig:
        """The configuration a run was started with when the request asks for nothing else
        (a bare ``iron run DATA RUN`` resumes a run started with ``--set``); explicit options
        resolve afresh (and must match to resume)."""
        saved = Path(run_dir) / CONFIG_FILE
        if saved.is_file() and (self.on_saved or not self.explicit):
            config = from_dict(RunConfig, json.loads(saved.read_text()), str(saved))
            return self._on_top(config) if self.on_saved else config
        return self.resolve(capture)

    def _on_top(self, config: RunConfig) -> RunConfig:
        """``config`` with this request's file, overrides, minutes and edges applied (``iron
        fit --resume --set stage1.train.steps=3000`` trains a finished stage longer)."""
        file_data = _read_config_file(self.config_file)
        if file_data is not None:
            config = merge(config, file_data, str(self.config_file))
        for item in self.overrides:
            config = merge(config, override_data(item))
        if self.minutes is not None:
            config = merge(config, {"budget": {"minutes": self.minutes}}, "--minutes")
        if not self.edges:
            config = dataclasses.replace(
                config, stage2=dataclasses.replace(config.stage2, edges=False)
            )
        return config


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
    return resolve_steps(preset, config_file, overrides, edges, capture, minutes)[-1].config


@dataclass(frozen=True)
class ResolveStep:
    """One step of :func:`resolve_steps`: its name (the source ``iron config`` prints), the
    configuration after it, and the dotted keys it sets; None for the capture rule, which
    names no keys: it owns the values it changed."""

    source: str
    config: RunConfig
    keys: tuple[str, ...] | None = None


def resolve_steps(
    preset: str = "fast",
    config_file: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    edges: bool = True,
    capture: CaptureSize | None = None,
    minutes: float | None = None,
) -> list[ResolveStep]:
    """:func:`resolve_config` one step at a time, each later step winning over the earlier
    ones: ``preset``, ``capture rule``, ``--config``, ``--set``, ``--minutes``, ``--no-edges``
    (those that apply). The last step's configuration is the resolved one."""
    file_data = _read_config_file(config_file)

    def finish(config: RunConfig) -> list[ResolveStep]:
        steps = []
        if file_data is not None:
            config = merge(config, file_data, str(config_file))
            steps.append(ResolveStep("--config", config, tuple(named_keys(RunConfig, file_data))))
        if overrides:
            keys: list[str] = []
            for item in overrides:
                data = override_data(item)
                config = merge(config, data)
                keys += named_keys(RunConfig, data)
            steps.append(ResolveStep("--set", config, tuple(keys)))
        if minutes is not None:
            config = merge(config, {"budget": {"minutes": minutes}}, "--minutes")
            steps.append(ResolveStep("--minutes", config, ("budget.minutes",)))
        if not edges:
            stage2 = dataclasses.replace(config.stage2, edges=False)
            config = dataclasses.replace(config, stage2=stage2)
            steps.append(ResolveStep("--no-edges", config, ("stage2.edges",)))
        return steps

    start = ResolveStep("preset", run_preset(preset))
    steps = [start, *finish(start.config)]
    before = [start]
    if capture is not None and steps[-1].config.budget.rule == "capture":
        # The rule scales the preset's counts; the file and the overrides then win over it.
        base = dataclasses.replace(start.config, budget=steps[-1].config.budget)
        before.append(ResolveStep("capture rule", scale_to_capture(base, capture)))
    if capture is not None and capture.remedies and preset != "paper":
        # What the dataset says about its images (DATA/capture.json); IRON's preset stays IRON.
        config = before[-1].config
        for remedy in capture.remedies:
            config = merge(config, override_data(f"{remedy.key}={json.dumps(remedy.value)}"))
        keys = tuple(remedy.key for remedy in capture.remedies)
        before.append(ResolveStep("capture file", config, keys))
    if len(before) > 1:
        steps = [*before, *finish(before[-1].config)]
    return steps


def remedy_lines(config: RunConfig, capture: CaptureSize | None) -> list[str]:
    """One log line per capture-file default the run's configuration holds, with its reason
    (a default a ``--set`` changed is not said)."""
    if capture is None:
        return []
    values = leaf_values(config)
    return [
        f"[capture] {r.key}={json.dumps(r.value)}: {r.reason}"
        for r in capture.remedies
        if values.get(r.key) == r.value
    ]


def config_sources(steps: list[ResolveStep]) -> dict[str, str]:
    """Dotted key -> the source of its value: the last step that set it, else the first.

    A step that names keys claims them even where the value stays (``--set`` to the preset's
    own value still says ``--set``); the capture rule claims the values it changed."""
    values = leaf_values(steps[0].config)
    sources = dict.fromkeys(values, steps[0].source)
    for step in steps[1:]:
        after = leaf_values(step.config)
        changed = step.keys
        if changed is None:
            changed = tuple(key for key, value in after.items() if value != values[key])
        sources.update(dict.fromkeys(changed, step.source))
        values = after
    return sources


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
