"""Where the flash was, learnt when the capture does not say (not in IRON).

A capture made with a flash beside the lens but imported without ``--flash-offset`` is
modelled as co-located, and a 5-degree offset then costs 6 dB of albedo (BENCHMARKS.md). With
``stage2.flash=learn`` stage 2 fits one offset shared by every view, three numbers in camera
coordinates (OpenCV axes, scene units), starting in the lens. The light position enters the
general point-light shading smoothly (:func:`ironrender.rendering.brdf.shade_point_light`:
through ``d_l``, ``n . l`` and the half vector), so the photographs' gradients reach it; the
shadow rays follow it without a gradient.
"""

from __future__ import annotations

import torch
from torch import nn

from ironrender.data.cameras import Cameras


class FlashOffset(nn.Module):
    """One flash position (3,) in camera coordinates, shared by every view."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = nn.Parameter(torch.zeros(3))

    def place(self, cameras: Cameras) -> Cameras:
        """``cameras`` with their flash at the offset, differentiably.

        Set after construction: ``Cameras`` reads an all-zero flash as the co-located case (no
        tensor, no gradient), which is where the offset starts.
        """
        placed = Cameras(cameras.intrinsics, cameras.w2c, cameras.sizes)
        placed.flash = self.offset.to(cameras.w2c.dtype).expand(len(cameras), 3)
        return placed

    def degrees(self, distance: float) -> float:
        """The offset's angle off the optical axis seen from ``distance`` along it."""
        lateral = self.offset.detach()[:2].norm()
        return float(torch.rad2deg(torch.atan2(lateral, torch.tensor(distance))))

    def describe(self, distance: float) -> str:
        x, y, z = (float(v) for v in self.offset.detach())
        return (
            f"flash at ({x:.3f}, {y:.3f}, {z:.3f}): {self.degrees(distance):.1f} deg off the axis"
        )
