"""Every combination of stage 2's photometric options, to the end of export and evaluation.

The room's light (off, sh2) x camera gains (off, on) x the flash (in the lens, given by the
camera file, learnt) x the tone curve (gamma 2.2, sRGB): 24 runs on a tiny capture, each killed
half-way through stage 2, resumed from its checkpoint, and then exported and evaluated. A
resumed run must equal one that was never interrupted (the same computation twice: bit for
bit), the report line must name what the run fitted, and the metrics must say which curve
encoded the images they compare. (Before stage 2 became one model, every run with the room's
light ended in a traceback after training: the report rebound the flash to a number.)

Stage 1 is trained once and copied into each run; its camera file's flash key does not enter
stage 1. Budget: about 3 s a combination on 2 idle cores, one torch thread.
"""

from __future__ import annotations

import itertools
import json
import shutil

import pytest
import torch

from ironrender.data.camera_file import CAMERA_FILE, FLASH_KEY
from ironrender.data.synth import SynthConfig, synthesize
from ironrender.evaluation.config import EvalConfig
from ironrender.evaluation.evaluate import evaluate_run
from ironrender.export.run import export_run
from ironrender.run_config import resolve_config
from ironrender.run_folder import STAGE1_DIR, STAGE2_DIR, stage_checkpoint
from ironrender.training.checkpoint import load_checkpoint
from ironrender.training.stage1 import train_stage1
from ironrender.training.stage2 import train_stage2

TINY = [
    "stage1.train.steps=30",
    "stage1.train.warmup_steps=5",
    "stage1.train.anneal_end=15",
    "stage1.train.grid_ramp_steps=15",
    "stage1.log.mesh_resolution=32",
    "stage1.log.progress=false",
    "stage1.log.tensorboard=false",
    "stage2.steps=4",
    "stage2.patch_size=16",
    "stage2.checkpoint_every=2",
    "stage2.light_init_views=2",
    "stage2.light_init_size=16",
    "stage2.preview_size=16",
    "export.resolution=32",
    "export.max_faces=1000",
    "export.texture_size=64",
]
EVAL = EvalConfig(
    mesh_resolution=32,
    mesh_samples=1000,
    material_samples=200,
    relight=False,  # the exported asset's relighting does not see these options
    turntable_frames=0,
    progress=False,
)
FLASH_ABOVE_LENS = [0.0, -0.26, 0.0]  # 5 degrees at the capture distance

AMBIENT = ("off", "sh2")
GAINS = (False, True)
FLASH = ("colocated", "given", "learn")
CURVES = ("gamma2.2", "srgb")
COMBINATIONS = list(itertools.product(AMBIENT, GAINS, FLASH, CURVES))


@pytest.fixture(scope="module")
def captures(tmp_path_factory):
    """The tiny capture, its twin whose camera files put the flash above the lens, and one
    stage 1 trained on it."""
    root = tmp_path_factory.mktemp("options")
    colocated = synthesize(
        SynthConfig(views=8, test_views=1, resolution=24, spp=4, relight_spp=4),
        root / "colocated",
        progress=False,
    )
    given = root / "given"
    shutil.copytree(colocated, given)
    for split in ("train", "test"):
        path = given / split / CAMERA_FILE
        entries = json.loads(path.read_text())
        for entry in entries.values():
            entry[FLASH_KEY] = FLASH_ABOVE_LENS
        path.write_text(json.dumps(entries))
    stage1_run = root / "stage1_run"
    config = resolve_config("fast", None, TINY)
    train_stage1(colocated, stage1_run, config.stage1, "cpu")
    return {"colocated": colocated, "given": given, "stage1": stage1_run / STAGE1_DIR}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: a second OpenMP thread only adds waiting (and is far slower under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _run(captures, tmp_path, name, overrides):
    config = resolve_config("fast", None, [*TINY, *overrides])
    run = tmp_path / name
    shutil.copytree(captures["stage1"], run / STAGE1_DIR)
    return run, config


@pytest.mark.slow
@pytest.mark.parametrize(("ambient", "gains", "flash", "curve"), COMBINATIONS)
def test_every_option_combination_resumes_exports_and_evaluates(
    captures, tmp_path, capsys, ambient, gains, flash, curve
):
    data = captures["given" if flash == "given" else "colocated"]
    overrides = [
        f"stage2.ambient={ambient}",
        f"stage2.exposure_gains={str(gains).lower()}",
        f"stage2.flash={'learn' if flash == 'learn' else 'dataset'}",
        f"stage2.tone_curve={curve}",
    ]
    run, config = _run(captures, tmp_path, "run", overrides)
    whole, _ = _run(captures, tmp_path, "uninterrupted", overrides)

    train_stage2(data, run, config.stage2, "cpu", progress=False, stop_after=2)  # killed
    assert load_checkpoint(stage_checkpoint(run, STAGE2_DIR))["step"] == 2
    capsys.readouterr()
    train_stage2(data, run, config.stage2, "cpu", resume=True, progress=False)
    report = capsys.readouterr().out
    train_stage2(data, whole, config.stage2, "cpu", progress=False)

    resumed = load_checkpoint(stage_checkpoint(run, STAGE2_DIR))
    reference = load_checkpoint(stage_checkpoint(whole, STAGE2_DIR))
    assert resumed["step"] == reference["step"] == 4
    fitted = {key.split(".")[1] for key in resumed["model"] if key.startswith("photometric.")}
    wanted = {"ambient": ambient == "sh2", "gains": gains, "flash": flash == "learn"}
    expected = {name for name, fitted in wanted.items() if fitted}
    assert fitted == expected
    for key, value in reference["model"].items():  # the same steps, resumed or not
        torch.testing.assert_close(resumed["model"][key], value, rtol=0, atol=0, msg=key)
    lines = {"ambient": "room light", "gains": "camera gains", "flash": "flash at"}
    for name, words in lines.items():
        assert (words in report) == (name in expected), report

    export_run(run, config.export, "cpu")
    metrics = evaluate_run(run, data, "cpu", EVAL)
    assert metrics["info"]["model"] == "stage2"
    assert metrics["info"]["tone_curve"] == curve
    assert 5 < metrics["mean"]["psnr"] < 60
    assert (run / "export" / "model.glb").is_file()
