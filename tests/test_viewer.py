"""model.glb and the report's viewer: read by independent readers, drawn by a real browser.

The asset is a sphere whose materials vary over it (stripes of diffuse colour, a specular albedo
from 0.02 to 0.12, GGX alpha from 0.1 to 0.35), exported by the project's exporter. Headless
Chromium (Debian's package, SwiftShader WebGL) draws the report's viewer at a held-out camera
under the flash; Mitsuba 3 renders the same exported asset (``scene.xml``, the project's own
BRDF) from the same camera and light. Each kind of mistake a viewer or an exporter can make
(UV flip, roughness convention, colour encoding, light intensity, camera convention) is made
once on purpose and must break the agreement.
"""

from __future__ import annotations

import io
import json
import math
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

import ironrender.evaluation.report as report_module
import ironrender.export.asset as asset_module
from ironrender.data.camera_file import CAMERA_FILE, cameras_to_dict
from ironrender.data.cameras import Cameras, intrinsics_from_fov, look_at
from ironrender.data.images import read_image, write_image
from ironrender.data.tone_curve import encode
from ironrender.errors import IronError
from ironrender.evaluation import viewer as viewer_module
from ironrender.evaluation.browser import object_psnr, viewer_snapshot
from ironrender.evaluation.relight import render_flash
from ironrender.evaluation.report import build_report
from ironrender.export import gltf
from ironrender.export.asset import ExportConfig, export_asset

RADIUS = 0.6
LIGHT_INTENSITY = 5.0
WIDTH, HEIGHT = 96, 72
#: Agreement of the viewer with Mitsuba on this asset's object pixels. Measured: about 39.5 dB
#: when all is right (what is left is glTF's BRDF against ours and three.js's specular
#: anti-aliasing, export/gltf.py); 27.5 dB or less with any one mistake of FAULTS. The issue's
#: 25 dB target is for captured assets (BENCHMARKS.md, "A GLB that keeps every material").
AGREEMENT_PSNR = 33.0


def sphere_sdf(points: torch.Tensor) -> torch.Tensor:
    return points.norm(dim=-1) - RADIUS


def striped_materials(points: torch.Tensor, normals: torch.Tensor) -> dict[str, torch.Tensor]:
    """Materials that make every mistake visible: asymmetric colour stripes (a flipped or
    mirrored texture moves them), specular albedo and roughness varying across the sphere."""
    x, y, z = points.unbind(-1)
    stripes = (torch.sin(9.0 * y + 3.0 * x) > 0).float()
    diffuse = torch.stack([0.05 + 0.35 * stripes, 0.1 + 0.15 * (z > 0).float(), 0.08 + 0.0 * x], -1)
    t = (x / RADIUS).clamp(-1, 1) * 0.5 + 0.5
    specular = (0.02 + 0.10 * t)[:, None].expand(-1, 3) * torch.tensor([1.0, 0.9, 0.8])
    alpha = (0.1 + 0.25 * ((y / RADIUS).clamp(-1, 1) * 0.5 + 0.5))[:, None]
    return {"diffuse_albedo": diffuse, "specular_albedo": specular, "roughness": alpha}


def held_out_cameras() -> Cameras:
    eye = torch.tensor([[1.2, 0.7, 1.9], [-1.6, 0.4, 1.4]])
    w2c = look_at(eye, torch.zeros(3), torch.tensor([0.0, 1.0, 0.0]))
    K = intrinsics_from_fov(WIDTH, HEIGHT, 40.0).repeat(2, 1, 1)
    return Cameras(K, w2c, torch.tensor([[WIDTH, HEIGHT]] * 2))


