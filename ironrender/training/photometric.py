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
  exp(log g_i - mean_j log g_j)``: their geometric mean is 1 in each channel, so that a factor
  common to every photograph, which the photographs cannot tell from the flash intensity and
  the albedo's colour, stays with those; starting at 1, their spread held by ``gains_weight *
  mean(log g^2)``. Held-out photographs get gains of their own
  (:mod:`ironrender.evaluation.camera_gains`).
* :class:`Vignetting` (``stage2.vignetting``): the lens darkening towards the corners (and the
  flash's own fall-off away from its axis, which the flash beside the lens maps to the same
  place in every photograph): ``V(rho) = 1 + a_1 rho^2 + a_2 rho^4 + a_3 rho^6`` multiplying the
  render, ``rho`` the pixel's distance from the principal point on the unit-depth image plane
  over the capture's largest (:meth:`Cameras.field_radius`), one polynomial for the capture's
  lens, starting at ``V = 1`` and held there by ``vignetting_weight * mean(a^2)``.
* :class:`ResponseCurve` (``stage2.response_curve``): the camera's own tone curve, as a
  correction of the standard one (``tone_curve``) shared by the capture: ``photo = R(encode(
  render))`` with ``R`` monotone and piecewise linear on ``K`` equal segments of the encoded
  range, ``R(0) = 0``, ``R(1) = 1`` (the flash keeps the scale), slopes ``K softmax(theta)``,
  the identity at ``theta = 0``, held smooth and near it by ``response_weight * (mean(theta^2)
  + mean(diff(theta)^2))``. ADOP (Rückert et al. 2022) fits the same three camera terms.
* :class:`FlashOffset` (``stage2.flash=learn``): where the flash was, when the camera file does
  not say; one offset in camera coordinates (OpenCV axes, scene units) shared by every view,
  starting in the lens. The light position enters the general point-light shading smoothly
  (:func:`ironrender.rendering.brdf.shade_point_light`: through ``d_l``, ``n . l`` and the half
  vector), so the photographs' gradients reach it; the shadow rays follow it without a
  gradient. A 5-degree offset imported as co-located costs 6 dB of albedo (BENCHMARKS.md).

None of them enters the exported materials: the albedo is what remains once they are
explained, and relighting, export and the material metrics use the materials alone. Held-out
photographs are rendered through the capture's vignetting and response curve, with gains of
their own (:mod:`ironrender.evaluation.camera_gains`).
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
    field_radius: float = 1.0  # the lens's field as a tangent (Cameras.field_radius)
    hdr: bool = False  # linear photographs: no camera curve to learn


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

    def observe(self, color: Tensor, view: int | None, plane: Tensor) -> Tensor:
        """A render (H, W, 3, linear) as photograph ``view`` records it before the camera's
        curve; ``view`` None: a photograph that is not a training view (held out); ``plane``
        (H, W, 2) the pixels' :meth:`Cameras.image_plane` coordinates."""
        return color

    def respond(self, encoded: Tensor) -> Tensor:
        """The camera's curve applied to a render's values encoded by the standard curve."""
        return encoded

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

    def centred(self) -> Tensor:
        """The log gains less their mean over the photographs, per channel: gains of geometric
        mean exactly 1. A factor common to every photograph (in a channel) is the flash's and
        the albedo's; with a response curve it could also stretch the curve's input, which the
        photographs tell only as far as their brightest values reach."""
        return self.log_gains - self.log_gains.mean(0)

    def forward(self, view: int) -> Tensor:
        """The gains (3,) of training view ``view``."""
        return self.centred()[view].exp()

    def observe(self, color: Tensor, view: int | None, plane: Tensor) -> Tensor:
        return color if view is None else color * self(view)

    def penalty(self, config: Stage2Config) -> tuple[float, Tensor]:
        """``mean(log g^2)`` over views and channels: zero at gain 1 (the spread of the
        centred gains; the mean itself is held at 1 by :meth:`centred`)."""
        return config.gains_weight, (self.log_gains**2).mean()

    def describe(self, scale: LightScale) -> str:
        values = self.centred().detach().exp().cpu()
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


