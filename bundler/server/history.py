"""The bundle's history (.bundler/history.jsonl): every switch, rollback, service change and patch
applied, every restart, stop, start and one-off command run, one JSON line each, appended; what
`bin/bundler history` shows and `rollback` reads. An entry's id is its place in the history,
from 1 (the file is only ever appended to).

`bin/bundler status` reads the last release installed from it: what writing entries and reading
definitions need (the renderer, tomlkit's editors) is imported where they are used."""

from __future__ import annotations

import dataclasses
import getpass
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bundler.bundle.record import Journal, Record
from bundler.bundle.tree import Bundle
from bundler.errors import BundlerError
from bundler.redact import redact

if TYPE_CHECKING:
    from bundler.spec.live import Definition


@dataclass(frozen=True)
class ServiceChange:
    """What one change did to a service: its definition before and after (None: absent), the
    group it was in, and that said in a line ("code: v1 -> v3", "added")."""

    service: str
    before: Definition | None
    after: Definition | None
    group: str | None = None
    change: str = ""

    @classmethod
    def of(cls, service: str, before: Definition | None, after: Definition | None,
           group: str | None) -> ServiceChange:
        from bundler.spec.edit import describe_change

        return cls(service, before, after, group, describe_change(before, after))

    def describe(self) -> str:
        return f"{self.service}: {redact(self.change)}"


@dataclass(frozen=True)
class Installed:
    """A release whose files an apply installed."""

    version: str
    patch: str                    # the archive's file name
    signed_by: str | None = None  # the fingerprint of the key that signed it


@dataclass(frozen=True)
class HistoryEntry(Record):
    """One line of the history: an operation, and either the service it changed, the release it
    installed, or the service it acted on without changing it (restart, stop, start, run)."""

    op: str
    result: str  # "ok", "config only", "rolled back", "rollback failed", "failed", "started"
    change: ServiceChange | None = None  # ("unchanged" is not kept)
    installed: Installed | None = None
    at: str = ""
    user: str = ""
    service: str = ""             # the service acted on, when there is no `change`
    detail: str = ""              # what was done to it ("web:web_00 pid 12 -> 14", a command)

    @property
    def target(self) -> str:
        """The service the entry is about ("" for a release installed)."""
        return self.change.service if self.change is not None else self.service

    def what(self) -> str:
        """What it did, in a line: the change, the release installed, or the detail."""
        if self.change is not None:
            return redact(self.change.change)
        if self.installed is not None:
            return f"bundle version {self.installed.version} ({self.installed.patch})"
        return redact(self.detail) or "-"

    def fields(self) -> dict[str, object]:
        """The line's JSON object, keys in the order they are written."""
        found: dict[str, object] = {"at": self.at, "user": self.user, "op": self.op}
        if self.change is None and self.service:
            found["service"] = self.service
        if self.detail:
            found["detail"] = redact(self.detail)
        if self.change is not None:
            c = self.change
            found["service"] = c.service
            if c.before is not None and "code" in c.before:
                found["from"] = c.before["code"]
            if c.after is not None and "code" in c.after:
                found["to"] = c.after["code"]
            found.update(change=redact(c.change), before=_plain(c.before), after=_plain(c.after))
            if c.group:
                found["group"] = c.group
        if self.installed is not None:
            found.update(to=self.installed.version, patch=self.installed.patch)
            if self.installed.signed_by:
                found["signed_by"] = self.installed.signed_by
        found["result"] = self.result
        return found

    def text(self) -> str:
        return json.dumps(self.fields()) + "\n"

    @classmethod
    def parse(cls, text: str) -> HistoryEntry:
        try:
            raw = json.loads(text)
            change = installed = None
            if "before" in raw:  # a change: written with both definitions, even when absent
                change = ServiceChange(str(raw["service"]), _definition(raw["before"]),
                                       _definition(raw["after"]), raw.get("group"),
                                       str(raw["change"]))
            elif "patch" in raw:
                installed = Installed(str(raw["to"]), str(raw["patch"]), raw.get("signed_by"))
            service = "" if change is not None else str(raw.get("service", ""))
            return cls(str(raw["op"]), str(raw["result"]), change, installed, str(raw["at"]),
                       str(raw["user"]), service, str(raw.get("detail", "")))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a history entry: {exc!r}") from None


