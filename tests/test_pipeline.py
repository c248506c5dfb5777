"""`iron run`: each step runs once, a re-run resumes, bad input gets one line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ironrender.data.synth import SynthConfig, synthesize
from ironrender.errors import IronError
from ironrender.pipeline import resolve_config, run_pipeline

TINY = [
    "stage1.train.steps=30",
    "stage1.train.warmup_steps=5",
    "stage1.train.anneal_end=15",
    "stage1.train.grid_ramp_steps=15",
    "stage1.log.mesh_resolution=48",
    "stage2.steps=6",
    "stage2.patch_size=24",
    "export.resolution=48",
    "export.max_faces=2000",
    "export.texture_size=128",
]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipeline") / "data"
    config = SynthConfig(views=8, test_views=2, resolution=32, spp=4, relight_spp=4)
    return synthesize(config, out, progress=False)


@pytest.mark.slow
def test_run_resumes_finished_steps_and_writes_report(tiny_data, tmp_path):
    run = tmp_path / "run"
    config = resolve_config("fast", None, TINY)
    first = run_pipeline(tiny_data, run, config, "cpu", steps=("stage1",))
    assert set(first.seconds) == {"stage1"}
    checkpoint = run / "stage1" / "checkpoint.pt"
    stamp = checkpoint.stat().st_mtime_ns

    summary = run_pipeline(tiny_data, run, config, "cpu")
    assert set(summary.seconds) == {"stage1", "stage2", "export", "eval"}
    assert checkpoint.stat().st_mtime_ns == stamp  # stage 1 was not trained again
    metrics = json.loads((run / "eval" / "metrics.json").read_text())["mean"]
    assert 0 < metrics["psnr"] < 100 and metrics["chamfer"] > 0
    for name in ("mesh.obj", "mesh.mtl", "model.glb", "scene.xml", "diffuse_albedo.png"):
        assert (run / "export" / name).is_file(), name
    report = (run / "report.html").read_text()
    assert "data:image/png;base64," in report and "psnr" in report

    # Another configuration in the same folder is refused instead of silently mixed.
    other = resolve_config("fast", None, [*TINY, "stage2.steps=7"])
    with pytest.raises(IronError, match="another configuration"):
        run_pipeline(tiny_data, run, other, "cpu")


def test_missing_dataset_is_a_one_line_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "ironrender", "run", str(tmp_path / "nope"), str(tmp_path / "r")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "not found" in result.stderr


def test_unknown_override_is_a_user_error():
    with pytest.raises(IronError, match="unknown option"):
        resolve_config("fast", None, ["stage1.train.stepz=3"])


def test_invalid_override_value_is_a_one_line_error(tmp_path):
    """A value the config's own validation rejects (not just an unknown key) exits cleanly."""
    with pytest.raises(IronError, match=r"stage1\.sdf\.grid\.kind: expected one of"):
        resolve_config("fast", None, ["stage1.sdf.grid.kind=octree"])
    result = subprocess.run(
        [sys.executable, "-m", "ironrender", "fit", str(tmp_path), str(tmp_path / "r")]
        + ["--set", "stage1.sdf.grid.kind=octree"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "grid.kind" in result.stderr


def test_override_examples_in_the_readme_resolve():
    """The README's ``--set`` examples name real options (documentation must not drift)."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    examples = re.findall(r"`(?:--set )?((?:stage1|stage2|export)\.[\w.]+=[^`\s]+)`", readme)
    assert len(examples) >= 4
    resolve_config("fast", None, examples)


def test_optional_tuple_options_are_coerced_from_set():
    """``X | None`` fields (the export's cut plane) take ``--set`` values as typed tuples, and a
    wrong element is a one-line error, not a list passed through unchecked."""
    from ironrender.config import apply_overrides
    from ironrender.pipeline import run_preset

    config = apply_overrides(run_preset("fast"), ["export.cut_plane=[0, 1, 0, 0.2]"])
    assert config.export.cut_plane == (0.0, 1.0, 0.0, 0.2)
    assert all(isinstance(v, float) for v in config.export.cut_plane)
    with pytest.raises(IronError, match="cut_plane: expected a number"):
        apply_overrides(run_preset("fast"), ['export.cut_plane=[0, "up", 0, 0.2]'])


def test_unknown_stage2_background_is_refused_before_training():
    """A typo in stage2.background is a one-line error when the config is built, not after a
    whole stage 1 has run."""
    from ironrender.config import apply_overrides
    from ironrender.pipeline import run_preset

    with pytest.raises(IronError, match="stage2.background: expected one of"):
        apply_overrides(run_preset("fast"), ["stage2.background=room"])