class Vignetting(PhotometricModel):
    """``V(rho) = 1 + a_1 rho^2 + a_2 rho^4 + a_3 rho^6`` on the render (module docstring); the
    normalising radius is a buffer, so that a checkpoint keeps the polynomial's meaning."""

    name = "vignetting"
    lr_option = "lr_vignetting"
    TERMS = 3

    def __init__(self, field_radius: float) -> None:
        super().__init__()
        self.coefficients = nn.Parameter(torch.zeros(self.TERMS))
        self.register_buffer("field_radius", torch.tensor(float(field_radius)))

    @classmethod
    def wanted(cls, config: Stage2Config, capture: CaptureFacts) -> bool:
        return config.vignetting

    @classmethod
    def create(cls, capture: CaptureFacts) -> Vignetting:
        return cls(capture.field_radius)

    @classmethod
    def from_state(cls, state: dict[str, Tensor]) -> Vignetting:
        return cls(float(state["field_radius"]))

    def forward(self, plane: Tensor) -> Tensor:
        """``V`` (H, W, 1) at image-plane coordinates ``plane`` (H, W, 2)."""
        rho2 = (plane.to(self.coefficients.dtype) ** 2).sum(-1, keepdim=True)
        rho2 = rho2 / self.field_radius**2
        powers = torch.cat([rho2, rho2**2, rho2**3], dim=-1)
        return 1.0 + (powers * self.coefficients).sum(-1, keepdim=True)

    def observe(self, color: Tensor, view: int | None, plane: Tensor) -> Tensor:
        return color * self(plane)

    def penalty(self, config: Stage2Config) -> tuple[float, Tensor]:
        return config.vignetting_weight, (self.coefficients**2).mean()

    def describe(self, scale: LightScale) -> str:
        corner = float(self(torch.tensor([[[float(self.field_radius), 0.0]]])).detach())
        a = ", ".join(f"{float(v):+.3f}" for v in self.coefficients.detach())
        return f"vignetting {corner:.3f} in the corners (a = {a})"


class ResponseCurve(PhotometricModel):
    """The camera's curve ``R`` on encoded values (module docstring): ``K`` slopes as logits."""

    name = "response"
    lr_option = "lr_response"
    SEGMENTS = 16

    def __init__(self) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(self.SEGMENTS))

    @classmethod
    def wanted(cls, config: Stage2Config, capture: CaptureFacts) -> bool:
        """``response_curve``, on 8-bit photographs (linear ones have no curve to learn)."""
        return config.response_curve and not capture.hdr

    def knots(self) -> Tensor:
        """``R`` at ``0, 1/K, ..., 1`` (K + 1,): 0, the running sum of the slopes' shares, 1."""
        shares = torch.softmax(self.logits, dim=0)
        return torch.cat([shares.new_zeros(1), shares.cumsum(0)])

    def forward(self, encoded: Tensor) -> Tensor:
        """``R(v)``, linear between knots; above 1 (a render brighter than white, kept for its
        gradient) along the last segment's slope."""
        K = self.SEGMENTS
        knots = self.knots().to(encoded.dtype)
        position = encoded * K
        segment = position.detach().floor().clamp(0, K - 1).long()
        start = knots[segment]
        slope = knots[segment + 1] - start
        return start + slope * (position - segment)

    def respond(self, encoded: Tensor) -> Tensor:
        return self(encoded)

    def penalty(self, config: Stage2Config) -> tuple[float, Tensor]:
        """Near the identity and smooth: ``mean(theta^2) + mean(diff(theta)^2)``."""
        theta = self.logits - self.logits.mean()  # softmax ignores a common offset
        return config.response_weight, (theta**2).mean() + (theta.diff() ** 2).mean()

    def describe(self, scale: LightScale) -> str:
        knots = self.knots().detach()
        K = self.SEGMENTS
        values = ", ".join(f"{float(knots[k]):.3f}" for k in (K // 4, K // 2, 3 * K // 4))
        return f"response curve 0.25/0.5/0.75 -> {values}"


#: Every photometric model, in the order a run holds them (and their optimiser groups).
PHOTOMETRIC_MODELS: tuple[type[PhotometricModel], ...] = (
    RoomLight,
    CameraGains,
    FlashOffset,
    Vignetting,
    ResponseCurve,
)


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
