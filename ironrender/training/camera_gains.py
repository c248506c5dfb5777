"""Per-photograph camera gains: automatic exposure and white balance (not in IRON).

A camera left on automatic scales each photograph by its own exposure and white balance; IRON
assumes one fixed gain, so a photo 15 % brighter than its neighbours must be explained by the
materials, and becomes an albedo change where only that photo sees the surface. Stage 2 can
instead fit three gains per training photograph (RGB; exposure is their common part, white
balance their ratios), multiplying the rendered radiance before the loss:

    pred_i = g_i * render_i,        g_i = exp(log_g_i),

starting at 1 and held near 1 by ``weight * mean(log_g^2)`` added to the loss. The regulariser
settles the one thing the photographs cannot tell, a common factor between every gain and the
flash intensity: with it the gains' geometric mean stays near 1 and the flash keeps the scale.
Held-out views are rendered with gain 1: the exposure the capture was meant to have.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

RGB = 3


class CameraGains(nn.Module):
    """``views`` x RGB gains, stored as logarithms (always positive; Adam's steps relative)."""

    def __init__(self, views: int) -> None:
        super().__init__()
        self.log_gains = nn.Parameter(torch.zeros(views, RGB))

    def forward(self, view: int) -> Tensor:
        """The gains (3,) of training view ``view``."""
        return self.log_gains[view].exp()

    def penalty(self) -> Tensor:
        """``mean(log_g^2)`` over views and channels: zero at gain 1."""
        return (self.log_gains**2).mean()
