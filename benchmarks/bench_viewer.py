"""The GLB and the report's viewer on a finished run: how close glTF's BRDF is to ours, how close
the viewer's frame is to Mitsuba's render of the same asset, the report's size, the frame rate.

    python benchmarks/bench_viewer.py RUN [--label demo] [--no-write]

RUN is a folder `iron run` finished (export and eval). Measured:

* **BRDF gap**: over the asset's covered texels, the radiance of glTF's reference BRDF
  (``KHR_materials_specular`` with the mapping of ``ironrender/export/gltf.py``: F0 = rho_s,
  height-correlated Smith, diffuse times ``1 - F``) against ours (``ironrender.rendering.brdf``:
  separable Smith ``G1^2``, no Fresnel on the diffuse) under the co-located flash at incidence
  ``cos = 1, 0.7, 0.4, 0.2``: the median and 95th percentile of the relative difference.
* **Viewer against Mitsuba**: PSNR (8-bit sRGB) on the object pixels of the first held-out view
  (the pixels either image covers, less a one-pixel band along both silhouettes), the report's
  viewer in headless Chromium (software WebGL) against ``scene.xml`` in Mitsuba 3 (64 spp),
  under the flash, and under the evaluation's environment map where there is one (three.js
  lights with a prefiltered map, split-sum: an approximation, Mitsuba integrates). Mitsuba's
  sensor here takes only a centred principal point: a real capture's held-out camera is compared
  with its principal point moved to the centre, in both renderers.
* **Report**: ``report.html``'s size with the viewer, and ``model.glb``'s.
* **Frame rate**: frames per second of the viewer turning the asset at the first view's size
  (median of three runs of 60 frames), software WebGL on this machine's CPU.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

import torch
from bench_table import append_row, cpu_name, run_parser, table_header
from PIL import Image

from ironrender.data.camera_file import CAMERA_FILE, cameras_to_dict, split_cameras
from ironrender.data.cameras import Cameras
from ironrender.data.images import read_image
from ironrender.evaluation.browser import (
    chromium_path,
    object_psnr,
    viewer_frame_rate,
    viewer_snapshot,
)
from ironrender.evaluation.relight import render_flash, render_relit
from ironrender.evaluation.report import build_report
from ironrender.rendering.brdf import colocated_brdf_terms, smith_g1
from ironrender.run_folder import resolve_data_dir

SECTION = """## A GLB that keeps every material (viewer in report.html)

`python benchmarks/bench_viewer.py RUN` on a finished run. *BRDF gap*: radiance of glTF's
reference BRDF with `KHR_materials_specular` (F0 = rho_s, height-correlated Smith, diffuse x
(1 - F)) against ours (separable Smith, no Fresnel on the diffuse), over the asset's texels, at
the co-located flash with incidence cos = 1 / 0.7 / 0.4 / 0.2: median and 95th percentile of
|relative difference|. *Viewer vs Mitsuba*: PSNR on the object of the first held-out view,
the report's viewer in headless Chromium against Mitsuba 3 rendering `scene.xml`, under the
flash and (synthetic captures) under the evaluation's environment map.
*fps*: the viewer turning the asset, software WebGL (SwiftShader) on the CPU."""
COLUMNS = (
    "run",
    "machine",
    "texels",
    "BRDF gap median (cos 1 / 0.7 / 0.4 / 0.2)",
    "BRDF gap p95",
    "viewer vs Mitsuba, flash (dB)",
    "envmap (dB)",
    "view size",
    "report.html",
    "model.glb",
    "fps",
)
INCIDENCES = (1.0, 0.7, 0.4, 0.2)


def brdf_gap(export_dir: Path) -> tuple[int, list[float], list[float]]:
    """Relative radiance difference glTF vs ours per covered texel and incidence (docstring)."""
    rho_d = torch.from_numpy(read_image(export_dir / "diffuse_albedo.exr")[..., :3]).double()
    rho_s = torch.from_numpy(read_image(export_dir / "specular_albedo.exr")[..., :3]).double()
    alpha = torch.from_numpy(read_image(export_dir / "roughness.exr")[..., :1]).double()
    covered = alpha[..., 0] > 0
    rho_d, rho_s, alpha = rho_d[covered], rho_s[covered], alpha[covered]
    medians, p95s = [], []
    for c in INCIDENCES:
        cos = torch.full_like(alpha, c)
        terms = colocated_brdf_terms(cos, alpha)  # D G1^2 / (4 c^2)
        ours = rho_d / torch.pi + rho_s * terms
        # Height-correlated Smith at l = v: G2 = 1 / (1 + 2 Lambda), G1 = 1 / (1 + Lambda).
        g1 = smith_g1(cos, alpha)
        g2 = g1 / (2.0 - g1)
        theirs = (1.0 - rho_s) * rho_d / torch.pi + rho_s * terms * g2 / g1**2
        gap = ((theirs - ours).abs() / ours.clamp_min(1e-8)).mean(dim=-1)
        medians.append(float(gap.median()))
        p95s.append(float(torch.quantile(gap, 0.95)))
    return int(covered.sum()), medians, p95s


def chromium_version() -> str:
    output = subprocess.run([chromium_path(), "--version"], capture_output=True, text=True).stdout
    return next((word for word in output.split() if word[:1].isdigit()), "?")


def centred_twin(run: Path, data: Path, folder: Path, scale: float) -> Path:
    """A run sharing ``run``'s export whose held-out cameras have their principal point moved
    to the image centre (and ``fy = fx``): Mitsuba's sensor here takes only such cameras, and
    the viewer and Mitsuba must see the same camera. Photographs do not take part. The cameras
    are written at the evaluation's image size (``scale``), so that no rounding moves them."""
    twin_data, twin = folder / "data", folder / "run"
    (twin_data / "test").mkdir(parents=True)
    (twin_data / "train").symlink_to((data / "train").resolve())
    cameras = split_cameras(data, "test").scaled(scale)
    K = cameras.intrinsics.clone()
    K[:, 0, 2] = cameras.sizes[:, 0] / 2
    K[:, 1, 2] = cameras.sizes[:, 1] / 2
    K[:, 1, 1] = K[:, 0, 0]
    centred = Cameras(K, cameras.w2c, cameras.sizes, cameras.flash)
    names = list(json.loads((data / "test" / CAMERA_FILE).read_text()))
    (twin_data / "test" / CAMERA_FILE).write_text(json.dumps(cameras_to_dict(names, centred)))
    twin.mkdir()
    for part in ("export", "eval"):
        (twin / part).symlink_to((run / part).resolve())
    (twin / "progress.json").write_text(json.dumps({"data": str(twin_data)}))
    return twin


