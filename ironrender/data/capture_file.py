"""``DATA/capture.json``: what a dataset knows about how its images were made, and the
stage-2 remedies that follow from it.

A person with JPEGs from a phone never types ``--set stage2.tone_curve=srgb``. ``iron import``
knows it is reading a camera's photographs (JPEG files, EXIF), ``iron synth`` knows exactly what
it rendered; both write what they know here, and ``iron run`` turns it into defaults
(:func:`capture_remedies`), applied after the preset and the capture rule and before
``--config`` and ``--set`` (:func:`ironrender.run_config.resolve_steps`), each said in the log
with its reason. A dataset without the file runs exactly as before; the ``paper`` preset (IRON
as published) ignores it.

The file (all keys optional but ``version``; unknown values are ``null``)::

    {
      "version": 1,
      "source": "photographs" | "synthetic",
      "encoding": "srgb" | "gamma2.2" | "linear",   # the source images' tone curve
      "camera": "Canon EOS Rebel T3",                # EXIF make and model
      "exposure": "fixed" | "varies" | "auto",       # EXIF exposure mode / distinct exposures
      "white_balance": "fixed" | "varies" | "auto",  # EXIF white balance mode
      "exposure_time": 0.1, "f_number": 18.0, "iso": 800.0,   # medians over the photographs
      "flash_fired": true,                            # EXIF flash bit, on most photographs
      "room_level": 0.035,                            # median 8-bit border value / 255
      "vignetting": true                              # a real lens (renders have none)
    }

Rules (:func:`capture_remedies`): an sRGB source sets ``stage2.tone_curve=srgb``; an exposure or
a white balance that is automatic or varies sets ``stage2.exposure_gains``; a real camera's
photographs set ``stage2.vignetting`` and ``stage2.response_curve`` (the camera model of
:mod:`ironrender.training.photometric`) and centre most of stage 2's patches on the object
(``stage2.object_patch_fraction``: the room around it takes most of a photograph); a flash
that fired, where the camera file gives no flash position, sets ``stage2.flash=learn`` (a
camera's own flash sits a few centimetres from the lens). Measured on the skull (BENCHMARKS.md,
"The look of real captures").
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from statistics import median
from typing import Literal

import numpy as np
from PIL import Image

from ironrender.config import check_choices
from ironrender.errors import DatasetError

CAPTURE_FILE = "capture.json"
VERSION = 1
#: A border whose median 8-bit value is above this is a room that is not dark (stage 1's test).
DARK_ROOM_LEVEL = 2.0 / 255.0
#: JPEG drafts this many times smaller are decoded to measure the border (fast, the same level).
DRAFT_REDUCTION = 8
BORDER_FRACTION = 0.08  # of each side: the strip measured as the room
#: Share of stage 2's patches centred on the object in photographs (skull: object PSNR +0.9 dB
#: with the camera model, BENCHMARKS.md).
OBJECT_PATCH_FRACTION = 0.8

Source = Literal["photographs", "synthetic"]
Encoding = Literal["srgb", "gamma2.2", "linear"]
Setting = Literal["fixed", "varies", "auto"]

# EXIF tags (Exif IFD 0x8769 unless noted)
EXIF_IFD = 0x8769
MAKE, MODEL = 0x010F, 0x0110  # IFD0
EXPOSURE_TIME, F_NUMBER, ISO = 0x829A, 0x829D, 0x8827
FLASH, EXPOSURE_MODE, WHITE_BALANCE = 0x9209, 0xA402, 0xA403
COLOR_SPACE = 0xA001  # 1: sRGB
EXIF_MANUAL = 1  # ExposureMode and WhiteBalance: 0 auto, 1 manual


@dataclass
class CaptureDescription:
    """The contents of ``capture.json`` (module docstring)."""

    source: Source
    encoding: Encoding
    camera: str | None = None
    exposure: Setting | None = None
    white_balance: Setting | None = None
    exposure_time: float | None = None
    f_number: float | None = None
    iso: float | None = None
    flash_fired: bool | None = None
    room_level: float | None = None
    vignetting: bool | None = None

    def to_json(self) -> dict:
        return {"version": VERSION} | asdict(self)

    @classmethod
    def from_json(cls, data: dict, where: str) -> CaptureDescription:
        known = {f.name for f in fields(cls)}
        if data.get("version") != VERSION:
            raise DatasetError(f"{where}: unknown capture-file version {data.get('version')!r}")
        try:
            description = cls(**{k: v for k, v in data.items() if k in known})
            check_choices(description)  # "encoding": "jpeg" must not pass as "no remedy"
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"{where}: {exc}; fix it or delete the file") from exc
        return description


@dataclass(frozen=True)
class Remedy:
    """One default the data calls for: a ``--set`` key, its value, and why."""

    key: str
    value: object
    reason: str


def write_capture(data_dir: str | Path, description: CaptureDescription) -> Path:
    path = Path(data_dir) / CAPTURE_FILE
    path.write_text(json.dumps(description.to_json(), indent=1) + "\n")
    return path


def read_capture(data_dir: str | Path) -> CaptureDescription | None:
    """The dataset's description, None when it has no capture file."""
    path = Path(data_dir) / CAPTURE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc}); delete it or fix it") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object")
    return CaptureDescription.from_json(data, str(path))


