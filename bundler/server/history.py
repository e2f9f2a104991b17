"""The bundle's history (.bundler/history.jsonl): every switch, rollback, service change and patch
applied, one JSON line each, appended; what `bin/bundler history` shows and `rollback` reads."""

from __future__ import annotations

import getpass
import json
import time

from bundler.bundle.tree import Bundle
from bundler.errors import BundlerError


def stamp(bundle: Bundle, op: str, entries: list[dict[str, str]], result: str) -> list[dict[str, str]]:
    """Append the operation to the bundle's history; return the entries as written."""
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    stamped = [{"at": at, "user": _user(), "op": op, **entry, "result": result} for entry in entries]
    if result != "unchanged":
        with open(bundle.history, "a", encoding="utf-8") as f:
            f.writelines(json.dumps(e) + "\n" for e in stamped)
    return stamped


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "?"


def history(bundle: Bundle) -> list[dict[str, str]]:
    try:
        lines = bundle.history.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue  # a line cut short
    return entries


def previous_version(bundle: Bundle, service: str) -> str:
    """The version `service` ran before its last successful switch."""
    for entry in reversed(history(bundle)):
        if entry.get("service") == service and entry.get("op") in ("switch", "rollback") \
                and entry.get("result") in ("ok", "config only"):
            return entry["from"]
    raise BundlerError(f"no switch of {service} in this bundle's history: nothing to roll back to")
