"""The contract every signed-distance field satisfies, neural or analytic.

Renderers (volume, surface, edges) only talk to this interface, so each can be tested on an
analytic SDF whose answers are known in closed form.

Sign convention: negative inside the object, positive outside, zero on the surface; the
gradient points outwards and has unit length for a true distance field (eikonal equation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class SDFSample:
    """SDF values (...), geometric features (..., F) and, when asked for, gradients (..., 3)."""

    sdf: Tensor
    features: Tensor
    gradients: Tensor | None = None


class SDFField(nn.Module):
    """Base class: subclasses implement :meth:`forward`; gradients come from autograd."""

    feature_dim: int = 0

    def forward(self, points: Tensor) -> SDFSample:  # pragma: no cover - abstract
        raise NotImplementedError

    def sdf(self, points: Tensor) -> Tensor:
        """SDF values only (..., ); cheaper paths may override this."""
        return self.forward(points).sdf

    def with_gradients(self, points: Tensor, create_graph: bool = True) -> SDFSample:
        """SDF, features and the spatial gradient dS/dx.

        ``create_graph=True`` keeps the gradient differentiable (eikonal loss, shading normals);
        pass False for no-grad queries such as sphere tracing or edge walking.
        """
        with torch.enable_grad():
            x = points if points.requires_grad else points.detach().requires_grad_(True)
            out = self.forward(x)
            (grad,) = torch.autograd.grad(
                out.sdf, x, torch.ones_like(out.sdf), create_graph=create_graph
            )
        if not create_graph:
            return SDFSample(out.sdf.detach(), out.features.detach(), grad.detach())
        return SDFSample(out.sdf, out.features, grad)


class SphereSDF(SDFField):
    """The exact SDF of a sphere, ``|x - c| - r``, with a learnable radius (tests, demos)."""

    def __init__(self, radius: float = 0.5, center=(0.0, 0.0, 0.0), feature_dim: int = 0):
        super().__init__()
        self.radius = nn.Parameter(torch.tensor(float(radius)))
        self.register_buffer("center", torch.tensor(center, dtype=torch.float32))
        self.feature_dim = feature_dim

    def forward(self, points: Tensor) -> SDFSample:
        sdf = (points - self.center).norm(dim=-1) - self.radius
        features = points.new_zeros(*points.shape[:-1], self.feature_dim)
        return SDFSample(sdf, features)
