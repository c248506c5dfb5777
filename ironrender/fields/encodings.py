"""Input encodings for coordinate networks.

* :class:`PositionalEncoding`: NeRF's frequency encoding (IRON's ``embedder``), the input
  followed by ``sin(2^k x), cos(2^k x)`` for ``k = 0..L-1``; output dimension ``d (1 + 2L)``.
* :class:`DenseGridEncoding`: a multi-resolution stack of dense 3-D feature grids read with
  trilinear interpolation (``F.grid_sample``). The default: on the 2-core CPU it is the faster
  of our two grids (``benchmarks/bench_encodings.py``; BENCHMARKS.md), it has no hash
  collisions, and ``grid_sample`` supports the double backward the eikonal loss needs. Memory
  grows as ``R^3``, which is why the finest resolution is capped (96 by default, about one cell
  per pixel footprint of the 128x128 default capture).
* :class:`HashGridEncoding`: Instant-NGP's multi-resolution hash encoding (Mueller et al. 2022,
  eq. 3-4) in plain PyTorch: levels whose ``R^3`` vertices fit in the table are stored densely,
  finer ones hash their vertices into a table of ``2^log2_hashmap_size`` entries. Memory is
  bounded whatever the finest resolution, which is what a GPU run at full resolution wants.

``GridConfig.kind`` picks one; :func:`make_grid_encoding` builds it.

Both are device-agnostic: their buffers and parameters follow ``module.to(device)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ironrender.config import check_choices, option
from ironrender.fields import fused_grid


class PositionalEncoding(nn.Module):
    """``gamma(x) = (x, sin(2^0 x), cos(2^0 x), ..., sin(2^{L-1} x), cos(2^{L-1} x))``."""

    def __init__(self, num_freqs: int, in_dim: int = 3, include_input: bool = True):
        super().__init__()
        self.num_freqs = num_freqs
        self.in_dim = in_dim
        self.include_input = include_input
        self.register_buffer("freqs", 2.0 ** torch.arange(num_freqs, dtype=torch.float32))
        self.out_dim = in_dim * (int(include_input) + 2 * num_freqs)

    def forward(self, x: Tensor) -> Tensor:
        if self.num_freqs == 0:
            return x if self.include_input else x[..., :0]
        scaled = (x.unsqueeze(-2) * self.freqs.to(x.dtype)[:, None]).flatten(-2)  # (..., L*d)
        parts = [x] if self.include_input else []
        # Interleave per frequency: sin(2^k x), cos(2^k x) for k = 0..L-1 (IRON's order).
        sin, cos = torch.sin(scaled), torch.cos(scaled)
        per_freq = torch.stack(
            [
                sin.unflatten(-1, (self.num_freqs, self.in_dim)),
                cos.unflatten(-1, (self.num_freqs, self.in_dim)),
            ],
            dim=-2,
        )  # (..., L, 2, d)
        parts.append(per_freq.flatten(-3))
        return torch.cat(parts, dim=-1)


@dataclass
class GridConfig:
    """A multi-resolution dense grid: ``levels`` resolutions growing geometrically.

    Level ``l`` has ``round(base_resolution * b^l)`` vertices per axis with
    ``b = (max_resolution / base_resolution)^(1/(levels-1))`` (Instant-NGP's eq. 2 growth).
    """

    levels: int = option(8, "number of resolutions, growing geometrically")
    features_per_level: int = option(2, "features stored per vertex at each level")
    base_resolution: int = option(16, "vertices per axis of the coarsest level")
    max_resolution: int = option(96, "vertices per axis of the finest level")
    init_scale: float = option(
        1e-4, "features start near zero: the MLP's geometric init rules at step 0"
    )
    bound: float = option(1.0, "the grid spans [-bound, bound]^3")
    kind: Literal["dense", "hash"] = option(
        "dense", "dense (DenseGridEncoding) or hash (Instant-NGP's HashGridEncoding)"
    )
    log2_hashmap_size: int = option(
        19, "hash grid only: log2 of the table entries per level (Instant-NGP's T)"
    )

    def __post_init__(self) -> None:
        check_choices(self)

    def resolutions(self) -> list[int]:
        """Vertices per axis at each level (Instant-NGP's geometric growth)."""
        if self.levels > 1:
            growth = (self.max_resolution / self.base_resolution) ** (1 / (self.levels - 1))
        else:
            growth = 1.0
        return [int(round(self.base_resolution * growth**level)) for level in range(self.levels)]


class DenseGridEncoding(nn.Module):
    """Trilinearly interpolated features from ``levels`` dense grids, concatenated.

    ``active_levels`` (coarse-to-fine training) zeroes the finer levels' features and skips their
    lookups; the output dimension stays ``levels * features_per_level``.
    """

    def __init__(self, config: GridConfig):
        super().__init__()
        self.config = config
        self.resolutions = config.resolutions()
        self.grids = nn.ParameterList(
            nn.Parameter(
                (torch.rand(1, config.features_per_level, r, r, r) * 2 - 1) * config.init_scale
            )
            for r in self.resolutions
        )
        self.out_dim = config.levels * config.features_per_level
        self.active_levels = config.levels

    def forward(self, x: Tensor) -> Tensor:
        # The kernel differentiates once (a second time raises): autograd's own SDF gradient
        # with a double backward switches it off (NeuralSDF.with_gradients).
        if fused_grid.fused_available(x) and x.dtype == self.grids[0].dtype:
            return self.features_and_jacobian(x, jacobian=False)[0]
        batch_shape = x.shape[:-1]
        # grid_sample wants (1, N, 1, 1, 3) coordinates in [-1, 1], ordered (x, y, z) -> (W, H, D).
        coords = (x.reshape(1, -1, 1, 1, 3) / self.config.bound).to(self.grids[0].dtype)
        features = []
        for level, grid in enumerate(self.grids):
            if level >= self.active_levels:
                features.append(coords.new_zeros(coords.shape[1], self.config.features_per_level))
                continue
            sampled = F.grid_sample(
                grid, coords, mode="bilinear", padding_mode="border", align_corners=True
            )  # (1, F, N, 1, 1)
            features.append(sampled.reshape(self.config.features_per_level, -1).t())
        return torch.cat(features, dim=-1).reshape(*batch_shape, self.out_dim)

    def features_and_jacobian(
        self, x: Tensor, jacobian: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        """The features (..., C) and, when ``jacobian``, their derivatives (..., C, 3) with
        respect to ``x``, from the fused CPU kernel (:mod:`~ironrender.fields.fused_grid`; only
        where :func:`~ironrender.fields.fused_grid.fused_available`)."""
        batch_shape = x.shape[:-1]
        grids = [grid[0] for grid in self.grids]  # (F, R, R, R) views
        features, jac = fused_grid.encode(
            x.reshape(-1, 3), grids, self.config.bound, self.active_levels, jacobian
        )
        features = features.reshape(*batch_shape, self.out_dim)
        return features, (jac.reshape(*batch_shape, self.out_dim, 3) if jac is not None else None)

    def num_parameters(self) -> int:
        return sum(grid.numel() for grid in self.grids)


# Instant-NGP's spatial hash primes (the first is 1 so that neighbouring x share cache lines).
_HASH_PRIMES = (1, 2654435761, 805459861)
# The 8 corners of a cell as (dx, dy, dz) in {0, 1}^3.
_CORNERS = torch.tensor([[(c >> 2) & 1, (c >> 1) & 1, c & 1] for c in range(8)])


class HashGridEncoding(nn.Module):
    """Multi-resolution hash encoding (Instant-NGP) with trilinear interpolation in PyTorch.

    At level ``l`` with ``R_l`` vertices per axis, ``x`` in ``[-bound, bound]^3`` maps to
    ``u = (x / bound + 1) / 2 * (R_l - 1)``; the 8 corners ``v`` of its cell index a table of
    ``T`` feature vectors, densely (``v_x + R v_y + R^2 v_z``) when ``R_l^3 <= T``, otherwise by
    ``(v_x pi_1 xor v_y pi_2 xor v_z pi_3) mod T``; the features are blended with trilinear
    weights. The weights are polynomials in ``x``, so autograd gives the exact spatial gradient
    and its derivative (the eikonal loss's double backward) through gather and index-add alone.
    Same interface as :class:`DenseGridEncoding` (``active_levels``, ``out_dim``).
    """

    def __init__(self, config: GridConfig):
        super().__init__()
        self.config = config
        self.resolutions = config.resolutions()
        table = 2**config.log2_hashmap_size
        self.table_sizes = [min(r**3, table) for r in self.resolutions]
        self.tables = nn.ParameterList(
            nn.Parameter((torch.rand(size, config.features_per_level) * 2 - 1) * config.init_scale)
            for size in self.table_sizes
        )
        self.register_buffer("corners", _CORNERS.clone(), persistent=False)
        self.register_buffer("primes", torch.tensor(_HASH_PRIMES), persistent=False)
        self.out_dim = config.levels * config.features_per_level
        self.active_levels = config.levels

    def _indices(self, vertices: Tensor, level: int) -> Tensor:
        """Table rows of integer vertices ``(..., 3)`` at ``level``."""
        resolution, size = self.resolutions[level], self.table_sizes[level]
        if resolution**3 <= size:
            x, y, z = vertices.unbind(-1)
            return x + resolution * (y + resolution * z)
        hashed = vertices * self.primes
        mixed = torch.bitwise_xor(torch.bitwise_xor(hashed[..., 0], hashed[..., 1]), hashed[..., 2])
        return torch.remainder(mixed, size)

    def forward(self, x: Tensor) -> Tensor:
        batch_shape = x.shape[:-1]
        unit = ((x.reshape(-1, 3) / self.config.bound + 1) / 2).clamp(0, 1)
        upper = self.corners.bool()  # per corner and axis: take frac (1) or 1 - frac (0)
        features = []
        for level, table in enumerate(self.tables):
            if level >= self.active_levels:
                features.append(unit.new_zeros(unit.shape[0], self.config.features_per_level))
                continue
            scaled = unit.to(table.dtype) * (self.resolutions[level] - 1)
            base = scaled.detach().floor().clamp(max=self.resolutions[level] - 2)
            frac = scaled - base  # (N, 3), differentiable in x
            vertices = base.long()[:, None, :] + self.corners  # (N, 8, 3)
            rows = self._indices(vertices, level)  # (N, 8)
            # Trilinear weight of each corner: the product over the three axes.
            weights = torch.where(upper, frac[:, None, :], 1 - frac[:, None, :]).prod(-1)
            values = table[rows.reshape(-1)].reshape(*rows.shape, -1)  # (N, 8, F)
            features.append((weights[..., None] * values).sum(1))
        return torch.cat(features, dim=-1).reshape(*batch_shape, self.out_dim)

    def num_parameters(self) -> int:
        return sum(table.numel() for table in self.tables)


def make_grid_encoding(config: GridConfig) -> DenseGridEncoding | HashGridEncoding:
    """The grid encoding that ``config.kind`` names."""
    return HashGridEncoding(config) if config.kind == "hash" else DenseGridEncoding(config)
