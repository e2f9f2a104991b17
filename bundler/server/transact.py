"""Change a deployed bundle, running or not: switch code versions, add and remove services.

Each operation is one transaction under the bundle's lock. The manifest (bundle.toml) is edited
and validated, the etc/conf.d files rendered from it are compared with those on disk, and only the
files that differ are written. A running supervisord then updates just the groups those files
belong to (`bundler.update`, see supervisor_rpc.py: siblings keep running), and every process it
(re)started must reach RUNNING. If one does not, the old files are written back and the old
processes started again. A journal holds the old files meanwhile, so an operation that was killed
half-way is undone by the next one, or by bin/start.
"""

from __future__ import annotations

import getpass
import json
import time
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tomlkit
from supervisor.xmlrpc import Faults
from tomlkit.exceptions import TOMLKitError
from tomlkit.toml_document import TOMLDocument

from bundler import filemoves, integrity, spec_edit
from bundler.bundle import MANIFEST, Bundle
from bundler.errors import BundlerError, UsageError
from bundler.fsutil import write_atomic
from bundler.relocate import locked
from bundler.render import GROUP_PREFIX, Renderer
from bundler.spec import Service, Spec, parse_spec, toml_error
from bundler.supervisor import MONITOR, RUNNING, Supervisor

HISTORY = "history.jsonl"
JOURNAL = "transaction.json"
_ACTIVE = ("RUNNING", "STARTING", "BACKOFF")
_ENDED = ("FATAL", "EXITED", "STOPPED")


@dataclass(frozen=True)
class Deployed:
    """What a bundle's manifest says: the spec it runs and what its build resolved."""

    text: str
    spec: Spec
    build: dict[str, Any]

    def renderer(self, bundle: Bundle) -> Renderer:
        pythons = {name: i["python"] for name, i in self.build["interpreters"].items()}
        return Renderer(self.spec, bundle.layout, pythons)


def read_manifest(bundle: Bundle, text: str | None = None) -> Deployed:
    path = bundle.manifest
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise BundlerError(f"{path} is missing: this bundle has no manifest") from exc
    spec = parse_spec(text, path)
    build = tomlkit.parse(text).unwrap().get("build")
    if not isinstance(build, dict) or "interpreters" not in build:
        raise BundlerError(f"{path} is not a built bundle's manifest (no [build] table)")
    return Deployed(text, spec, build)


def check_runnable(bundle: Bundle, deployed: Deployed, service: Service) -> None:
    """The service's code is in the bundle and its interpreter can run it."""
    spec, build = deployed.spec, deployed.build
    folder = bundle.layout.code_dir(spec.project, service.code)
    if not (bundle.root / folder).is_dir():
        raise BundlerError(f"service {service.name}: code {service.code} is not in this bundle "
                           f"({folder}/ is missing); ship it with a patch (bundler build "
                           "--patch-from ...) and bin/bundler apply")
    interpreter = build["interpreters"].get(service.python)
    if interpreter is None or not (bundle.root / interpreter["python"]).exists():
        raise BundlerError(f"service {service.name}: interpreter {service.python} is not in this "
                           "bundle; ship it with a patch first")
    needs = build.get("code", {}).get(service.code, {}).get("python_version")
    if needs and needs != interpreter["python_version"]:
        raise BundlerError(f"service {service.name}: code {service.code} ships bytecode for Python "
                           f"{needs} only, but {service.python} is Python "
                           f"{interpreter['python_version']}")


@dataclass(frozen=True)
class Failure:
    process: str
    state: str
    log: str  # the end of its log


@dataclass(frozen=True)
class Outcome:
    live: bool                 # a running supervisord applied the change (else: config only)
    failed: list[Failure]      # not empty: the change was rolled back


Change = Callable[[TOMLDocument], list[dict[str, str]]]  # edits the manifest, returns history


