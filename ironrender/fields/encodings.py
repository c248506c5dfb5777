"""Input encodings for coordinate networks.

* :class:`PositionalEncoding`: NeRF's frequency encoding (IRON's ``embedder``), the input
  followed by ``sin(2^k x), cos(2^k x)`` for ``k = 0..L-1``; output dimension ``d (1 + 2L)``.
* :class:`DenseGridEncoding`: a multi-resolution stack of dense 3-D feature grids read with
  trilinear interpolation (``F.grid_sample``), the pure-PyTorch stand-in for Instant-NGP's
  hash grid. On the 2-core CPU it was the fastest grid we measured (platform-notes.md: 944 ms
  versus 1,066 ms for a hash grid per 65k-point training step with autograd normals), it has no
  hash collisions, and ``grid_sample`` supports the double backward the eikonal loss needs.
  Memory grows as ``R^3``, which is why the finest resolution is capped (96 by default, about
  one cell per pixel footprint of the 128x128 default capture).

Both are device-agnostic: their buffers and parameters follow ``module.to(device)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


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

    levels: int = 8
    features_per_level: int = 2
    base_resolution: int = 16
    max_resolution: int = 96
    init_scale: float = 1e-4  # features start near zero: the MLP's geometric init rules at step 0
    bound: float = 1.0  # the grid spans [-bound, bound]^3


class DenseGridEncoding(nn.Module):
    """Trilinearly interpolated features from ``levels`` dense grids, concatenated.

    ``active_levels`` (coarse-to-fine training) zeroes the finer levels' features and skips their
    lookups; the output dimension stays ``levels * features_per_level``.
    """

    def __init__(self, config: GridConfig):
        super().__init__()
        self.config = config
        if config.levels > 1:
            growth = (config.max_resolution / config.base_resolution) ** (1 / (config.levels - 1))
        else:
            growth = 1.0
        self.resolutions = [
            int(round(config.base_resolution * growth**level)) for level in range(config.levels)
        ]
        self.grids = nn.ParameterList(
            nn.Parameter(
                (torch.rand(1, config.features_per_level, r, r, r) * 2 - 1) * config.init_scale
            )
            for r in self.resolutions
        )
        self.out_dim = config.levels * config.features_per_level
        self.active_levels = config.levels

    def forward(self, x: Tensor) -> Tensor:
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

    def num_parameters(self) -> int:
        return sum(grid.numel() for grid in self.grids)
