"""Stage 1's ray batches: which training pixels a step renders, and their camera rays.

:class:`PixelSampler` draws a share of each batch from the foreground (pixels brighter than a
threshold: the object, in a dark-room capture) and the rest uniformly over all pixels of all
views, so the empty background is still carved; :func:`pixel_rays` turns flat pixel indices
into rays through the pixel centres.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ironrender.data.cameras import Cameras

SAMPLER_CHUNK = 1 << 24  # pixels per chunk when the pixel sampler finds the foreground


class PixelSampler:
    """Random training pixels from all views: a share from the foreground (pixels brighter
    than a threshold, where the object is in a dark-room capture), the rest uniform, so the
    empty background is still carved."""

    def __init__(self, targets: Tensor, fraction: float, threshold: float):
        self.shape = targets.shape[:3]  # (N, H, W)
        self.count = targets.shape[0] * targets.shape[1] * targets.shape[2]
        # The foreground's flat indices, found chunk by chunk and kept as int32 when they fit:
        # for 300 photos of 1 MP, 1.2 GB instead of 2.4 GB (plus as much again in temporaries).
        index_type = torch.int32 if self.count < 2**31 else torch.int64
        flat = targets.reshape(-1, 3)
        bright = torch.empty(self.count, dtype=torch.bool, device=targets.device)
        for start in range(0, self.count, SAMPLER_CHUNK):
            stop = min(start + SAMPLER_CHUNK, self.count)
            torch.gt(flat[start:stop].amax(-1), threshold, out=bright[start:stop])
        count = int(torch.count_nonzero(bright))  # (bright.sum() would make an int64 copy)
        self.foreground = torch.empty(count, dtype=index_type, device=targets.device)
        filled = 0
        for start in range(0, self.count, SAMPLER_CHUNK):
            found = torch.nonzero(bright[start : start + SAMPLER_CHUNK]).squeeze(-1) + start
            self.foreground[filled : filled + len(found)] = found
            filled += len(found)
        self.fraction = fraction if len(self.foreground) > 0 else 0.0

    def sample(self, count: int, generator: torch.Generator) -> Tensor:
        """Flat pixel indices (count,) into (N, H, W)."""
        device = self.foreground.device
        n_fg = int(round(count * self.fraction))
        uniform = torch.randint(self.count, (count - n_fg,), device=device, generator=generator)
        if n_fg == 0:
            return uniform
        pick = torch.randint(len(self.foreground), (n_fg,), device=device, generator=generator)
        return torch.cat([self.foreground[pick].long(), uniform])


def pixel_rays(cameras: Cameras, flat: Tensor, shape: torch.Size):
    """Rays through the centres of flat pixel indices into (N, H, W)."""
    _, height, width = shape
    image = flat // (height * width)
    v = (flat // width) % height
    u = flat % width
    pixels = torch.stack([u, v], -1).to(cameras.intrinsics.dtype) + 0.5
    return cameras.generate_rays(image, pixels)
