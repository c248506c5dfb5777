"""Exporting a trained run folder: ``iron export`` and the pipeline's ``export`` step.

Loads the run's model (:func:`ironrender.training.trained_model.load_trained_model`), finds the
capture's up direction in its dataset (so that ``object=auto`` knows which side of a support
plane the object is on) and writes ``RUN/export`` with :func:`ironrender.export.asset.
export_asset`. With ``export.texture.steps > 0`` the texture stage
(:mod:`ironrender.export.texture_fit`) fits the baked maps to the training photographs under
stage 2's light and camera before the files are written (:func:`texture_stage`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ironrender.config import from_dict
from ironrender.data.camera_file import dataset_up, median_camera_distance
from ironrender.data.dataset import load_split
from ironrender.errors import IronError
from ironrender.export.asset import (
    ExportConfig,
    ExportResult,
    RefineTextures,
    export_asset,
    fast_export_config,
)
from ironrender.export.bake import BakedTextures
from ironrender.export.texture_fit import fit_textures
from ironrender.export.uv import UVMesh
from ironrender.run_folder import (
    CONFIG_FILE,
    EXPORT_DIR,
    STAGE2_DIR,
    resolve_data_dir,
    stage_checkpoint,
)
from ironrender.training.stage2_model import load_stage2
from ironrender.training.trained_model import TrainedModel, load_trained_model


def export_config_of(run_dir: str | Path) -> ExportConfig:
    """The export settings the run was started with (``RUN/config.json``'s ``export``, what
    ``iron run`` exports with: the ``paper`` preset's differ from ``fast``'s), else the quick
    defaults (:func:`~ironrender.export.asset.fast_export_config`)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        return fast_export_config()
    try:
        section = json.loads(path.read_text()).get("export")
    except (ValueError, AttributeError) as exc:
        raise IronError(f"{path}: not a run configuration ({exc})") from None
    if not isinstance(section, dict):
        return fast_export_config()
    return from_dict(ExportConfig, section, f"{path}: export")


def export_run(
    run_dir: str | Path,
    config: ExportConfig | None = None,
    device: torch.device | str = "cpu",
    data_dir: str | Path | None = None,
    model: TrainedModel | None = None,
) -> ExportResult:
    """Export the run's trained model to ``RUN/export`` (:func:`~ironrender.export.asset.
    export_asset`).

    ``config`` defaults to the run's own (:func:`export_config_of`).
    """
    run_dir = Path(run_dir)
    if config is None:
        config = export_config_of(run_dir)
    try:
        data = resolve_data_dir(run_dir, data_dir)
    except IronError:
        data = None
    if model is None:
        model = load_trained_model(run_dir, device, median_camera_distance(data))
        if model.notice:
            print(f"notice: {model.notice}")
    if model.materials_fn is None or model.light_intensity is None:
        raise IronError("the model has no materials to export")
    # The capture's up tells the object selection which side of a support plane is the object.
    up = dataset_up(data) if data is not None else None
    refine, summaries = texture_stage(run_dir, data, config, device)
    result = export_asset(
        model.sdf,
        model.materials_fn,
        model.light_intensity,
        run_dir / EXPORT_DIR,
        config,
        device,
        model.diffuse_model,
        up=up,
        refine_textures=refine,
    )
    result.texture_fit = summaries[-1] if summaries else None
    if result.selection is not None:
        print(result.selection.summary())
    return result


def texture_stage(
    run_dir: Path, data: Path | None, config: ExportConfig, device: torch.device | str
) -> tuple[RefineTextures | None, list[str]]:
    """The texture stage for :func:`export_asset` when ``config.texture.steps > 0`` (None
    otherwise): stage 2's light and camera (:func:`load_stage2`) and the training photographs
    (read when the bake is done), one summary line printed. A run without stage 2 has no light
    or camera model to fit with: it is skipped, and the log says so. The list receives the
    summary line when the stage has run."""
    summaries: list[str] = []
    if config.texture.steps <= 0:
        return None, summaries
    if not stage_checkpoint(run_dir, STAGE2_DIR).is_file():
        print("[texture] skipped: the texture stage needs stage 2's light and camera model")
        return None, summaries
    if data is None:
        raise IronError(
            f"{run_dir}: export.texture.steps > 0 needs the run's training photographs; the"
            " dataset the run records is not there (iron export --data DATA)"
        )

    def refine(uv_mesh: UVMesh, baked: BakedTextures) -> BakedTextures:
        stage2, stage2_config = load_stage2(run_dir, device)
        split = load_split(data, "train", device, keep_8bit=True, curve=stage2_config.tone_curve)
        result = fit_textures(
            uv_mesh, baked, split, stage2, config.texture, stage2_config.render.shadows,
            config.progress,
        )  # fmt: skip
        summaries.append(result.summary())
        print(summaries[-1])
        return result.textures

    return refine, summaries