def capture_remedies(
    description: CaptureDescription | None, flash_known: bool = False
) -> list[Remedy]:
    """The stage-2 defaults the description calls for (module docstring), in a fixed order.

    ``flash_known``: the camera file says where the flash was (then it is not learnt)."""
    if description is None:
        return []
    remedies = []
    images = "photographs" if description.source == "photographs" else "renders"
    if description.encoding == "srgb":
        remedies.append(Remedy("stage2.tone_curve", "srgb", f"the {images} are sRGB-encoded"))
    varying = [
        f"{name} {value}"
        for name, value in (
            ("exposure", description.exposure),
            ("white balance", description.white_balance),
        )
        if value in ("auto", "varies")
    ]
    if varying:
        remedies.append(
            Remedy("stage2.exposure_gains", True, f"{' and '.join(varying)}: gains per photograph")
        )
    if description.source == "photographs" and description.vignetting is not False:
        camera = f"photographs of {description.camera or 'a camera'}"
        remedies.append(Remedy("stage2.vignetting", True, f"{camera}: a lens darkens the corners"))
        remedies.append(
            Remedy("stage2.response_curve", True, f"{camera}: its tone curve is its own")
        )
        remedies.append(
            Remedy(
                "stage2.object_patch_fraction",
                OBJECT_PATCH_FRACTION,
                "photographs show a room around the object: most patches centred on it",
            )
        )
        if description.flash_fired and not flash_known:
            remedies.append(
                Remedy(
                    "stage2.flash",
                    "learn",
                    "the camera's own flash fired and the camera file does not say where it"
                    " sits beside the lens: its offset is learnt",
                )
            )
    return remedies


def describe(description: CaptureDescription) -> str:
    """One line: what the file says and what ``iron run`` will do about it."""
    d = description
    parts = [d.camera or d.source, f"{d.encoding} images"]
    if d.exposure_time is not None:
        parts.append(
            f"1/{1 / d.exposure_time:.0f} s" if d.exposure_time < 1 else f"{d.exposure_time:g} s"
        )
    parts += [f"exposure {d.exposure}"] if d.exposure else []
    parts += [f"white balance {d.white_balance}"] if d.white_balance else []
    if d.room_level is not None:
        dark = "dark" if d.room_level <= DARK_ROOM_LEVEL else "not dark"
        parts.append(f"room level {255 * d.room_level:.0f}/255 ({dark})")
    remedies = capture_remedies(description)
    then = ", ".join(f"{r.key}={json.dumps(r.value)}" for r in remedies) or "nothing to change"
    return f"{'; '.join(parts)} -> iron run: {then}"


