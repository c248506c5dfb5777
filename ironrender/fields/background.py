"""What a ray sees after it leaves the unit sphere: the room behind the object.

IRON's stage 1 (like NeuS without masks) renders the unit sphere with the SDF and everything
beyond it with a NeRF++ background: a second radiance field over the *inverted sphere*, whose
points ``x`` (``|x| > 1``) are described by their direction and inverse radius
``(x / |x|, 1 / |x|)``, so that an unbounded room fits a bounded domain. Without it a capture
whose room is dark but not black (a lit table, a wall, a studio's black cloth at 3-10 of 255)
can only be explained by density *inside* the sphere: stage 1 grows fog there.

:class:`BackgroundField` is that model, built to be cheap on a CPU. Points are *contracted*
(Mip-NeRF 360's radial contraction, the same information as NeRF++'s inverted sphere)::

    y = (2 - 1/r) x / r,   r = |x| >= 1,   so that |y| = 2 - 1/r in [1, 2)

and a multi-resolution dense grid over ``[-2, 2]^3`` with a small MLP gives the density and the
colour, the latter also fed the viewing direction (a flash moves with the camera, so what a wall
sends back depends on where the camera stands). Each ray gets ``samples`` points stratified
uniformly in *disparity* ``1/r`` between ``1/r_min`` (the sphere's exit, or the ray's closest
approach to the origin for rays that miss the sphere) and 0, placed on the ray at the far root of
``|o + t d| = r``. Alpha compositing uses the distance between samples in contracted space
(bounded, unlike world distances that grow without limit), and the last sample is opaque: every
ray ends somewhere, the field decides at which colour (black where the room is black).

``Background`` (rendering/volume.py) wraps this field with the constant modes (black, white,
one learned colour).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ironrender.config import option
from ironrender.fields.encodings import DenseGridEncoding, GridConfig, PositionalEncoding
from ironrender.fields.sdf import MLP

CONTRACTED_BOUND = 2.0  # contracted points lie in the ball of radius 2
MIN_DISPARITY = 1e-3  # the farthest sample sits at r = 1000 (the unit sphere's radius is 1)
DENSITY_SHIFT = -1.0  # softplus(raw - 1): the room starts thin, not a grey fog


@dataclass
class BackgroundFieldConfig:
    """The NeRF++-style background's size. Defaults are the ``fast`` preset's (CPU)."""

    samples: int = option(16, "samples per ray beyond the sphere, stratified in disparity")
    grid: GridConfig = option(
        factory=lambda: GridConfig(
            levels=6,
            features_per_level=2,
            base_resolution=8,
            max_resolution=128,
            init_scale=1e-2,
            bound=CONTRACTED_BOUND,
        ),  # fmt: skip
        help="dense grid over the contracted outside (the ball of radius 2)",
    )
    use_grid: bool = option(
        True, "the grid; false: NeRF++'s positional encoding of the contracted point"
    )
    pos_freqs: int = option(0, "positional encoding of the contracted point (NeRF++: 10)")
    dir_freqs: int = option(2, "positional encoding of the viewing direction (NeRF++: 4)")
    hidden_dim: int = option(32, "width of the MLP's hidden layers")
    num_hidden: int = option(2, "hidden layers of the MLP")
    skip_layers: tuple[int, ...] = option((), "layers that take the input again (NeRF++: 4)")


def paper_background_config() -> BackgroundFieldConfig:
    """IRON's NeRF++ background (its code; docs/architecture.md#defaults-from-irons-code): PE-10
    of the inverted-sphere point, PE-4 of the view, 8 x 256 with a skip at 4, 32 samples outside
    the sphere."""
    return BackgroundFieldConfig(
        samples=32, use_grid=False, pos_freqs=10, dir_freqs=4, hidden_dim=256, num_hidden=8,
        skip_layers=(4,),
    )  # fmt: skip


def contract(points: Tensor) -> Tensor:
    """``y = (2 - 1/r) x / r`` for ``r = |x| >= 1``, the identity inside the unit ball."""
    r = points.norm(dim=-1, keepdim=True).clamp(min=1e-9)
    return torch.where(r > 1.0, (2.0 - 1.0 / r) * points / r, points)


def background_samples(
    origins: Tensor,
    directions: Tensor,
    count: int,
    jitter: bool,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Points (R, count, 3) beyond the unit sphere, near to far, stratified in disparity ``1/r``.

    ``r`` runs from ``r_min = max(1, closest approach for t >= 0)`` outwards; each radius sits at
    far root ``t = -b + sqrt(b^2 - |o|^2 + r^2)`` (``b = o . d``), which lies past the sphere's
    exit, so the samples never re-enter the object's domain.
    """
    b = (origins * directions).sum(-1, keepdim=True)
    # Nearest the origin the ray gets for t >= 0: its closest approach, or the camera itself
    # when the ray points away from the origin.
    closest_sq = ((origins * origins).sum(-1, keepdim=True) - b.clamp(max=0.0) ** 2).clamp(min=0.0)
    r_min = closest_sq.sqrt().clamp(min=1.0)
    steps = torch.linspace(0.0, 1.0, count + 1, device=origins.device, dtype=origins.dtype)[:-1]
    if jitter:
        u = torch.rand(
            (origins.shape[0], count), device=origins.device, dtype=origins.dtype,
            generator=generator,
        )  # fmt: skip
        steps = steps + u / count
    else:
        steps = steps + 0.5 / count
    near_disparity = 1.0 / r_min
    disparity = near_disparity + (MIN_DISPARITY - near_disparity) * steps  # (R, count), decreasing
    radius = 1.0 / disparity
    t = -b + (b * b - (origins * origins).sum(-1, keepdim=True) + radius * radius).clamp(0.0).sqrt()
    return origins[:, None, :] + directions[:, None, :] * t[..., None]


