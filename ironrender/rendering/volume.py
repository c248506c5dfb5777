"""NeuS volume rendering of an SDF field (IRON stage 1, §3.1), top to bottom.

Equations: NeuS (Wang et al., NeurIPS 2021) §3, labelled in docs/architecture.md (A3)-(A9).
A pixel's colour is the integral ``C = int w(t) c(p(t), v) dt`` (A3). NeuS chooses the
weight ``w(t) = T(t) rho(t)`` with the *opaque density* ``rho = max(-dPhi_s/dt / Phi_s, 0)``
(A5), ``Phi_s(x) = sigmoid(s x)`` the logistic CDF whose density is the S-density (A4). This
weight is unbiased (it peaks where the SDF crosses zero) and occlusion-aware (the first crossing
wins). Discretised over sections ``[t_i, t_{i+1}]`` (NeuS Eqs. 12-13 and compositing, (A6)-(A7))::

    alpha_i = max((Phi_s(S(t_i)) - Phi_s(S(t_{i+1}))) / Phi_s(S(t_i)), 0)
    T_i     = prod_{j<i} (1 - alpha_j)
    C       = sum_i T_i alpha_i c_i  +  (1 - sum_i T_i alpha_i) * B(r)

``S`` at the section ends comes from the SDF and its directional derivative at the section's
midpoint, ``S(t_i) ~ S(mid) - cos * dt/2`` with ``cos = v . grad S``. Early in training the
slope is softened (NeuS's *cos annealing*): ``cos' = -(relu(-cos/2 + 1/2)(1 - r) + relu(-cos) r)``
with ``r`` ramping from 0 to 1, so back-facing samples still receive gradient at first.

Samples: stratified ("coarse") samples inside the unit sphere, then NeuS's hierarchical
up-sampling: ``up_sample_steps`` rounds, each adding ``n_importance / steps`` samples drawn from
the weights computed with a *fixed* sharpness ``inv_s = base * 2^i`` on a no-gradient
*proposal* SDF (the network itself, or a cached grid of it). The rendered set is the
importance samples, plus the coarse ones when ``render_coarse``.

``B(r)`` is what the ray sees beyond the unit sphere (:class:`Background`): black for a dark
room (IRON's synthetic data), a constant, or a NeRF++-style field of the room
(:mod:`ironrender.fields.background`, IRON's stage-1 default) for captures whose room is dark
but not black. ``auto`` is decided from the photographs before training
(:func:`choose_background`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor, nn
from torch.profiler import record_function

from ironrender.config import check_choices, option
from ironrender.data.cameras import Cameras, RayBundle
from ironrender.data.dataset import linear_images
from ironrender.data.tone_curve import encode
from ironrender.fields.background import BackgroundField, BackgroundFieldConfig
from ironrender.fields.base import SDFField
from ironrender.fields.radiance import RadianceField
from ironrender.rendering.samplers import sample_pdf, sphere_bounds, stratified

PDF_STABILITY = 1e-5  # NeuS's epsilon in the alpha ratio: keeps 0/0 at alpha = 0
TRANSMITTANCE_EPSILON = 1e-7
MAX_NEGATIVE_SLOPE = -1e3  # proposal slope clamp (NeuS up_sample)
BackgroundMode = Literal["black", "white", "learned", "field"]
BACKGROUNDS = get_args(BackgroundMode)
VolumeBackground = Literal[BackgroundMode, "auto"]
"""``VolumeConfig.background``: a mode, or ``auto`` (decided by :func:`choose_background`)."""
BORDER_FRACTION = 0.05  # the outer 5 % of each side of a photo: where the room shows
DARK_ROOM_LEVEL = 2.0 / 255.0  # gamma-encoded: a border at or below this is a black room

ProposalSDF = Callable[[Tensor], Tensor]


@dataclass
class VolumeConfig:
    """Sampling and compositing. Defaults are NeuS/IRON's (the ``paper`` preset)."""

    n_coarse: int = option(64, "stratified samples per ray inside the unit sphere")
    n_importance: int = option(64, "samples added by NeuS's hierarchical up-sampling")
    up_sample_steps: int = option(4, "rounds of up-sampling that add them")
    up_sample_inv_s: float = option(64.0, "round i uses inv_s = up_sample_inv_s * 2^i")
    render_coarse: bool = option(
        True, "render the stratified samples too, not only the up-sampled ones"
    )
    sphere_radius: float = option(1.0, "radius of the sphere the samples lie in")
    background: VolumeBackground = option(
        "black",
        "what rays see beyond the sphere: black (dark room), white, learned (one colour),"
        " field (a model of the room, fields/background.py), auto (field if the borders are lit)",
    )
    background_field: BackgroundFieldConfig = option(
        factory=BackgroundFieldConfig, help="the model of the room (background = field)"
    )

    def __post_init__(self) -> None:
        check_choices(self)


