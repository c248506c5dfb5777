"""A dim room's light on the object: low-frequency ambient irradiance (not in IRON).

IRON assumes the flash is the only light. In a room that is dim but not dark, every surface
point also receives light from all around; for a diffuse surface that adds

    L_ambient(x) = rho_d(x) / pi * E(n(x)),

where ``E(n)``, the irradiance on a surface facing ``n``, is smooth in ``n``: Ramamoorthi and
Hanrahan (2001) showed that its first nine real spherical harmonics (orders 0-2) capture it to
about 1 % for any distant lighting. :class:`AmbientLight` is those nine coefficients per colour
channel, fitted jointly with the materials in stage 2, starting at zero (a dark room). It lights
the diffuse lobe only (a glossy reflection of a dim room is far below the flash's highlight),
ignores occlusion by the object itself (the world-space irradiance is the same at every point),
and never enters the exported materials: the albedo is what remains once the room's light is
explained, and relighting, export and the material metrics use the materials alone.

The basis (real SH, unit normal ``n = (x, y, z)``, world axes):
``0.282095``; ``0.488603 (y, z, x)``; ``1.092548 (xy, yz, xz)``, ``0.315392 (3z^2 - 1)``,
``0.546274 (x^2 - y^2)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

SH_COEFFICIENTS = 9  # orders 0, 1 and 2
_C0, _C1, _C2, _C20, _C22 = 0.282095, 0.488603, 1.092548, 0.315392, 0.546274


def sh_basis(normals: Tensor) -> Tensor:
    """The nine real SH basis functions at unit ``normals`` (..., 3) -> (..., 9)."""
    x, y, z = normals.unbind(-1)
    return torch.stack(
        [
            torch.full_like(x, _C0),
            _C1 * y,
            _C1 * z,
            _C1 * x,
            _C2 * x * y,
            _C2 * y * z,
            _C20 * (3.0 * z * z - 1.0),
            _C2 * x * z,
            _C22 * (x * x - y * y),
        ],
        dim=-1,
    )


class AmbientLight(nn.Module):
    """Ambient irradiance ``E(n) = max(0, sum_k c_k Y_k(n))`` per RGB channel (module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.coefficients = nn.Parameter(torch.zeros(SH_COEFFICIENTS, 3))

    def irradiance(self, normals: Tensor) -> Tensor:
        """``E(n)`` (..., 3) at unit world-space normals (..., 3); never negative."""
        return (sh_basis(normals) @ self.coefficients).clamp_min(0.0)

    def radiance(self, diffuse_albedo: Tensor, normals: Tensor) -> Tensor:
        """What a Lambertian point of albedo ``rho_d`` sends to any camera: ``rho_d / pi E(n)``."""
        return diffuse_albedo / math.pi * self.irradiance(normals)

    def mean_irradiance(self) -> Tensor:
        """``E`` averaged over all normals (3,): the constant term's ``c_0 Y_0``."""
        return self.coefficients[0] * _C0
