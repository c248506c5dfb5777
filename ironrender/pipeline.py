"""The whole job, resumable: stage 1, stage 2, export, evaluation (``iron run`` and ``iron demo``).

A run folder records which steps finished in ``RUN/progress.json``; running the same command
again skips them and resumes a step that was killed half-way from its last checkpoint (training
checkpoints are written atomically). The resolved configuration is ``RUN/config.json``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ironrender.config import apply_overrides, from_dict, to_dict
from ironrender.errors import IronError
from ironrender.export.writers import ExportConfig
from ironrender.training.checkpoint import atomic_write_text
from ironrender.training.stage1 import Stage1Config, stage1_preset
from ironrender.training.stage2 import STAGE2_PRESETS, Stage2Config

STEPS = ("stage1", "stage2", "export", "eval")
PROGRESS_FILE = "progress.json"
SUMMARY_METRICS = (
    "psnr",
    "ssim",
    "chamfer_percent",
    "albedo_psnr",
    "roughness_error",
    "relight_psnr",
)
CONFIG_FILE = "config.json"


def fast_export_config() -> ExportConfig:
    """Quick on 2 CPU cores: xatlas time grows with faces, baking with texels. ``object=auto``:
    a support plane (table, cloth) found under the object is cut away, and the component kept
    is the largest one that does not run out of the unit sphere (export/select.py); an object
    without such clutter is exported exactly as ``largest`` would."""
    return ExportConfig(resolution=192, max_faces=20_000, texture_size=1024, object="auto")


@dataclass
class RunConfig:
    """Everything a run needs; ``iron run --set stage1.train.steps=500`` edits any field."""

    preset: str = "fast"
    stage1: Stage1Config = field(default_factory=Stage1Config)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    export: ExportConfig = field(default_factory=fast_export_config)


def run_preset(name: str) -> RunConfig:
    if name not in STAGE2_PRESETS:
        raise IronError(f"unknown preset {name!r}; choose one of {sorted(STAGE2_PRESETS)}")
    export = fast_export_config() if name == "fast" else ExportConfig()
    return RunConfig(name, stage1_preset(name), STAGE2_PRESETS[name](), export)


def resolve_config(
    preset: str = "fast",
    config_file: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    edges: bool = True,
) -> RunConfig:
    """Preset, then a JSON file (partial or whole), then ``section.field=value`` overrides."""
    config = run_preset(preset)
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise IronError(f"{path}: config file not found")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise IronError(f"{path}: not valid JSON ({exc})") from exc
        from ironrender.config import merge

        config = merge(config, data, str(path))
    config = apply_overrides(config, list(overrides))
    if not edges:
        config = dataclasses.replace(config, stage2=dataclasses.replace(config.stage2, edges=False))
    return config


def saved_or_resolved_config(
    run_dir: str | Path,
    preset: str = "fast",
    config_file: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    edges: bool = True,
) -> RunConfig:
    """The configuration a run was started with when no option asks for another one.

    So that re-running a bare ``iron run DATA RUN`` resumes a run that was started with
    ``--set`` options; explicit options still resolve afresh (and must match to resume).
    """
    saved = Path(run_dir) / CONFIG_FILE
    explicit = config_file is not None or overrides or not edges or preset != "fast"
    if saved.is_file() and not explicit:
        return from_dict(RunConfig, json.loads(saved.read_text()), str(saved))
    return resolve_config(preset, config_file, overrides, edges)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class RunSummary:
    run_dir: Path
    seconds: dict[str, float]
    metrics: dict[str, float]
    report: Path | None


def _read_progress(run_dir: Path) -> dict:
    path = run_dir / PROGRESS_FILE
    return json.loads(path.read_text()) if path.is_file() else {"done": {}, "data": None}


def _write_progress(run_dir: Path, progress: dict) -> None:
    atomic_write_text(run_dir / PROGRESS_FILE, json.dumps(progress, indent=2) + "\n")


def prepare_run_dir(run_dir: Path, data_dir: Path, config: RunConfig) -> dict:
    """Create or re-open a run folder; refuse to mix a different dataset or configuration."""
    run_dir.mkdir(parents=True, exist_ok=True)
    progress = _read_progress(run_dir)
    data = str(data_dir.resolve())
    if progress["data"] not in (None, data):
        raise IronError(f"{run_dir} belongs to dataset {progress['data']}; choose a new run folder")
    config_path = run_dir / CONFIG_FILE
    if config_path.is_file() and progress["done"]:
        saved = from_dict(RunConfig, json.loads(config_path.read_text()), str(config_path))
        if saved != config:
            raise IronError(
                f"{run_dir} was started with another configuration ({config_path});"
                " resume with the same options or choose a new run folder"
            )
    atomic_write_text(config_path, json.dumps(to_dict(config), indent=2) + "\n")
    progress["data"] = data
    _write_progress(run_dir, progress)
    return progress


def run_pipeline(
    data_dir: str | Path,
    run_dir: str | Path,
    config: RunConfig,
    device: torch.device | str | None = None,
    steps: tuple[str, ...] = STEPS,
) -> RunSummary:
    """Run (or resume) the requested steps in order and return times, metrics and the report."""
    from ironrender.data.check import check_dataset, raise_on_errors

    data_dir, run_dir = Path(data_dir), Path(run_dir)
    device = torch.device(device) if device is not None else default_device()
    if device.type == "cuda" and not torch.cuda.is_available():
        raise IronError("--device cuda: no CUDA device is available here; use --device cpu")
    torch.set_flush_denormal(True)  # Softplus(100) MLPs produce denormals: 5x slower on CPU
    raise_on_errors(check_dataset(data_dir))
    progress = prepare_run_dir(run_dir, data_dir, config)
    metrics: dict[str, float] = {}
    for step in STEPS:
        if step not in steps:
            continue
        if step in progress["done"]:
            print(f"[{step}] already done ({progress['done'][step]:.0f} s); skipping")
            continue
        print(f"[{step}] starting")
        started = time.perf_counter()
        result = _run_step(step, data_dir, run_dir, config, device)
        if step == "eval":
            metrics = result
        progress["done"][step] = time.perf_counter() - started
        _write_progress(run_dir, progress)
    report = run_dir / "report.html"
    if not metrics and (run_dir / "eval" / "metrics.json").is_file():
        metrics = json.loads((run_dir / "eval" / "metrics.json").read_text()).get("mean", {})
    return RunSummary(
        run_dir, dict(progress["done"]), metrics, report if report.is_file() else None
    )


def _run_step(step: str, data_dir: Path, run_dir: Path, config: RunConfig, device) -> dict:
    if step == "stage1":
        from ironrender.training.stage1 import train_stage1

        resume = (run_dir / "stage1" / "checkpoint.pt").is_file()
        train_stage1(data_dir, run_dir, config.stage1, device, resume=resume)
    elif step == "stage2":
        from ironrender.training.stage2 import train_stage2

        resume = (run_dir / "stage2" / "checkpoint.pt").is_file()
        train_stage2(data_dir, run_dir, config.stage2, device, resume=resume)
    elif step == "export":
        from ironrender.evaluation.evaluate import export_run

        export_run(run_dir, config.export, device)
    elif step == "eval":
        from ironrender.evaluation.evaluate import evaluate_run

        result = evaluate_run(run_dir, data_dir, device)
        return result.get("mean", result) if isinstance(result, dict) else {}
    return {}


def format_summary(summary: RunSummary) -> str:
    lines = [f"run: {summary.run_dir}"]
    total = sum(summary.seconds.values())
    for step in STEPS:
        if step in summary.seconds:
            lines.append(f"  {step:<7} {summary.seconds[step]:7.1f} s")
    lines.append(f"  total   {total:7.1f} s")
    for key in (
        "psnr",
        "ssim",
        "chamfer_percent",
        "albedo_psnr",
        "roughness_error",
        "relight_psnr",
    ):
        if key in summary.metrics:
            lines.append(f"  {key:<16} {summary.metrics[key]:.4g}")
    if summary.report:
        lines.append(f"report: {summary.report}")
    export = summary.run_dir / "export"
    if export.is_dir():
        lines.append(f"asset:  {export}/ (mesh.obj + mesh.mtl, model.glb, scene.xml, textures)")
    return "\n".join(lines)
