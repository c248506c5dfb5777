"""``iron check DATA``: validate a dataset, one line per problem."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "check",
        help="validate an IRON dataset",
        description=(
            "Validate an IRON dataset (train/ and test/ with image/ and cam_dict_norm.json):"
            " missing or unreadable images, size mismatches, non-rigid or singular poses,"
            " cameras that do not see the unit sphere, orphan keys or images, NaN/inf."
            " Prints one line per problem; exits 1 if any problem is an error."
        ),
    )
    parser.add_argument("data", help="dataset folder (holds train/ and test/)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ironrender.data.check import check_dataset
    from ironrender.data.images import one_line

    problems = check_dataset(args.data)
    for problem in problems:
        _say(str(problem))
    errors = sum(p.fatal for p in problems)
    warnings = len(problems) - errors
    data = one_line(args.data)
    if errors:
        _say(f"{data}: {errors} error(s), {warnings} warning(s): not usable as it is")
        return 1
    _say(f"{data}: OK ({warnings} warning(s))")
    return 0


def _say(line: str) -> None:
    """Print one line whatever the terminal's encoding (file names can hold any character)."""
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    print(line.encode(encoding, "backslashreplace").decode(encoding))
