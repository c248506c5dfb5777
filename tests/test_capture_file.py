"""``DATA/capture.json``: what photographs' files say about how they were taken, the defaults
that follow, and where those defaults sit among the preset, the capture rule and ``--set``.

The photographs are written here with known EXIF fields (PIL) and a known border level.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from ironrender.budget import capture_size
from ironrender.data.capture_file import (
    CAPTURE_FILE,
    CaptureDescription,
    capture_remedies,
    describe_photographs,
    read_capture,
    write_capture,
)
from ironrender.data.dataset import save_split
from ironrender.data.synth import SynthConfig
from ironrender.data.synth.synthesis import synthetic_description
from ironrender.errors import DatasetError
from ironrender.run_config import config_sources, remedy_lines, resolve_steps
from tests.conftest import ring_cameras

BORDER = 40  # 8-bit level of the room around the object


def write_photo(path, exposure_time=0.1, exposure_mode=1, white_balance=0, flash=1) -> None:
    """A 96x64 JPEG: a bright object in the middle of a room at ``BORDER``, with EXIF."""
    pixels = np.full((64, 96, 3), BORDER, dtype=np.uint8)
    pixels[16:48, 24:72] = 220
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[0x0110] = "Canon EOS REBEL T3"
    sub = exif.get_ifd(0x8769)
    sub[0x829A] = exposure_time
    sub[0x829D] = 18.0
    sub[0x8827] = 800
    sub[0x9209] = flash  # bit 0: fired
    sub[0xA402] = exposure_mode  # 1: manual
    sub[0xA403] = white_balance  # 0: auto
    Image.fromarray(pixels).save(path, quality=95, exif=exif)


def test_exif_and_the_border_describe_the_photographs(tmp_path):
    paths = [tmp_path / f"{i}.jpg" for i in range(5)]
    for path in paths:
        write_photo(path)
    described = describe_photographs(paths)
    assert described.source == "photographs"
    assert described.encoding == "srgb"
    assert described.camera == "Canon EOS REBEL T3"  # the make is not repeated
    assert (described.exposure, described.white_balance) == ("fixed", "auto")
    assert (described.exposure_time, described.f_number, described.iso) == (0.1, 18.0, 800.0)
    assert described.flash_fired is True
    assert described.room_level == pytest.approx(BORDER / 255, abs=1.5 / 255)

    write_photo(paths[0], exposure_time=0.05)  # manual, but one photograph differs
    assert describe_photographs(paths).exposure == "varies"
    write_photo(paths[0], exposure_mode=0)  # automatic exposure on one photograph
    assert describe_photographs(paths).exposure == "auto"


def test_remedies_follow_the_description():
    camera = CaptureDescription("photographs", "srgb", "Phone", "auto", "fixed")
    keys = {r.key: r.value for r in capture_remedies(camera)}
    assert keys == {
        "stage2.tone_curve": "srgb",
        "stage2.exposure_gains": True,
        "stage2.vignetting": True,
        "stage2.response_curve": True,
        "stage2.object_patch_fraction": 0.8,
    }
    fixed = CaptureDescription("photographs", "gamma2.2", "Lab", "fixed", "fixed", flash_fired=True)
    assert {r.key for r in capture_remedies(fixed)} == {
        "stage2.vignetting",
        "stage2.response_curve",
        "stage2.object_patch_fraction",
        "stage2.flash",  # a flash that fired, nowhere in the camera file: learnt
    }
    # the camera file says where the flash was: it is not learnt
    assert "stage2.flash" not in {r.key for r in capture_remedies(fixed, flash_known=True)}
    # the default synthetic scene: nothing to change; a "phone" render: its curve and gains
    assert capture_remedies(synthetic_description(SynthConfig())) == []
    phone = synthetic_description(SynthConfig(exposure_jitter=0.15, tone_curve="srgb"))
    assert {r.key: r.value for r in capture_remedies(phone)} == {
        "stage2.tone_curve": "srgb",
        "stage2.exposure_gains": True,
    }


def dataset(tmp_path, description: CaptureDescription | None):
    cameras = ring_cameras(6, 16, 12)
    images = np.full((6, 12, 16, 3), 0.2, dtype=np.float32)
    save_split(tmp_path, "train", [f"{i}.png" for i in range(6)], images, cameras)
    if description is not None:
        write_capture(tmp_path, description)
    return capture_size(tmp_path)


def test_capture_file_sits_between_the_capture_rule_and_set(tmp_path):
    capture = dataset(tmp_path, CaptureDescription("photographs", "srgb", "Phone", "auto"))
    steps = resolve_steps("fast", capture=capture)
    assert [s.source for s in steps] == ["preset", "capture rule", "capture file"]
    config = steps[-1].config
    assert config.stage2.tone_curve == "srgb"
    assert config.stage2.exposure_gains and config.stage2.vignetting
    assert config.stage2.response_curve
    assert config_sources(steps)["stage2.vignetting"] == "capture file"
    lines = remedy_lines(config, capture)
    assert len(lines) == 5 and "white balance" not in lines[1] and "exposure auto" in lines[1]
    assert config.stage2.object_patch_fraction == 0.8 and config.stage2.flash == "dataset"

    steps = resolve_steps("fast", overrides=["stage2.vignetting=false"], capture=capture)
    config = steps[-1].config
    assert not config.stage2.vignetting and config.stage2.response_curve
    assert not any("vignetting" in line for line in remedy_lines(config, capture))
    assert config_sources(steps)["stage2.vignetting"] == "--set"

    paper = resolve_steps("paper", capture=capture)[-1].config  # IRON as published
    assert paper.stage2.tone_curve == "gamma2.2" and not paper.stage2.exposure_gains


def test_dataset_without_the_file_resolves_as_before(tmp_path):
    capture = dataset(tmp_path, None)
    assert capture.remedies == ()
    steps = resolve_steps("fast", capture=capture)
    assert [s.source for s in steps] == ["preset", "capture rule"]
    assert not steps[-1].config.stage2.vignetting


def test_a_broken_capture_file_is_a_one_line_dataset_error(tmp_path):
    (tmp_path / CAPTURE_FILE).write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        read_capture(tmp_path)
    (tmp_path / CAPTURE_FILE).write_text(json.dumps({"version": 99}))
    with pytest.raises(DatasetError, match="version"):
        read_capture(tmp_path)
    # a value outside the documented ones is an error, not a silent "nothing to do"
    bad = {"version": 1, "source": "photographs", "encoding": "jpeg"}
    (tmp_path / CAPTURE_FILE).write_text(json.dumps(bad))
    with pytest.raises(DatasetError, match="encoding: expected one of"):
        read_capture(tmp_path)
    (tmp_path / CAPTURE_FILE).write_text(json.dumps(bad | {"encoding": "srgb", "exposure": "on"}))
    with pytest.raises(DatasetError, match="exposure"):
        read_capture(tmp_path)
