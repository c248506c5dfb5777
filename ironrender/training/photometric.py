"""What the photographs hold besides the flash's light on the materials (not in IRON).

IRON assumes a dark room, a flash in the lens and a camera of fixed gain. Real captures break
each assumption a little, and stage 2 can fit a small model of each alongside the materials.
Each is one :class:`PhotometricModel`: its parameters, the configuration option that turns it
on, its learning rate, the one place it acts in rendering, and its line in the report. Stage 2
(:class:`~ironrender.training.stage2_model.Stage2Model`) holds the ones a run fits in
:data:`PHOTOMETRIC_MODELS` order; adding one is adding a class here and to that tuple.

* :class:`RoomLight` (``stage2.ambient``): a dim room's light on the diffuse lobe, nine
  spherical-harmonic irradiance coefficients per channel (:mod:`ironrender.fields.ambient`).
* :class:`CameraGains` (``stage2.exposure_gains``): automatic exposure and white balance, three
  gains per photograph multiplying its render, ``pred_i = g_i render_i`` with ``g_i =
  exp(log g_i)``, starting at 1 and held near 1 by ``gains_weight * mean(log g^2)``. The
  regulariser settles the one thing the photographs cannot tell, a common factor between every
  gain and the flash intensity: the gains' geometric mean stays near 1 and the flash keeps the
  scale. Held-out views are rendered at gain 1, the exposure the capture was meant to have.
* :class:`FlashOffset` (``stage2.flash=learn``): where the flash was, when the camera file does
  not say; one offset in camera coordinates (OpenCV axes, scene units) shared by every view,
  starting in the lens. The light position enters the general point-light shading smoothly
  (:func:`ironrender.rendering.brdf.shade_point_light`: through ``d_l``, ``n . l`` and the half
  vector), so the photographs' gradients reach it; the shadow rays follow it without a
  gradient. A 5-degree offset imported as co-located costs 6 dB of albedo (BENCHMARKS.md).

None of them enters the exported materials: the albedo is what remains once they are
explained, and relighting, export and the material metrics use the materials alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from ironrender.data.cameras import Cameras
from ironrender.fields.ambient import AmbientLight
from ironrender.training.stage2_config import Stage2Config

RGB = 3


@dataclass(frozen=True)
class CaptureFacts:
    """What decides which photometric models a run fits, and their sizes."""

    views: int  # training photographs
    colocated: bool  # the camera file does not say where the flash was (IRON's flash in the lens)
    room_lit: bool  # stage 1 found the room around the object not dark (it modelled it)


@dataclass(frozen=True)
class LightScale:
    """What a report line measures against: the flash intensity and the median camera
    distance (the flash's irradiance on the object is about ``I / d^2``)."""

    intensity: float
    distance: float


class PhotometricModel(nn.Module):
    """One thing besides the flash and the materials that the photographs hold.

    Subclasses set :attr:`name` (its key in checkpoints and logs) and :attr:`lr_option` (the
    :class:`Stage2Config` field with its learning rate), decide when a run fits it
    (:meth:`wanted`), and override the hooks where they act; the defaults change nothing.
    """

    name: ClassVar[str]
    lr_option: ClassVar[str]

    @classmethod
    def wanted(cls, config: Stage2Config, capture: CaptureFacts) -> bool:
        raise NotImplementedError

    @classmethod
    def create(cls, capture: CaptureFacts) -> PhotometricModel:
        """A fresh model, at the value that changes nothing (no room light, gain 1, ...)."""
        return cls()

    @classmethod
    def from_state(cls, state: dict[str, Tensor]) -> PhotometricModel:
        """An empty model shaped for its saved ``state`` (its own keys, without prefix)."""
        return cls()

    def parameter_group(self, config: Stage2Config) -> dict:
        """Its Adam parameter group (stage 2's ``photometric`` optimiser)."""
        return {"params": list(self.parameters()), "lr": getattr(config, self.lr_option)}

    # ----------------------------------------------------------------------------- hooks
    def place(self, cameras: Cameras) -> Cameras:
        """The cameras with the light where this model puts it."""
        return cameras

    def surface_radiance(self, diffuse_albedo: Tensor, normals: Tensor) -> Tensor | None:
        """Radiance it adds to what the flash makes a surface point send (None: nothing)."""
        return None

    def observe(self, color: Tensor, view: int) -> Tensor:
        """A training photograph's render as that photograph records it."""
        return color

    def penalty(self, config: Stage2Config) -> tuple[float, Tensor] | None:
        """A ``(weight, unweighted term)`` added to the loss (None: none)."""
        return None

    def describe(self, scale: LightScale) -> str:
        """One line on what it came to."""
        raise NotImplementedError


class RoomLight(PhotometricModel):
    """A dim room's ambient irradiance on the diffuse lobe: ``rho_d / pi E(n)``
    (:class:`~ironrender.fields.ambient.AmbientLight`, zero at the start: a dark room)."""

    name = "ambient"
    lr_option = "lr_ambient"

    def __init__(self) -> None:
        super().__init__()
        self.light = AmbientLight()

    @classmethod
    def wanted(cls, config: Stage2Config, capture: CaptureFacts) -> bool:
        """``sh2``, or ``auto`` when stage 1 found the room not dark (its photographs' borders
        above 2/255). Light that reaches the room reaches the object too; in a dark room the
        flash is the only light and the term would only have noise to fit."""
        return config.ambient == "sh2" or (config.ambient == "auto" and capture.room_lit)

    def surface_radiance(self, diffuse_albedo: Tensor, normals: Tensor) -> Tensor:
        return self.light.radiance(diffuse_albedo, normals)

    def describe(self, scale: LightScale) -> str:
        """The mean irradiance as a share of the flash's at the median camera distance."""
        flash = scale.intensity / scale.distance**2
        share = self.light.mean_irradiance().detach().cpu() / flash
        return (
            "room light " + "/".join(f"{100 * float(v):.1f}" for v in share) + " % of the"
            f" flash's irradiance at {scale.distance:.2g} (RGB)"
        )


class CameraGains(PhotometricModel):
    """``views`` x RGB gains, stored as logarithms (always positive; Adam's steps relative)."""

    name = "gains"
    lr_option = "lr_gains"

    def __init__(self, views: int) -> None:
        super().__init__()
        self.log_gains = nn.Parameter(torch.zeros(views, RGB))

    @classmethod
    def wanted(cls, config: Stage2Config, capture: CaptureFacts) -> bool:
        return config.exposure_gains

    @classmethod
    def create(cls, capture: CaptureFacts) -> CameraGains:
        return cls(capture.views)

    @classmethod
    def from_state(cls, state: dict[str, Tensor]) -> CameraGains:
        return cls(len(state["log_gains"]))

    def forward(self, view: int) -> Tensor:
        """The gains (3,) of training view ``view``."""
        return self.log_gains[view].exp()

    def observe(self, color: Tensor, view: int) -> Tensor:
        return color * self(view)

    def penalty(self, config: Stage2Config) -> tuple[float, Tensor]:
        """``mean(log g^2)`` over views and channels: zero at gain 1."""
        return config.gains_weight, (self.log_gains**2).mean()

    def describe(self, scale: LightScale) -> str:
        values = self.log_gains.detach().exp().cpu()
        return f"camera gains {float(values.min()):.3f}-{float(values.max()):.3f}"


class FlashOffset(PhotometricModel):
    """One flash position (3,) in camera coordinates, shared by every view."""

    name = "flash"
    lr_option = "lr_flash"

    def __init__(self) -> None:
        super().__init__()
        self.offset = nn.Parameter(torch.zeros(3))

    @classmethod
    def wanted(cls, config: Stage2Config, capture: CaptureFacts) -> bool:
        """``flash=learn`` when the camera file gives no flash position (a capture that says
        where its flash was is taken at its word)."""
        if config.flash != "learn":
            return False
        if not capture.colocated:
            print("stage 2: the camera file says where the flash was; stage2.flash=learn ignored")
        return capture.colocated

    def place(self, cameras: Cameras) -> Cameras:
        """``cameras`` with their flash at the offset, differentiably; cameras whose file says
        where their flash was keep it.

        Set after construction: ``Cameras`` reads an all-zero flash as the co-located case (no
        tensor, no gradient), which is where the offset starts.
        """
        if not cameras.colocated:
            return cameras
        placed = Cameras(cameras.intrinsics, cameras.w2c, cameras.sizes)
        placed.flash = self.offset.to(cameras.w2c.dtype).expand(len(cameras), 3)
        return placed

    def degrees(self, distance: float) -> float:
        """The offset's angle off the optical axis seen from ``distance`` along it."""
        lateral = self.offset.detach()[:2].norm()
        return float(torch.rad2deg(torch.atan2(lateral, torch.tensor(distance))))

    def describe(self, scale: LightScale) -> str:
        x, y, z = (float(v) for v in self.offset.detach())
        return (
            f"flash at ({x:.3f}, {y:.3f}, {z:.3f}):"
            f" {self.degrees(scale.distance):.1f} deg off the axis"
        )


#: Every photometric model, in the order a run holds them (and their optimiser groups).
PHOTOMETRIC_MODELS: tuple[type[PhotometricModel], ...] = (RoomLight, CameraGains, FlashOffset)


def photometric_models(config: Stage2Config, capture: CaptureFacts) -> list[PhotometricModel]:
    """Fresh instances of the models ``config`` asks for on this capture."""
    return [kind.create(capture) for kind in PHOTOMETRIC_MODELS if kind.wanted(config, capture)]


def photometric_from_state(model_state: dict[str, Tensor], prefix: str) -> list[PhotometricModel]:
    """Empty instances of the models a saved stage-2 state holds (keys ``prefix<name>.``)."""
    models = []
    for kind in PHOTOMETRIC_MODELS:
        head = f"{prefix}{kind.name}."
        own = {k[len(head) :]: v for k, v in model_state.items() if k.startswith(head)}
        if own:
            models.append(kind.from_state(own))
    return models
