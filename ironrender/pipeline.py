"""The whole job, resumable: a list of steps run in order (``iron run``, ``iron demo``).

Every step has one shape (:class:`Step`): a ``name``, ``done(run)`` saying whether its result
is already there, and ``run(run, config)`` producing it. The dataset steps make ``DATA``
(:class:`SynthStep` renders a synthetic capture, :class:`ImportStep` imports photographs); the
run steps (:data:`STEPS`: stage 1, stage 2, export, evaluation) fill ``RUN``, and record what
finished in ``RUN/progress.json``. Running the same command again skips what is done and resumes
a step that was killed half-way from its last checkpoint (written atomically). The resolved
configuration is ``RUN/config.json``: what the command line asked for
(:class:`~ironrender.run_config.ConfigRequest`) resolved once the dataset exists, with the
counts the capture calls for (:mod:`ironrender.budget`); with ``budget.minutes`` each training
stage gets its share of the time (:meth:`Run.seconds_for`). The pipeline calls training, export
and evaluation; none of them imports it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ironrender.budget import CaptureSize, capture_size, reserve_seconds, stage_seconds
from ironrender.config import from_dict, to_dict
from ironrender.data.capture import import_photos
from ironrender.data.check import check_dataset, raise_on_errors
from ironrender.data.memory import check_memory, downscale_dataset
from ironrender.data.synth import SynthConfig, synthesize
from ironrender.errors import IronError
from ironrender.evaluation.config import EvalConfig
from ironrender.evaluation.evaluate import evaluate_run
from ironrender.export.run import export_run
from ironrender.run_config import (  # re-exported: the pipeline is where users look for them
    ConfigRequest,
    RunConfig,
    remedy_lines,
    resolve_config,
    run_preset,
)
from ironrender.run_folder import (
    CONFIG_FILE,
    EVAL_DIR,
    EXPORT_DIR,
    METRICS_FILE,
    REPORT_FILE,
    STAGE1_DIR,
    STAGE2_DIR,
    TRAINING_STAGES,
    command_line,
    read_progress,
    run_lock,
    stage_checkpoint,
    write_progress,
)
from ironrender.storage import atomic_write_text
from ironrender.threads import configure_threads
from ironrender.training.stage1 import train_stage1
from ironrender.training.stage2 import train_stage2
from ironrender.training.surface_check import read_surface_check
from ironrender.training.time_budget import read_plan

__all__ = [
    "ConfigRequest",
    "RunConfig",
    "resolve_config",
    "run_preset",
    "run_pipeline",
    "format_summary",
    "RUN_STEPS",
    "STEPS",
]

SUMMARY_METRICS = (
    "psnr",
    "ssim",
    "chamfer_percent",
    "chamfer_visible_percent",
    "albedo_psnr",
    "roughness_error",
    "relight_psnr",
)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class RunSummary:
    run_dir: Path
    seconds: dict[str, float]
    metrics: dict[str, float]
    report: Path | None
    minutes: float = 0.0  # the run's time budget (0: none)


def prepare_run_dir(
    run_dir: Path, data_dir: Path, config: RunConfig, allow_changes: bool = False
) -> dict:
    """Create or re-open a run folder; refuse to mix a different dataset or configuration
    (unless ``allow_changes``: ``iron fit --resume --set ...`` continues with new values)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    progress = read_progress(run_dir)
    data = str(data_dir.resolve())
    if progress["data"] not in (None, data):
        raise IronError(f"{run_dir} belongs to dataset {progress['data']}; choose a new run folder")
    config_path = run_dir / CONFIG_FILE
    if config_path.is_file() and progress["done"] and not allow_changes:
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
    steps: tuple[str, ...] = ()  # the run steps this command runs
    capture: CaptureSize | None = None  # the dataset's size (:mod:`ironrender.budget`)

    def seconds_for(self, stage: str, config: RunConfig) -> float | None:
        """A training stage's time budget under ``budget.minutes`` (None without one): the
        minutes, less what finished steps took and the export and evaluation estimate."""
        budget = config.budget
        if budget.minutes <= 0 or self.capture is None:
            return None
        later = {"export", "eval"} & set(self.steps)
        reserve = 0.0
        if later:
            export = config.export
            max_size = EvalConfig().max_size
            reserve = reserve_seconds(
                self.capture, export.resolution, export.texture_size, max_size
            )
        spent = sum(self.progress["done"].values())
        if stage == "stage1" and reserve > 0.5 * budget.minutes * 60:
            print(
                f"[budget] note: export and evaluation alone take about {reserve:.0f} s here,"
                f" more than half of the {budget.minutes:g} minutes; training gets what is left"
                " (at least a few hundred steps), so the run will take longer than asked"
            )
        return stage_seconds(budget, stage, spent, reserve, self.steps)


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
    name = STAGE1_DIR

    def run(self, run: Run, config: RunConfig) -> dict[str, float]:

        # resume=True continues the stage's checkpoint when there is one, else starts afresh
        seconds = run.seconds_for(self.name, config)
        train_stage1(
            run.data_dir, run.run_dir, config.stage1, run.device, resume=True, seconds=seconds
        )
        return {}


