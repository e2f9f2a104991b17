"""The bundle's history (.bundler/history.jsonl): every switch, rollback, service change and patch
applied, one JSON line each, appended; what `bin/bundler history` shows and `rollback` reads."""

from __future__ import annotations

import getpass
import json
import os
import time
from typing import Any

from bundler.bundle.render import PRIVATE
from bundler.bundle.tree import Bundle
from bundler.errors import BundlerError
from bundler.spec.edit import describe_change


def stamp(bundle: Bundle, op: str, entries: list[dict[str, Any]], result: str) -> list[dict[str, Any]]:
    """Append the operation to the bundle's history; return the entries as written."""
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    stamped = [{"at": at, "user": _user(), "op": op, **entry, "result": result} for entry in entries]
    if result != "unchanged":
        # the definitions recorded hold the services' environments: private, like bundle.toml
        fd = os.open(bundle.history, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE)
        mode = os.fstat(fd).st_mode & 0o777
        if mode & ~PRIVATE:
            os.fchmod(fd, mode & PRIVATE)
        with open(fd, "a", encoding="utf-8") as f:
            f.writelines(json.dumps(e) + "\n" for e in stamped)
    return stamped


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "?"


def history(bundle: Bundle) -> list[dict[str, Any]]:
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


# The operations that change one service's definition, each recorded with it before and after.
CHANGES = ("switch", "set", "rollback", "add-service", "remove-service", "apply")


def entry(service: str, before: dict[str, Any] | None, after: dict[str, Any] | None,
          group: str | None = None) -> dict[str, Any]:
    """What a change did to `service`: its definition before and after (None: absent)."""
    found: dict[str, Any] = {"service": service}
    if before is not None and "code" in before:
        found["from"] = before["code"]
    if after is not None and "code" in after:
        found["to"] = after["code"]
    found["change"] = describe_change(before, after)
    found.update(before=before, after=after)
    if group:
        found["group"] = group
    return found


def last_change(bundle: Bundle, service: str) -> dict[str, Any]:
    """The last change of `service` that took effect."""
    for found in reversed(history(bundle)):
        if found.get("service") == service and found.get("op") in CHANGES \
                and found.get("result") in ("ok", "config only") \
                and ("before" in found or "from" in found):
            return dict(found)
    raise BundlerError(f"no change of {service} in this bundle's history: nothing to roll back to")
