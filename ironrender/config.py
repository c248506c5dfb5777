"""Typed configuration: dataclasses, ``key=value`` overrides, JSON round-trip.

Every configurable part of ironrender is a dataclass of plain fields (bool, int, float, str,
tuples of those, or nested dataclasses). A run saves its resolved configuration as
``config.json`` in its folder; ``--set section.field=value`` overrides any field from the
command line, and ``--config FILE`` loads a saved or hand-written JSON file.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from ironrender.errors import IronError

T = TypeVar("T")


def to_dict(config: Any) -> dict:
    return dataclasses.asdict(config)


def from_dict(cls: type[T], data: dict, where: str = "config") -> T:
    """Build ``cls`` from a (possibly partial) dict; unknown keys are an error, not ignored."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise IronError(f"{where}: unknown option(s) {sorted(unknown)}; known: {sorted(names)}")
    kwargs = {}
    for name, value in data.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            kwargs[name] = from_dict(kind, value, f"{where}.{name}")
        else:
            kwargs[name] = _coerce(kind, value, f"{where}.{name}")
    return _build(cls(), kwargs, where)


def merge(config: T, data: dict, where: str = "config") -> T:
    """``config`` with the fields present in ``data`` replaced (nested dicts merge)."""
    hints = typing.get_type_hints(type(config))
    names = {f.name for f in dataclasses.fields(config)}
    unknown = set(data) - names
    if unknown:
        raise IronError(f"{where}: unknown option(s) {sorted(unknown)}; known: {sorted(names)}")
    changes = {}
    for name, value in data.items():
        current = getattr(config, name)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise IronError(f"{where}.{name}: expected a section, got {value!r}")
            changes[name] = merge(current, value, f"{where}.{name}")
        else:
            changes[name] = _coerce(hints[name], value, f"{where}.{name}")
    return _build(config, changes, where)


def _build(config: T, changes: dict, where: str) -> T:
    """``dataclasses.replace`` whose validation errors (``__post_init__``) name the section."""
    try:
        return dataclasses.replace(config, **changes)
    except (TypeError, ValueError) as exc:
        raise IronError(f"{where}: {exc}") from None


def apply_overrides(config: T, overrides: list[str]) -> T:
    """Apply ``section.field=value`` strings (values parsed as JSON where possible)."""
    for item in overrides:
        if "=" not in item:
            raise IronError(f"override {item!r} must look like section.field=value")
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        nested: Any = value
        for part in reversed(key.strip().split(".")):
            nested = {part: nested}
        config = merge(config, nested)
    return config


def save(config: Any, path: str | Path) -> None:
    from ironrender.storage import atomic_write_text

    atomic_write_text(path, json.dumps(to_dict(config), indent=2) + "\n")


def load(cls: type[T], path: str | Path) -> T:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise IronError(f"{path}: config file not found") from exc
    except json.JSONDecodeError as exc:
        raise IronError(f"{path}: not valid JSON ({exc})") from exc
    return from_dict(cls, data, str(path))


def _coerce(kind, value, where: str):
    origin = typing.get_origin(kind)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise IronError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(kind)
        item_kind = args[0] if args else Any
        return tuple(_coerce(item_kind, v, where) for v in value)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise IronError(f"{where}: expected true or false, got {value!r}")
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
            raise IronError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise IronError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if kind is str:
        return str(value)
    return value
