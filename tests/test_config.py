"""A configuration that explains itself: choices checked in one place (``--set``, files and
Python constructors alike), the old name ``stage2.iterations`` still read, a help for every
option, and ``iron config`` saying where each value came from."""

from __future__ import annotations

import dataclasses
import json
import re
import signal
import typing

import pytest

from ironrender import config as cfg
from ironrender.budget import capture_size
from ironrender.cli import main
from ironrender.data.camera_file import CAMERA_FILE, cameras_to_dict
from ironrender.data.synth.config import SynthConfig
from ironrender.errors import IronError
from ironrender.evaluation.config import EvalConfig
from ironrender.run_config import ConfigRequest, RunConfig, resolve_config, run_preset
from ironrender.training.stage2_config import Stage2Config
from tests.conftest import ring_cameras

AMBIENT_ERROR = "stage2.ambient: expected one of 'off', 'sh2', 'auto', got 'on'"


def dataclasses_under(cls: type) -> list[type]:
    """``cls`` and every configuration dataclass its fields hold, each once."""
    found = [cls]
    for kind in typing.get_type_hints(cls).values():
        if dataclasses.is_dataclass(kind):
            found += [c for c in dataclasses_under(kind) if c not in found]
    return found


def choice_fields(cls: type, prefix: str = "") -> list[tuple[str, tuple]]:
    """``(dotted key, allowed values)`` of every ``Literal`` option under ``cls``."""
    found = []
    for name, kind in typing.get_type_hints(cls).items():
        if dataclasses.is_dataclass(kind):
            found += choice_fields(kind, f"{prefix}{name}.")
        elif cfg.literal_choices(kind) is not None:
            found.append((f"{prefix}{name}", cfg.literal_choices(kind)))
    return found


# ----------------------------------------------------------------------------- choices


def test_a_choice_outside_its_literal_is_refused_from_set():
    with pytest.raises(IronError) as info:
        resolve_config("fast", None, ["stage2.ambient=on"])
    assert str(info.value) == AMBIENT_ERROR
    grid_error = r"^stage1\.sdf\.grid\.kind: expected one of 'dense', 'hash', got 'octree'$"
    with pytest.raises(IronError, match=grid_error):
        resolve_config("fast", None, ["stage1.sdf.grid.kind=octree"])
    with pytest.raises(IronError, match=r"^stage2\.flash: expected one of .*, got 1$"):
        resolve_config("fast", None, ["stage2.flash=1"])  # JSON 1, not a string


def test_a_choice_outside_its_literal_is_refused_from_a_json_file(tmp_path):
    path = tmp_path / "my.json"
    path.write_text(json.dumps({"stage2": {"ambient": "on"}}))
    with pytest.raises(IronError) as info:
        resolve_config("fast", path)
    assert str(info.value) == f"{path}: {AMBIENT_ERROR}"
    # A saved RUN/config.json and a checkpoint's section are read by from_dict: same check.
    saved = cfg.to_dict(run_preset("fast"))
    saved["export"]["object"] = "biggest"
    object_error = "config.json: export.object: expected one of 'largest', 'all', 'auto', got"
    with pytest.raises(IronError, match=re.escape(f"{object_error} 'biggest'")):
        cfg.from_dict(RunConfig, saved, "run/config.json")
    with pytest.raises(IronError, match=r"ckpt: materials\.diffuse_model: expected one of"):
        cfg.from_dict(Stage2Config, {"materials": {"diffuse_model": "oren"}}, "ckpt")


def test_every_literal_option_is_checked_by_its_constructor_and_accepts_its_choices():
    """Python callers get the ValueError ``--set`` gives, for every ``Literal`` field of every
    configuration dataclass (so each of them calls ``check_choices`` in ``__post_init__``)."""
    with pytest.raises(ValueError, match=r"^ambient: expected one of 'off', 'sh2', 'auto', got"):
        Stage2Config(ambient="on")
    with pytest.raises(ValueError, match="flash: expected one of"):
        dataclasses.replace(Stage2Config(), flash="sideways")
    checked = 0
    for root in (RunConfig, SynthConfig):
        for section in dataclasses_under(root):
            for name, kind in typing.get_type_hints(section).items():
                choices = cfg.literal_choices(kind)
                if choices is None:
                    continue
                with pytest.raises(ValueError, match=f"^{name}: expected one of"):
                    section(**{name: "no-such-choice"})
                for choice in choices:
                    assert getattr(section(**{name: choice}), name) == choice
                checked += 1
    assert checked >= 17  # preset, grid kinds, backgrounds, tone curves, ambient, flash, ...
    keys = dict(choice_fields(RunConfig))
    assert keys["stage2.ambient"] == ("off", "sh2", "auto")
    for key, choices in keys.items():  # and through --set, each choice is taken as it is
        for choice in choices:
            config = cfg.apply_overrides(run_preset("fast"), [f"{key}={choice}"])
            assert cfg.leaf_values(config)[key] == choice


