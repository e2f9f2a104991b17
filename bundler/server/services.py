"""The changes `bin/bundler` makes to a deployed bundle's services: switch code versions and
interpreters, set any other key, add, remove and roll back services. Each edits the manifest and
records, for the history, each service's definition before and after; transact.py applies it to
what runs, or undoes it all."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial

from bundler.bundle.tree import Bundle
from bundler.server import control, history
from bundler.server.history import HistoryEntry, ServiceChange
from bundler.server.transact import Outcome, transact
from bundler.spec.live import LiveManifest

Done = tuple[Outcome, list[HistoryEntry]]


def changed(live: LiveManifest, name: str, change: Callable[[], object]) -> ServiceChange:
    """Run `change` (which edits service `name` in `live`); what it did to the service."""
    group = live.group_of(name)
    before = live.service(name)
    change()
    return ServiceChange.of(name, before, live.service(name), group or live.group_of(name))


def switch(bundle: Bundle, services: list[str] | None, group: str | None, version: str | None,
           timeout: float, python: str | None = None) -> Done:
    def change(live: LiveManifest) -> list[ServiceChange]:
        names = live.group_members(group) if group else list(services or [])
        return [changed(live, name, partial(live.switch, name, version, python))
                for name in names]
    return transact(bundle, "switch", change, timeout)


def set_keys(bundle: Bundle, name: str, values: Mapping[str, object], unset: list[str],
             timeout: float) -> Done:
    def change(live: LiveManifest) -> list[ServiceChange]:
        return [changed(live, name, lambda: live.set_keys(name, values, unset))]
    return transact(bundle, "set", change, timeout)


def add_service(bundle: Bundle, name: str, python: str, code: str, command: str,
                environment: Mapping[str, str], numprocs: int | None, group: str | None,
                options: Mapping[str, object], timeout: float) -> Done:
    def change(live: LiveManifest) -> list[ServiceChange]:
        return [changed(live, name, lambda: live.add_service(
            name, python, code, command, environment, numprocs, group, options))]
    return transact(bundle, "add-service", change, timeout)


def remove_service(bundle: Bundle, name: str, timeout: float) -> Done:
    def change(live: LiveManifest) -> list[ServiceChange]:
        return [changed(live, name, lambda: live.remove_service(name))]
    done = transact(bundle, "remove-service", change, timeout)
    if not done[0].failed:
        control.forget(bundle, name)  # a service added again by that name starts as any other
    return done


def rollback(bundle: Bundle, name: str, timeout: float, to: int | None = None) -> Done:
    """Give service `name` back the definition it had before its last change, whatever that
    change was (a switch, a setting, an apply; a removed service comes back, an added one goes);
    with `to`, the definition it had once history entry `to` (a change of it) was done."""
    if to is None:
        last = history.last_change(bundle, name)
        definition, group = last.before, last.group
    else:
        chosen = history.change_of(bundle, name, to)
        definition, group = chosen.after, chosen.group

    def change(live: LiveManifest) -> list[ServiceChange]:
        return [changed(live, name, lambda: live.put_service(name, definition, group))]
    return transact(bundle, "rollback", change, timeout)
