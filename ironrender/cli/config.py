"""``iron config [DATA]``: the configuration ``iron run`` would use, every option on one line
with its value, where the value came from and what the option does.

The sources are the steps of :func:`ironrender.run_config.resolve_steps`, later ones winning:
``preset``, ``capture rule`` (only with DATA, whose cameras size the run), ``--config``,
``--set``, ``--minutes``, ``--no-edges``. An option named by ``--config`` or ``--set`` shows
that source even when its value equals the preset's; the capture rule shows where it changed a
value.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ironrender.cli.run import add_config_arguments, config_request

#: Values wider than this do not widen their section's value column (they overflow it).
VALUE_COLUMN_MAX = 24


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "config",
        help="print the resolved configuration: every option, its value, source and meaning",
        description=(
            "Print the configuration `iron run` would use with the same options, one line per"
            " option: the key --set takes, the value, where the value came from (preset,"
            " capture rule, --config, --set, --minutes, --no-edges) and what the option does."
            " With DATA the capture rule sizes the run from the dataset's cameras, as `iron run"
            " DATA RUN` does. --device changes nothing here; with DATA, give a downscaled copy"
            " (RUN/data_xK) rather than --downscale K."
        ),
    )
    parser.add_argument(
        "data",
        nargs="?",
        default=None,
        help="dataset folder: apply the capture rule to its cameras (default: no capture rule)",
    )
    add_config_arguments(parser)
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the resolved configuration as the JSON `iron run` saves as RUN/config.json",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ironrender.budget import capture_size
    from ironrender.config import to_dict
    from ironrender.errors import IronError

    request = config_request(args)
    capture = None
    if args.data is not None:
        if args.downscale != 1:
            raise IronError(
                "--downscale: iron config reads DATA's own cameras; give it the downscaled"
                f" copy instead (RUN/data_x{args.downscale}, written by iron run)"
            )
        capture = capture_size(args.data)
    steps = request.steps(capture)
    if args.json:
        text = json.dumps(to_dict(steps[-1].config), indent=2)
    else:
        text = format_config(steps, args.data)
    try:
        print(text, flush=True)
    except BrokenPipeError:  # `iron config | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def format_config(steps: list, data: str | None) -> str:
    """The lines ``iron config`` prints for the steps of
    :func:`~ironrender.run_config.resolve_steps`: a heading, then one block per section with
    aligned columns (key, value, source, help)."""
    from ironrender.config import config_fields, leaf_values
    from ironrender.run_config import RunConfig, config_sources

    config = steps[-1].config
    values = leaf_values(config)
    sources = config_sources(steps)
    sections: dict[str, list[tuple[str, str, str, str]]] = {}
    for key, item in config_fields(RunConfig):
        parts = key.split(".")
        for depth in range(len(parts)):  # a section's own options before its subsections'
            sections.setdefault(".".join(parts[:depth]), [])
        row = (key, _show(values[key]), sources[key], item.metadata.get("help", ""))
        sections[".".join(parts[:-1])].append(row)
    lines = [_heading(steps, data)]
    source_width = max(len(source) for source in sources.values())
    for section, rows in sections.items():
        if not rows:
            continue
        lines += ["", f"[{section}]"] if section else [""]
        key_width = max(len(row[0]) for row in rows)
        value_width = min(max(len(row[1]) for row in rows), VALUE_COLUMN_MAX)
        for key, value, source, text in rows:
            line = f"{key:<{key_width}}  {value:<{value_width}}  {source:<{source_width}}  {text}"
            lines.append(line.rstrip())
    return "\n".join(lines)


def _heading(steps: list, data: str | None) -> str:
    """What was resolved: the preset, the capture rule's finding or why it is not applied."""
    config = steps[-1].config
    budget = config.budget
    parts = [f"# preset {config.preset}"]
    if any(step.source == "capture rule" for step in steps):
        parts.append(
            f"capture rule on {data}: footprint {budget.footprint:g} px, scale {budget.scale:g}"
        )
    elif budget.rule != "capture":
        parts.append("budget.rule=preset: no capture rule")
    else:
        parts.append("no DATA: no capture rule (`iron config DATA` applies it)")
    parts.append("columns: key, value, source, help")
    return "; ".join(parts)


def _show(value: object) -> str:
    """A value as ``--set`` takes it: strings bare, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value)
