"""How a spec error is reported: the file, the line of the table or key, the key and what is wrong,
with a "did you mean" where a name is close to a known one. load.py states the rules with it."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tomlkit.exceptions import KeyAlreadyPresent, ParseError, TOMLKitError

from bundler.errors import BundlerError
from bundler.spec.model import (
    NAME_RE,
    NAME_RULE,
    RESERVED_NAMES,
    SERVICE_NAME_RE,
    SERVICE_NAME_RULE,
)
from bundler.spec.tomlpos import duplicate_line, locate

# Keys people try that are spelled otherwise here: the advice replaces "unknown key".
SPELLED_OTHERWISE = {"archive": 'a standalone CPython archive is given as python = '
                                '"path/to/cpython-...-install_only.tar.gz"'}


class SpecError(BundlerError):
    """A problem in bundle.toml, reported as `file:line: message`."""


def did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Checker:
    """Walks the raw TOML document; every error names the file, the line and the key."""

    def __init__(self, path: Path, text: str):
        self.path = path
        self.text = text

    def fail(self, table: tuple[str, ...], key: str | None, message: str) -> SpecError:
        line = locate(self.text, table, key)
        where = f"{self.path}:{line}" if line else str(self.path)
        head = "[" + ".".join(table) + "] " if table else ""
        return SpecError(f"{where}: {head}{message}")

    def table(self, raw: Any, table: tuple[str, ...], allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(raw, Mapping):
            raise self.fail(table[:-1], table[-1], "must be a table")
        for key in raw:
            if key in SPELLED_OTHERWISE and key not in allowed:
                raise self.fail(table, key, f"{key}: {SPELLED_OTHERWISE[key]}")
            if key not in allowed:
                raise self.fail(table, key, f"unknown key {key!r}{did_you_mean(key, allowed)}")
        return dict(raw)

    def typed(self, raw: Mapping[str, Any], table: tuple[str, ...], key: str,
              types: tuple[type, ...], default: Any = None, required: bool = False) -> Any:
        if key not in raw:
            if required:
                raise self.fail(table, None, f"is missing the required key {key!r}")
            return default
        value = raw[key]
        # bool is an int to Python, but `true` is no integer to a person
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            names = " or ".join(_TYPE_NAMES[t] for t in types)
            raise self.fail(table, key, f"{key} must be {names}, not {_describe(value)}")
        return value

    def strings(self, raw: Mapping[str, Any], table: tuple[str, ...], key: str) -> tuple[str, ...]:
        value = self.typed(raw, table, key, (list,), default=[])
        if not all(isinstance(v, str) for v in value):
            raise self.fail(table, key, f"{key} must be a list of strings")
        return tuple(value)

    def name(self, table: tuple[str, ...], value: str, service: bool = False) -> None:
        pattern, rule = (SERVICE_NAME_RE, SERVICE_NAME_RULE) if service else (NAME_RE, NAME_RULE)
        if not pattern.fullmatch(value) or len(value) > 64:
            raise self.fail(table, None, f"name {value!r} is invalid: {rule}; at most 64")
        if service and value.lower() in RESERVED_NAMES:
            raise self.fail(table, None, f"name {value!r} is reserved: the bundle uses it itself "
                            "(supervisord's log/supervisord.log, the monitor's _monitor, "
                            "supervisorctl's all); choose another")


_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", list: "a list",
               dict: "a table", float: "a number"}


def _describe(value: Any) -> str:
    for t, name in _TYPE_NAMES.items():
        if isinstance(value, t) and not (t is int and isinstance(value, bool)):
            return f"{name} ({value!r})"
    return repr(value)


def toml_error(exc: TOMLKitError, text: str, path: Path) -> SpecError:
    """A TOML syntax error as `file:line: invalid TOML: ...`."""
    line: int | None = exc.line if isinstance(exc, ParseError) else None
    if isinstance(exc, KeyAlreadyPresent):
        key = str(exc).split('"')[1] if '"' in str(exc) else ""
        line = duplicate_line(text, key)
    return SpecError(f"{path}:{line}: invalid TOML: {exc}" if line else f"{path}: invalid TOML: {exc}")
