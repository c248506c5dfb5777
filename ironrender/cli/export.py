"""``iron export RUN``: the trained model as a textured mesh, GLB and Mitsuba scene."""

from __future__ import annotations

import argparse

MIN_RESOLUTION = 8
MIN_TEXTURE_SIZE = 16
# ironrender.export.select.OBJECT_MODES, repeated: `iron --help` must not import numpy/trimesh.
OBJECT_CHOICES = ("largest", "all", "auto")

DESCRIPTION = """\
Export the trained model of RUN into RUN/export: marching cubes on the SDF, the choice of what
the object is (--object, --crop, --cut-plane), decimation, a UV atlas (xatlas), material
textures baked per texel (diffuse albedo, specular albedo, GGX roughness) and the files
mesh.obj + mesh.mtl, *.png/*.exr maps, model.glb, scene.xml (Mitsuba 3, reproduces the
project's GGX model) and light.json (flash intensity).

Uses stage 2 when RUN/stage2 has a checkpoint. With stage 1 only, the radiance field seen along
-n stands in for the diffuse albedo (shading baked in), with F0 0.04 and alpha 0.3: a preview
asset, and a notice says so.

What is the object? Marching cubes returns everything opaque in [-1, 1]^3, clutter included: a
table or cloth under the object, a stand. --object largest (default, as IRON) keeps the largest
connected component; all keeps everything; auto finds a support plane (a large flat sheet that
reaches the edge of the unit sphere, below the object), cuts it and everything beyond it away,
then prefers a component that does not touch the edge. --crop and --cut-plane remove what auto
cannot (a stick the object sits on); they apply first. Coordinates are those of the normalised
dataset (the object in the unit sphere at the origin). The choice is reported in one line.

--texture-steps N adds the texture stage after the bake: the exported mesh held fixed, the
diffuse albedo, specular albedo and roughness maps are fitted texel by texel to the training
photographs under stage 2's flash, room light and camera model (the photographs' detail, not
the material grid's); the bake is kept beside them as *_baked.png/.exr. About 300 steps.

The defaults take well under a minute on 2 CPU cores: a 192^3 grid, 20k faces (xatlas needs
~15 s for 57k faces and grows faster than linearly), 1024^2 textures. For a final asset use
e.g. --resolution 384 --max-faces 100000 --texture-size 2048 (IRON: 2048 textures).
"""

EPILOG = """\
examples:
  iron export runs/spot
  iron export runs/spot --resolution 384 --max-faces 100000 --texture-size 2048
  iron export runs/mug --object auto                     # drop the table under the mug
  iron export runs/mug --cut-plane 0 1 0 0.45            # keep y > -0.45 (above a stand)
  iron export runs/mug --crop -0.8 -0.45 -0.8 0.8 0.8 0.8
  iron export runs/spot --texture-steps 300               # maps fitted to the photographs
"""


