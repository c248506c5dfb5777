"""``iron eval RUN``: held-out views, geometry, materials and relighting, with report.html."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Evaluate the trained model of RUN on the test split of its dataset and write RUN/eval
(views/, relight/, turntable/, metrics.json) and RUN/report.html.

* Held-out views: rendered by the model under the capture's flash; PSNR and SSIM on the 8-bit
  gamma-encoded images over the full image (IRON's protocol), LPIPS when `lpips` is installed,
  and psnr_object over the object: the ground-truth mask (synthetic data), else the pixels the
  recovered geometry covers (real captures). Views larger than --max-size are rendered at a
  scaled camera and compared with the photograph reduced by area averaging.
* With SfM points (DATA/sparse_points_norm.npz or one level up; `iron import` writes them):
  each point's distance to the reconstructed mesh, in % of the points' own diameter
  (2 x the 99th percentile of their distance from their median): median, 90th percentile and
  the share within 1 %. Real captures have no ground truth; these points are a reference.
* With DATA/gt (from `iron synth`): Chamfer distance (IRON's definition, scene units, and in % of
  the GT bounding-sphere diameter), F-score at 1% of that diameter, normal consistency;
  diffuse-albedo PSNR after a per-channel scale (albedo and light are known only up to a
  scale), GGX-alpha error, light-intensity ratio.
* Relighting: the EXPORTED asset (RUN/export, exported first if missing) rendered by Mitsuba 3
  under DATA/gt/envmap.exr from the test cameras vs DATA/gt/relit: raw, and after one fitted
  global scale; plus turntable frames under a flash, circling the capture's up direction.
"""

EPILOG = """\
examples:
  iron eval runs/spot                    # dataset recorded by `iron run`
  iron eval runs/spot --data data/spot --views 4 --no-relight
"""


def register(sub: argparse._SubParsersAction) -> None:
    # Defaults (None here) come from EvalConfig in run(); importing it loads torch, which
    # `iron --help` must not wait for. The help text states them (tests/test_evaluate.py
    # checks that it matches).
    parser = sub.add_parser(
        "eval",
        help="evaluate a run on held-out views (and ground truth); writes report.html",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run", help="run folder")
    parser.add_argument(
        "--data", help="dataset folder (default: the one recorded in RUN by `iron run`)"
    )
    parser.add_argument(
        "--views", type=int, help="evaluate the first N test views only (default: all)",
    )  # fmt: skip
    parser.add_argument(
        "--mesh-resolution",
        type=int,
        help="marching-cubes grid for the geometry metrics (default 192)",
    )
    parser.add_argument(
        "--mesh-samples",
        type=int,
        help="surface samples per mesh for Chamfer/F-score (default 50000)",
    )
    parser.add_argument(
        "--f-threshold",
        type=float,
        help="F-score threshold as a fraction of the GT bounding-sphere diameter (default 0.01)",
    )
    parser.add_argument(
        "--max-size",
        type=int,
        help="longest side of the evaluated views; larger ones are scaled down, 0 for none"
        " (default 512)",
    )
    parser.add_argument("--no-edges", action="store_true", help="render views without edges")
    parser.add_argument("--no-relight", action="store_true", help="skip relighting")
    parser.add_argument(
        "--turntable",
        type=int,
        help="turntable frames of the exported asset, 0 for none (default 6)",
    )
    parser.add_argument(
        "--relight-spp",
        type=int,
        help="Mitsuba samples per pixel for relighting (default 64)",
    )
    parser.add_argument(
        "--no-export",
        action="store_true",
        help="do not export the asset when RUN/export is missing (skips relighting)",
    )
    parser.add_argument(
        "--device", default=None, help="cpu or cuda (default: cuda when available, else cpu)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ironrender.evaluation.evaluate import EvalConfig, evaluate_run, format_summary
    from ironrender.pipeline import default_device
    from ironrender.run_folder import command_line, run_lock

    given = {
        "max_views": args.views,
        "max_size": args.max_size,
        "mesh_resolution": args.mesh_resolution,
        "mesh_samples": args.mesh_samples,
        "f_threshold_fraction": args.f_threshold,
        "relight_spp": args.relight_spp,
        "turntable_frames": args.turntable,
    }
    config = EvalConfig(
        edges=not args.no_edges,
        relight=not args.no_relight,
        export_if_missing=not args.no_export,
        progress=not args.quiet,
        **{name: value for name, value in given.items() if value is not None},
    )
    device = args.device or default_device()
    with run_lock(args.run, command_line()):
        metrics = evaluate_run(args.run, args.data, device, config)
    print(format_summary(metrics))
    print(f"wrote {Path(args.run) / 'eval'} and {Path(args.run) / 'report.html'}")
    return 0