def transact(bundle: Bundle, op: str, change: Change, timeout: float) -> tuple[Outcome,
                                                                                list[dict[str, str]]]:
    """Apply `change` to the manifest and to what runs; undo it all if a process fails."""
    with locked(bundle.meta):
        recover(bundle)
        old = read_manifest(bundle)
        try:
            doc = tomlkit.parse(old.text)
        except TOMLKitError as exc:
            raise toml_error(exc, old.text, bundle.manifest) from exc
        entries = change(doc)
        new = read_manifest(bundle, tomlkit.dumps(doc))
        for service in new.spec.services.values():
            if old.spec.services.get(service.name) != service:
                check_runnable(bundle, new, service)
        files, groups = _plan_files(bundle, old, new)
        sup = bundle.supervisor(timeout=max(timeout, 60.0))
        live = sup.alive()
        if not files:
            return Outcome(live, []), stamp(bundle, op, entries, "unchanged")
        _write_journal(bundle, old.text, files, groups)
        _write_files(bundle, new.text, files)
        failed = _update(sup, groups, timeout) if live else []
        if failed:
            _restore(bundle, sup if live else None)
        else:
            (bundle.meta / JOURNAL).unlink()
        result = "rolled back" if failed else "ok" if live else "config only"
        return Outcome(live, failed), stamp(bundle, op, entries, result)


def _plan_files(bundle: Bundle, old: Deployed, new: Deployed) -> tuple[dict[str, str | None],
                                                                         list[str]]:
    """conf.d files to write (None: to delete), and the supervisor groups they belong to."""
    before = old.renderer(bundle).program_files(bundle.root)
    after = new.renderer(bundle).program_files(bundle.root)
    files: dict[str, str | None] = {}
    for name, text in after.items():
        path = bundle.programs / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
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


def _write_journal(bundle: Bundle, manifest: str, files: dict[str, str | None],
                   groups: list[str]) -> None:
    old_files = {}
    for name in files:
        path = bundle.programs / name
        old_files[name] = path.read_text(encoding="utf-8") if path.is_file() else None
    write_atomic(bundle.meta / JOURNAL, json.dumps(
        {"manifest": manifest, "files": old_files, "groups": groups}, indent=1))


def _write_files(bundle: Bundle, manifest: str, files: dict[str, str | None]) -> None:
    for name, text in files.items():
        path = bundle.programs / name
        if text is None:
            path.unlink(missing_ok=True)
        else:
            write_atomic(path, text)
    write_atomic(bundle.manifest, manifest)
    integrity.refresh(bundle.root, [MANIFEST, *(f"{bundle.layout.programs}/{name}" for name in files)])


def recover(bundle: Bundle) -> bool:
    """Undo operations that were interrupted (their journals are still there): a patch being
    applied, then a switch or service change. Caller holds the lock."""
    undone = filemoves.undo(bundle.root, bundle.meta)
    if not (bundle.meta / JOURNAL).exists():
        return undone
    sup = bundle.supervisor(timeout=60.0)
    _restore(bundle, sup if sup.alive() else None)
    return True


def _restore(bundle: Bundle, sup: Supervisor | None) -> None:
    journal = json.loads((bundle.meta / JOURNAL).read_text())
    _write_files(bundle, journal["manifest"], journal["files"])
    if sup is not None:
        _update(sup, journal["groups"], 60.0)  # the old processes, as they were
    (bundle.meta / JOURNAL).unlink()


def _update(sup: Supervisor, groups: list[str], timeout: float) -> list[Failure]:
    """Bring `groups` in line with the files; return processes that did not reach RUNNING."""
    before = {(p.group, p.name): p for p in sup.processes()}
    wanted = []
    for group in groups:
        diff = sup.proxy.bundler.diff(group)
        for name in diff["changed"] + diff["removed"]:
            if before[group, name].state in _ACTIVE:
                _call(sup.proxy.supervisor.stopProcess, f"{group}:{name}", True)
        sup.proxy.bundler.update(group)
        wanted += [(group, n) for n in diff["changed"] if before[group, n].state != "STOPPED"]
        wanted += [(group, n) for n in diff["added"]]
    now = {(p.group, p.name) for p in sup.processes()}
    wanted = [key for key in wanted if key in now]
    for group, name in wanted:
        _call(sup.proxy.supervisor.startProcess, f"{group}:{name}", False)
    return _wait_running(sup, wanted, timeout)