class Stage2Step(Step):
    name = STAGE2_DIR

    def run(self, run: Run, config: RunConfig) -> dict[str, float]:

        seconds = run.seconds_for(self.name, config)
        train_stage2(
            run.data_dir, run.run_dir, config.stage2, run.device, resume=True, seconds=seconds
        )
        return {}


class ExportStep(Step):
    name = "export"

    def run(self, run: Run, config: RunConfig) -> dict[str, float]:

        export_run(run.run_dir, config.export, run.device)
        return {}


class EvalStep(Step):
    name = "eval"

    def run(self, run: Run, config: RunConfig) -> dict[str, float]:

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

    return (data_dir / "train").is_dir() and not any(p.fatal for p in check_dataset(data_dir))


#: The run steps, in order; ``iron run --steps`` chooses among their names.
RUN_STEPS: tuple[Step, ...] = (Stage1Step(), Stage2Step(), ExportStep(), EvalStep())
STEPS = tuple(step.name for step in RUN_STEPS)


def run_pipeline(
    data_dir: str | Path,
    run_dir: str | Path,
    config: RunConfig | ConfigRequest,
    device: torch.device | str | None = None,
    steps: tuple[str, ...] = STEPS,
    dataset_steps: tuple[Step, ...] = (),
    resume: bool | None = None,
) -> RunSummary:
    """Run (or resume) the dataset steps, then the requested run steps in order; return times,
    metrics and the report. A dataset step's time is not recorded in ``progress.json`` (it
    belongs to ``DATA``, which many runs may share). The run folder is locked throughout
    (:func:`ironrender.run_folder.run_lock`), and the photographs' memory is checked before
    training loads them (:func:`ironrender.data.memory.check_memory`).

    ``config``: a :class:`RunConfig`, used as it is, or a :class:`ConfigRequest` (what the
    command line builds), resolved once the dataset exists, with the capture rule
    (:mod:`ironrender.budget`).

    ``resume``: None (``iron run``) continues whatever the run folder holds and skips the steps
    it records as finished; False (``iron fit``) refuses to train a stage that already has a
    checkpoint; True (``iron fit --resume``) continues the requested training stages from their
    checkpoints, finished or not, so a stage given more steps trains on.
    """
    device = torch.device(device) if device is not None else default_device()
    if device.type == "cuda" and not torch.cuda.is_available():
        raise IronError("--device cuda: no CUDA device is available here; use --device cpu")
    run = Run(Path(data_dir), Path(run_dir), device, steps=tuple(steps))
    if device.type == "cpu":
        print(configure_threads())
    torch.set_flush_denormal(True)  # Softplus(100) MLPs produce denormals: 5x slower on CPU
    metrics: dict[str, float] = {}
    # Bad input must not leave an empty run folder behind: options and dataset checked first.
    if isinstance(config, ConfigRequest):
        config.resolve()
    if not dataset_steps:
        raise_on_errors(check_dataset(run.data_dir))
    if resume is False:
        for stage in set(steps) & set(TRAINING_STAGES):
            if stage_checkpoint(run.run_dir, stage).exists():
                raise IronError(
                    f"{stage_checkpoint(run.run_dir, stage)} exists: pass --resume to continue"
                    " it, or choose a new run folder"
                )
    with run_lock(run.run_dir, command_line()):
        for step in dataset_steps:
            if step.done(run):
                print(f"[{step.name}] reusing {step.output(run)}")
            else:
                step.run(run, config)
            run.data_dir = step.output(run)
        raise_on_errors(check_dataset(run.data_dir))
        run.capture = capture_size(run.data_dir)
        if isinstance(config, ConfigRequest):
            config = config.for_run(run.run_dir, run.capture)
        if config.budget.footprint:
            print(budget_line(config))
        for line in remedy_lines(config, run.capture):
            print(line)
        done = read_progress(run.run_dir)["done"]
        if any(name not in done for name in TRAINING_STAGES if name in steps):
            check_memory(run.data_dir, device)  # before loading, not half-way through
        run.progress = prepare_run_dir(run.run_dir, run.data_dir, config, resume is True)
        for step in RUN_STEPS:
            if step.name not in steps:
                continue
            if step.done(run) and not (resume and step.name in TRAINING_STAGES):
                seconds = run.progress["done"][step.name]
                print(f"[{step.name}] already done ({seconds:.0f} s); skipping")
                continue
            print(f"[{step.name}] starting")
            started = time.perf_counter()
            metrics |= step.run(run, config)
            run.progress["done"][step.name] = time.perf_counter() - started
            write_progress(run.run_dir, run.progress)
    report = run.run_dir / REPORT_FILE
    metrics_file = run.run_dir / EVAL_DIR / METRICS_FILE
    if not metrics and metrics_file.is_file():
        metrics = json.loads(metrics_file.read_text()).get("mean", {})
    return RunSummary(
        run.run_dir,
        dict(run.progress["done"]),
        metrics,
        report if report.is_file() else None,
        config.budget.minutes,
    )


