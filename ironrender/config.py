"""Typed configuration: dataclasses, ``key=value`` overrides, JSON round-trip.

Every configurable part of ironrender is a dataclass of plain fields (bool, int, float, str,
tuples of those, or nested dataclasses). A run saves its resolved configuration as
``config.json`` in its folder; ``--set section.field=value`` overrides any field from the
command line, and ``--config FILE`` loads a saved or hand-written JSON file.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from ironrender.errors import IronError
from ironrender.storage import atomic_write_text

T = TypeVar("T")

_NOTED: set[tuple[str, str]] = set()
"""Renamed keys already reported on stderr (each is reported once per process)."""


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    factory: Any = dataclasses.MISSING,
    aliases: tuple[str, ...] = (),
) -> Any:
    """A dataclass field with its one-line ``help`` (``iron config`` prints it) and the old
    names it is still read under (``aliases``), kept in ``dataclasses.field``'s ``metadata``
    so that the documentation of an option lives next to its default."""
    metadata: dict[str, Any] = {"help": help}
    if aliases:
        metadata["aliases"] = tuple(aliases)
    return dataclasses.field(default=default, default_factory=factory, metadata=metadata)


@functools.cache
def field_kinds(cls: type) -> dict[str, Any]:
    """The resolved type of each field of the dataclass ``cls`` (cached: ``__post_init__``
    checks run on every ``dataclasses.replace``)."""
    return typing.get_type_hints(cls)


def literal_choices(kind: Any) -> tuple | None:
    """The values a ``Literal[...]`` type allows (``None`` too for ``Literal[...] | None``);
    None when ``kind`` is not a choice."""
    origin = typing.get_origin(kind)
    if origin is typing.Literal:
        return typing.get_args(kind)
    if origin is typing.Union or origin is types.UnionType:
        args = typing.get_args(kind)
        for arg in args:
            choices = literal_choices(arg)
            if choices is not None:
                return (*choices, None) if type(None) in args else choices
    return None


def check_choices(config: Any) -> None:
    """Raise ValueError when a ``Literal`` field of the dataclass ``config`` holds a value it
    does not allow. Called from the configuration dataclasses' ``__post_init__``, so that
    ``Stage2Config(ambient="on")`` fails as ``--set stage2.ambient=on`` does, when the
    configuration is built, not after a whole stage 1 has run."""
    kinds = field_kinds(type(config))
    for item in dataclasses.fields(config):
        choices = literal_choices(kinds[item.name])
        value = getattr(config, item.name)
        if choices is not None and not _is_choice(value, choices):
            raise ValueError(_choice_error(item.name, choices, value))


def _is_choice(value: Any, choices: tuple) -> bool:
    return any(type(value) is type(choice) and value == choice for choice in choices)


def _choice_error(where: str, choices: tuple, value: Any) -> str:
    return f"{where}: expected one of {', '.join(repr(c) for c in choices)}, got {value!r}"


def config_fields(cls: type, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field]]:
    """``(dotted key, field)`` of every leaf (non-section) field under the dataclass ``cls``,
    in declaration order: the keys ``--set`` takes, with their help (``field.metadata``)."""
    kinds = field_kinds(cls)
    for item in dataclasses.fields(cls):
        key = f"{prefix}{item.name}"
        if dataclasses.is_dataclass(kinds[item.name]):
            yield from config_fields(kinds[item.name], f"{key}.")
        else:
            yield key, item


def leaf_values(config: Any) -> dict[str, Any]:
    """Dotted key -> value of every leaf field of the dataclass instance ``config``."""
    values = {}
    for key, _ in config_fields(type(config)):
        value = config
        for part in key.split("."):
            value = getattr(value, part)
        values[key] = value
    return values


def named_keys(cls: type, data: dict, prefix: str = "") -> list[str]:
    """The dotted leaf keys a (partial) dict for ``cls`` sets, old names read as the new ones
    (what :func:`merge` changes; call it on data :func:`merge` has accepted)."""
    kinds = field_kinds(cls)
    keys = []
    for name, value in _renamed(cls, data, "", prefix, report=False).items():
        if dataclasses.is_dataclass(kinds[name]):  # a section: merge took a dict for it
            keys += named_keys(kinds[name], value, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def to_dict(config: Any) -> dict:
    return dataclasses.asdict(config)


def from_dict(cls: type[T], data: dict, where: str = "") -> T:
    """Build ``cls`` from a (possibly partial) dict; unknown keys are an error, not ignored.

    ``where`` names the data's source in error messages (a file, an option), which then read
    ``where: section.field: what is wrong``."""
    return _from_dict(cls, data, where, "")


def merge(config: T, data: dict, where: str = "") -> T:
    """``config`` with the fields present in ``data`` replaced (nested dicts merge); ``where``
    as in :func:`from_dict`."""
    return _merge(config, data, where, "")


def _from_dict(cls: type[T], data: Any, where: str, prefix: str) -> T:
    if not isinstance(data, dict):
        raise IronError(f"{_place(where, prefix.rstrip('.'))}: expected a section, got {data!r}")
    kinds = field_kinds(cls)
    kwargs = {}
    for name, value in _renamed(cls, data, where, prefix).items():
        kind = kinds[name]
        if dataclasses.is_dataclass(kind):
            kwargs[name] = _from_dict(kind, value, where, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(kind, value, _place(where, f"{prefix}{name}"))
    return _build(cls(), kwargs, _place(where, prefix.rstrip(".")))


def _merge(config: T, data: dict, where: str, prefix: str) -> T:
    kinds = field_kinds(type(config))
    changes = {}
    for name, value in _renamed(type(config), data, where, prefix).items():
        current = getattr(config, name)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                place = _place(where, f"{prefix}{name}")
                raise IronError(f"{place}: expected a section, got {value!r}")
            changes[name] = _merge(current, value, where, f"{prefix}{name}.")
        else:
            changes[name] = _coerce(kinds[name], value, _place(where, f"{prefix}{name}"))
    return _build(config, changes, _place(where, prefix.rstrip(".")))


def _place(where: str, key: str) -> str:
    """Where an error happened: ``source: section.field``, either part alone, or ``config``."""
    return ": ".join(part for part in (where, key) if part) or "config"


def _renamed(cls: type, data: dict, where: str, prefix: str, report: bool = True) -> dict:
    """``data`` with old option names (a field's ``aliases``) read as the new ones, each
    reported once on stderr; unknown keys are an error, not ignored."""
    data = dict(data)
    for item in dataclasses.fields(cls):
        for old in item.metadata.get("aliases", ()):
            if old not in data:
                continue
            if item.name in data:
                place = _place(where, prefix.rstrip("."))
                raise IronError(f"{place}: {old} is the old name of {item.name}; give only one")
            data[item.name] = data.pop(old)
            note = (f"{prefix}{old}", f"{prefix}{item.name}")
            if report and note not in _NOTED:
                _NOTED.add(note)
                source = f" ({where})" if where else ""
                print(f"note: {note[0]} is now {note[1]}{source}", file=sys.stderr)
    names = [item.name for item in dataclasses.fields(cls)]
    unknown = set(data) - set(names)
    if unknown:
        place = _place(where, prefix.rstrip("."))
        raise IronError(f"{place}: unknown option(s) {sorted(unknown)}; known: {sorted(names)}")
    return data


def _build(config: T, changes: dict, where: str) -> T:
    """``dataclasses.replace`` whose validation errors (``__post_init__``) name the section."""
    try:
        return dataclasses.replace(config, **changes)
    except (TypeError, ValueError) as exc:
        raise IronError(f"{where}: {exc}") from None


def override_data(item: str) -> dict:
    """``section.field=value`` as the nested dict :func:`merge` takes (the value parsed as
    JSON where possible, else kept as a string)."""
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
    return nested


def apply_overrides(config: T, overrides: list[str]) -> T:
    """Apply ``section.field=value`` strings (values parsed as JSON where possible)."""
    for item in overrides:
        config = merge(config, override_data(item))
    return config


def save(config: Any, path: str | Path) -> None:
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
    if origin is typing.Literal:
        choices = typing.get_args(kind)
        if not _is_choice(value, choices):
            raise IronError(_choice_error(where, choices, value))
        return value
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
