"""One change to a deployed bundle's services (services.py and apply.py say which), running or not,
made whole or not at all.

Each operation is one transaction under the bundle's lock. The manifest (bundle.toml) is edited
and validated, the etc/conf.d files rendered from it are compared with those on disk, and only the
files that differ are written. A running supervisord then updates just the groups those files
belong to (see bundler/supervisor_rpc.py: siblings keep running), one process at a time: each
(re)started process must reach RUNNING and, when its service has a health probe, pass it, before
the next one is stopped, so a numprocs service always has one running. If one fails, the old
files are written back and the old processes started again. A journal holds the old files
meanwhile, so an operation that was killed half-way is undone by the next one, or by bin/start.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from bundler import progress
from bundler.bundle import integrity
from bundler.bundle.layout import GROUP_PREFIX, MONITOR
from bundler.bundle.manifest import Manifest
from bundler.bundle.record import Record
from bundler.bundle.render import PRIVATE, Renderer
from bundler.bundle.tree import MANIFEST, Bundle
from bundler.errors import BundlerError
from bundler.fsutil import write_atomic
from bundler.server import filemoves, history
from bundler.server.converge import ACTIVE, Failure, Gate, health_gate, update
from bundler.server.history import HistoryEntry, ServiceChange
from bundler.server.supervisor import RUNNING, Process, Supervisor, connect
from bundler.spec.live import LiveManifest
from bundler.spec.load import read_text
from bundler.spec.model import Service


def _renderer(bundle: Bundle, manifest: Manifest) -> Renderer:
    return Renderer(manifest.spec, bundle.layout, manifest.build.pythons)


def check_runnable(bundle: Bundle, manifest: Manifest, service: Service) -> None:
    """The service's code is in the bundle and its interpreter can run it."""
    spec, build = manifest.spec, manifest.build
    folder = bundle.layout.code_dir(spec.project, service.code)
    if not (bundle.root / folder).is_dir():
        raise BundlerError(f"service {service.name}: code {service.code} is not in this bundle "
                           f"({folder}/ is missing); ship it with a patch (bundler build "
                           "--patch-from ...) and bin/bundler apply")
    interpreter = build.interpreters.get(service.python)
    if interpreter is None or not (bundle.root / interpreter.python).exists():
        raise BundlerError(f"service {service.name}: interpreter {service.python} is not in this "
                           "bundle; ship it with a patch first")
    code = build.code.get(service.code)
    needs = code.python_version if code is not None else None
    if needs and needs != interpreter.python_version:
        raise BundlerError(f"service {service.name}: code {service.code} ships bytecode for Python "
                           f"{needs} only, but {service.python} is Python "
                           f"{interpreter.python_version}")


@dataclass(frozen=True)
class Outcome:
    live: bool                 # a running supervisord applied the change (else: config only)
    failed: list[Failure]      # not empty: the change was rolled back
    # processes of the old definition that did not come back (RUNNING, and healthy) after that
    unrestored: list[Failure] = dataclasses.field(default_factory=list)


Change = Callable[[LiveManifest], "list[ServiceChange]"]  # edits the manifest: what it did


@dataclass(frozen=True)
class NewFiles:
    """What an apply adds to its transaction: the services whose files it changed, restarted
    even where their definition stays (service, or the monitor -> why), and the manifest as it
    was before the release's files went in (what a rollback writes back, with those files:
    filemoves.undo)."""

    restarts: Callable[[Manifest, list[Process]], Mapping[str, str]]  # new manifest, processes
    manifest: str


def transact(bundle: Bundle, op: str, change: Change, timeout: float,
             current: tuple[LiveManifest, Manifest] | None = None,
             release: NewFiles | None = None) -> tuple[Outcome, list[HistoryEntry]]:
    """Apply `change` to the manifest and to what runs; undo it all if a process fails. The
    caller holds the lock when it passes the manifest it has read (`current`: as a document and
    as the model)."""
    if current is None:
        with bundle.locked():
            recover(bundle)
            return _transact(bundle, op, change, timeout, read_manifest(bundle), release)
    return _transact(bundle, op, change, timeout, current, release)


def read_manifest(bundle: Bundle) -> tuple[LiveManifest, Manifest]:
    """The bundle's manifest, parsed once: as a document to edit, and as the model."""
    try:
        text = read_text(bundle.manifest)
    except FileNotFoundError as exc:
        raise BundlerError(f"{bundle.manifest} is missing: this bundle has no manifest") from exc
    live = LiveManifest.parse(text, bundle.manifest)
    return live, Manifest.of(live, text)


