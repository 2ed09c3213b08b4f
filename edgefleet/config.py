"""TOML → frozen dataclasses, validated once at start-up with errors that name the bad key.

Each service declares its configuration as (nested) frozen dataclasses with defaults; `load`
reads a TOML file, rejects unknown keys and wrong types, and returns the dataclass. Durations
and sizes carry their unit in the key name (`keep_alive_timeout_s`, `max_header_bytes`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration file or value is invalid; the message names the key (and, read from a
    file, its line: `edge.toml:12: 'limits.send_timeout_s' must be float, ...`)."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key  # the dotted key at fault, when one is


def key_line(text: str, dotted: str) -> int | None:
    """The 1-based line of *dotted* (`limits.send_timeout_s`, `disks[1]`) in TOML *text*: the
    `key =` line inside its table, or the table's header for a table or unknown table key.
    None when it cannot be told (the key comes from an override, or an inline table)."""
    parts = [p for p in dotted.replace("]", "").replace("[", ".").split(".") if p]
    while parts and parts[-1].isdigit():  # a list item: the line of the list's key
        parts.pop()
    if not parts:
        return None
    *table, leaf = parts
    current: list[str] = []
    header_line = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("["):
            name = line.strip("[]").split("#")[0].strip().strip("[]").strip()
            current = [p.strip().strip('"') for p in name.split(".")]
            if current == parts:
                header_line = header_line or number
            continue
        if current != table or "=" not in line or line.startswith("#"):
            continue
        key = line.split("=", 1)[0].strip().strip('"')
        if key == leaf:
            return number
    return header_line


def load(cls: type[T], path: str | Path | None, overrides: dict[str, Any] | None = None) -> T:
    """Read *path* (TOML) into *cls*, applying dotted-key *overrides* (e.g. {"listen.port": 0})."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such file") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    where = str(path) if path is not None else "<defaults>"
    try:
        return from_mapping(cls, data, where)
    except ConfigError as exc:
        line = None
        if path is not None and exc.key is not None and exc.key not in (overrides or {}):
            with contextlib.suppress(OSError, UnicodeDecodeError):
                line = key_line(Path(path).read_text(), exc.key)
        if line is None:
            raise
        text = str(exc)
        prefix = f"{where}: "
        body = text[len(prefix) :] if text.startswith(prefix) else text
        raise ConfigError(f"{where}:{line}: {body}", exc.key) from None


def path_resolver(config_path: str | Path | None) -> Callable[[str], str]:
    """A function making paths relative to *config_path*'s directory absolute (empty and
    absolute paths pass through), so a config directory can move as a unit."""
    if config_path is None:
        return lambda p: p
    base = Path(config_path).resolve().parent
    return lambda p: p if not p or os.path.isabs(p) else str(base / p)


def from_mapping(cls: type[T], data: dict[str, Any], where: str, prefix: str = "") -> T:
    """Build dataclass *cls* from a plain mapping, checking every key and type."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: [{prefix.rstrip('.')}] must be a table", prefix.rstrip("."))
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = f"{prefix}{unknown[0]}"
        raise ConfigError(f"{where}: unknown key '{key}'", key)
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        kwargs[name] = _convert(hints[name], value, where, f"{prefix}{name}")
    try:
        obj = cls(**kwargs)
    except TypeError as exc:  # a required key is missing
        raise ConfigError(f"{where}: {exc}") from None
    check = getattr(obj, "validate", None)
    if check is not None:
        try:
            check()
        except ValueError as exc:
            # validate() names the key in quotes: 'limits.max_ranges' (or relative to its table).
            quoted = re.search(r"'([A-Za-z0-9_.\[\]]+)'", str(exc))
            named: str | None = None
            if quoted is not None:
                named = quoted[1] if quoted[1].startswith(prefix) else prefix + quoted[1]
            raise ConfigError(f"{where}: {exc}", named) from None
    return obj


def _convert(hint: Any, value: Any, where: str, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return from_mapping(hint, value, where, prefix=f"{key}.")  # type: ignore[arg-type]
    if origin in (types.UnionType, typing.Union):
        errors = []
        for arg in args:
            if arg is type(None) and value is None:
                return None
            try:
                return _convert(arg, value, where, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: '{key}' has the wrong type ({type(value).__name__})", key)
    if origin in (tuple, list):
        if not isinstance(value, list):
            raise ConfigError(f"{where}: '{key}' must be a list", key)
        inner = args[0] if args else Any
        items = [_convert(inner, v, where, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool):
        raise ConfigError(f"{where}: '{key}' must be an integer, not a boolean", key)
    if isinstance(hint, type) and not isinstance(value, hint):
        raise ConfigError(
            f"{where}: '{key}' must be {hint.__name__}, not {type(value).__name__} ({value!r})",
            key,
        )
    return value