def make_run(root, name: str):
    """A run folder as `iron run` leaves it: dataset (held-out cameras), export, eval views."""
    data, run = root / f"{name}_data", root / name
    cameras = held_out_cameras()
    (data / "test").mkdir(parents=True)
    names = ["000.png", "001.png"]
    (data / "test" / CAMERA_FILE).write_text(json.dumps(cameras_to_dict(names, cameras)))
    (data / "train").mkdir()
    (data / "train" / CAMERA_FILE).write_text(json.dumps(cameras_to_dict(names, cameras)))
    config = ExportConfig(resolution=64, max_faces=6000, texture_size=256, progress=False)
    export_asset(sphere_sdf, striped_materials, LIGHT_INTENSITY, run / "export", config)
    reference = render_flash(run / "export", cameras, spp=64)
    (run / "eval" / "views").mkdir(parents=True)
    for stem, image in zip(("000", "001"), reference, strict=True):
        write_image(run / "eval" / "views" / f"{stem}_gt.png", image)  # stands for the photo
        write_image(run / "eval" / "views" / f"{stem}_pred.png", image)
    (run / "progress.json").write_text(json.dumps({"data": str(data)}))
    return run, build_report(run), reference


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("viewer"), "run")


# ----------------------------------------------------------------------------- the GLB
def read_glb(path) -> tuple[dict, bytes]:
    """glTF binary by its specification (12-byte header, JSON chunk, BIN chunk), no library."""
    raw = path.read_bytes()
    magic, version, length = struct.unpack_from("<4sII", raw, 0)
    assert (magic, version, length) == (b"glTF", 2, len(raw))
    json_length, json_type = struct.unpack_from("<I4s", raw, 12)
    assert json_type == b"JSON"
    document = json.loads(raw[20 : 20 + json_length])
    bin_length, bin_type = struct.unpack_from("<I4s", raw, 20 + json_length)
    assert bin_type == b"BIN\0"
    start = 28 + json_length
    return document, raw[start : start + bin_length]


def srgb_to_linear(v: np.ndarray) -> np.ndarray:
    """The sRGB standard's decoding, written out here (not the project's tone_curve module)."""
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def texture_image(document: dict, blob: bytes, index: int) -> np.ndarray:
    image = document["images"][document["textures"][index]["source"]]
    view = document["bufferViews"][image["bufferView"]]
    png = blob[view.get("byteOffset", 0) : view.get("byteOffset", 0) + view["byteLength"]]
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64) / 255.0


def test_glb_keeps_every_material(good_run):
    run, _, _ = good_run
    document, blob = read_glb(run / "export" / "model.glb")
    material = document["materials"][0]
    assert {"KHR_materials_specular", "KHR_materials_ior"} <= set(document["extensionsUsed"])
    assert material["extensions"]["KHR_materials_ior"]["ior"] == pytest.approx(1.5)
    pbr = material["pbrMetallicRoughness"]
    base = texture_image(document, blob, pbr["baseColorTexture"]["index"])
    packed = texture_image(document, blob, pbr["metallicRoughnessTexture"]["index"])
    specular = material["extensions"]["KHR_materials_specular"]
    colour = texture_image(document, blob, specular["specularColorTexture"]["index"])

    # Compare with the exporter's own linear EXR maps (what scene.xml renders), texel by texel.
    maps = {n: read_image(run / "export" / f"{n}.exr") for n in ("diffuse_albedo", "roughness")}
    maps["specular_albedo"] = read_image(run / "export" / "specular_albedo.exr")
    covered = maps["roughness"][..., 0] > 0
    assert covered.mean() > 0.2
    np.testing.assert_allclose(
        srgb_to_linear(base)[covered], maps["diffuse_albedo"][covered], atol=0.01
    )
    assert np.all(packed[..., 2] == 0)  # metallic 0 everywhere
    np.testing.assert_allclose(
        packed[..., 1][covered] ** 2, maps["roughness"][..., 0][covered], atol=0.01
    )
    f0 = (
        srgb_to_linear(colour)
        * np.asarray(specular["specularColorFactor"])
        * ((1.5 - 1) / (1.5 + 1)) ** 2
        * specular.get("specularFactor", 1.0)
    )
    np.testing.assert_allclose(f0[covered], maps["specular_albedo"][covered], atol=0.004)
    assert f0[covered].min() > 0.8 * 0.02 - 0.004 and f0[covered].max() < 0.12 + 0.004


def test_glb_without_extensions_still_has_the_base_colour(good_run):
    """A reader that ignores the extensions (trimesh) sees diffuse albedo and roughness."""
    run, _, _ = good_run
    mesh = trimesh.load(run / "export" / "model.glb", force="mesh")
    material = mesh.visual.material
    base = np.asarray(material.baseColorTexture.convert("RGB"), dtype=np.float64) / 255.0
    diffuse = read_image(run / "export" / "diffuse_albedo.exr")
    covered = read_image(run / "export" / "roughness.exr")[..., 0] > 0
    np.testing.assert_allclose(encode(diffuse, "srgb")[covered], base[covered], atol=1.5 / 255.0)
    assert len(mesh.faces) > 1000 and mesh.visual.uv.shape == (len(mesh.vertices), 2)


