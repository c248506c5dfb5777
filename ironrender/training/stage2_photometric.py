"""Stage 2's models of what the photographs hold besides the flash: the room's light
(:mod:`ironrender.fields.ambient`) and a gain per photograph
(:mod:`ironrender.training.camera_gains`): which a run fits, what they came to, and the room's
light of a trained run read back for rendering its held-out views.
"""

from __future__ import annotations

import torch

from ironrender.data.dataset import Split
from ironrender.fields.ambient import AmbientLight
from ironrender.fields.materials import MaterialFields
from ironrender.training.camera_gains import CameraGains
from ironrender.training.flash_offset import FlashOffset
from ironrender.training.stage2_config import Stage2Config


def photometric_models(
    config: Stage2Config, views: int, room_lit: bool, device: torch.device | str
) -> tuple[AmbientLight | None, CameraGains | None]:
    """The room's light and the camera gains this run fits (None: not modelled).

    ``ambient="auto"`` turns the room's light on when ``room_lit``: when stage 1 found the room
    around the object not dark (its photographs' borders above 2/255, which gives it a model of
    the room). Light that reaches the room reaches the object too; in a dark room the flash is
    the only light and the term would only have noise to fit.
    """
    use_ambient = config.ambient == "sh2" or (config.ambient == "auto" and room_lit)
    ambient = AmbientLight().to(device) if use_ambient else None
    gains = CameraGains(views).to(device) if config.exposure_gains else None
    return ambient, gains


def learned_flash(config: Stage2Config, split: Split, device) -> FlashOffset | None:
    """The flash offset to learn: with ``flash="learn"`` when the camera file gives none (a
    capture that says where its flash was is taken at its word)."""
    if config.flash != "learn":
        return None
    if not split.cameras.colocated:
        print("stage 2: the camera file says where the flash was; stage2.flash=learn ignored")
        return None
    return FlashOffset().to(device)


def photometric_report(
    ambient: AmbientLight | None,
    gains: CameraGains | None,
    materials: MaterialFields,
    split: Split,
    flash: FlashOffset | None = None,
) -> str:
    """One line on what the room's light and the gains came to (empty when neither is fitted):
    the mean ambient irradiance as a share of the flash's at the median camera distance, the
    gains' range."""
    parts = []
    if ambient is not None:
        distance = float(split.cameras.centers.norm(dim=-1).median())
        flash = float(materials.light_intensity.detach()) / distance**2
        share = ambient.mean_irradiance().detach().cpu() / flash
        parts.append(
            "room light " + "/".join(f"{100 * float(v):.1f}" for v in share) + " % of the flash's"
            f" irradiance at {distance:.2g} (RGB)"
        )
    if gains is not None:
        values = gains.log_gains.detach().exp().cpu()
        parts.append(f"camera gains {float(values.min()):.3f}-{float(values.max()):.3f}")
    if flash is not None:
        parts.append(flash.describe(float(split.cameras.centers.norm(dim=-1).median())))
    return "; ".join(parts)


def flash_from_checkpoint(state: dict, device: torch.device | str) -> FlashOffset | None:
    """The flash offset a stage-2 checkpoint learnt (None if it learnt none)."""
    if "flash" not in state:
        return None
    flash = FlashOffset().to(device)
    flash.load_state_dict(state["flash"])
    return flash.eval()


def ambient_from_checkpoint(state: dict, device: torch.device | str) -> AmbientLight | None:
    """The room's light a stage-2 checkpoint holds (None if the run fitted none), for rendering
    its held-out views."""
    if "ambient" not in state:
        return None
    ambient = AmbientLight().to(device)
    ambient.load_state_dict(state["ambient"])
    return ambient.eval()