# ----------------------------------------------------------------------------- photographs
def describe_photographs(paths: Sequence[Path]) -> CaptureDescription:
    """What the photographs' files say (EXIF) and their border's level, for ``iron import``.

    JPEG/PNG/TIFF files from a camera are sRGB-encoded unless the EXIF colour space says
    otherwise (uncalibrated: Adobe RGB, still the same curve family, treated as sRGB); 16-bit
    and EXR files are taken as linear."""
    exif = [_exif(path) for path in paths]
    make_model = {_camera_name(e.get("make", ""), e.get("model", "")) for e in exif}
    make_model.discard("")
    linear = all(Path(p).suffix.lower() in (".exr", ".hdr") for p in paths)
    return CaptureDescription(
        source="photographs",
        encoding="linear" if linear else "srgb",
        camera=", ".join(sorted(make_model)) or None,
        exposure=_setting(exif, "exposure_mode", ("exposure_time", "f_number", "iso")),
        white_balance=_setting(exif, "white_balance", ()),
        exposure_time=_median(exif, "exposure_time"),
        f_number=_median(exif, "f_number"),
        iso=_median(exif, "iso"),
        flash_fired=_majority(exif, "flash_fired"),
        room_level=border_level(paths),
        vignetting=True,
    )


def _exif(path: Path) -> dict:
    """The EXIF fields :func:`describe_photographs` reads, as plain values (missing: absent)."""
    try:
        with Image.open(path) as image:
            exif = image.getexif()
            sub = exif.get_ifd(EXIF_IFD)
    except (OSError, ValueError):
        return {}
    values: dict = {}
    for key, tag, table in (("make", MAKE, exif), ("model", MODEL, exif)):
        if tag in table:
            values[key] = str(table[tag]).strip("\x00 ")
    for key, tag in (("exposure_time", EXPOSURE_TIME), ("f_number", F_NUMBER), ("iso", ISO)):
        if tag in sub:
            value = sub[tag]
            value = value[0] if isinstance(value, tuple) else value
            values[key] = float(value)
    if FLASH in sub:
        values["flash_fired"] = bool(int(sub[FLASH]) & 1)
    if EXPOSURE_MODE in sub:
        values["exposure_mode"] = int(sub[EXPOSURE_MODE])
    if WHITE_BALANCE in sub:
        values["white_balance"] = int(sub[WHITE_BALANCE])
    return values


def _camera_name(make: str, model: str) -> str:
    """``Canon EOS REBEL T3``, not ``Canon Canon EOS REBEL T3`` (models often repeat the make)."""
    if make and model.lower().startswith(make.lower()):
        return model
    return f"{make} {model}".strip()


def _setting(exif: list[dict], mode_key: str, value_keys: tuple[str, ...]) -> Setting | None:
    """``auto`` if any photograph says its mode was automatic, ``varies`` if the recorded
    values differ between photographs, ``fixed`` if all say manual, else unknown (None)."""
    modes = [e[mode_key] for e in exif if mode_key in e]
    if any(mode != EXIF_MANUAL for mode in modes):
        return "auto"
    for key in value_keys:
        if len({e[key] for e in exif if key in e}) > 1:
            return "varies"
    return "fixed" if modes and len(modes) == len(exif) else None


def _median(exif: list[dict], key: str) -> float | None:
    values = [e[key] for e in exif if key in e]
    return float(median(values)) if values else None


def _majority(exif: list[dict], key: str) -> bool | None:
    values = [e[key] for e in exif if key in e]
    return sum(values) * 2 > len(values) if values else None


def border_level(paths: Sequence[Path]) -> float | None:
    """The median over photographs of their border strip's median 8-bit value (/255): the
    room's level, as the file encodes it. JPEGs are decoded as reduced drafts (fast)."""
    levels = []
    for path in paths:
        try:
            with Image.open(path) as image:
                image.draft(
                    "RGB", (image.width // DRAFT_REDUCTION, image.height // DRAFT_REDUCTION)
                )
                pixels = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
        except (OSError, ValueError):
            continue
        h, w = pixels.shape
        bh, bw = max(1, int(h * BORDER_FRACTION)), max(1, int(w * BORDER_FRACTION))
        strip = np.concatenate(
            [
                pixels[:bh].ravel(),
                pixels[-bh:].ravel(),
                pixels[:, :bw].ravel(),
                pixels[:, -bw:].ravel(),
            ]
        )
        levels.append(float(np.median(strip)))
    return round(float(np.median(levels)), 4) if levels else None
