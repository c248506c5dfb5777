"""``iron check DATA``: validate a dataset, one line per problem."""

from __future__ import annotations

import argparse


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

    problems = check_dataset(args.data)
    for problem in problems:
        print(problem)
    errors = sum(p.fatal for p in problems)
    warnings = len(problems) - errors
    if errors:
        print(f"{args.data}: {errors} error(s), {warnings} warning(s): not usable as it is")
        return 1
    print(f"{args.data}: OK ({warnings} warning(s))")
    return 0