class BackgroundField(nn.Module):
    """Density and colour beyond the unit sphere; :meth:`render` composites a ray's samples."""

    def __init__(self, config: BackgroundFieldConfig):
        super().__init__()
        self.config = config
        if config.use_grid:
            self.encoding: nn.Module = DenseGridEncoding(config.grid)
            position_dim = self.encoding.out_dim
        else:
            self.encoding = PositionalEncoding(config.pos_freqs)
            position_dim = self.encoding.out_dim
        self.dir_pe = PositionalEncoding(config.dir_freqs)
        in_dim = position_dim + self.dir_pe.out_dim
        self.mlp = MLP(in_dim, config.hidden_dim, config.num_hidden, 4, config.skip_layers)

    def forward(self, points: Tensor, directions: Tensor) -> tuple[Tensor, Tensor]:
        """Density (...) and colour (..., 3) in [0, 1] at world points beyond the sphere."""
        y = contract(points)
        position = self.encoding(y) if self.config.use_grid else self.encoding(y / CONTRACTED_BOUND)
        raw = self.mlp(torch.cat([position, self.dir_pe(directions)], dim=-1))
        return F.softplus(raw[..., 0] + DENSITY_SHIFT), torch.sigmoid(raw[..., 1:])

    def render(
        self,
        origins: Tensor,
        directions: Tensor,
        jitter: bool = False,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Colour (R, 3) each ray collects beyond the unit sphere; the last sample is opaque."""
        points = background_samples(origins, directions, self.config.samples, jitter, generator)
        view = directions[:, None, :].expand_as(points)
        density, color = self(points, view)
        contracted = contract(points)
        gaps = (contracted[:, 1:] - contracted[:, :-1]).norm(dim=-1)
        alpha = 1.0 - torch.exp(-density[:, :-1] * gaps)
        alpha = torch.cat([alpha, torch.ones_like(alpha[:, :1])], -1)
        ones = torch.ones_like(alpha[:, :1])
        transmittance = torch.cumprod(torch.cat([ones, 1.0 - alpha], -1), -1)[:, :-1]
        weights = alpha * transmittance
        return (weights[..., None] * color).sum(-2)
