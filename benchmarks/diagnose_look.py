"""What the object's error on held-out photographs is made of (issue: the look of real captures).

    python benchmarks/diagnose_look.py RUN [--label NAME] [--no-write]

Reads ``RUN/eval/views`` (``iron eval`` writes each view's render, photograph and object mask)
and adds one row to BENCHMARKS.md: the mean over the held-out views of the object PSNR, the same
after the best per-view 3x3 colour correction and offset, after the best per-view camera fit
(cubic response, colour mixing, a vignetting-like falloff), after the same Gaussian blur on both
(sigma 2 px), and the share of the squared error within 3 px of the silhouette beside that band's
share of the object's pixels (:mod:`ironrender.evaluation.diagnosis`).
"""

from __future__ import annotations

from bench_table import append_row, run_parser, table_header

from ironrender.evaluation.diagnosis import diagnose_run

SECTION = """## The look of real captures: what the object's error is made of

`python benchmarks/diagnose_look.py RUN` after `iron eval`: mean over the held-out views, on the
object's pixels, of the PSNR as evaluated; after the best per-view colour correction (3x3 +
offset); after the best per-view fit of a camera model's terms (a cubic response per channel,
colour mixing, a colour-dependent quadratic falloff over the image: vignetting, or a light falloff
the render gets wrong); both are upper bounds on what such a model could remove; after the same
Gaussian blur (sigma 2 px) on render and photograph (what is left without fine detail); and the
share of the squared error within 3 px of the silhouette beside that band's share of the
object's pixels."""
COLUMNS = (
    "run",
    "views",
    "object PSNR",
    "colour-corrected",
    "camera-corrected",
    "blurred (sigma 2)",
    "error within 3 px of the silhouette",
    "band's share of the object",
)


def main() -> None:
    args = run_parser(__doc__.split("\n\n")[0]).parse_args()
    rows = diagnose_run(args.run)
    if not rows:
        raise SystemExit(f"{args.run}/eval/views has no *_mask.png: run `iron eval` again")
    for row in rows:
        print(
            f"{row['view']}: psnr {row['psnr']:.2f}, colour {row['psnr_colour']:.2f},"
            f" camera {row['psnr_camera']:.2f},"
            f" blurred {row['psnr_blurred']:.2f}, silhouette {100 * row['silhouette_share']:.0f} %"
            f" of the error on {100 * row['silhouette_area']:.0f} % of the pixels"
        )
    mean = rows[-1]
    cells = [
        args.label or args.run.name,
        str(len(rows) - 1),
        f"{mean['psnr']:.2f}",
        f"{mean['psnr_colour']:.2f}",
        f"{mean['psnr_camera']:.2f}",
        f"{mean['psnr_blurred']:.2f}",
        f"{100 * mean['silhouette_share']:.0f} %",
        f"{100 * mean['silhouette_area']:.0f} %",
    ]
    if not args.no_write:
        append_row(SECTION, table_header(COLUMNS), cells)


if __name__ == "__main__":
    main()