def _transact(bundle: Bundle, op: str, change: Change, timeout: float,
              current: tuple[LiveManifest, Manifest], release: NewFiles | None
              ) -> tuple[Outcome, list[HistoryEntry]]:
    live, old = current
    changes = change(live)
    new = Manifest.of(live)
    for service in new.spec.services.values():
        if old.spec.services.get(service.name) != service:
            check_runnable(bundle, new, service)
    files, groups = _plan_files(bundle, old, new)
    sup = connect(bundle, timeout=max(timeout, 60.0))
    live_sup = sup.alive()
    running = sup.processes() if live_sup else []
    restarts = sorted(release.restarts(new, running)) if release is not None else []
    groups = sorted({*groups, *_groups_of(new, restarts)})
    probed = _probes_changed(old, new)
    if not files and not restarts:
        return Outcome(live_sup, []), _stamp(bundle, op, changes, "unchanged")
    journal = TransactionJournal(old.text if release is None else release.manifest,
                                 _old_files(bundle, files), groups, restarts, release is not None)
    journal.write(bundle.transaction, PRIVATE)  # the manifest holds the services' environments
    _write_files(bundle, new.text, files)
    failed: list[Failure] = []
    if live_sup:
        gate = health_gate(bundle, new)
        failed = update(sup, groups, timeout, gate, _forced(new, restarts)) \
            or _gate_running(sup, new, probed, {p.full_name: p.pid for p in running}, timeout,
                             gate)
    unrestored: list[Failure] = []
    if failed:
        unrestored = _restore(bundle, sup if live_sup else None)
    else:
        if release is not None:  # the commit point: the release's files are kept, then this
            filemoves.finish(bundle)
        bundle.transaction.unlink()
    result = "ok" if live_sup else "config only"
    if failed:
        result = ROLLBACK_FAILED if unrestored else "rolled back"
    return Outcome(live_sup, failed, unrestored), _stamp(
        bundle, op, changes, result, unrestored_line(unrestored) if unrestored else "")


def _groups_of(manifest: Manifest, services: list[str]) -> set[str]:
    """The supervisor groups that run `services` (the monitor is a group of its own)."""
    specs = manifest.spec.services
    return {MONITOR if s == MONITOR else specs[s].group or s for s in services
            if s == MONITOR or s in specs}


def _forced(manifest: Manifest, services: list[str], states: tuple[str, ...] = ACTIVE
            ) -> Callable[[Process], bool]:
    """Whether a process runs one of `services` and is in one of `states` (restarted although
    its definition stays)."""
    wanted = set(services)
    specs = manifest.spec.services
    return lambda p: p.state in states and \
        (MONITOR if p.group == MONITOR else p.service(specs)) in wanted


def _probes_changed(old: Manifest, new: Manifest) -> set[str]:
    """The services whose health probe the change sets or changes (the monitor runs it: their
    processes are not restarted for it, so the new probe is checked on the running ones)."""
    before, after = old.spec.services, new.spec.services
    return {name for name, s in after.items() if s.health is not None
            and (name not in before or before[name].health != s.health)}


def _gate_running(sup: Supervisor, manifest: Manifest, services: set[str],
                  before: Mapping[str, int], timeout: float, gate: Gate) -> list[Failure]:
    """A new health probe must pass on the processes that run on: those whose pid is still the
    one they had `before` the change (the others were gated as they started)."""
    if not services:
        return []
    specs = manifest.spec.services
    deadline = time.monotonic() + timeout
    failed = []
    for process in sup.processes():
        if before.get(process.full_name) != process.pid or process.state != RUNNING \
                or process.service(specs) not in services:
            continue
        why = gate(process, deadline)
        if why is not None:
            failed.append(Failure(process.full_name, "RUNNING but unhealthy", sup.tail(process),
                                  f"its new health probe failed: {why}"))
    return failed


def _stamp(bundle: Bundle, op: str, changes: list[ServiceChange], result: str, detail: str = ""
           ) -> list[HistoryEntry]:
    return history.stamp(bundle, [HistoryEntry(op, result, change=c, detail=detail)
                                  for c in changes])


def unrestored_line(unrestored: list[Failure]) -> str:
    """What a rollback that failed left: the old files, and the processes that do not run."""
    states = ", ".join(f"{f.process} is {f.state}" + (f" ({f.why})" if f.why else "")
                       for f in unrestored)
    return f"the rollback failed: the previous definition is back in the files, but {states}"


def _plan_files(bundle: Bundle, old: Manifest, new: Manifest) -> tuple[dict[str, str | None],
                                                                         list[str]]:
    """conf.d files to write (None: to delete), and the supervisor groups they belong to."""
    before = _renderer(bundle, old).program_files(bundle.root)
    after = _renderer(bundle, new).program_files(bundle.root)
    files: dict[str, str | None] = {}
    for name, text in after.items():
        path = bundle.programs / name
        if not path.is_file() or _text_of(path) != text:
            files[name] = text
    files.update({name: None for name in before if name not in after})
    services: set[str] = set()
    groups: set[str] = set()
    for name in files:
        if name.startswith(MONITOR + "."):
            if name.endswith(".ini"):  # the monitor re-reads its .json by itself
                groups.add(MONITOR)
        elif name.startswith(GROUP_PREFIX):
            group = name[len(GROUP_PREFIX):-len(".ini")]
            groups.add(group)
            for spec in (old.spec, new.spec):
                services.update(spec.groups[group].programs if group in spec.groups else ())
        else:
            services.add(name.split(".", 1)[0])
    for spec in (old.spec, new.spec):
        groups.update(spec.services[s].group or s for s in services if s in spec.services)
    return files, sorted(groups)


