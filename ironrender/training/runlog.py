"""Run logging shared by the training stages: a tqdm progress bar, TensorBoard scalars, and
side-by-side preview images written into the run folder.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from ironrender.data.images import write_data_png

PSNR_FLOOR_MSE = 1e-10  # a perfect match reports a finite PSNR


def psnr(mse: float) -> float:
    """Peak signal-to-noise ratio in dB of values in [0, 1]: ``-10 log10(MSE)``."""
    return -10.0 * math.log10(max(mse, PSNR_FLOOR_MSE))


def write_panels(path: str | Path, panels: list[Tensor]) -> None:
    """Write images (H, W, 3) in [0, 1], already display-encoded, side by side as one PNG."""
    arrays = [p.detach().float().clamp(0, 1).cpu().numpy() for p in panels]
    write_data_png(path, np.concatenate(arrays, axis=1))


def normal_image(normals: Tensor, opacity: Tensor) -> Tensor:
    """World normals (H, W, 3) as colours ``(n + 1) / 2``, black where nothing was hit."""
    return (normals * 0.5 + 0.5) * opacity[..., None].clamp(0, 1)


class RunLog:
    """Progress bar + TensorBoard for one training stage.

    ``folder/tb`` receives the scalars; the bar shows the latest values and the step rate.
    Both can be switched off (tests, library use).
    """

    def __init__(
        self,
        folder: str | Path,
        total: int,
        start: int = 0,
        progress: bool = True,
        tensorboard: bool = True,
        description: str = "",
    ):
        self.folder = Path(folder)
        self.writer = None
        if tensorboard:
            self.writer = SummaryWriter(str(self.folder / "tb"), purge_step=start)
        self.bar = None
        if progress:
            self.bar = tqdm(total=total, initial=start, desc=description, dynamic_ncols=True)

    def step(self, step: int, scalars: dict[str, float], write: bool) -> None:
        """Advance the bar by one step; add ``scalars`` to TensorBoard when ``write``."""
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in scalars.items()}, refresh=False)
            self.bar.update(1)
        if write and self.writer is not None:
            for name, value in scalars.items():
                self.writer.add_scalar(name, value, step)

    def message(self, text: str) -> None:
        """A line in the log, above the bar when there is one."""
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text)

    def set_total(self, total: int) -> None:
        """The run's length changed (stage 1 lengthening itself)."""
        if self.bar is not None:
            self.bar.total = total
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
