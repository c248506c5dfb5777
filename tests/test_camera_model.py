"""The photometric camera model (per-photograph gains, vignetting, a response curve) and the
held-out protocols that give a photograph it never saw its gains.

The capture is test_stage2's sphere, rendered by its independent numpy renderer, then developed
by a known camera written out here (not ironrender's code): RGB gains per photograph, a
vignetting ``1 - 0.8 rho^2``, a response ``R(v) = v + 0.08 sin(pi v)`` on the gamma-encoded
values, stored as 8-bit PNGs. Stage 2 starts from the true shape, materials and flash with
their learning rates at zero, so that what the camera model recovers is the camera's alone,
through the same develop path, gradients and regularisers as a run; its three terms are
compared with the truth where the photographs show them (the sphere's pixels). Budget: about
15 s on 2 cores.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ironrender.data.cameras import Cameras
from ironrender.data.dataset import load_split, save_split
from ironrender.data.tone_curve import GAMMA
from ironrender.evaluation.camera_gains import fit_gains, nearest_view_gains, two_half_prediction
from ironrender.training.photometric import CaptureFacts, photometric_models
from ironrender.training.stage2 import Stage2Model, fit_stage2
from ironrender.training.stage2_views import scene_render_config
from tests.test_stage2 import (  # noqa: F401  (one_thread: the fixture)
    LIGHT,
    one_thread,
    render_sphere_reference,
    scene_cameras,
    small_config,
    true_materials,
)

TRUE_GAINS = np.exp(np.linspace(-0.15, 0.15, 8))[[3, 0, 6, 1, 7, 2, 5, 4]]
WHITE_BALANCE = np.array([[1.06, 1.0, 0.92], [0.95, 1.0, 1.04]])  # alternating per view
VIGNETTING = -0.8  # V = 1 + a rho^2, rho on the unit-depth plane over the field radius


def true_response(v: np.ndarray) -> np.ndarray:
    """Monotone (slope 1 + 0.08 pi cos(pi v) > 0), R(0) = 0, R(1) = 1: brighter mid-tones."""
    return v + 0.08 * np.sin(np.pi * v)


def true_gains() -> np.ndarray:
    balance = WHITE_BALANCE[np.arange(len(TRUE_GAINS)) % 2]
    gains = TRUE_GAINS[:, None] * balance
    return gains / np.exp(np.log(gains).mean(0))  # geometric mean 1 per channel: the flash's scale


def off_centre_cameras() -> Cameras:
    """test_stage2's cameras with the principal point moved by 7 px (of 40) in a different
    direction per view: the sphere sits off the image centre. Centred, its brightness (which
    falls with the distance from its centre) would be a function of the distance from the
    principal point, like the vignetting, and the two could trade against each other."""
    cameras = scene_cameras()
    angles = torch.arange(len(cameras)) * (2 * math.pi / len(cameras)) + 0.3
    cameras.intrinsics[:, 0, 2] += 7.0 * torch.cos(angles)
    cameras.intrinsics[:, 1, 2] += 7.0 * torch.sin(angles)
    return cameras


def scene_radiance(cameras: Cameras) -> np.ndarray:
    """The sphere's radiance at the true shape, materials and flash, by stage 2's own renderer.

    Not the independent reference (test_stage2 holds the renderer to it): the reference
    box-filters silhouette pixels, which a centre-ray render matches only to a few per cent,
    and the rim is where both the vignetting (far from the image centre) and the darkest values
    of the response curve are seen; that mismatch, not the camera model, would be measured."""
    sdf, materials = true_scene()
    model = Stage2Model(sdf, materials).eval()
    render = scene_render_config(small_config(), cameras)
    views = [model.render_view(cameras, i, render).color for i in range(len(cameras))]
    return torch.stack(views).double().numpy()


def true_scene():
    sdf, materials = true_materials()
    materials.set_light_intensity(LIGHT)
    return sdf, materials


def developed_photographs(cameras) -> tuple[np.ndarray, float]:
    """The sphere's linear renders through the known camera, as the linear radiance whose
    gamma-2.2 encoding is ``R(encode(g V L))`` (save_split encodes it back)."""
    linear = scene_radiance(cameras)
    field = cameras.field_radius()
    photos = []
    for i, gains in enumerate(true_gains()):
        plane = cameras.image_plane(i).double().numpy()
        rho2 = (plane**2).sum(-1, keepdims=True) / field**2
        value = np.clip(gains * (1.0 + VIGNETTING * rho2) * linear[i], 0.0, 1.0)
        encoded = true_response(value ** (1.0 / GAMMA))
        photos.append(encoded**GAMMA)
    return np.stack(photos).astype(np.float32), field


def test_camera_model_recovers_gains_vignetting_and_response(tmp_path):
    """Gains within 1 %, the vignetting within 0.025 and the response curve within 0.01 where
    the sphere's pixels show them (measured: 0.3 %, 0.018, 0.006)."""
    cameras = off_centre_cameras()
    photos, field = developed_photographs(cameras)
    names = [f"{i}.png" for i in range(len(cameras))]
    save_split(tmp_path, "train", names, photos, cameras)
    split = load_split(tmp_path, "train")
    config = small_config(
        steps=300, lr_sdf=0.0, lr_materials=0.0, lr_light=0.0, exposure_gains=True,
        vignetting=True, response_curve=True, lr_gains=1e-2, lr_vignetting=1e-2,
        lr_response=1e-2, object_patch_fraction=1.0, gains_weight=1e-4,
        vignetting_weight=1e-5, response_weight=1e-5,
    )  # fmt: skip
    # Regularisers 100-10x below a run's: the sphere fills a sixth of a 40-px frame, so its
    # data term is that much smaller than a photograph's (measured: at a run's weights the
    # vignetting stops at 0.82 for 0.71 at the sphere's farthest pixel).
    capture = CaptureFacts(len(split), True, room_lit=False, field_radius=field)
    models = photometric_models(config, capture)
    gains, vignetting, response = models
    sdf, materials = true_scene()
    masks = torch.from_numpy(
        render_sphere_reference(cameras, coverage=1.0, light=0.0)[..., 0] > 0.5
    )
    fit_stage2(
        split, Stage2Model(sdf, materials, photometric=models), config, progress=False, masks=masks
    )

    recovered = gains.centred().detach().exp().numpy()
    print("gains / truth", recovered / true_gains())
    np.testing.assert_allclose(recovered / true_gains(), 1.0, atol=0.01)
    rho = torch.linspace(0.0, 0.6, 20)  # the sphere's pixels reach rho = 0.64
    plane = torch.stack([rho * field, torch.zeros_like(rho)], -1)[None]
    v_fit = vignetting(plane)[0, :, 0].detach().numpy()
    print("vignetting", v_fit[[0, -1]], "truth", 1 + VIGNETTING * rho[[0, -1]].numpy() ** 2)
    np.testing.assert_allclose(v_fit, 1.0 + VIGNETTING * rho.numpy() ** 2, atol=0.025)
    shown = torch.from_numpy(photos[masks.numpy()] ** (1 / GAMMA))  # the encoded values seen
    low, high = np.percentile(true_response_inverse(shown.numpy()), [5, 95])
    v = torch.linspace(float(low), float(high), 30)
    r_fit = response(v).detach().numpy()
    print("response error", np.abs(r_fit - true_response(v.numpy())).max())
    np.testing.assert_allclose(r_fit, true_response(v.numpy()), atol=0.01)