@dataclass(frozen=True)
class History(Journal):
    """.bundler/history.jsonl: an entry a line, appended; a line that cannot be read (cut short
    by a crash) is skipped."""

    entries: tuple[HistoryEntry, ...] = ()

    @classmethod
    def parse(cls, text: str) -> History:
        return cls(tuple(cls.lines(text, HistoryEntry.parse)))

    def text(self) -> str:
        return "".join(e.text() for e in self.entries)


def _plain(definition: Definition | None) -> dict[str, object] | None:
    return None if definition is None else definition.plain()


def _definition(raw: Mapping[str, object] | None) -> Definition | None:
    from bundler.spec.live import Definition

    return None if raw is None else Definition(dict(raw))


def stamp(bundle: Bundle, entries: list[HistoryEntry]) -> list[HistoryEntry]:
    """Append the entries to the bundle's history, with the time and the user; return them as
    written. Entries of a change that changed nothing are returned, not kept."""
    from bundler.bundle.render import PRIVATE

    at = now()
    stamped = [dataclasses.replace(e, at=at, user=user()) for e in entries]
    kept = History(tuple(e for e in stamped if e.result != "unchanged"))
    if kept.entries:
        # the definitions recorded hold the services' environments: private, like bundle.toml
        fd = os.open(bundle.history, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE)
        mode = os.fstat(fd).st_mode & 0o777
        if mode & ~PRIVATE:
            os.fchmod(fd, mode & PRIVATE)
        with open(fd, "a", encoding="utf-8") as f:
            f.write(kept.text())
    return stamped


def now() -> str:
    """The time an entry records: UTC, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def user() -> str:
    """Who an entry records: the user running bundler."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "?"


def history(bundle: Bundle) -> list[HistoryEntry]:
    try:
        return list(History.read(bundle.history).entries)
    except FileNotFoundError:
        return []


def numbered(bundle: Bundle) -> list[tuple[int, HistoryEntry]]:
    """The entries with their ids (1, 2, ...), oldest first."""
    return list(enumerate(history(bundle), 1))


# The operations that change one service's definition, each recorded with it before and after.
CHANGES = ("switch", "set", "rollback", "add-service", "remove-service", "apply")


def _effective(entry: HistoryEntry, service: str) -> ServiceChange | None:
    """The entry's change of `service`, if it is one that took effect."""
    c = entry.change
    ok = c is not None and c.service == service and entry.op in CHANGES \
        and entry.result in ("ok", "config only")
    return c if ok else None


def last_change(bundle: Bundle, service: str) -> ServiceChange:
    """The last change of `service` that took effect."""
    for found in reversed(history(bundle)):
        change = _effective(found, service)
        if change is not None:
            return change
    raise BundlerError(f"no change of {service} in this bundle's history: nothing to roll back to")


def last_release(bundle: Bundle) -> HistoryEntry | None:
    """The history's last entry of a release installed (by apply; not one it rolled back), or
    None: the bundle runs the release it was built as. Read from the end; only the lines of
    releases are parsed."""
    try:
        text = bundle.history.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    for line in reversed(text.splitlines()):
        if '"patch"' not in line:
            continue
        try:
            entry = HistoryEntry.parse(line)
        except ValueError:
            continue
        if entry.installed is not None and entry.result not in ("rolled back", "rollback failed"):
            return entry
    return None


def change_of(bundle: Bundle, service: str, entry_id: int) -> ServiceChange:
    """Entry `entry_id`'s change of `service`, which must have taken effect."""
    entries = numbered(bundle)
    ids = [i for i, e in entries if _effective(e, service)]
    found = entries[entry_id - 1][1] if 0 < entry_id <= len(entries) else None
    change = _effective(found, service) if found is not None else None
    if change is not None:
        return change
    if found is None:
        what = f"no entry {entry_id} in this bundle's history ({len(entries)} entries)"
    elif found.target == service and found.op in CHANGES:
        what = f"entry {entry_id} ({found.op} of {service}) did not take effect ({found.result})"
    else:
        what = f"entry {entry_id} ({found.op}{' of ' + found.target if found.target else ''}) " \
               f"is no change of {service}"
    known = ", ".join(map(str, ids)) if ids else "none"
    raise BundlerError(f"{what}; the changes of {service} (bin/bundler history {service}): {known}")