@dataclass
class VolumeOutput:
    """Per-ray results (R, ...) and the per-sample data the losses need (R, S, ...)."""

    rgb: Tensor  # (R, 3)
    depth: Tensor  # (R,) expected distance along the ray, sum_i w_i t_i / sum_i w_i
    opacity: Tensor  # (R,) sum_i w_i
    normal: Tensor  # (R, 3) weight-averaged unit normal
    weights: Tensor  # (R, S)
    gradients: Tensor  # (R, S, 3) dS/dx at the samples (eikonal loss)
    points: Tensor  # (R, S, 3)


class Background(nn.Module):
    """The colour ``B(r)`` a ray sees where it leaves the unit sphere without hitting anything.

    ``black``: dark-room flash captures (IRON's synthetic data). ``white``: a white backdrop.
    ``learned``: one constant colour, ``sigmoid(theta)``, fitted with everything else. ``field``:
    a model of the room beyond the sphere (:class:`BackgroundField`), a colour per ray.
    """

    def __init__(self, mode: str = "black", field_config: BackgroundFieldConfig | None = None):
        super().__init__()
        if mode not in BACKGROUNDS:
            raise ValueError(f"background must be one of {BACKGROUNDS}, got {mode!r}")
        self.mode = mode
        self.logit = nn.Parameter(torch.zeros(3), requires_grad=mode == "learned")
        self.field = (
            BackgroundField(field_config or BackgroundFieldConfig()) if mode == "field" else None
        )

    def forward(
        self,
        origins: Tensor,
        directions: Tensor,
        jitter: bool = False,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Colours (R, 3) of rays ``origins + t directions`` beyond the sphere."""
        if self.field is not None:
            return self.field.render(origins, directions, jitter, generator)
        if self.mode == "black":
            colour = torch.zeros_like(self.logit)
        elif self.mode == "white":
            colour = torch.ones_like(self.logit)
        else:
            colour = torch.sigmoid(self.logit)
        return colour.to(origins.dtype).expand(origins.shape[0], 3)


def border_level(images: Tensor) -> float:
    """How bright the room is: the median, over views, of the median gamma-encoded value of
    each photo's border (its outer ``BORDER_FRACTION`` on every side), from linear (N, H, W, 3)
    or 8-bit (:func:`~ironrender.data.dataset.linear_images`) photographs."""
    _, height, width, _ = images.shape
    dy, dx = max(1, round(height * BORDER_FRACTION)), max(1, round(width * BORDER_FRACTION))
    inner = torch.ones(height, width, dtype=torch.bool, device=images.device)
    inner[dy : height - dy, dx : width - dx] = False
    per_view = torch.stack(  # view by view: a batch of borders would copy a third of the capture
        [encode(linear_images(image)[inner], "gamma2.2").mean(-1).median() for image in images]
    )
    return float(per_view.median())


def choose_background(mode: str, images: Tensor) -> tuple[str, str]:
    """Resolve ``auto`` from the photographs: ``field`` when their borders are not black.

    A room counts as black when the median border pixel is at most ``DARK_ROOM_LEVEL`` (2 of
    255, gamma-encoded): JPEG noise in a truly dark room stays below it, while a studio's black
    cloth at 3-10 of 255 (0.01-0.04) is above it and, left unexplained, grows fog in the sphere.
    Returns the mode and a one-line reason for the log.
    """
    if mode != "auto":
        return mode, f"background: {mode} (as configured)"
    level = border_level(images)
    chosen = "field" if level > DARK_ROOM_LEVEL else "black"
    return chosen, (
        f"background: {chosen} (auto: the photos' borders have median {level * 255:.1f}/255, "
        f"{'above' if chosen == 'field' else 'at or below'} the dark-room level "
        f"{DARK_ROOM_LEVEL * 255:.0f}/255; force with --set stage1.volume.background=black|field)"
    )


# ------------------------------------------------------------------------------- NeuS alpha
def neus_alpha(
    sdf: Tensor, cos: Tensor, dists: Tensor, inv_s: Tensor | float, cos_anneal_ratio: float = 1.0
) -> Tensor:
    """Discrete opacity of each section (NeuS Eqs. 12-13; docs/architecture.md (A6)) from
    midpoint SDF values.

    ``sdf``, ``cos = v . grad S`` and ``dists`` are (R, S); returns alpha (R, S) in [0, 1].
    """
    iter_cos = -(
        torch.relu(-cos * 0.5 + 0.5) * (1.0 - cos_anneal_ratio)
        + torch.relu(-cos) * cos_anneal_ratio
    )
    sdf_start = sdf - iter_cos * dists * 0.5
    sdf_end = sdf + iter_cos * dists * 0.5
    cdf_start = torch.sigmoid(sdf_start * inv_s)
    cdf_end = torch.sigmoid(sdf_end * inv_s)
    return ((cdf_start - cdf_end + PDF_STABILITY) / (cdf_start + PDF_STABILITY)).clamp(0.0, 1.0)


def composite_weights(alpha: Tensor) -> Tensor:
    """``w_i = T_i alpha_i``, ``T_i = prod_{j<i}(1 - alpha_j)`` (docs/architecture.md (A7))."""
    ones = torch.ones_like(alpha[:, :1])
    transmittance = torch.cumprod(torch.cat([ones, 1.0 - alpha + TRANSMITTANCE_EPSILON], -1), -1)[
        :, :-1
    ]
    return alpha * transmittance


# ------------------------------------------------------------------------------- sampling
def up_sample(z: Tensor, sdf: Tensor, count: int, inv_s: float) -> Tensor:
    """NeuS's importance round: ``count`` new distances (R, count) from sorted samples ``z``
    and their proposal SDF values (R, S), with a fixed sharpness ``inv_s``.

    Each interval's slope is estimated from its two end values, and the smaller of it and the
    previous interval's slope is used: a ray grazing a surface sees a shallow secant slope
    that would otherwise smear the weight far from the crossing. Positive slopes (moving away
    from a surface) are zeroed, so only approaching surfaces get samples.
    """
    z_start, z_end = z[:, :-1], z[:, 1:]
    sdf_start, sdf_end = sdf[:, :-1], sdf[:, 1:]
    mid_sdf = (sdf_start + sdf_end) * 0.5
    slope = (sdf_end - sdf_start) / (z_end - z_start + PDF_STABILITY)
    prev_slope = torch.cat([torch.zeros_like(slope[:, :1]), slope[:, :-1]], -1)
    slope = torch.minimum(slope, prev_slope).clamp(MAX_NEGATIVE_SLOPE, 0.0)
    dist = z_end - z_start
    start = torch.sigmoid((mid_sdf - slope * dist * 0.5) * inv_s)
    end = torch.sigmoid((mid_sdf + slope * dist * 0.5) * inv_s)
    alpha = (start - end + PDF_STABILITY) / (start + PDF_STABILITY)
    weights = composite_weights(alpha)
    return sample_pdf(z, weights, count).detach()


@torch.no_grad()
def place_samples(
    rays: RayBundle,
    near: Tensor,
    far: Tensor,
    proposal: ProposalSDF,
    config: VolumeConfig,
    jitter: bool,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Sorted section starts (R, S) to render: coarse + hierarchical importance samples."""
    z = stratified(near, far, config.n_coarse, jitter, generator)
    if config.n_importance == 0:
        return z
    o, d = rays.origins[:, None, :], rays.directions[:, None, :]
    sdf = proposal(o + d * z[..., None])
    per_step = config.n_importance // config.up_sample_steps
    fine = z[:, :0]
    for step in range(config.up_sample_steps):
        new_z = up_sample(z, sdf, per_step, config.up_sample_inv_s * 2**step)
        fine = torch.cat([fine, new_z], -1)
        z, order = torch.sort(torch.cat([z, new_z], -1), -1)
        if step + 1 < config.up_sample_steps:
            new_sdf = proposal(o + d * new_z[..., None])
            sdf = torch.cat([sdf, new_sdf], -1).gather(-1, order)
    return z if config.render_coarse else torch.sort(fine, -1).values


# ------------------------------------------------------------------------------- rendering
def render_rays(
    rays: RayBundle,
    sdf_field: SDFField,
    radiance: RadianceField,
    inv_s: Tensor,
    background: Background,
    config: VolumeConfig,
    cos_anneal_ratio: float = 1.0,
    proposal: ProposalSDF | None = None,
    jitter: bool = False,
    generator: torch.Generator | None = None,
    create_graph: bool = True,
) -> VolumeOutput:
    """Render a flat batch of rays (R,) with NeuS weights.

    ``proposal`` answers the no-gradient SDF queries of the importance sampler (default: the
    SDF network itself). ``create_graph=False`` for previews: no training graph is kept.
    """
    near, far, _ = sphere_bounds(rays.origins, rays.directions, config.sphere_radius)
    if proposal is None:
        proposal = sdf_field.sdf
    with record_function("volume: place samples"):  # profile labels: benchmarks/profile_step.py
        z = place_samples(rays, near, far, proposal, config, jitter, generator)

    # Sections [z_i, z_{i+1}]; the last one is as long as a coarse stratum. Shade at midpoints.
    last = ((far - near) / config.n_coarse)[:, None]
    dists = torch.cat([z[:, 1:] - z[:, :-1], last], -1)
    mid = z + dists * 0.5
    points = rays.origins[:, None, :] + rays.directions[:, None, :] * mid[..., None]
    view_dirs = rays.directions[:, None, :].expand_as(points)

    with record_function("volume: SDF and its gradient"):
        sample = sdf_field.with_gradients(points, create_graph=create_graph)
    with record_function("volume: radiance"):
        colors = radiance(points, sample.gradients, view_dirs, sample.features)
    with record_function("volume: weights"):
        cos = (view_dirs * sample.gradients).sum(-1)
        alpha = neus_alpha(sample.sdf, cos, dists, inv_s, cos_anneal_ratio)
        weights = composite_weights(alpha)
    with record_function("volume: background"):
        behind = background(rays.origins, rays.directions, jitter, generator)

    opacity = weights.sum(-1)
    rgb = (weights[..., None] * colors).sum(-2) + (1.0 - opacity)[:, None] * behind
    depth = (weights * mid).sum(-1) / opacity.clamp(min=TRANSMITTANCE_EPSILON)
    unit_normals = torch.nn.functional.normalize(sample.gradients, dim=-1)
    normal = (weights[..., None] * unit_normals).sum(-2)
    return VolumeOutput(rgb, depth, opacity, normal, weights, sample.gradients, points)


def render_image(
    cameras: Cameras,
    index: int,
    sdf_field: SDFField,
    radiance: RadianceField,
    inv_s: Tensor,
    background: Background,
    config: VolumeConfig,
    chunk: int = 2048,
    proposal: ProposalSDF | None = None,
) -> VolumeOutput:
    """Render every pixel of camera ``index`` in chunks, without a training graph; the
    per-ray fields come back shaped (H, W, ...); per-sample fields are left empty."""
    rays = cameras.image_rays(index)
    height, width = rays.shape
    flat = rays.reshape(-1)
    parts = []
    for start in range(0, height * width, chunk):
        out = render_rays(
            flat[start : start + chunk],
            sdf_field,
            radiance,
            inv_s,
            background,
            config,
            proposal=proposal,
            create_graph=False,
        )
        parts.append(
            (out.rgb.detach(), out.depth.detach(), out.opacity.detach(), out.normal.detach())
        )
    rgb, depth, opacity, normal = (torch.cat(p) for p in zip(*parts, strict=True))
    empty = rgb.new_zeros(0)
    return VolumeOutput(
        rgb.reshape(height, width, 3),
        depth.reshape(height, width),
        opacity.reshape(height, width),
        normal.reshape(height, width, 3),
        empty,
        empty,
        empty,
    )
