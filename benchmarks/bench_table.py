"""Shared by the benchmark scripts: add a row to its own table in BENCHMARKS.md.

Each script owns one section (a ``## ...`` title and a Markdown table header). A new row goes
right after the last row of that table, so rows never drift under another script's table or
its notes; the section is created at the end of the file the first time.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def cpu_name() -> str:
    """The processor's family as /proc/cpuinfo names it ("AMD EPYC", "Intel Xeon")."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        model = next(line.split(":", 1)[1] for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown"
    words = [w for w in re.sub(r"\((R|TM|tm)\)", "", model).split() if w != "Processor"]
    return " ".join(words[:2])


def run_parser(description: str) -> argparse.ArgumentParser:
    """The command line of a script that measures one finished run: RUN, --label, --no-write."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("run", type=Path)
    parser.add_argument("--label", default=None, help="the run's name in the table")
    parser.add_argument("--no-write", action="store_true", help="print, do not touch BENCHMARKS")
    return parser


def table_header(columns: tuple[str, ...]) -> str:
    """A Markdown table's header line and its separator, for ``append_row``."""
    return "| " + " | ".join(columns) + " |\n" + "|" + "---|" * len(columns) + "\n"


def synthesize_once(data: Path, synth_args: list[str]) -> Path:
    """``iron synth data *synth_args``, unless ``data`` already holds a finished capture."""
    import subprocess
    import sys

    if not (data / "gt" / "light.json").is_file():
        command = [sys.executable, "-m", "ironrender", "synth", str(data), *synth_args]
        subprocess.run([*command, "--force", "--quiet"], check=True)
    return data


def append_row(section: str, header: str, cells: list[str], path: Path = BENCHMARKS) -> None:
    """Insert ``| cells |`` after the last row of the table that starts with ``header``.

    ``section`` is the title block written before ``header`` when the table does not exist yet.
    """
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if header not in text:
        text = text.rstrip("\n") + "\n\n" + section.strip("\n") + "\n\n" + header
    end = text.index(header) + len(header)
    while text.startswith("|", end):
        newline = text.find("\n", end)
        end = len(text) if newline < 0 else newline + 1
    if end == len(text) and not text.endswith("\n"):
        text += "\n"
        end += 1
    path.write_text(text[:end] + "| " + " | ".join(cells) + " |\n" + text[end:])


def report_row(section: str, header: str, cells: list[str], write: bool = True) -> None:
    """Print a benchmark's row and the command that made it; append it unless ``write`` is off."""
    import shlex
    import sys

    print("row:", " | ".join(cells))
    print("command:", shlex.join([sys.executable, *sys.argv]))
    if write:
        append_row(section, header, cells)
