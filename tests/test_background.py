"""What rays see beyond the object: the room model of stage 1, its use in stage 2's surface
renderer (missed pixels and the far side of edge pixels) and the automatic choice.

Every expected value is computed independently: ray-sphere algebra, a supersampled reference
image composited over the same background, finite differences.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ironrender.fields.background import (
    BackgroundField,
    BackgroundFieldConfig,
    background_samples,
    contract,
)
from ironrender.fields.base import SphereSDF
from ironrender.fields.encodings import GridConfig
from ironrender.rendering.edges import EdgeConfig
from ironrender.rendering.surface_renderer import ShadeResult, SurfaceRenderConfig, render_patch
from ironrender.rendering.volume import Background, border_level, choose_background
from tests.test_edges import (
    COLOR,
    GRAD_RADIUS,
    GRAD_SIZE,
    SUPERSAMPLES,
    TARGET_RADIUS,
    _camera,
    constant_shade,
    supersampled_sphere,
)

ROOM = torch.tensor([0.05, 0.10, 0.20])  # a dim, bluish room behind the object


def _random_rays(count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Origins 3-6 units from the centre, directions towards the origin +- 30 degrees: some rays
    hit the unit sphere, some pass beside it."""
    gen = torch.Generator().manual_seed(seed)
    origins = F.normalize(torch.randn(count, 3, generator=gen), dim=-1)
    origins = origins * (3.0 + 3.0 * torch.rand(count, 1, generator=gen))
    towards = F.normalize(-origins, dim=-1)
    directions = F.normalize(towards + 0.6 * torch.randn(count, 3, generator=gen), dim=-1)
    return origins, directions


def test_background_samples_lie_on_the_ray_beyond_the_sphere_near_to_far():
    origins, directions = _random_rays(500)
    points = background_samples(origins, directions, 16, jitter=True)
    offsets = points - origins[:, None]
    t = (offsets * directions[:, None]).sum(-1)
    on_ray = origins[:, None] + directions[:, None] * t[..., None]
    assert torch.allclose(on_ray, points, atol=1e-4)  # on the ray ...
    assert bool((t > 0).all())  # ... in front of the camera
    radius = points.norm(dim=-1)
    assert bool((radius >= 1.0 - 1e-4).all())  # never inside the object's domain
    assert bool((t[:, 1:] >= t[:, :-1] - 1e-5).all())  # near to far
    # Rays that cross the unit sphere: every sample lies past its exit point.
    b = (origins * directions).sum(-1)
    disc = b * b - (origins * origins).sum(-1) + 1.0
    crossing = disc > 0
    exit_t = -b + disc.clamp(min=0).sqrt()
    assert bool((t[crossing] >= exit_t[crossing, None] - 1e-4).all())
    assert crossing.any() and (~crossing).any()  # both kinds of ray were tested


def test_contraction_maps_the_outside_into_the_shell_and_keeps_the_inside():
    directions = F.normalize(
        torch.randn(100, 3, generator=torch.Generator().manual_seed(1)), dim=-1
    )
    radii = torch.linspace(0.1, 100.0, 100)[:, None]
    y = contract(directions * radii)
    expected = torch.where(radii > 1, 2.0 - 1.0 / radii, radii)
    assert torch.allclose(y.norm(dim=-1, keepdim=True), expected, atol=1e-5)
    assert torch.allclose(F.normalize(y, dim=-1), directions, atol=1e-5)  # radial