def true_response_inverse(r: np.ndarray) -> np.ndarray:
    v = np.linspace(0.0, 1.0, 4097)
    return np.interp(r, true_response(v), v)


def test_nearest_view_gains_interpolate_and_two_halves_fit():
    """Nearest views: a held-out photograph midway between two training ones gets their
    geometric mean; at a training camera, that camera's gains. Two halves: gains through a
    response curve recovered to the grid's resolution, each half scored by the other's fit."""
    centers = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [5.0, 0.0, 0.0]])
    gains = torch.tensor([[1.0, 2.0, 1.0], [4.0, 0.5, 1.0], [9.0, 9.0, 9.0]])
    between = nearest_view_gains(centers, gains, torch.tensor([0.5, 0.0, 0.0]), k=2)
    torch.testing.assert_close(between, torch.tensor([2.0, 1.0, 1.0]))
    at = nearest_view_gains(centers, gains, torch.tensor([1.0, 0.0, 0.0]), k=2)
    torch.testing.assert_close(at, gains[1], rtol=1e-4, atol=1e-4)

    generator = torch.Generator().manual_seed(0)
    render = torch.rand(12, 16, 3, generator=generator, dtype=torch.float64) * 0.8

    def develop(color, g):
        return torch.from_numpy(true_response(((color * g).clamp(0, 1) ** (1 / GAMMA)).numpy()))

    truth = torch.tensor([1.2, 0.9, 0.8], dtype=torch.float64)
    photo = develop(render, truth)
    fitted = fit_gains(render, photo, develop, slice(0, 8))
    torch.testing.assert_close(fitted, truth, rtol=3e-3, atol=0)  # the fine grid: 0.005 in log g
    prediction = two_half_prediction(render, photo, develop)
    assert float((prediction - photo).abs().max()) < 3e-3
    # a photograph whose halves disagree cannot be fitted by one set of gains from the other
    photo[:, 8:] = develop(render[:, 8:], truth * 1.3)
    prediction = two_half_prediction(render, photo, develop)
    assert float((prediction - photo).abs()[:, :8].max()) > 0.02


@pytest.mark.parametrize("segments_value", [0.0, 0.37, 1.0, 1.2])
def test_response_curve_is_identity_at_start_and_continues_past_white(segments_value):
    """theta = 0 is R(v) = v, above 1 included (a render brighter than white keeps a slope)."""
    (response,) = photometric_models(
        small_config(response_curve=True), CaptureFacts(4, True, room_lit=False)
    )
    value = torch.tensor([segments_value])
    torch.testing.assert_close(response(value), value)
