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


class PixelTargets:
    """The training photographs in the loss domain, as stored: (N, H, W, 3) float32 values, or
    uint8 codes with a 256-entry ``table`` of their float32 values (8-bit photographs: a
    quarter of the memory), decoded for each batch."""

    def __init__(self, stored: Tensor, table: Tensor | None = None):
        if (stored.dtype == torch.uint8) != (table is not None):
            raise ValueError("uint8 targets need a decoding table, float targets none")
        self.stored = stored
        self.table = table.to(stored.device) if table is not None else None
        self.flat = stored.reshape(-1, 3)

    @property
    def shape(self) -> torch.Size:
        return self.stored.shape

    def decode(self, values: Tensor) -> Tensor:
        return values if self.table is None else self.table[values.long()]

    def pixels(self, flat: Tensor) -> Tensor:
        """(B, 3) float32 values of flat pixel indices into (N, H, W)."""
        return self.decode(self.flat[flat])

    def view(self, index: int) -> Tensor:
        """(H, W, 3) float32 values of one photograph."""
        return self.decode(self.stored[index])


class PixelSampler:
    """Random training pixels from all views: a share from the foreground (pixels brighter
    than a threshold, where the object is in a dark-room capture), the rest uniform, so the
    empty background is still carved."""

    def __init__(self, targets: PixelTargets, fraction: float, threshold: float):
        self.shape = targets.shape[:3]  # (N, H, W)
        self.count = targets.shape[0] * targets.shape[1] * targets.shape[2]
        # The foreground's flat indices, found chunk by chunk and kept as int32 when they fit:
        # for 300 photos of 1 MP, 1.2 GB instead of 2.4 GB (plus as much again in temporaries).
        index_type = torch.int32 if self.count < 2**31 else torch.int64
        flat = targets.flat
        device = flat.device
        bright = torch.empty(self.count, dtype=torch.bool, device=device)
        for start in range(0, self.count, SAMPLER_CHUNK):
            stop = min(start + SAMPLER_CHUNK, self.count)
            # (the tables are increasing, so the brightest channel decodes to the largest value)
            brightest = targets.decode(flat[start:stop].amax(-1))
            torch.gt(brightest, threshold, out=bright[start:stop])
        count = int(torch.count_nonzero(bright))  # (bright.sum() would make an int64 copy)
        self.foreground = torch.empty(count, dtype=index_type, device=device)
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
