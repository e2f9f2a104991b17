"""Restart, stop and start services of a deployed bundle without changing what they are:
`bin/bundler restart|stop|start SERVICE` (or --group G). Each is one operation under the bundle's
lock, recorded in its history, one entry per service.

A restart or a start goes one process at a time: each is waited for until RUNNING and, when its
service has a health probe, until the probe passes (transact.py's gate), before the next one is
touched, so a numprocs service always keeps one running. The first process that does not come
back ends the command; the ones after it are left as they were.

A service stopped by name stays stopped until it is started by name, whoever starts the bundle or
changes the service meanwhile: the record of stopped services (bundle/stopped.py) turns its
processes' autostart off inside supervisord (supervisor_rpc.py).
"""

from __future__ import annotations

import xmlrpc.client
from dataclasses import dataclass, field

from bundler.bundle.manifest import Manifest
from bundler.bundle.stopped import Stop, Stopped
from bundler.bundle.tree import Bundle
from bundler.errors import BundlerError, UsageError
from bundler.server import history
from bundler.server.converge import Failure, call, health_gate, start_process, wait_ready
from bundler.server.history import HistoryEntry
from bundler.server.supervisor import RUNNING, STOPPED, Process, Supervisor, connect
from bundler.server.transact import recover
from bundler.spec.checker import did_you_mean
from bundler.spec.model import Service, Spec

_DOWN = (STOPPED, "EXITED", "FATAL")


@dataclass(frozen=True)
class Acted:
    live: bool                  # supervisord runs (else only the record of stopped services changed)
    entries: list[HistoryEntry]  # one per service ("unchanged" ones are returned, not kept)
    failed: list[Failure] = field(default_factory=list)  # the process that did not come back
    left: dict[str, Stop] = field(default_factory=dict)  # services of the group left stopped


def require_service(spec: Spec, name: str) -> Service:
    """The bundle's service `name`; a usage error listing the services when there is none."""
    if name not in spec.services:
        raise UsageError(f"no service {name!r} in this bundle{did_you_mean(name, spec.services)}"
                         f"; its services: {', '.join(spec.services) or 'none'}")
    return spec.services[name]


def targets(spec: Spec, service: str | None, group: str | None) -> list[str]:
    """The services SERVICE or --group GROUP names (exactly one of them is given)."""
    if (service is None) == (group is None):
        raise UsageError("give a SERVICE or --group GROUP (not both)")
    if group is None:
        assert service is not None
        return [require_service(spec, service).name]
    if group not in spec.groups:
        raise UsageError(f"no group {group!r} in this bundle{did_you_mean(group, spec.groups)}"
                         f"; its groups: {', '.join(spec.groups) or 'none'}")
    return list(spec.groups[group].programs)


def processes_of(sup: Supervisor, spec: Spec, service: str) -> list[Process]:
    return sorted((p for p in sup.processes() if p.service(spec.services) == service),
                  key=lambda p: p.full_name)


def _connect(bundle: Bundle, spec: Spec, names: list[str], timeout: float) -> Supervisor:
    """The bundle's supervisord, with time for a stop that waits stopwaitsecs for each process."""
    stopwait = max(int(spec.services[n].options.get("stopwaitsecs", 10)) for n in names)
    return connect(bundle, timeout=max(timeout, 60.0, stopwait + 30.0))


def _hold(sup: Supervisor) -> None:
    """Make supervisord apply the record of stopped services to its processes now."""
    try:
        sup.proxy.bundler.hold()
    except xmlrpc.client.Fault:
        pass  # a supervisord started by an older bundler: it reads the record at its next start


def _pid(sup: Supervisor, process: Process) -> int:
    return next((p.pid for p in sup.processes() if p.full_name == process.full_name), 0)


