"""``iron view RUN``: open the run's report (with the asset viewer) in the user's browser."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "view",
        help="open a run's report.html (metrics, views, a 3D viewer of the asset) in a browser",
        description=(
            "Open RUN/report.html in the default web browser: the held-out views, the material"
            " textures and a viewer that turns and relights the exported model.glb (three.js,"
            " works offline from the file). A run with an export but no report gets one first."
            " Where no browser can be started (a server, SSH), prints the report's path."
        ),
    )
    parser.add_argument("run", help="run folder (as written by `iron run`)")
    parser.add_argument(
        "--rebuild",
        action="store_true",
        help="write report.html again from the run folder first (e.g. after an update)",
    )
    parser.add_argument("--no-browser", action="store_true", help="only print the report's path")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import webbrowser
    from pathlib import Path

    from ironrender.errors import IronError
    from ironrender.evaluation.report import build_report

    run_dir = Path(args.run)
    if not run_dir.is_dir():
        raise IronError(f"run folder {run_dir} not found")
    report = run_dir / "report.html"
    if args.rebuild or not report.is_file():
        if not (run_dir / "export").is_dir() and not (run_dir / "eval").is_dir():
            raise IronError(
                f"{run_dir} has no export and no evaluation yet: run `iron run DATA {run_dir}`"
            )
        report = build_report(run_dir)
    print(report.resolve())
    if not args.no_browser and not webbrowser.open(report.resolve().as_uri()):
        print("no web browser could be started here: open the file above in one")
    return 0
