"""Which services a release's files concern: a service runs one code version on one interpreter,
and a process keeps running the files it loaded at its start. A release that changes a code
version's files or an interpreter's must restart the services that run them (apply.py does it in
its transaction), and a process started before its files last changed runs stale code (status
says so: after `apply --files-only`, or a restart that was refused).

Whose is a file: a code version's folder is that version's; envs/NAME/ is interpreter NAME's; the
base interpreter owns bin/python* and lib/ (its standard library and site-packages). A change to
an interpreter's own Python (not its site-packages) also concerns the virtualenvs made on it
(`virtualenv = NAME`), which use its standard library. The monitor runs on the base: any change
of the base's files concerns it; bundler's own package there concerns the monitor alone (no
service imports it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from bundler.bundle.layout import MONITOR
from bundler.bundle.manifest import Manifest
from bundler.bundle.record import Record
from bundler.bundle.tree import Bundle
from bundler.server.supervisor import Process

_TOOL = ("bundler/", "offline_bundler-")  # under site-packages: bundler's own files


@dataclass(frozen=True)
class Touched:
    """The code versions and interpreters whose files a release changes."""

    code: frozenset[str] = frozenset()
    interpreters: frozenset[str] = frozenset()
    tool: bool = False  # bundler's own package (the monitor runs it)

    def __bool__(self) -> bool:
        return bool(self.code or self.interpreters or self.tool)


def touched(bundle: Bundle, manifest: Manifest, rels: Iterable[str]) -> Touched:
    """Whose files the paths `rels` (relative to the bundle root) are."""
    layout, build = bundle.layout, manifest.build
    code_dirs = {name: c.folder.rstrip("/") + "/" for name, c in build.code.items()}
    folders = {name: "" if i.folder in (".", "") else i.folder.rstrip("/") + "/"
               for name, i in build.interpreters.items()}
    code: set[str] = set()
    interpreters: set[str] = set()
    own_python: set[str] = set()  # interpreters whose Python itself changed (not site-packages)
    tool = False
    for rel in rels:
        owner = next((n for n, d in code_dirs.items() if rel.startswith(d)), None)
        if owner is not None:
            code.add(owner)
            continue
        owner = next((n for n, d in folders.items() if d and rel.startswith(d)), None)
        base = owner is None
        if owner is None:
            owner = next((n for n, d in folders.items() if not d), None)
            if owner is None or rel.startswith(layout.envs + "/"):
                continue
        inside = rel[len(folders[owner]):]
        if not inside.startswith(("bin/python", "lib/", "lib64/")) and base:
            continue  # the bundle's own bin/start, bin/bundler, etc/ ...
        in_site = inside.split("/site-packages/", 1)
        if base and len(in_site) == 2:
            tool = True  # the monitor runs on the base, with its site-packages
            if in_site[1].startswith(_TOOL):
                continue  # bundler's own package: no service imports it
        interpreters.add(owner)
        if len(in_site) == 1 and not inside.startswith("bin/") or inside.startswith("bin/python"):
            own_python.add(owner)
    parents = {n: i.virtualenv for n, i in manifest.spec.interpreters.items() if i.virtualenv}
    grown = True
    while grown:  # a virtualenv uses the standard library of the interpreter it sits on
        made = {n for n, parent in parents.items() if parent in own_python} - own_python
        own_python |= made
        interpreters |= made
        grown = bool(made)
    base_name = next((n for n, d in folders.items() if not d), None)
    return Touched(frozenset(code), frozenset(interpreters),
                   tool or (base_name is not None and base_name in own_python))


def reasons(manifest: Manifest, what: Touched) -> dict[str, str]:
    """Service (or the monitor) -> why it must restart to run the release's files."""
    found = {}
    for name, service in manifest.spec.services.items():
        why = [f"files of code {service.code} changed"] if service.code in what.code else []
        if service.python in what.interpreters:
            why.append(f"files of interpreter {service.python} changed")
        if why:
            found[name] = ", ".join(why)
    if what.tool and manifest.spec.monitored:
        found[MONITOR] = "files of the base changed (bundler's monitor runs on it)"
    return found


@dataclass(frozen=True)
class FilesChanged(Record):
    """.bundler/files-changed.json: when a release last changed the files of each code version
    and interpreter (seconds since the epoch)."""

    code: Mapping[str, float] = field(default_factory=dict)
    interpreters: Mapping[str, float] = field(default_factory=dict)

    def text(self) -> str:
        return json.dumps({"code": dict(self.code), "interpreters": dict(self.interpreters)},
                          indent=1, sort_keys=True)

    @classmethod
    def parse(cls, text: str) -> FilesChanged:
        raw = json.loads(text)
        return cls({str(k): float(v) for k, v in raw.get("code", {}).items()},
                   {str(k): float(v) for k, v in raw.get("interpreters", {}).items()})

    @classmethod
    def load(cls, bundle: Bundle) -> FilesChanged:
        try:
            return cls.read(bundle.files_changed)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return cls()


def record(bundle: Bundle, what: Touched, when: float | None = None) -> None:
    """Note that the files of `what` changed now."""
    if not (what.code or what.interpreters):
        return
    now = time.time() if when is None else when
    old = FilesChanged.load(bundle)
    FilesChanged({**old.code, **dict.fromkeys(what.code, now)},
                 {**old.interpreters, **dict.fromkeys(what.interpreters, now)}
                 ).write(bundle.files_changed)


def running_stale(bundle: Bundle, manifest: Manifest, processes: list[Process]) -> dict[str, str]:
    """Service -> why one of its `processes` runs files that changed since it started."""
    changed = FilesChanged.load(bundle)
    if not (changed.code or changed.interpreters):
        return {}
    specs, now, found = manifest.spec.services, time.time(), {}
    for process in processes:
        service = specs.get(process.service(specs))
        if service is not None and process.pid:
            why = stale(changed, service.code, service.python, now - process.uptime)
            if why:
                found[service.name] = why
    return found


def stale(changed: FilesChanged, code: str, python: str, started: float) -> str:
    """Why a process of a service on `code` and `python`, started at `started`, runs files that
    are no longer on disk ("" when it does not)."""
    why = []
    if changed.code.get(code, 0.0) > started:
        why.append(f"code {code}")
    if changed.interpreters.get(python, 0.0) > started:
        why.append(f"interpreter {python}")
    return f"files of {' and '.join(why)} changed since it started" if why else ""