def test_the_module_level_choice_tuples_are_the_literals():
    """Names other modules import are derived from the Literal types, never a second list."""
    from ironrender.data.synth.config import BSDFS, ROOMS
    from ironrender.data.tone_curve import TONE_CURVES
    from ironrender.export.select import OBJECT_MODES
    from ironrender.fields.materials import DIFFUSE_MODELS
    from ironrender.rendering.edges import FOOTPRINTS
    from ironrender.rendering.volume import BACKGROUNDS
    from ironrender.training.stage1_config import LOSS_DOMAINS
    from ironrender.training.stage2_config import STAGE2_BACKGROUNDS

    keys = dict(choice_fields(RunConfig)) | dict(choice_fields(SynthConfig))
    assert keys["stage2.background"] == STAGE2_BACKGROUNDS
    assert keys["stage2.tone_curve"] == keys["tone_curve"] == TONE_CURVES
    assert keys["stage2.materials.diffuse_model"] == DIFFUSE_MODELS
    assert keys["stage2.render.edges.footprint"] == FOOTPRINTS
    assert keys["stage1.volume.background"] == (*BACKGROUNDS, "auto")
    assert keys["stage1.train.loss_domain"] == LOSS_DOMAINS
    assert keys["export.object"] == OBJECT_MODES
    assert (keys["bsdf"], keys["room"]) == (BSDFS, ROOMS)


# ----------------------------------------------------------------------------- old names


@pytest.fixture
def fresh_notes(monkeypatch):
    """Each renamed key is reported once per process: start from none reported."""
    monkeypatch.setattr(cfg, "_NOTED", set())


def test_the_old_name_iterations_is_read_as_steps_with_one_note(fresh_notes, capsys):
    config = resolve_config("fast", None, ["stage2.iterations=300"])
    assert config.stage2.steps == 300
    assert capsys.readouterr().err == "note: stage2.iterations is now stage2.steps\n"
    again = cfg.merge(run_preset("fast"), {"stage2": {"iterations": 7}})
    assert again.stage2.steps == 7
    assert capsys.readouterr().err == ""  # once
    with pytest.raises(IronError, match="iterations is the old name of steps; give only one"):
        cfg.merge(run_preset("fast"), {"stage2": {"iterations": 7, "steps": 8}})


def test_old_saved_configs_and_checkpoint_sections_still_load(fresh_notes, tmp_path, capsys):
    saved = cfg.to_dict(run_preset("fast"))
    saved["stage2"]["iterations"] = saved["stage2"].pop("steps") + 11
    (tmp_path / "config.json").write_text(json.dumps(saved))
    config = ConfigRequest().for_run(tmp_path, None)  # a bare `iron run` resuming an old run
    assert config.stage2.steps == 1011
    assert "note: stage2.iterations is now stage2.steps" in capsys.readouterr().err
    checkpoint_section = {"iterations": 50}
    assert cfg.from_dict(Stage2Config, checkpoint_section, "ckpt").steps == 50
    assert capsys.readouterr().err == "note: iterations is now steps (ckpt)\n"
    file = tmp_path / "old.json"
    file.write_text(json.dumps({"stage2": {"iterations": 12}}))
    assert resolve_config("fast", file).stage2.steps == 12


# ----------------------------------------------------------------------------- help


@pytest.mark.parametrize("root", [RunConfig, EvalConfig, SynthConfig])
def test_every_option_has_a_one_line_help(root):
    missing = []
    for section in dataclasses_under(root):
        for item in dataclasses.fields(section):
            text = item.metadata.get("help", "")
            if not text.strip() or "\n" in text:
                missing.append(f"{section.__name__}.{item.name}")
    assert not missing, missing
    assert len(list(cfg.config_fields(root))) >= 18


def test_defaults_are_the_presets_as_they_were():
    """Turning comments into field help changed no value (a few spot checks; the presets'
    bit-identity is what tests/test_budget.py and the demo compare)."""
    fast, paper = run_preset("fast"), run_preset("paper")
    assert (fast.stage2.steps, paper.stage2.steps) == (1000, 50_000)
    assert fast.stage1.volume.background == "auto" and paper.stage2.background == "black"
    assert fast.stage2.materials.diffuse_model == "burley"
    assert fast.stage1.train.adam_betas == (0.9, 0.99)
    assert fast.export.object == "auto" and RunConfig().export == fast.export


