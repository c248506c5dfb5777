"""How an import talks to the user: the progress callback, and names listed in a message."""

from __future__ import annotations

from collections.abc import Callable, Sequence

Progress = Callable[[str], None]


def short(names: Sequence[str], limit: int = 8) -> str:
    """The first ``limit`` names, comma-separated, then how many more there are."""
    names = list(names)
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