def budget_line(config: RunConfig) -> str:
    """One line saying what the capture rule chose (``RUN/config.json`` has it all)."""
    b, s1, s2, ex = config.budget, config.stage1, config.stage2, config.export
    line = (
        f"[budget] footprint {b.footprint:.0f} px across the unit sphere -> SDF grid"
        f" {s1.sdf.grid.max_resolution}^3, stage 1 {s1.train.steps} steps, stage 2"
        f" {s2.steps} patches, mesh {ex.resolution}^3, textures {ex.texture_size} px"
    )
    if b.minutes > 0:
        line += f"; time budget {b.minutes:g} min (step counts follow from measured speed)"
    return line


def time_budget_line(run_dir: Path, minutes: float, total: float) -> str:
    """Planned against actual time: the budget and each stage's plan (``plan.json``)."""

    parts = [f"time budget {minutes * 60:.0f} s, used {total:.0f} s ({total / (minutes * 60):.0%})"]
    for stage in TRAINING_STAGES:
        plan = read_plan(run_dir / stage)
        if plan is not None:
            parts.append(
                f"{stage} planned {plan.seconds:.0f} s ({plan.steps} steps), trained"
                f" {plan.actual_seconds:.0f} s"
            )
    return "  " + "; ".join(parts)


def format_summary(summary: RunSummary) -> str:
    lines = [f"run: {summary.run_dir}"]
    total = sum(summary.seconds.values())
    for step in STEPS:
        if step in summary.seconds:
            lines.append(f"  {step:<7} {summary.seconds[step]:7.1f} s")
    lines.append(f"  total   {total:7.1f} s")
    if summary.minutes > 0:
        lines.append(time_budget_line(summary.run_dir, summary.minutes, total))
    for key in SUMMARY_METRICS:
        if key in summary.metrics:
            lines.append(f"  {key:<23} {summary.metrics[key]:.4g}")
    surface = read_surface_check(summary.run_dir / STAGE1_DIR)
    if surface is not None and not surface.formed:
        lines += [f"  {surface.line()}", f"WARNING: {surface.advice}"]
    if summary.report:
        lines.append(f"report: {summary.report}")
    export = summary.run_dir / EXPORT_DIR
    if export.is_dir():
        lines.append(f"asset:  {export}/ (mesh.obj + mesh.mtl, model.glb, scene.xml, textures)")
    return "\n".join(lines)
