"""Bringing a running supervisord's groups in line with the conf.d files, one process at a time,
each gated: it must reach RUNNING and, when its service has a health probe, pass it
(transact.py changes the files and undoes them; control.py restarts and starts by name)."""

from __future__ import annotations

import time
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from supervisor.xmlrpc import Faults

from bundler import progress
from bundler.bundle.layout import MONITOR
from bundler.bundle.manifest import Manifest
from bundler.bundle.tree import Bundle
from bundler.errors import BundlerError
from bundler.server.monitor import probes
from bundler.server.supervisor import RUNNING, STOPPED, Process, Supervisor, waiting_for

ACTIVE = ("RUNNING", "STARTING", "BACKOFF")
_ENDED = ("FATAL", "EXITED", "STOPPED")


@dataclass(frozen=True)
class Failure:
    process: str
    state: str
    log: str       # the end of its log
    why: str = ""  # what else failed (its health probe)


Gate = Callable[[Process, float], "str | None"]  # process, deadline -> why it is not healthy


def update(sup: Supervisor, groups: list[str], timeout: float, gate: Gate | None = None,
            forced: Callable[[Process], bool] | None = None) -> list[Failure]:
    """Bring `groups` in line with the files, and restart the `forced` processes that run
    (although their files say the same); return processes that did not reach RUNNING (or,
    with `gate`, did not pass their service's health probe). Inside a group that stays, the
    processes change one at a time, each gated before the next: a numprocs service always has
    one running."""
    for group in groups:
        before = {p.name: p for p in sup.processes() if p.group == group}
        diff = dict(sup.proxy.bundler.diff(group))
        moved = {*diff["changed"], *diff["added"], *diff["removed"]}
        diff["restart"] = [n for n, p in before.items()
                           if n not in moved and forced is not None and forced(p)]
        whole = not before or group == MONITOR or (  # an event listener pool
            not diff["changed"] and not diff["added"] and set(diff["removed"]) == set(before))
        if whole:
            failed = _update_group(sup, group, before, diff, timeout, gate)
        else:
            failed = _roll_group(sup, group, before, diff, timeout, gate)
        if failed:
            return failed
    return []


def _update_group(sup: Supervisor, group: str, before: dict[str, Process],
                  diff: dict[str, list[str]], timeout: float, gate: Gate | None) -> list[Failure]:
    """A group added, removed, or changed all at once (the monitor's event listener pool)."""
    for name in diff["changed"] + diff["removed"] + diff["restart"]:
        if before[name].state in ACTIVE:
            call(sup.proxy.supervisor.stopProcess, f"{group}:{name}", True)
    sup.proxy.bundler.update(group)
    wanted = [n for n in diff["changed"] if before[n].state != STOPPED] + diff["added"] \
        + diff["restart"]
    now = {p.name for p in sup.processes() if p.group == group}
    wanted = [n for n in wanted if n in now]
    for name in wanted:
        start_process(sup, f"{group}:{name}")
    return wait_ready(sup, [(group, n) for n in wanted], timeout, gate)


def _roll_group(sup: Supervisor, group: str, before: dict[str, Process],
                diff: dict[str, list[str]], timeout: float, gate: Gate | None) -> list[Failure]:
    """Replace the group's changed processes one by one, each started and gated before the
    next is stopped."""
    for name in diff["removed"] + diff["changed"] + diff["added"] + diff["restart"]:
        old = before.get(name)
        if old is not None and old.state in ACTIVE:
            call(sup.proxy.supervisor.stopProcess, f"{group}:{name}", True)
        if name not in diff["restart"]:
            sup.proxy.bundler.replace(group, name)
        if name in diff["removed"] or (old is not None and old.state == STOPPED):
            continue
        start_process(sup, f"{group}:{name}")
        failed = wait_ready(sup, [(group, name)], timeout, gate)
        if failed:
            return failed
    return []


def start_process(sup: Supervisor, full_name: str) -> None:
    """Start a process without waiting: wait_ready judges it. One that cannot be spawned at all
    (SPAWN_ERROR: its log cannot be opened, its program is gone) is left in BACKOFF or FATAL,
    which wait_ready reports as a failure, so the change is rolled back as any failed start is
    (the fault escaped the transaction, leaving it half-done)."""
    try:
        sup.proxy.supervisor.startProcess(full_name, False)
    except xmlrpc.client.Fault as fault:
        if fault.faultCode not in (Faults.ALREADY_STARTED, Faults.SPAWN_ERROR):
            raise BundlerError(f"supervisord refused: {fault.faultString}") from fault


def call(method: Any, *args: Any) -> None:
    """An XML-RPC call whose 'already in that state' fault means success."""
    try:
        method(*args)
    except xmlrpc.client.Fault as fault:
        if fault.faultCode not in (Faults.ALREADY_STARTED, Faults.NOT_RUNNING):
            raise BundlerError(f"supervisord refused: {fault.faultString}") from fault


def wait_ready(sup: Supervisor, keys: list[tuple[str, str]], timeout: float,
                gate: Gate | None) -> list[Failure]:
    """Wait until each process is RUNNING (supervisor says so after its startsecs) or gave up;
    then, with `gate`, until the health probe of its service passes."""
    deadline = time.monotonic() + timeout
    while True:
        processes = {(p.group, p.name): p for p in sup.processes()}
        pending = [processes[k] for k in keys if k in processes
                   and processes[k].state not in (RUNNING, *_ENDED)]
        if not pending or time.monotonic() > deadline:
            break
        progress.waiting(waiting_for(pending))
        time.sleep(0.2)
    ready = [processes[k] for k in keys if k in processes]
    failed = [Failure(p.full_name, p.state, sup.tail(p)) for p in ready if p.state != RUNNING]
    if gate is None or failed:
        return failed
    for process in ready:
        why = gate(process, deadline)
        if why is not None:
            failed.append(Failure(process.full_name, "RUNNING but unhealthy", sup.tail(process),
                                  f"its health probe failed: {why}"))
    return failed


def health_gate(bundle: Bundle, manifest: Manifest) -> Gate:
    """A process passes when its service has no health probe, or once the probe passes."""
    spec = manifest.spec

    def gate(process: Process, deadline: float) -> str | None:
        service = spec.services.get(process.service(spec.services))
        if service is None or service.health is None:
            return None
        health = service.health
        python = manifest.build.pythons[service.python]
        folder = bundle.layout.code_dir(spec.project, service.code)
        failing_since = None
        while True:
            why = probes.run(health, bundle.root, python, folder)
            now = time.monotonic()
            if why is None:
                return None
            failing_since = failing_since or now
            # as long as the monitor would bear it (every x failures) before restarting it
            if now > deadline or now - failing_since >= health.every * health.failures:
                return why
            progress.waiting(f"{process.full_name}: RUNNING, its health probe fails: {why}")
            time.sleep(0.25)
    return gate