def restart(bundle: Bundle, service: str | None, group: str | None, timeout: float) -> Acted:
    """Restart the processes of SERVICE (or of every service of GROUP) one at a time, each gated.
    A service stopped by name is refused (SERVICE), or left stopped (GROUP)."""
    with bundle.locked():
        recover(bundle)
        manifest = Manifest.read(bundle.manifest)
        spec = manifest.spec
        names = targets(spec, service, group)
        stopped = Stopped.load(bundle.stopped).services
        if service is not None and service in stopped:
            raise BundlerError(f"{service} was stopped {stopped[service].describe()}: "
                               f"bin/bundler start {service} starts it")
        sup = _connect(bundle, spec, names, timeout)
        if not sup.alive():
            raise BundlerError("supervisord is not running: bin/start starts every service")
        gate = health_gate(bundle, manifest)
        entries, failed = [], []
        for name in names:
            if name in stopped:
                continue
            done = []
            for process in processes_of(sup, spec, name):
                call(sup.proxy.supervisor.stopProcess, process.full_name, True)
                start_process(sup, process.full_name)
                failed = wait_ready(sup, [(process.group, process.name)], timeout, gate)
                if failed:
                    done.append(f"{process.full_name} {failed[0].state}")
                    break
                done.append(f"{process.full_name} pid {process.pid or '-'} -> {_pid(sup, process)}")
            entries.append(HistoryEntry("restart", "failed" if failed else "ok", service=name,
                                        detail=", ".join(done) or "no process"))
            if failed:
                break
        left = {n: stopped[n] for n in names if n in stopped}
        return Acted(True, history.stamp(bundle, entries), failed, left)


def stop(bundle: Bundle, service: str | None, group: str | None, timeout: float = 60.0) -> Acted:
    """Stop the processes of SERVICE (or GROUP's) and record them as stopped by this user: they
    stay stopped until `start` names them."""
    with bundle.locked():
        recover(bundle)
        spec = Manifest.read(bundle.manifest).spec
        names = targets(spec, service, group)
        record = Stopped.load(bundle.stopped).services
        stop_now = Stop(history.user(), history.now())
        held = {n: s for n, s in record.items() if n in spec.services}  # none of a removed one
        held.update({n: stop_now for n in names if n not in held})
        if held != record:
            Stopped(held).write(bundle.stopped)
        sup = _connect(bundle, spec, names, timeout)
        live = sup.alive()
        entries = []
        if live:
            _hold(sup)
        for name in names:
            ended = []
            for process in processes_of(sup, spec, name) if live else []:
                if process.state not in _DOWN:
                    call(sup.proxy.supervisor.stopProcess, process.full_name, True)
                    ended.append(f"{process.full_name} pid {process.pid}")
            result = "ok" if live else "config only"
            if name in record and not ended:
                result = "unchanged"
            entries.append(HistoryEntry("stop", result, service=name,
                                        detail=", ".join(ended) or "no process ran"))
        return Acted(live, history.stamp(bundle, entries))


def start(bundle: Bundle, service: str | None, group: str | None, timeout: float) -> Acted:
    """Start the processes of SERVICE (or GROUP's) one at a time, each gated, and drop them from
    the stopped services."""
    with bundle.locked():
        recover(bundle)
        manifest = Manifest.read(bundle.manifest)
        spec = manifest.spec
        names = targets(spec, service, group)
        record = Stopped.load(bundle.stopped).services
        held = {n: s for n, s in record.items() if n in spec.services and n not in names}
        if held != record:
            Stopped(held).write(bundle.stopped)
        sup = _connect(bundle, spec, names, timeout)
        live = sup.alive()
        if not live:
            return Acted(False, history.stamp(bundle, [
                HistoryEntry("start", "config only" if n in record else "unchanged", service=n,
                             detail="at the next bin/start") for n in names]))
        _hold(sup)
        gate = health_gate(bundle, manifest)
        entries, failed = [], []
        for name in names:
            done = []
            for process in processes_of(sup, spec, name):
                if process.state == RUNNING:
                    continue
                start_process(sup, process.full_name)
                failed = wait_ready(sup, [(process.group, process.name)], timeout, gate)
                if failed:
                    done.append(f"{process.full_name} {failed[0].state}")
                    break
                done.append(f"{process.full_name} pid {_pid(sup, process)}")
            result = "failed" if failed else "ok" if done or name in record else "unchanged"
            entries.append(HistoryEntry("start", result, service=name,
                                        detail=", ".join(done) or "already running"))
            if failed:
                break
        return Acted(True, history.stamp(bundle, entries), failed)


def forget(bundle: Bundle, name: str) -> None:
    """Drop service `name` (removed) from the stopped services."""
    with bundle.locked():
        record = Stopped.load(bundle.stopped).services
        if name in record:
            Stopped({n: s for n, s in record.items() if n != name}).write(bundle.stopped)