# ----------------------------------------------------------------------------- the browser
def test_viewer_matches_mitsuba_on_the_object(good_run):
    _, report, reference = good_run
    for view in (0, 1):
        snapshot = viewer_snapshot(report, view)
        assert snapshot.shape == (HEIGHT, WIDTH, 3)
        assert (snapshot.max(axis=-1) > 0).mean() > 0.2  # the sphere is in view, not a black frame
        psnr = object_psnr(snapshot, reference[view])
        print(f"view {view}: viewer against Mitsuba {psnr:.2f} dB on the object")
        assert psnr >= AGREEMENT_PSNR


def test_a_report_that_reaches_out_is_refused(good_run, tmp_path):
    """The report must work offline: a page that asks the network for anything fails."""
    _, report, _ = good_run
    leaky = tmp_path / "report.html"
    leaky.write_text(
        report.read_text().replace("</body>", '<img src="https://example.com/x.png"></body>')
    )
    with pytest.raises(IronError, match="must work offline"):
        viewer_snapshot(leaky, 0)


def _flip_uv_texture(maps):
    return {name: np.ascontiguousarray(m[::-1]) for name, m in maps.items()}


FAULTS = {
    # the textures upside down against their UVs (glTF's V runs down the image)
    "uv_flip": lambda mp: mp.setattr(
        gltf,
        "write_glb",
        _wrap(gltf.write_glb, lambda uv, maps, p: (uv, _flip_uv_texture(maps), p)),
    ),
    # GGX alpha where glTF wants its square root
    "roughness": lambda mp: mp.setattr(
        gltf, "metallic_roughness", _wrap(gltf.metallic_roughness, lambda r: (r**2,))
    ),
    # linear values in colour textures that glTF reads as sRGB
    "gamma": lambda mp: mp.setattr(gltf, "encode", lambda values, curve: values),
    # a light of the wrong intensity (pi times: radiant intensity against radiance)
    "light": lambda mp: mp.setattr(
        viewer_module, "viewer_data", _scale_light(viewer_module.viewer_data, math.pi)
    ),
    # world-to-camera given where camera-to-world belongs
    "camera": lambda mp: mp.setattr(
        viewer_module, "_view_entry", _inverted(viewer_module._view_entry)
    ),
}


def _wrap(function, change_arguments):
    return lambda *args: function(*change_arguments(*args))


def _scale_light(function, factor):
    def scaled(*args):
        data = function(*args)
        data["light_intensity"] *= factor
        return data

    return scaled


def _inverted(function):
    def entry(*args):
        view = function(*args)
        view["c2w"] = np.linalg.inv(np.asarray(view["c2w"]).reshape(4, 4)).reshape(-1).tolist()
        return view

    return entry


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_mistake_breaks_the_agreement(fault, tmp_path, monkeypatch):
    """The check above would catch each of these: made once, each drops the agreement."""
    FAULTS[fault](monkeypatch)
    monkeypatch.setattr(report_module, "viewer_data", viewer_module.viewer_data)
    monkeypatch.setattr(asset_module, "write_glb", gltf.write_glb)
    _, report, reference = make_run(tmp_path, "broken")
    psnr = object_psnr(viewer_snapshot(report, 0), reference[0])
    print(f"{fault}: viewer against Mitsuba {psnr:.2f} dB on the object")
    assert psnr < AGREEMENT_PSNR


def test_iron_view_prints_the_report_or_says_what_is_missing(good_run, tmp_path):
    run, report, _ = good_run
    command = [sys.executable, "-m", "ironrender", "view"]
    shown = subprocess.run([*command, str(run), "--no-browser"], capture_output=True, text=True)
    assert shown.returncode == 0 and shown.stdout.strip() == str(report.resolve())
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = subprocess.run([*command, str(empty)], capture_output=True, text=True)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and "iron run" in missing.stderr
