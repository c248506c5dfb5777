"""The texture stage on held-out photographs: the exported asset, bake against fitted maps.

    python benchmarks/bench_texture.py RUN [--steps 300] [--label NAME] [--no-write]

Re-exports RUN with ``export.texture.steps = --steps`` (the run's other export settings), which
keeps the bake's maps beside the fitted ones (``*_baked.exr``). Then, for each held-out
photograph, the EXPORTED asset (mesh and maps, not stage 2's fields) is shaded on the mesh's
pixels exactly as the texture stage shades training pixels (stage 2's flash, room light and
camera model; gains of the 3 nearest training photographs, as ``iron eval``), once with the
bake and once with the fitted maps, and compared with the photograph in the encoded domain on
the pixels whose ray hits the mesh away from its silhouette. On a synthetic capture the albedo
maps are also compared with the ground truth (``iron eval``'s albedo PSNR, after the run's
re-export). One row: held-out object PSNR bake -> fitted, training PSNR bake -> fitted (the fit's
own summary), albedo PSNR bake -> fitted (synthetic), seconds of the texture stage.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import torch
from bench_table import append_row, cpu_name, run_parser, table_header

from ironrender.data.dataset import load_split
from ironrender.data.images import read_image
from ironrender.evaluation.camera_gains import nearest_view_gains, training_cameras
from ironrender.export.asset import BAKED_SUFFIX
from ironrender.export.photo_hits import trace_photographs
from ironrender.export.run import export_config_of, export_run
from ironrender.export.texture_fit import PhotoShading, photometric_error
from ironrender.export.uv import UVMesh
from ironrender.export.writers import DIFFUSE, OBJ_NAME, ROUGHNESS, SPECULAR
from ironrender.run_folder import EXPORT_DIR, resolve_data_dir
from ironrender.training.stage2_model import load_stage2

SECTION = """## The texture stage on held-out photographs (`benchmarks/bench_texture.py`)

The exported asset itself (mesh and maps) shaded on each held-out photograph's mesh pixels with
stage 2's flash, room light and camera model (gains of the 3 nearest training photographs), with
the bake's maps and with the maps the texture stage fitted; PSNR in the photographs' encoded
domain over the pixels that hit the mesh away from its silhouette. Training PSNR: the same over
the training photographs (the fit's own summary). Albedo: against ground truth (synthetic)."""
COLUMNS = (
    "date",
    "machine",
    "run",
    "steps",
    "held-out object PSNR, bake -> fitted",
    "training PSNR, bake -> fitted",
    "texture stage s",
)


def load_exported_mesh(export_dir) -> UVMesh:
    """The OBJ as written (seam vertices duplicated, so no processing)."""
    import trimesh

    mesh = trimesh.load(export_dir / OBJ_NAME, process=False, force="mesh")
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    return UVMesh(
        vertices=vertices,
        faces=np.asarray(mesh.faces, dtype=np.int64),
        uvs=np.asarray(mesh.visual.uv, dtype=np.float64),
        normals=np.asarray(mesh.vertex_normals, dtype=np.float64),
        vertex_map=np.arange(len(vertices)),
    )


def load_maps(export_dir, suffix: str) -> dict[str, torch.Tensor]:
    maps = {}
    for name in (DIFFUSE, SPECULAR, ROUGHNESS):
        value = torch.as_tensor(read_image(export_dir / f"{name}{suffix}.exr"), dtype=torch.float32)
        value = value if name == DIFFUSE else value[..., :1]
        maps[name] = value.permute(2, 0, 1)[None].contiguous()
    return maps


def psnr(mse: float) -> float:
    return -10.0 * math.log10(max(mse, 1e-12))


def main() -> None:
    parser = run_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="texture-stage steps")
    args = parser.parse_args()
    run_dir = args.run
    data = resolve_data_dir(run_dir, None)
    config = export_config_of(run_dir)
    config = dataclasses.replace(
        config, texture=dataclasses.replace(config.texture, steps=args.steps), progress=False
    )
    start = time.perf_counter()
    result = export_run(run_dir, config)
    seconds = result.timings.get("texture_fit", float("nan"))
    print(f"export with the texture stage: {time.perf_counter() - start:.0f} s")

    export_dir = run_dir / EXPORT_DIR
    stage2, stage2_config = load_stage2(run_dir)
    test = load_split(data, "test", keep_8bit=True, curve=stage2_config.tone_curve)
    mesh = load_exported_mesh(export_dir)
    pixels = trace_photographs(mesh, test, test.cameras, stage2_config.render.shadows)
    shading = PhotoShading(stage2, test.cameras, stage2_config.tone_curve)
    if shading.gains is not None:  # held-out photographs: their nearest training views' gains
        train = training_cameras(data)
        shading.gains = torch.stack(
            [
                nearest_view_gains(train.centers, shading.gains.detach(), c)
                for c in test.cameras.centers
            ]
        )
    scores = {}
    for label, suffix in (("bake", BAKED_SUFFIX), ("fitted", "")):
        maps, per_view = load_maps(export_dir, suffix), []
        for view in range(len(test)):
            mine = pixels.select(torch.nonzero(pixels.view == view).squeeze(-1))
            if len(mine):
                per_view.append(psnr(photometric_error(maps, mine, shading)))
        scores[label] = float(np.mean(per_view))
        print(f"held-out object PSNR, {label}: {scores[label]:.2f} dB ({len(per_view)} views)")
    summary = result.texture_fit or ""
    train_psnr = summary.split("(PSNR ")[1].split(" dB)")[0] if "(PSNR " in summary else "?"
    cells = [
        time.strftime("%Y-%m-%d"),
        f"{cpu_name()}, {torch.get_num_threads()} threads",
        args.label or run_dir.name,
        str(args.steps),
        f"{scores['bake']:.2f} -> {scores['fitted']:.2f}",
        train_psnr,
        f"{seconds:.0f}",
    ]
    print(" | ".join(cells))
    if not args.no_write:
        append_row(SECTION, table_header(COLUMNS), cells)


if __name__ == "__main__":
    main()
