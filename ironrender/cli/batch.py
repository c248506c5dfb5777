"""``iron batch CAPTURES OUT``: every object of CAPTURES imported, trained, exported and evaluated
into OUT/<object>/, one Ray task per object, on this machine or a Ray cluster."""

from __future__ import annotations

import argparse
import shlex
import sys

from ironrender.cli.run import (
    add_config_arguments,
    add_steps_argument,
    config_request,
    requested_steps,
)

#: The exit status when the batch ran but some object failed (user errors exit with 2).
EXIT_SOME_FAILED = 1

EPILOG = """\
examples:
  iron batch captures/ out/                       # local Ray, all cores, one object per core
  iron batch captures/ out/ --set stage1.train.steps=500 --minutes 20
  iron batch /shared/captures /shared/out --address 10.0.0.1:6379 --gpus-per-object 1

Each sub-folder of CAPTURES is one object: a folder of photos (iron import runs first, into
OUT/<object>/data) or a dataset (train/, test/). OUT/<object>/ is what `iron run` writes, plus
batch.log (the object's output) and batch.json (its row). OUT/summary.csv and OUT/index.html are
rewritten as objects finish. Running the same command again skips finished objects and resumes
the others. Exit status: 0 all finished, 1 some object failed, 2 a usage error.
On a cluster every node needs the same ironrender installed, and CAPTURES, OUT and a --config
file must be paths every node sees (a shared mount)."""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "batch",
        help="many objects: import and run each one as a Ray task, locally or on a cluster",
        description=(
            "Run `iron import` (photo folders) and `iron run` on every object of CAPTURES, each\n"
            "as one Ray task, with the same options as `iron run`. Failures stay with their\n"
            "object; a worker that dies is retried and resumes from its checkpoint."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("captures", help="folder with one sub-folder per object")
    parser.add_argument("out", help="output folder: OUT/<object>/ per object, summaries")
    add_steps_argument(parser)
    add_config_arguments(parser)
    parser.add_argument(
        "--address",
        default=None,
        help="a running Ray cluster (HOST:PORT, or `auto`); default: $RAY_ADDRESS, else a"
        " local Ray on this machine",
    )
    parser.add_argument(
        "--cpus",
        type=int,
        default=None,
        metavar="N",
        help="use N CPUs of this machine (a local Ray only; default: all)",
    )
    parser.add_argument(
        "--cpus-per-object",
        type=int,
        default=None,
        metavar="N",
        help="CPUs (= threads) per object; default: one per object while there are at least"
        " as many objects as CPUs, the spare CPUs shared out otherwise",
    )
    parser.add_argument(
        "--gpus-per-object",
        type=float,
        default=None,
        metavar="N",
        help="GPUs per object (fractions share a GPU); default: 1 where the cluster has GPUs,"
        " else 0 (the CPU)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=3,
        metavar="N",
        help="times an object is retried after its worker died (default %(default)s)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ironrender.batch import BatchOptions, run_batch

    options = BatchOptions(
        steps=requested_steps(args),
        device=args.device,
        downscale=args.downscale,
        address=args.address,
        local_cpus=args.cpus,
        cpus_per_object=args.cpus_per_object,
        gpus_per_object=args.gpus_per_object,
        max_retries=args.retries,
        command=shlex.join(["iron", *sys.argv[1:]]),
    )
    result = run_batch(args.captures, args.out, config_request(args), options)
    print(format_result(result))
    return EXIT_SOME_FAILED if result.failed else 0


def format_result(result) -> str:
    counts: dict[str, int] = {}
    for row in result.results:
        counts[row.status] = counts.get(row.status, 0) + 1
    lines = [
        f"iron batch: {len(result.results)} object(s) in {result.seconds:.0f} s: "
        + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    ]
    lines += [f"  FAILED {row.name}: {row.error}" for row in result.failed]
    lines.append(f"summary: {result.summary_files[0]}  page: {result.summary_files[1]}")
    return "\n".join(lines)
