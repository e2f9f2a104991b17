"""Find the line of a table or key in TOML text, so spec errors can name it."""

from __future__ import annotations

import re

_HEADER = re.compile(r"^\s*\[\[?\s*(?P<name>[^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"""^\s*(?P<key>"[^"]*"|'[^']*'|[A-Za-z0-9_.-]+)\s*=""")


def _split_dotted(name: str) -> tuple[str, ...]:
    parts = re.findall(r"""\s*("[^"]*"|'[^']*'|[^.\s]+)\s*(?:\.|$)""", name)
    return tuple(p.strip("\"'") for p in parts)


def locate(text: str, table: tuple[str, ...], key: str | None = None) -> int | None:
    """1-based line of `[table]` (or of `key` inside it); None when not written literally."""
    current: tuple[str, ...] = ()
    header_line = None
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            current = _split_dotted(header.group("name"))
            if key is not None and current[: len(table) + 1] == table + (key,):
                return number  # [table.key] or [table.key.sub] defines the key
            if current == table:
                header_line = number
            continue
        match = _KEY.match(line)
        if not match:
            continue
        dotted = _split_dotted(match.group("key"))
        full = current + dotted
        if key is None and full[: len(table)] == table and header_line is None:
            return number
        if key is not None and full == table + (key,):
            return number
    return header_line


def duplicate_line(text: str, key: str) -> int | None:
    """The line of the second definition of `key` (what tomlkit reports without a line)."""
    seen = 0
    for number, line in enumerate(text.splitlines(), start=1):
        match = _KEY.match(line) or _HEADER.match(line)
        if not match:
            continue
        name = match.group("key") if "key" in match.groupdict() else match.group("name")
        if _split_dotted(name)[-1:] == (key,):
            seen += 1
            if seen == 2:
                return number
    return None