@dataclass(frozen=True)
class TransactionJournal(Record):
    """.bundler/transaction.json: what to write back to undo a change under way: the manifest,
    each conf.d file as it was (None: it was not there), and the groups to update then."""

    manifest: str
    files: Mapping[str, str | None]
    groups: list[str]
    restarts: list[str] = dataclasses.field(default_factory=list)  # restarted for their files
    apply: bool = False  # an apply's: done once its files are kept (filemoves.finish)

    def text(self) -> str:
        return json.dumps({"manifest": self.manifest, "files": dict(self.files),
                           "groups": self.groups, "restarts": self.restarts,
                           "apply": self.apply}, indent=1)

    @classmethod
    def parse(cls, text: str) -> TransactionJournal:
        raw = json.loads(text)
        files = dict(raw["files"])
        for name, old in files.items():  # written back under etc/conf.d/ as root: plain names
            if not isinstance(name, str) or "/" in name or name in ("", ".", "..") \
                    or not name.isprintable() or not isinstance(old, (str, type(None))):
                raise ValueError(f"{name!r} is no file of etc/conf.d")
        return cls(str(raw["manifest"]), files, list(raw["groups"]),
                   list(raw.get("restarts", [])), bool(raw.get("apply", False)))


def _old_files(bundle: Bundle, files: Mapping[str, str | None]) -> dict[str, str | None]:
    old_files = {}
    for name in files:
        path = bundle.programs / name
        old_files[name] = _text_of(path) if path.is_file() else None
    return old_files


def _text_of(path: Path) -> str:
    """A generated conf.d file's text; bytes that are no UTF-8 (a damaged file, which is written
    anew) read as U+FFFD."""
    return path.read_text(encoding="utf-8", errors="replace")


def _write_files(bundle: Bundle, manifest: str, files: Mapping[str, str | None]) -> None:
    like = bundle.manifest.stat()  # bin/start gave it the group supervisord runs with
    for name, text in files.items():
        path = bundle.programs / name
        if text is None:
            path.unlink(missing_ok=True)
        elif path.exists():
            write_atomic(path, text)
        else:
            write_atomic(path, text, PRIVATE)
            if os.geteuid() == 0:
                os.chown(path, like.st_uid, like.st_gid)
    write_atomic(bundle.manifest, manifest)
    integrity.refresh(bundle, [MANIFEST, *(f"{bundle.layout.programs}/{name}" for name in files)])


def recover(bundle: Bundle) -> bool:
    """Undo operations that were interrupted (their journals are still there): a patch being
    applied, then a switch or service change; and drop what a killed apply unpacked. Caller holds
    the lock."""
    shutil.rmtree(bundle.apply_incoming, ignore_errors=True)
    undone = filemoves.undo(bundle)
    if not bundle.transaction.exists():
        return undone
    if not undone and TransactionJournal.read(bundle.transaction).apply:
        bundle.transaction.unlink()  # killed past its commit point: the apply is done
        return False
    sup = connect(bundle, timeout=60.0)
    unrestored = _restore(bundle, sup if sup.alive() else None)
    if unrestored:
        line = unrestored_line(unrestored)
        history.stamp(bundle, [HistoryEntry("recover", ROLLBACK_FAILED, detail=line)])
        progress.log(f"warning: an interrupted change was undone, and {line}")
    return True


ROLLBACK_FAILED = "rollback failed"  # the history's result of a change undone that did not run


def _restore(bundle: Bundle, sup: Supervisor | None) -> list[Failure]:
    """Write back the journal's files (and an apply's: filemoves), then run the old processes
    again: those restarted for their files too, on the files they had. Each group is restored,
    even after one that fails; returns the processes that did not come back: not RUNNING, or
    failing their health probe."""
    journal = TransactionJournal.read(bundle.transaction)
    filemoves.undo(bundle)
    _write_files(bundle, journal.manifest, journal.files)
    unrestored: list[Failure] = []
    if sup is not None:
        old = Manifest.read(bundle.manifest, journal.manifest)
        gate = health_gate(bundle, old)
        # the processes restarted for their files, those that failed to come back too
        forced = _forced(old, journal.restarts, (*ACTIVE, "FATAL", "EXITED"))
        for group in journal.groups:
            unrestored += update(sup, [group], 60.0, gate, forced)
    bundle.transaction.unlink()
    return unrestored


