"""The whole job, resumable: a list of steps run in order (``iron run``, ``iron demo``).

Every step has one shape (:class:`Step`): a ``name``, ``done(run)`` saying whether its result
is already there, and ``run(run, config)`` producing it. The dataset steps make ``DATA``
(:class:`SynthStep` renders a synthetic capture, :class:`ImportStep` imports photographs); the
run steps (:data:`STEPS`: stage 1, stage 2, export, evaluation) fill ``RUN``, and record what
finished in ``RUN/progress.json``. Running the same command again skips what is done and resumes
a step that was killed half-way from its last checkpoint (written atomically). The resolved
configuration is ``RUN/config.json``. The pipeline calls training, export and evaluation; none of
them imports it.
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
from ironrender.export.asset import ExportConfig, fast_export_config
from ironrender.run_folder import (
    CONFIG_FILE,
    EVAL_DIR,
    EXPORT_DIR,
    REPORT_FILE,
    command_line,
    read_progress,
    run_lock,
    write_progress,
)
from ironrender.storage import atomic_write_text
from ironrender.training.stage1 import Stage1Config, stage1_preset
from ironrender.training.stage2_config import STAGE2_PRESETS, Stage2Config

SUMMARY_METRICS = (
    "psnr",
    "ssim",
    "chamfer_percent",
    "albedo_psnr",
    "roughness_error",
    "relight_psnr",
)


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


def prepare_run_dir(run_dir: Path, data_dir: Path, config: RunConfig) -> dict:
    """Create or re-open a run folder; refuse to mix a different dataset or configuration."""
    run_dir.mkdir(parents=True, exist_ok=True)
    progress = read_progress(run_dir)
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
    write_progress(run_dir, progress)
    return progress


@dataclass
class Run:
    """One job as its steps see it: the dataset, the run folder, the device and the record of
    finished steps (``RUN/progress.json``, loaded when the run steps start)."""

    data_dir: Path
    run_dir: Path
    device: torch.device
    progress: dict = field(default_factory=lambda: {"done": {}, "data": None})


class Step:
    """A step of the pipeline: ``done(run)`` says whether its result is there, ``run(run,
    config)`` makes it and returns metrics (``{}`` for all but evaluation). A run step is done
    when ``RUN/progress.json`` records it."""

    name: str = ""

    def done(self, run: Run) -> bool:
        return self.name in run.progress["done"]

    def output(self, run: Run) -> Path:
        """The dataset the following steps read: ``DATA`` itself unless this step makes
        another one (:class:`DownscaleStep`)."""
        return run.data_dir

    def run(self, run: Run, config: RunConfig) -> dict[str, float]:
        raise NotImplementedError


class Stage1Step(Step):
    name = "stage1"

    def run(self, run: Run, config: RunConfig) -> dict[str, float]:
        from ironrender.training.stage1 import train_stage1

        # resume=True continues the stage's checkpoint when there is one, else starts afresh
        train_stage1(run.data_dir, run.run_dir, config.stage1, run.device, resume=True)
        return {}


class Stage2Step(Step):
    name = "stage2"

    def run(self, run: Run, config: RunConfig) -> dict[str, float]:
        from ironrender.training.stage2 import train_stage2

        train_stage2(run.data_dir, run.run_dir, config.stage2, run.device, resume=True)
        return {}


class ExportStep(Step):
    name = "export"

    def run(self, run: Run, config: RunConfig) -> dict[str, float]:
        from ironrender.export.run import export_run

        export_run(run.run_dir, config.export, run.device)
        return {}


class EvalStep(Step):
    name = "eval"

    def run(self, run: Run, config: RunConfig) -> dict[str, float]:
        from ironrender.evaluation.evaluate import evaluate_run

        result = evaluate_run(run.run_dir, run.data_dir, run.device)
        return result.get("mean", {})


class SynthStep(Step):
    """Render a synthetic capture into ``DATA`` (``iron synth``); done when ``DATA`` is a
    usable dataset."""

    name = "synth"

    def __init__(self, synth_config=None):
        self.synth_config = synth_config

    def done(self, run: Run) -> bool:
        return _usable_dataset(run.data_dir)

    def run(self, run: Run, config: RunConfig) -> dict[str, float]:
        from ironrender.data.synth import SynthConfig, synthesize

        print(f"[synth] rendering the capture into {run.data_dir}")
        synthesize(self.synth_config or SynthConfig(), run.data_dir, overwrite=True)
        return {}


class ImportStep(Step):
    """Build ``DATA`` from a folder of photographs (``iron import``); done when ``DATA`` is a
    usable dataset."""

    name = "import"

    def __init__(self, photos_dir: str | Path, import_config=None):
        self.photos_dir = Path(photos_dir)
        self.import_config = import_config

    def done(self, run: Run) -> bool:
        return _usable_dataset(run.data_dir)

    def run(self, run: Run, config: RunConfig) -> dict[str, float]:
        from ironrender.data.capture import import_photos

        import_photos(self.photos_dir, run.data_dir, self.import_config)
        return {}


class DownscaleStep(Step):
    """A copy of ``DATA`` ``factor`` times smaller per side in ``RUN/data_x<factor>``
    (``--downscale``, :func:`ironrender.data.memory.downscale_dataset`), which the following
    steps read instead: for captures whose photographs do not fit in memory."""

    name = "downscale"

    def __init__(self, factor: int):
        self.factor = int(factor)

    def output(self, run: Run) -> Path:
        return run.run_dir / f"data_x{self.factor}"

    def done(self, run: Run) -> bool:
        return _usable_dataset(self.output(run))

    def run(self, run: Run, config: RunConfig) -> dict[str, float]:
        from ironrender.data.check import check_dataset, raise_on_errors
        from ironrender.data.memory import downscale_dataset

        raise_on_errors(check_dataset(run.data_dir))  # read only what the checks let through
        print(f"[downscale] writing {self.output(run)}: photographs {self.factor}x smaller")
        downscale_dataset(run.data_dir, self.output(run), self.factor)
        return {}


def dataset_steps_for(downscale: int = 1) -> tuple[Step, ...]:
    """The dataset steps a ``--downscale`` option asks for (none at 1)."""
    if downscale < 1:
        raise IronError(f"--downscale must be a positive integer, not {downscale}")
    return (DownscaleStep(downscale),) if downscale > 1 else ()


def _usable_dataset(data_dir: Path) -> bool:
    from ironrender.data.check import check_dataset

    return (data_dir / "train").is_dir() and not any(p.fatal for p in check_dataset(data_dir))


#: The run steps, in order; ``iron run --steps`` chooses among their names.
RUN_STEPS: tuple[Step, ...] = (Stage1Step(), Stage2Step(), ExportStep(), EvalStep())
STEPS = tuple(step.name for step in RUN_STEPS)


def run_pipeline(
    data_dir: str | Path,
    run_dir: str | Path,
    config: RunConfig,
    device: torch.device | str | None = None,
    steps: tuple[str, ...] = STEPS,
    dataset_steps: tuple[Step, ...] = (),
) -> RunSummary:
    """Run (or resume) the dataset steps, then the requested run steps in order; return times,
    metrics and the report. A dataset step's time is not recorded in ``progress.json`` (it
    belongs to ``DATA``, which many runs may share). The run folder is locked throughout
    (:func:`ironrender.run_folder.run_lock`), and the photographs' memory is checked before
    training loads them (:func:`ironrender.data.memory.check_memory`)."""
    from ironrender.data.check import check_dataset, raise_on_errors
    from ironrender.data.memory import check_memory

    device = torch.device(device) if device is not None else default_device()
    if device.type == "cuda" and not torch.cuda.is_available():
        raise IronError("--device cuda: no CUDA device is available here; use --device cpu")
    run = Run(Path(data_dir), Path(run_dir), device)
    torch.set_flush_denormal(True)  # Softplus(100) MLPs produce denormals: 5x slower on CPU
    metrics: dict[str, float] = {}
    if not dataset_steps:  # a bad dataset must not leave an empty run folder behind
        raise_on_errors(check_dataset(run.data_dir))
    with run_lock(run.run_dir, command_line()):
        for step in dataset_steps:
            if step.done(run):
                print(f"[{step.name}] reusing {step.output(run)}")
            else:
                step.run(run, config)
            run.data_dir = step.output(run)
        raise_on_errors(check_dataset(run.data_dir))
        done = read_progress(run.run_dir)["done"]
        if any(name not in done for name in ("stage1", "stage2") if name in steps):
            check_memory(run.data_dir, device)  # before loading, not half-way through
        run.progress = prepare_run_dir(run.run_dir, run.data_dir, config)
        for step in RUN_STEPS:
            if step.name not in steps:
                continue
            if step.done(run):
                seconds = run.progress["done"][step.name]
                print(f"[{step.name}] already done ({seconds:.0f} s); skipping")
                continue
            print(f"[{step.name}] starting")
            started = time.perf_counter()
            metrics |= step.run(run, config)
            run.progress["done"][step.name] = time.perf_counter() - started
            write_progress(run.run_dir, run.progress)
    report = run.run_dir / REPORT_FILE
    metrics_file = run.run_dir / EVAL_DIR / "metrics.json"
    if not metrics and metrics_file.is_file():
        metrics = json.loads(metrics_file.read_text()).get("mean", {})
    return RunSummary(
        run.run_dir, dict(run.progress["done"]), metrics, report if report.is_file() else None
    )


def format_summary(summary: RunSummary) -> str:
    lines = [f"run: {summary.run_dir}"]
    total = sum(summary.seconds.values())
    for step in STEPS:
        if step in summary.seconds:
            lines.append(f"  {step:<7} {summary.seconds[step]:7.1f} s")
    lines.append(f"  total   {total:7.1f} s")
    for key in SUMMARY_METRICS:
        if key in summary.metrics:
            lines.append(f"  {key:<16} {summary.metrics[key]:.4g}")
    if summary.report:
        lines.append(f"report: {summary.report}")
    export = summary.run_dir / EXPORT_DIR
    if export.is_dir():
        lines.append(f"asset:  {export}/ (mesh.obj + mesh.mtl, model.glb, scene.xml, textures)")
    return "\n".join(lines)
