"""Exporting a trained run folder: ``iron export`` and the pipeline's ``export`` step.

Loads the run's model (:func:`ironrender.training.trained_model.load_trained_model`), finds the
capture's up direction in its dataset (so that ``object=auto`` knows which side of a support
plane the object is on) and writes ``RUN/export`` with :func:`ironrender.export.asset.
export_asset`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ironrender.data.camera_file import dataset_up, median_camera_distance
from ironrender.errors import IronError
from ironrender.export.asset import ExportConfig, ExportResult, export_asset, fast_export_config
from ironrender.run_folder import EXPORT_DIR, resolve_data_dir
from ironrender.training.trained_model import TrainedModel, load_trained_model


def export_run(
    run_dir: str | Path,
    config: ExportConfig | None = None,
    device: torch.device | str = "cpu",
    data_dir: str | Path | None = None,
    model: TrainedModel | None = None,
) -> ExportResult:
    """Export the run's trained model to ``RUN/export`` (:func:`~ironrender.export.asset.
    export_asset`).

    ``config`` defaults to :func:`ironrender.export.asset.fast_export_config`.
    """
    run_dir = Path(run_dir)
    if config is None:
        config = fast_export_config()
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
    result = export_asset(
        model.sdf,
        model.materials_fn,
        model.light_intensity,
        run_dir / EXPORT_DIR,
        config,
        device,
        model.diffuse_model,
        up=up,
    )
    if result.selection is not None:
        print(result.selection.summary())
    return result