def measure(run: Path, scratch: Path) -> dict:
    report = build_report(run)
    data = resolve_data_dir(run, None)
    cameras = split_cameras(data, "test")
    first = sorted((run / "eval" / "views").glob("*_pred.png"))[0]
    with Image.open(first) as image:
        scale = image.width / cameras.width(0)  # the evaluation's size (one for all views)
    scaled = cameras.scaled(scale)  # a centred camera may leave the centre by rounding
    off_centre = float((scaled.intrinsics[:, :2, 2] - scaled.sizes / 2).abs().max())
    compared = run if off_centre < 1e-3 else centred_twin(run, data, scratch, scale)
    compared_report = report if compared is run else build_report(compared)
    compared_data = resolve_data_dir(compared, None)
    snapshot = viewer_snapshot(compared_report, 0)
    name = first.name[: -len("_pred.png")]
    cameras = split_cameras(compared_data, "test")
    entries = list(json.loads((compared_data / "test" / CAMERA_FILE).read_text()))
    index = [Path(e).stem for e in entries].index(name)
    camera = cameras[index].scaled(snapshot.shape[1] / cameras.width(index))
    reference = render_flash(run / "export", camera, spp=64)[0]
    envmap = data / "gt" / "envmap.exr"
    relit_psnr = None
    if envmap.is_file():  # the same view under the evaluation's environment map
        relit = render_relit(run / "export", read_image(envmap), camera, spp=64)[0]
        relit_psnr = object_psnr(viewer_snapshot(compared_report, 0, light="envmap"), relit)
    texels, medians, p95s = brdf_gap(run / "export")
    fps = statistics.median(viewer_frame_rate(report) for _ in range(3))
    return {
        "texels": texels,
        "medians": medians,
        "p95s": p95s,
        "psnr": object_psnr(snapshot, reference),
        "relit_psnr": relit_psnr,
        "centred": off_centre >= 1e-3,
        "size": f"{snapshot.shape[1]}x{snapshot.shape[0]}",
        "report_mb": report.stat().st_size / 1e6,
        "glb_mb": (run / "export" / "model.glb").stat().st_size / 1e6,
        "fps": fps,
    }


def main() -> None:
    args = run_parser(__doc__.split("\n\n")[0]).parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        result = measure(args.run, Path(scratch))
    percent = lambda values: " / ".join(f"{100 * v:.1f} %" for v in values)  # noqa: E731
    cells = [
        args.label or args.run.name,
        f"{cpu_name()}, {os.cpu_count()} cores, Chromium {chromium_version()}",
        str(result["texels"]),
        percent(result["medians"]),
        percent(result["p95s"]),
        f"{result['psnr']:.2f}" + (" (principal point centred)" if result["centred"] else ""),
        "n/a" if result["relit_psnr"] is None else f"{result['relit_psnr']:.2f}",
        result["size"],
        f"{result['report_mb']:.1f} MB",
        f"{result['glb_mb']:.1f} MB",
        f"{result['fps']:.1f}",
    ]
    print(" | ".join(cells))
    if not args.no_write:
        append_row(SECTION, table_header(COLUMNS), cells)


if __name__ == "__main__":
    main()