def _call(method: Any, *args: Any) -> None:
    """An XML-RPC call whose 'already in that state' fault means success."""
    try:
        method(*args)
    except xmlrpc.client.Fault as fault:
        if fault.faultCode not in (Faults.ALREADY_STARTED, Faults.NOT_RUNNING):
            raise BundlerError(f"supervisord refused: {fault.faultString}") from fault


def _wait_running(sup: Supervisor, keys: list[tuple[str, str]], timeout: float) -> list[Failure]:
    """Wait until each process is RUNNING (supervisor says so after its startsecs) or gave up."""
    deadline = time.monotonic() + timeout
    while True:
        processes = {(p.group, p.name): p for p in sup.processes()}
        pending = [processes[k] for k in keys if k in processes
                   and processes[k].state not in (RUNNING, *_ENDED)]
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    failed = [processes[k] for k in keys if k in processes and processes[k].state != RUNNING]
    return [Failure(p.full_name, p.state, sup.tail(p)) for p in failed]


def stamp(bundle: Bundle, op: str, entries: list[dict[str, str]], result: str) -> list[dict[str, str]]:
    """Append the operation to the bundle's history; return the entries as written."""
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    stamped = [{"at": at, "user": _user(), "op": op, **entry, "result": result} for entry in entries]
    if result != "unchanged":
        with open(bundle.meta / HISTORY, "a", encoding="utf-8") as f:
            f.writelines(json.dumps(e) + "\n" for e in stamped)
    return stamped


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "?"


def history(bundle: Bundle) -> list[dict[str, str]]:
    try:
        lines = (bundle.meta / HISTORY).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue  # a line cut short
    return entries


# The operations: each edits the manifest document and says what it did, for the history.

def switch(bundle: Bundle, services: list[str] | None, group: str | None, version: str,
           timeout: float, op: str = "switch") -> tuple[Outcome, list[dict[str, str]]]:
    def change(doc: TOMLDocument) -> list[dict[str, str]]:
        names = spec_edit.group_members(doc, group) if group else list(services or [])
        code = doc.get("code", {})
        if version not in code:
            raise UsageError(f"no code version {version!r} in this bundle (it has "
                             f"{', '.join(code) or 'none'})")
        return [{"service": name, "from": spec_edit.switch(doc, name, version), "to": version}
                for name in names]
    return transact(bundle, op, change, timeout)


def previous_version(bundle: Bundle, service: str) -> str:
    """The version `service` ran before its last successful switch."""
    for entry in reversed(history(bundle)):
        if entry.get("service") == service and entry.get("op") in ("switch", "rollback") \
                and entry.get("result") in ("ok", "config only"):
            return entry["from"]
    raise BundlerError(f"no switch of {service} in this bundle's history: nothing to roll back to")


def add_service(bundle: Bundle, name: str, python: str, code: str, command: str,
                environment: dict[str, str], numprocs: int | None, group: str | None,
                options: dict[str, Any], timeout: float) -> tuple[Outcome, list[dict[str, str]]]:
    def change(doc: TOMLDocument) -> list[dict[str, str]]:
        spec_edit.add_service(doc, name, python, code, command, environment, numprocs, group,
                              options)
        return [{"service": name, "to": code}]
    return transact(bundle, "add-service", change, timeout)


def remove_service(bundle: Bundle, name: str, timeout: float) -> tuple[Outcome, list[dict[str, str]]]:
    def change(doc: TOMLDocument) -> list[dict[str, str]]:
        previous = str(doc.get("services", {}).get(name, {}).get("code", ""))
        spec_edit.remove_service(doc, name)
        return [{"service": name, "from": previous}]
    return transact(bundle, "remove-service", change, timeout)
