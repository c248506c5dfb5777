"""Shared test fixtures: small cameras and datasets built in code, nothing from outside."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ironrender.data.cameras import Cameras, intrinsics_from_fov, look_at


def ring_cameras(n: int = 6, width: int = 32, height: int = 24, distance: float = 2.5) -> Cameras:
    """``n`` cameras on a tilted ring around the origin, looking at it."""
    angles = torch.arange(n, dtype=torch.float32) * (2 * math.pi / n)
    eye = torch.stack(
        [
            distance * torch.cos(angles),
            0.4 * distance * torch.ones(n),
            distance * torch.sin(angles),
        ],
        dim=-1,
    )
    w2c = look_at(eye, torch.zeros(3), torch.tensor([0.0, 1.0, 0.0]))
    K = intrinsics_from_fov(width, height, 50.0).repeat(n, 1, 1)
    return Cameras(K, w2c, torch.tensor([[width, height]] * n))


@pytest.fixture
def cameras() -> Cameras:
    return ring_cameras()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