def test_background_field_renders_what_it_is_trained_on():
    """A few hundred Adam steps on rays whose target depends on direction: the field can hold
    a room (left wall bright, right wall dark); a constant could not."""
    torch.manual_seed(0)
    small = GridConfig(levels=4, base_resolution=8, max_resolution=32, init_scale=1e-2, bound=2.0)
    field = BackgroundField(BackgroundFieldConfig(grid=small))
    origins, directions = _random_rays(512, seed=2)
    target = torch.where(directions[:, :1] > 0, ROOM * 4, ROOM)
    optimizer = torch.optim.Adam(field.parameters(), lr=2e-2)
    for _ in range(300):
        loss = F.mse_loss(field.render(origins, directions, jitter=True), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        error = (field.render(origins, directions) - target).abs().mean()
    best_constant = (target - target.mean(0)).abs().mean()
    assert float(error) < 0.25 * float(best_constant)


def _photos(border: float, size: int = 40) -> torch.Tensor:
    """Linear photos whose border has the gamma-encoded value ``border`` and a bright centre."""
    images = torch.full((3, size, size, 3), border**2.2)
    images[:, 10:30, 10:30] = 0.5
    return images


def test_auto_background_is_decided_from_the_photos_borders():
    assert border_level(_photos(10 / 255)) == pytest.approx(10 / 255, rel=1e-3)
    assert choose_background("auto", _photos(0.0))[0] == "black"  # IRON's dark room
    assert choose_background("auto", _photos(1 / 255))[0] == "black"  # JPEG noise in the dark
    mode, reason = choose_background("auto", _photos(5 / 255))  # a black cloth at 5 of 255
    assert mode == "field" and "5.0/255" in reason
    assert choose_background("black", _photos(30 / 255))[0] == "black"  # forcing wins


def _room(origins: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    return ROOM.to(directions.dtype).expand(len(directions), 3)


def test_missed_pixels_take_the_background_and_edge_pixels_blend_towards_it():
    cameras = _camera(48, 2.5, 40.0)
    config = SurfaceRenderConfig(edges=EdgeConfig(step_size=5e-3, max_steps=64))
    image = render_patch(
        SphereSDF(0.5), constant_shade, cameras, 0, config, training=False, background=_room
    )
    color = torch.tensor(COLOR)
    missed = ~image.mask
    assert torch.allclose(image.color[missed], ROOM.expand(int(missed.sum()), 3))
    assert torch.allclose(image.color[image.hit_mask], color.expand(int(image.hit_mask.sum()), 3))
    # Edge pixels: w C + (1 - w) B, so every channel lies between the object's and the room's.
    edge = image.color[image.edge_mask]
    assert len(edge) > 20
    low, high = torch.minimum(color, ROOM), torch.maximum(color, ROOM)
    assert bool(((edge >= low - 1e-5) & (edge <= high + 1e-5)).all())
    # The same blend against black differs exactly by (1 - w) B.
    black = render_patch(SphereSDF(0.5), constant_shade, cameras, 0, config, training=False)
    assert torch.allclose(black.color[missed], torch.zeros(3).expand(int(missed.sum()), 3))
    difference = image.color[image.edge_mask] - black.color[black.edge_mask]
    assert bool((difference >= -1e-6).all()) and bool((difference <= ROOM + 1e-6).all())


def test_silhouette_gradient_against_a_dim_room_matches_finite_differences():
    """Edge sampling keeps its unbiased silhouette gradient when the far side of the edge is a
    room, not black: d(L2)/d(radius) vs central differences of a 16x16-supersampled reference
    composited over the same room, ``coverage C + (1 - coverage) B``."""
    cameras = _camera(GRAD_SIZE, 2.5, 40.0)

    def reference(radius: float, seed: int = 0) -> torch.Tensor:
        covered = supersampled_sphere(cameras, radius, SUPERSAMPLES, seed)
        coverage = covered[..., :1] / COLOR[0]
        return covered + (1.0 - coverage) * ROOM.double()

    target = reference(TARGET_RADIUS, seed=1)
    step = 4e-3

    def loss(image: torch.Tensor) -> torch.Tensor:
        return ((image - target.to(image.dtype)) ** 2).sum()

    fd = float(
        (loss(reference(GRAD_RADIUS + step)) - loss(reference(GRAD_RADIUS - step))) / 2 / step
    )
    sdf = SphereSDF(GRAD_RADIUS)
    config = SurfaceRenderConfig(edges=EdgeConfig(step_size=5e-3, max_steps=64))
    image = render_patch(sdf, constant_shade, cameras, 0, config, background=_room)
    (grad,) = torch.autograd.grad(loss(image.color), sdf.radius)
    assert fd < 0
    assert float(grad) / fd == pytest.approx(1.0, abs=0.10)


class _DropsExtras:
    """A shader that returns extras on some calls and none on others, as a shader may when a
    call has no hits (``MaterialShader``): the renderer must not assume either side has them."""

    def __init__(self, drop_on_call: int):
        self.drop_on_call = drop_on_call
        self.calls = 0

    def __call__(self, hit, lights, colocated) -> ShadeResult:
        self.calls += 1
        colour = constant_shade(hit, lights, colocated).color
        if self.calls == self.drop_on_call:
            return ShadeResult(colour)
        return ShadeResult(colour, {"roughness": torch.full((len(hit), 1), 0.3)})


@pytest.mark.parametrize("drop_on_call", [1, 2])
def test_edge_and_interior_extras_merge_when_one_side_has_none(drop_on_call: int):
    """Call 1 shades the interior, call 2 the edge pixels' A/B samples. Either may come back
    without extras (e.g. every A/B sample missed): the map has zeros there, no KeyError."""
    cameras = _camera(32, 2.5, 40.0)
    config = SurfaceRenderConfig(edges=EdgeConfig(step_size=5e-3, max_steps=64))
    shade = _DropsExtras(drop_on_call)
    image = render_patch(SphereSDF(0.5), shade, cameras, 0, config, training=False)
    assert shade.calls == 2 and bool(image.edge_mask.any())
    roughness = image.extras["roughness"][..., 0]
    kept = image.edge_mask if drop_on_call == 1 else image.hit_mask
    dropped = image.hit_mask if drop_on_call == 1 else image.edge_mask
    assert torch.allclose(roughness[kept], torch.tensor(0.3))
    assert bool((roughness[dropped] == 0).all())


def test_constant_backgrounds_give_one_colour_per_ray():
    origins, directions = _random_rays(7)
    assert torch.equal(Background("black")(origins, directions), torch.zeros(7, 3))
    assert torch.equal(Background("white")(origins, directions), torch.ones(7, 3))
    learned = Background("learned")(origins, directions)
    assert torch.allclose(learned, torch.full((7, 3), 0.5))


# --------------------------------------------------------------------------------- stage 1
def _room_radiance(directions: torch.Tensor) -> torch.Tensor:
    """A dim room, linear: brighter towards +y and +x (about 12-40 of 255 gamma-encoded)."""
    return (0.004 + 0.012 * (directions[..., 1:2] + 1) + 0.006 * (directions[..., :1] + 1)).expand(
        *directions.shape[:-1], 3
    )


def test_stage1_explains_a_dim_room_with_the_background_not_with_fog(tmp_path):
    """The closed-form sphere of test_stage1 in front of a dim room. Forced black, stage 1 can
    only explain the room with density inside the unit sphere (fog over the background pixels);
    ``auto`` picks the background field, and those pixels keep a third of that opacity (what
    remains is mostly the blurred silhouette of a 200-step, 32-pixel fit)."""
    import dataclasses

    from ironrender.data.dataset import save_split
    from ironrender.errors import IronError
    from ironrender.rendering.volume import render_image
    from ironrender.training.stage1 import load_stage1, train_stage1
    from tests.test_stage1 import CENTER, RADIUS, render_sphere_scene, small_config, sphere_cameras

    cameras = sphere_cameras()
    object_only = torch.from_numpy(render_sphere_scene(cameras))
    rays = [cameras.image_rays(i) for i in range(len(cameras))]
    oc = [r.origins - CENTER for r in rays]
    hits = torch.stack(
        [
            ((o * r.directions).sum(-1) ** 2 - ((o**2).sum(-1) - RADIUS**2)) > 0
            for o, r in zip(oc, rays, strict=True)
        ]
    )
    room = torch.stack([_room_radiance(r.directions) for r in rays])
    images = torch.where(hits[..., None], object_only, room).numpy()
    save_split(
        tmp_path / "data", "train", [f"{i}.png" for i in range(len(cameras))], images, cameras
    )

    def fog(mode: str) -> float:
        config = small_config(steps=200)
        volume = dataclasses.replace(config.volume, background=mode)
        config = dataclasses.replace(config, volume=volume)
        try:
            train_stage1(tmp_path / "data", tmp_path / mode, config, "cpu")
        except IronError as exc:  # fog everywhere: the SDF may have no surface left at all
            assert "no zero crossing" in str(exc)
        model = load_stage1(tmp_path / mode)
        opacity = torch.stack(
            [
                render_image(
                    cameras, i, model.sdf, model.radiance, model.variance.inv_s(),
                    model.background, model_config(tmp_path / mode).volume,
                ).opacity
                for i in range(0, len(cameras), 4)
            ]
        )  # fmt: skip
        return float(opacity[~hits[::4]].mean())

    def model_config(run):
        from ironrender.config import from_dict
        from ironrender.training.stage1 import Stage1Config

        saved = torch.load(run / "stage1" / "checkpoint.pt", weights_only=False)["config"]
        return from_dict(Stage1Config, saved)

    black, auto = fog("black"), fog("auto")
    assert model_config(tmp_path / "auto").volume.background == "field"
    assert black > 0.2  # the failure this guards against: the room becomes fog
    assert auto < 0.4 * black and auto < 0.2  # measured: black 0.40, auto 0.13
