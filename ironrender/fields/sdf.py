"""The neural signed-distance field (IRON's ``SDFNetwork``) and NeuS's variance parameter.

One class covers both presets:

* ``paper``: IRON/IDR's MLP, 8 hidden layers of 256 with a skip connection into layer 4, input
  ``PE_6(x)`` (39-d), Softplus(beta=100), weight normalisation on every linear layer.
* ``fast``: the same MLP shape, shrunk (2 x 64), fed ``x`` plus a multi-resolution dense grid
  encoding (:mod:`ironrender.fields.encodings`).

``paper`` starts from IDR's *geometric initialisation* (Atzmon & Lipman, SAL), which makes the
network output approximately ``|x| - r`` at step 0: a sphere of radius ``r``, negative inside.
That holds only up to finite-width noise: a 2 x 64 net came out visibly anisotropic (its zero
set 0.1-0.3 off the sphere along different axes), so ``fast`` uses a *sphere prior* instead,
``S(x) = (|x| - r) + g(x)`` with ``g``'s SDF output initialised to zero: an exact sphere at
step 0 for any width, which training then deforms. The output is ``(s, f)``: the SDF value
and a feature vector for the radiance network. Normals are the autograd gradient ``dS/dx``
(:meth:`SDFField.with_gradients`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from ironrender.config import option
from ironrender.fields import fused_grid
from ironrender.fields.base import SDFField, SDFSample
from ironrender.fields.encodings import (
    DenseGridEncoding,
    GridConfig,
    PositionalEncoding,
    make_grid_encoding,
)

XYZ_DIM = 3
LAST_LAYER_STD = 1e-4  # IDR's std of the last layer's weights under geometric init
NORM_EPSILON = 1e-12  # |x| = sqrt(x.x + eps): smooth derivatives even at the origin
CALIBRATION_POINTS = 4096  # points used to correct the geometric init's slope and offset
CALIBRATION_RADII = (0.1, 1.0)  # shell where the init must match |x| - r
CALIBRATION_SEED = 0


class MLP(nn.Module):
    """Fully connected layers with optional skip connections (IDR/NeRF style).

    ``dims = [in] + [hidden] * num_hidden + [out]``. Before each layer index in ``skip_layers``
    the network input is concatenated again. When the input is narrower than the hidden layers
    (IDR's SDF net: 39 < 256) the layer before the skip outputs ``hidden - in`` units so the
    width stays, and the concatenation is divided by sqrt(2) (IDR keeps the activation scale).
    When it is not (IRON's colour net: 349 inputs, width 256) that is impossible, so the skip
    layer takes ``hidden + in`` inputs instead (NeRF's skip).
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        num_hidden: int,
        out_dim: int,
        skip_layers: tuple[int, ...] = (),
        activation: nn.Module | None = None,
    ):
        super().__init__()
        self.in_dim = in_dim
        self.skip_layers = tuple(skip_layers)
        dims = [in_dim] + [hidden_dim] * num_hidden + [out_dim]
        self.narrow_input = in_dim < hidden_dim  # IDR's skip (keep the width) is possible
        self.layers = nn.ModuleList()
        for i in range(len(dims) - 1):
            fan_in, width = dims[i], dims[i + 1]
            if self.narrow_input and (i + 1) in self.skip_layers:
                width -= in_dim
            if not self.narrow_input and i in self.skip_layers:
                fan_in += in_dim
            self.layers.append(nn.Linear(fan_in, width))
        self.activation = activation if activation is not None else nn.ReLU()

    def forward(self, inputs: Tensor) -> Tensor:
        x = inputs
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if i in self.skip_layers:
                x = torch.cat([x, inputs], dim=-1)
                if self.narrow_input:
                    x = x / math.sqrt(2)
            x = layer(x)
            if i < last:
                x = self.activation(x)
        return x

    def apply_weight_norm(self) -> None:
        """Weight normalisation ``W = g v / |v|`` on every layer, keeping the current weights."""
        for i, layer in enumerate(self.layers):
            self.layers[i] = weight_norm(layer)


@dataclass
class SDFConfig:
    """SDF network settings. Defaults are the ``fast`` preset; see ``paper_sdf_config``."""

    use_grid: bool = option(True, "feed the MLP a multi-resolution grid encoding of x too")
    grid: GridConfig = option(factory=GridConfig, help="that grid (fast: dense, finest 96^3)")
    pe_freqs: int = option(0, "NeRF frequencies on x; 0 = raw x only")
    hidden_dim: int = option(64, "width of the MLP's hidden layers")
    num_hidden: int = option(2, "hidden layers of the MLP")
    skip_layers: tuple[int, ...] = option((), "layers that take the input again (IDR: 4)")
    softplus_beta: float = option(100.0, "beta of the Softplus activations")
    weight_norm: bool = option(False, "weight normalisation on every linear layer (IDR)")
    init_radius: float = option(0.5, "the SDF starts as the sphere |x| - r")
    sphere_prior: bool = option(
        True, "S = |x| - r + g(x), g(x) = 0 at init (exact); else IDR's init"
    )
    feature_dim: int = option(15, "length of the feature vector f passed to the radiance net")


def paper_sdf_config() -> SDFConfig:
    """IRON's ``SDFNetwork``: PE-6, 8 x 256, skip at 4, Softplus(100), weight norm, 256-d f."""
    return SDFConfig(
        use_grid=False,
        pe_freqs=6,
        hidden_dim=256,
        num_hidden=8,
        skip_layers=(4,),
        weight_norm=True,
        sphere_prior=False,
        feature_dim=256,
    )


class NeuralSDF(SDFField):
    """``x -> (S(x), f(x))`` with a geometric initialisation to a sphere of ``init_radius``."""

    def __init__(self, config: SDFConfig):
        super().__init__()
        self.config = config
        self.feature_dim = config.feature_dim
        self.pe = PositionalEncoding(config.pe_freqs)
        self.grid = make_grid_encoding(config.grid) if config.use_grid else None
        in_dim = self.pe.out_dim + (self.grid.out_dim if self.grid is not None else 0)
        self.mlp = MLP(
            in_dim,
            config.hidden_dim,
            config.num_hidden,
            1 + config.feature_dim,
            config.skip_layers,
            nn.Softplus(beta=config.softplus_beta),
        )
        self._geometric_init()
        if config.sphere_prior:
            self._zero_sdf_output()
        else:
            self._calibrate_init()
        if config.weight_norm:
            self.mlp.apply_weight_norm()

    def _geometric_init(self) -> None:
        """IDR's geometric init: the network computes ``|x| - r`` to first order at step 0.

        Hidden layers ~ N(0, sqrt(2)/sqrt(out)); every input channel except raw xyz gets zero
        weight (first layer and the skip layer), so encodings only come in as training moves
        those weights; the last layer's weights ~ N(sqrt(pi)/sqrt(in), 1e-4), its bias ``-r``.
        """
        layers = list(self.mlp.layers)
        in_dim = self.mlp.in_dim
        for i, layer in enumerate(layers):
            out_features, in_features = layer.weight.shape
            with torch.no_grad():
                if i == len(layers) - 1:
                    mean = math.sqrt(math.pi) / math.sqrt(in_features)
                    nn.init.normal_(layer.weight, mean=mean, std=LAST_LAYER_STD)
                    nn.init.constant_(layer.bias, -self.config.init_radius)
                    continue
                nn.init.normal_(layer.weight, 0.0, math.sqrt(2) / math.sqrt(out_features))
                nn.init.zeros_(layer.bias)
                if i == 0:
                    layer.weight[:, XYZ_DIM:] = 0.0
                elif i in self.mlp.skip_layers:
                    layer.weight[:, -(in_dim - XYZ_DIM) :] = 0.0

    @torch.no_grad()
    def _zero_sdf_output(self) -> None:
        """Sphere prior: ``g`` starts at exactly zero, so ``S = |x| - r`` at step 0."""
        last = self.mlp.layers[-1]
        last.weight[0] = 0.0
        last.bias[0] = 0.0

    @torch.no_grad()
    def _calibrate_init(self) -> None:
        """Make the initial SDF match ``|x| - r`` in value, not only in shape.

        With finite width and Softplus(beta) the geometric init gives ``a |x| + b`` with ``a``
        near 0.8 and a shifted zero crossing (a 2 x 64 net started at radius 0.69 for r = 0.6).
        A least-squares fit of ``(a, b)`` on points in a shell, folded into the last layer's
        SDF row, fixes both; the features are untouched.
        """
        generator = torch.Generator().manual_seed(CALIBRATION_SEED)
        directions = torch.randn(CALIBRATION_POINTS, XYZ_DIM, generator=generator)
        directions = directions / directions.norm(dim=-1, keepdim=True)
        low, high = CALIBRATION_RADII
        radii = low + (high - low) * torch.rand(CALIBRATION_POINTS, 1, generator=generator)
        device = self.mlp.layers[-1].weight.device
        raw = self.forward((directions * radii).to(device)).sdf.cpu().double()
        design = torch.cat([radii.double(), torch.ones_like(radii.double())], dim=-1)
        a, b = torch.linalg.lstsq(design, raw[:, None]).solution[:, 0].tolist()
        last = self.mlp.layers[-1]
        last.weight[0] /= a
        last.bias[0] = (last.bias[0] - b) / a - self.config.init_radius

    def encode(self, points: Tensor) -> Tensor:
        parts = [self.pe(points)]
        if self.grid is not None:
            parts.append(self.grid(points))
        return torch.cat(parts, dim=-1)

    def forward(self, points: Tensor) -> SDFSample:
        out = self.mlp(self.encode(points))
        sdf = out[..., 0]
        if self.config.sphere_prior:
            radius = torch.sqrt((points * points).sum(-1) + NORM_EPSILON)
            sdf = sdf + radius - self.config.init_radius
        return SDFSample(sdf, out[..., 1:])

    def with_gradients(self, points: Tensor, create_graph: bool = True) -> SDFSample:
        """SDF, features and ``dS/dx``; with the fused dense-grid kernel (``fast``'s SDF on
        the CPU) by the chain rule written out, otherwise by autograd (:class:`SDFField`).

        The MLP reads ``i = (x, e(x))``, ``e`` the grid encoding, so with ``J = de/dx`` from the
        kernel ``dS/dx = dS/di_x + J^T dS/di_e (+ x / |x|`` for the sphere prior): autograd only
        differentiates the small MLP, and the grids' part of the double backward (the eikonal
        loss's) is the kernel's gradient of ``J``.
        """
        if not self._chain_rule_gradients(points):
            with fused_grid.switched_off():  # autograd differentiates the grid twice
                return super().with_gradients(points, create_graph)
        with torch.enable_grad():
            features, jacobian = self.grid.features_and_jacobian(points)
            inputs = torch.cat([points, features], dim=-1)  # encode(x) when pe_freqs = 0
            if not inputs.requires_grad:  # nothing upstream learns: differentiate the MLP only
                inputs = inputs.detach().requires_grad_(True)
            out = self.mlp(inputs)
            (slope,) = torch.autograd.grad(
                out[..., 0], inputs, torch.ones_like(out[..., 0]), create_graph=create_graph
            )
        sdf = out[..., 0]
        gradients = slope[..., :XYZ_DIM] + (jacobian * slope[..., XYZ_DIM:, None]).sum(-2)
        if self.config.sphere_prior:
            radius = torch.sqrt((points * points).sum(-1) + NORM_EPSILON)
            sdf = sdf + radius - self.config.init_radius
            gradients = gradients + points / radius[..., None]
        sample = SDFSample(sdf, out[..., 1:], gradients)
        if not create_graph:
            return SDFSample(sdf.detach(), sample.features.detach(), gradients.detach())
        return sample

    def _chain_rule_gradients(self, points: Tensor) -> bool:
        """Can :meth:`with_gradients` take the fused kernel's Jacobian? (a dense grid, raw x as
        the only other input, float CPU points of the grid's dtype, the kernel built)"""
        return (
            isinstance(self.grid, DenseGridEncoding)
            and self.pe.num_freqs == 0
            and self.pe.include_input
            and points.dtype == self.grid.grids[0].dtype
            and fused_grid.fused_available(points)
        )

    def set_active_levels(self, levels: int) -> None:
        """Coarse-to-fine: only the ``levels`` coarsest grid levels contribute."""
        if self.grid is not None:
            self.grid.active_levels = max(1, min(levels, self.grid.config.levels))


class NeuSVariance(nn.Module):
    """NeuS's single learnable sharpness: ``inv_s = exp(scale * v)``, ``v`` starting at 0.3.

    The logistic density ``phi_s(x) = s e^{-sx} / (1 + e^{-sx})^2`` (NeuS §3, S-density;
    docs/architecture.md (A4)) has standard deviation ``1/s``; training drives ``s`` up as the
    surface sharpens. Initially ``exp(10 * 0.3) ~ 20``.
    """

    def __init__(self, init: float = 0.3, scale: float = 10.0):
        super().__init__()
        self.scale = scale
        self.variance = nn.Parameter(torch.tensor(float(init)))
        # A lower bound on inv_s set by the training schedule (training.schedules.sharpness_floor;
        # 0: none), saved with the weights so that a loaded model renders as it was trained.
        self.register_buffer("floor", torch.tensor(0.0))
        self.register_load_state_dict_pre_hook(_default_floor)

    def inv_s(self) -> Tensor:
        """``max(exp(scale v), floor)`` in value, with NeuS's gradient on ``v`` as if there were
        no floor (straight through). Why: with a plain clamp ``v`` gets no gradient while the
        floor holds, so a capture whose own sharpness is a little below the floor when it starts
        stays frozen there for good (a matte object on black cloth: NeuS's own 28 against 239
        unfloored); straight through, NeuS keeps learning and takes over once above the floor,
        and "NeuS's own inv_s is below the floor" stays a measurement."""
        learnt = self.learnt_inv_s()
        return learnt + (self.floor - learnt).clamp(min=0).detach()

    def learnt_inv_s(self) -> Tensor:
        """``exp(scale v)``: the sharpness NeuS learnt, before the floor."""
        return torch.exp(self.variance * self.scale)


def _default_floor(module, state_dict, prefix, *args) -> None:
    """Checkpoints written before the floor existed load with none."""
    state_dict.setdefault(prefix + "floor", torch.zeros_like(module.floor))
