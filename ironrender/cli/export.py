"""``iron export RUN``: the trained model as a textured mesh, GLB and Mitsuba scene."""

from __future__ import annotations

import argparse

MIN_RESOLUTION = 8
MIN_TEXTURE_SIZE = 16

DESCRIPTION = """\
Export the trained model of RUN into RUN/export: marching cubes on the SDF (largest component),
decimation, a UV atlas (xatlas), material textures baked per texel (diffuse albedo, specular
albedo, GGX roughness) and the files mesh.obj + mesh.mtl, *.png/*.exr maps, model.glb,
scene.xml (Mitsuba 3, reproduces the project's GGX model) and light.json (flash intensity).

Uses stage 2 when RUN/stage2 has a checkpoint. With stage 1 only, the radiance field seen along
-n stands in for the diffuse albedo (shading baked in), with F0 0.04 and alpha 0.3: a preview
asset, and a notice says so.

The defaults take well under a minute on 2 CPU cores: a 192^3 grid, 20k faces (xatlas needs
~15 s for 57k faces and grows faster than linearly), 1024^2 textures. For a final asset use
e.g. --resolution 384 --max-faces 100000 --texture-size 2048 (IRON: 2048 textures).
"""

EPILOG = """\
examples:
  iron export runs/spot
  iron export runs/spot --resolution 384 --max-faces 100000 --texture-size 2048
"""


def register(sub: argparse._SubParsersAction) -> None:
    # Defaults (None here) come from ironrender.pipeline.fast_export_config() in run(); that
    # module imports torch, which `iron --help` must not wait for. The help text states them
    # (tests/test_evaluate.py checks that it matches).
    parser = sub.add_parser(
        "export",
        help="export the trained model: mesh.obj/.mtl, textures, model.glb, scene.xml",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run", help="run folder (with stage1/ and usually stage2/)")
    parser.add_argument(
        "--resolution",
        type=int,
        help="marching-cubes grid nodes per axis over [-1, 1]^3 (default 192)",
    )
    parser.add_argument(
        "--max-faces",
        type=int,
        help="decimate to at most this many triangles before UV unwrapping (default 20000)",
    )
    parser.add_argument(
        "--texture-size",
        type=int,
        help="side of the square texture maps in texels (default 1024)",
    )
    parser.add_argument(
        "--keep-all-components",
        action="store_true",
        help="keep every connected component (default: the largest only, as IRON)",
    )
    parser.add_argument("--no-glb", action="store_true", help="skip model.glb")
    parser.add_argument(
        "--data",
        help="dataset folder; only used to size the stage-1 stand-in light (default: the one"
        " recorded in RUN)",
    )
    parser.add_argument(
        "--device", default=None, help="cpu or cuda (default: cuda when available, else cpu)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from ironrender.errors import IronError
    from ironrender.evaluation.evaluate import export_run
    from ironrender.pipeline import default_device, fast_export_config

    defaults = fast_export_config()
    config = dataclasses.replace(
        defaults,
        resolution=args.resolution or defaults.resolution,
        max_faces=args.max_faces or defaults.max_faces,
        texture_size=args.texture_size or defaults.texture_size,
        keep_largest_component=not args.keep_all_components,
        write_glb=not args.no_glb,
        progress=not args.quiet,
    )
    if config.resolution < MIN_RESOLUTION or config.texture_size < MIN_TEXTURE_SIZE:
        raise IronError(
            f"need --resolution >= {MIN_RESOLUTION} and --texture-size >= {MIN_TEXTURE_SIZE}"
        )
    device = args.device or default_device()
    result = export_run(args.run, config, device, data_dir=args.data)
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())
    print(
        f"wrote {result.out_dir}: {result.num_faces} faces, {result.num_vertices} vertices,"
        f" {config.texture_size}^2 textures ({100 * result.texel_coverage:.0f}% texels on the"
        f" surface)"
    )
    print(f"  {timings}")
    print("  mesh.obj + mesh.mtl, model.glb, scene.xml (Mitsuba 3), light.json, texture maps")
    return 0
