"""The house rules a newcomer relies on: layers that only call downwards, no import cycles, and
modules short enough to read in one sitting.

The import rules are import-linter contracts in ``pyproject.toml`` (``make lint`` runs them too);
the test runs ``lint-imports`` on the package, and once on a small package with a planted cycle
and a planted upward import, so that a contract that stopped catching them fails here.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import ironrender

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(ironrender.__file__).resolve().parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
#: A module longer than this must say why in its docstring, with these words.
MAX_LINES = 450
LONG_REASON = "Longer than 450 lines because"


def lint_imports(config: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), str(config), "--no-cache", "--no-logo"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_package_keeps_its_layers_and_has_no_import_cycles():
    result = lint_imports(ROOT / "pyproject.toml", ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_the_contracts_catch_a_cycle_and_an_upward_import(tmp_path):
    """The same contract types on a toy package: ``low`` imports ``high`` (upwards) and ``a``
    and ``b`` import each other (inside functions, as ironrender's lazy imports do)."""
    package = tmp_path / "toy"
    (package / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "high.py": "from toy import low\n",
        "low.py": "def f():\n    from toy import high\n",
        "sub/__init__.py": "",
        "sub/a.py": "def f():\n    from toy.sub import b\n",
        "sub/b.py": "from toy.sub import a\n",
    }
    for name, text in files.items():
        (package / name).write_text(text)
    config = tmp_path / "contracts.toml"
    config.write_text(
        textwrap.dedent(
            """
            [tool.importlinter]
            root_package = "toy"

            [[tool.importlinter.contracts]]
            name = "layers"
            type = "layers"
            layers = ["toy.high", "toy.low"]

            [[tool.importlinter.contracts]]
            name = "cycles"
            type = "acyclic_siblings"
            ancestors = ["toy"]
            """
        )
    )
    result = subprocess.run(
        [str(LINT_IMPORTS), str(config), "--no-cache", "--no-logo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(tmp_path), "PATH": ""},
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "0 kept, 2 broken" in result.stdout


def test_modules_are_short_or_say_why():
    too_long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        lines = text.count("\n")
        if lines > MAX_LINES and LONG_REASON not in text[:4000]:
            too_long.append(f"{path.relative_to(PACKAGE.parent)}: {lines} lines")
    assert not too_long, "modules over the limit without a stated reason: " + ", ".join(too_long)


def test_every_package_says_what_lives_where():
    missing = []
    for init in sorted(PACKAGE.rglob("__init__.py")):
        source = init.read_text().lstrip()
        if not source.startswith('"""') or len(source.split('"""')[1].strip()) < 40:
            missing.append(str(init.relative_to(PACKAGE.parent)))
    assert not missing, "packages without a docstring: " + ", ".join(missing)
