"""The radiance (colour) network of stage 1, reused as stage 2's diffuse-albedo network.

IRON's ``RenderingNetwork`` in ``idr`` mode maps ``(x, n, v, f)`` to an RGB value in [0, 1]:

    c = sigmoid(MLP([PE_10(x), PE_4(v), n, f]))

where ``x`` is the point, ``v`` the unit ray direction (camera to point), ``n`` the raw SDF
gradient and ``f`` the SDF network's feature vector. With co-located flash photographs the
view and light directions coincide, so ``c`` is the flash-lit appearance, which includes
shading.

**Stage 2 hand-off (as IRON does):** stage 2 instantiates this SAME class with the same config,
loads stage 1's weights, and calls it with ``view_dirs = -normal`` (unit normals). That removes
the view dependence and turns the stage-1 colour, shading baked in, into the initial diffuse
albedo. Keep the input order and dimensions stable for that reason.

Stage 1 trains on gamma-encoded values (see ``training/stage1.py``), so in stage 1 ``c`` is a
gamma-encoded colour; IRON's stage 2 uses it as a linear albedo all the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ironrender.config import option
from ironrender.fields.encodings import PositionalEncoding
from ironrender.fields.sdf import MLP

XYZ_DIM = 3


@dataclass
class RadianceConfig:
    """Radiance net settings; defaults are the ``fast`` preset (``paper_radiance_config``)."""

    pos_freqs: int = option(4, "NeRF frequencies on the point x")
    dir_freqs: int = option(4, "NeRF frequencies on the viewing direction")
    hidden_dim: int = option(64, "width of the MLP's hidden layers")
    num_hidden: int = option(2, "hidden layers of the MLP")
    skip_layers: tuple[int, ...] = option((), "layers that take the input again (IRON: 4)")
    weight_norm: bool = option(False, "weight normalisation on every linear layer (IRON)")


def paper_radiance_config() -> RadianceConfig:
    """IRON's stage-1 colour net: PE-10 x, PE-4 view, 8 x 256, skip at 4, ReLU, weight norm."""
    return RadianceConfig(
        pos_freqs=10, dir_freqs=4, hidden_dim=256, num_hidden=8, skip_layers=(4,), weight_norm=True
    )


class RadianceField(nn.Module):
    """``(x, n, v, f) -> rgb in [0, 1]``; see the module docstring for the stage-2 contract."""

    def __init__(self, config: RadianceConfig, feature_dim: int):
        super().__init__()
        self.config = config
        self.feature_dim = feature_dim
        self.pos_pe = PositionalEncoding(config.pos_freqs)
        self.dir_pe = PositionalEncoding(config.dir_freqs)
        in_dim = self.pos_pe.out_dim + self.dir_pe.out_dim + XYZ_DIM + feature_dim
        self.mlp = MLP(in_dim, config.hidden_dim, config.num_hidden, 3, config.skip_layers)
        if config.weight_norm:
            self.mlp.apply_weight_norm()

    def forward(
        self, points: Tensor, normals: Tensor, view_dirs: Tensor, features: Tensor
    ) -> Tensor:
        """``points``, ``normals``, ``view_dirs`` (..., 3) and ``features`` (..., F) -> (..., 3)."""
        inputs = torch.cat([self.pos_pe(points), self.dir_pe(view_dirs), normals, features], dim=-1)
        return torch.sigmoid(self.mlp(inputs))