def register(sub: argparse._SubParsersAction) -> None:
    # Defaults (None here) are the run's own export settings (RUN/config.json), else
    # ironrender.export.asset.fast_export_config(), resolved in run(): that module imports torch,
    # which `iron --help` must not wait for. The help text states the quick defaults
    # (tests/test_evaluate.py checks that they match).
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
        help="marching-cubes grid nodes per axis over [-1, 1]^3 (default: the run's setting, else"
        " 192)",
    )
    parser.add_argument(
        "--max-faces",
        type=int,
        help="decimate to at most this many triangles before UV unwrapping (default: the run's"
        " setting, else 20000)",
    )
    parser.add_argument(
        "--texture-size",
        type=int,
        help="side of the square texture maps in texels (default: the run's setting, else 1024)",
    )
    parser.add_argument(
        "--object",
        choices=OBJECT_CHOICES,
        help="what the object is: the largest connected component, all of them, or auto (cut"
        " away a support plane such as a table, then the largest component away from the unit"
        " sphere's edge) (default: the run's setting, else auto)",
    )
    parser.add_argument(
        "--crop",
        nargs=6,
        type=float,
        metavar=("XMIN", "YMIN", "ZMIN", "XMAX", "YMAX", "ZMAX"),
        help="keep only the surface inside this box (normalised frame: the object is in the"
        " unit sphere); applied before --object",
    )
    parser.add_argument(
        "--cut-plane",
        nargs=4,
        type=float,
        metavar=("NX", "NY", "NZ", "D"),
        help="keep only the side NX*x + NY*y + NZ*z + D > 0 (normalised frame), e.g. 0 1 0 0.45"
        " keeps y > -0.45; applied before --object",
    )
    parser.add_argument(
        "--keep-all-components",
        action="store_true",
        help="same as --object all (kept for older scripts)",
    )
    parser.add_argument(
        "--texture-steps",
        type=int,
        help="fit the baked maps to the training photographs for this many steps (0: off;"
        " default: the run's export.texture.steps, else 0)",
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


def object_options(args: argparse.Namespace) -> dict:
    """``ExportConfig`` fields from --object, --crop, --cut-plane, --keep-all-components.

    Raises :class:`IronError` (one line) for contradictory or impossible values. Options not
    given are left out, so the defaults (or a run's saved configuration) apply.
    """
    import math

    from ironrender.errors import IronError

    options: dict = {}
    if args.keep_all_components:
        if args.object not in (None, "all"):
            raise IronError(f"--keep-all-components contradicts --object {args.object}")
        options["object"] = "all"
    elif args.object is not None:
        options["object"] = args.object
    if args.crop is not None:
        if not all(math.isfinite(v) for v in args.crop):
            raise IronError(f"--crop needs 6 finite numbers, got {args.crop}")
        low, high = args.crop[:3], args.crop[3:]
        if not all(lo < hi for lo, hi in zip(low, high, strict=True)):
            raise IronError(
                f"--crop XMIN YMIN ZMIN XMAX YMAX ZMAX: each minimum must be below its maximum,"
                f" got min {low} and max {high}"
            )
        options["crop_min"], options["crop_max"] = tuple(low), tuple(high)
    if args.cut_plane is not None:
        if not all(math.isfinite(v) for v in args.cut_plane):
            raise IronError(f"--cut-plane needs 4 finite numbers, got {args.cut_plane}")
        if not any(args.cut_plane[:3]):
            raise IronError("--cut-plane NX NY NZ D: the normal (NX, NY, NZ) must not be zero")
        options["cut_plane"] = tuple(args.cut_plane)
    return options


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from ironrender.errors import IronError
    from ironrender.export.run import export_config_of, export_run
    from ironrender.pipeline import default_device
    from ironrender.run_folder import command_line, run_lock

    defaults = export_config_of(args.run)
    texture = defaults.texture
    if args.texture_steps is not None:
        if args.texture_steps < 0:
            raise IronError(f"--texture-steps must be 0 or more, got {args.texture_steps}")
        texture = dataclasses.replace(texture, steps=args.texture_steps)
    config = dataclasses.replace(
        defaults,
        resolution=args.resolution or defaults.resolution,
        max_faces=args.max_faces or defaults.max_faces,
        texture_size=args.texture_size or defaults.texture_size,
        write_glb=not args.no_glb,
        texture=texture,
        progress=not args.quiet,
        **object_options(args),
    )
    if config.resolution < MIN_RESOLUTION or config.texture_size < MIN_TEXTURE_SIZE:
        raise IronError(
            f"need --resolution >= {MIN_RESOLUTION} and --texture-size >= {MIN_TEXTURE_SIZE}"
        )
    device = args.device or default_device()
    with run_lock(args.run, command_line()):
        result = export_run(args.run, config, device, data_dir=args.data)
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())
    print(
        f"wrote {result.out_dir}: {result.num_faces} faces, {result.num_vertices} vertices,"
        f" {config.texture_size}^2 textures ({100 * result.texel_coverage:.0f}% texels on the"
        f" surface)"
    )
    if result.selection is not None:
        print(f"  {result.selection.summary()}")
    print(f"  {timings}")
    print("  mesh.obj + mesh.mtl, model.glb, scene.xml (Mitsuba 3), light.json, texture maps")
    return 0