# ----------------------------------------------------------------------------- iron config


@pytest.fixture
def iron(monkeypatch, capsys):
    """``iron ARGS`` in this process: (exit status, stdout, stderr)."""
    monkeypatch.setenv("IRON_NO_TCMALLOC", "1")  # main() would re-execute the process
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def run(*argv: str) -> tuple[int, str, str]:
        status = main(["config", *argv])
        out, err = capsys.readouterr()
        return status, out, err

    yield run
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def rows(out: str) -> dict[str, tuple[str, str, str]]:
    """``key -> (value, source, help)`` of ``iron config``'s option lines."""
    table = {}
    for line in out.splitlines():
        match = re.match(r"^([a-z_0-9.]+) +(.+?) +(preset|capture rule|--[a-z-]+)  +(.+)$", line)
        if match:
            table[match[1]] = (match[2], match[3], match[4])
    return table


def test_iron_config_shows_each_value_with_its_source_and_help(iron):
    status, out, err = iron("--set", "stage2.steps=300", "--set", "stage2.patch_size=64")
    assert status == 0 and err == ""
    table = rows(out)
    assert len(table) == len(list(cfg.config_fields(RunConfig)))
    assert table["stage2.steps"][:2] == ("300", "--set")
    assert table["stage2.steps"][2].startswith("training steps")
    assert table["stage2.patch_size"][:2] == ("64", "--set")  # the preset's value, but named
    assert table["stage2.lr_sdf"][:2] == ("0.0001", "preset")
    assert table["stage1.train.adam_betas"][0] == "[0.9, 0.99]"
    assert "[stage2.materials]" in out.splitlines()


def test_iron_config_reads_the_old_name_as_the_new_one(iron, fresh_notes):
    status, out, err = iron("--set", "stage2.iterations=300")
    assert status == 0 and err == "note: stage2.iterations is now stage2.steps\n"
    assert rows(out)["stage2.steps"][:2] == ("300", "--set")


def test_iron_config_names_the_file_the_minutes_and_no_edges(iron, tmp_path):
    path = tmp_path / "my.json"
    path.write_text(json.dumps({"stage2": {"lr_sdf": 1e-4}, "export": {"resolution": 64}}))
    options = ("--minutes", "3", "--no-edges", "--preset", "paper")
    status, out, _ = iron("--config", str(path), *options)
    assert status == 0
    table = rows(out)
    assert table["stage2.lr_sdf"][:2] == ("0.0001", "--config")
    assert table["export.resolution"][:2] == ("64", "--config")
    assert table["budget.minutes"][:2] == ("3.0", "--minutes")
    assert table["stage2.edges"][:2] == ("false", "--no-edges")
    assert table["preset"][:2] == ("paper", "preset")


def test_iron_config_with_data_shows_what_the_capture_rule_changed(iron, tmp_path):
    """Cameras of 512x512 views: the rule doubles the grid (96 -> 192) and stage 1's steps."""
    (tmp_path / "train").mkdir()
    cameras = ring_cameras(n=6, width=512, height=512)
    entries = cameras_to_dict([f"{i}.png" for i in range(6)], cameras)
    (tmp_path / "train" / CAMERA_FILE).write_text(json.dumps(entries))
    status, out, _ = iron(str(tmp_path), "--set", "stage2.steps=300")
    assert status == 0
    table = rows(out)
    expected = resolve_config("fast", None, ["stage2.steps=300"], capture=capture_size(tmp_path))
    assert expected.stage1.train.steps == 3000  # the rule's s = 2
    assert table["stage1.train.steps"][:2] == ("3000", "capture rule")
    assert table["stage1.sdf.grid.max_resolution"][:2] == ("192", "capture rule")
    assert table["stage2.steps"][:2] == ("300", "--set")  # --set wins over the rule
    assert table["stage1.train.lr"][1] == "preset"
    assert "capture rule on" in out.splitlines()[0]
    status, out, _ = iron(str(tmp_path), "--set", "stage2.steps=300", "--json")
    assert json.loads(out) == json.loads(json.dumps(cfg.to_dict(expected)))  # RUN/config.json


def test_iron_config_errors_are_one_line_and_status_2(iron, tmp_path):
    status, out, err = iron("--set", "stage2.ambient=on")
    assert (status, out) == (2, "")
    assert err == f"iron config: error: {AMBIENT_ERROR}\n"
    status, _, err = iron(str(tmp_path / "missing"))
    assert status == 2 and len(err.splitlines()) == 1 and "no training cameras" in err
    status, _, err = iron("--set", "stage2.stepz=3")
    assert status == 2 and len(err.splitlines()) == 1 and "unknown option" in err
