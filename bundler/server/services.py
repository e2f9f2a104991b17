"""The changes `bin/bundler` makes to a deployed bundle's services: switch code versions and
interpreters, set any other key, add, remove and roll back services. Each edits the manifest and
records, for the history, each service's definition before and after; transact.py applies it to
what runs, or undoes it all."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from tomlkit.toml_document import TOMLDocument

from bundler.bundle.tree import Bundle
from bundler.errors import UsageError
from bundler.server import history
from bundler.server.transact import Outcome, transact
from bundler.spec import edit
from bundler.spec.model import normalize_python

Entries = list[dict[str, Any]]


def changed(doc: TOMLDocument, name: str, change: Callable[[], object]) -> dict[str, Any]:
    """Run `change` (which edits service `name` in `doc`); the history entry that says what it
    did: the service's definition before and after (None: it did not exist)."""
    group = edit.group_of(doc, name)
    before = edit.service_table(doc, name)
    change()
    after = edit.service_table(doc, name)
    return history.entry(name, before, after, group or edit.group_of(doc, name))


def switch(bundle: Bundle, services: list[str] | None, group: str | None, version: str | None,
           timeout: float, python: str | None = None) -> tuple[Outcome, Entries]:
    def change(doc: TOMLDocument) -> Entries:
        names = edit.group_members(doc, group) if group else list(services or [])
        code = doc.get("code", {})
        if version is not None and version not in code:
            raise UsageError(f"no code version {version!r} in this bundle (it has "
                             f"{', '.join(code) or 'none'})")
        envs = ["base", *doc.get("envs", {})]
        if python is not None and normalize_python(python) not in envs:
            raise UsageError(f"no interpreter {python!r} in this bundle (it has "
                             f"{', '.join(envs)})")
        return [changed(doc, name, partial(edit.switch, doc, name, version, python))
                for name in names]
    return transact(bundle, "switch", change, timeout)


def set_keys(bundle: Bundle, name: str, values: dict[str, Any], unset: list[str],
             timeout: float) -> tuple[Outcome, Entries]:
    def change(doc: TOMLDocument) -> Entries:
        return [changed(doc, name, lambda: edit.set_keys(doc, name, values, unset))]
    return transact(bundle, "set", change, timeout)


def add_service(bundle: Bundle, name: str, python: str, code: str, command: str,
                environment: dict[str, str], numprocs: int | None, group: str | None,
                options: dict[str, Any], timeout: float) -> tuple[Outcome, Entries]:
    def change(doc: TOMLDocument) -> Entries:
        return [changed(doc, name, lambda: edit.add_service(
            doc, name, python, code, command, environment, numprocs, group, options))]
    return transact(bundle, "add-service", change, timeout)


def remove_service(bundle: Bundle, name: str, timeout: float) -> tuple[Outcome, Entries]:
    def change(doc: TOMLDocument) -> Entries:
        return [changed(doc, name, lambda: edit.remove_service(doc, name))]
    return transact(bundle, "remove-service", change, timeout)


def rollback(bundle: Bundle, name: str, timeout: float) -> tuple[Outcome, Entries]:
    """Give service `name` back the definition it had before its last change, whatever that
    change was (a switch, a setting, an apply; a removed service comes back, an added one goes)."""
    last = history.last_change(bundle, name)

    def change(doc: TOMLDocument) -> Entries:
        if "before" in last:
            target, group = last["before"], last.get("group")
        else:  # recorded by an older bundler: a code switch
            target, group = {**(edit.service_table(doc, name) or {}), "code": last["from"]}, None
        return [changed(doc, name, lambda: edit.put_service(doc, name, target, group))]
    return transact(bundle, "rollback", change, timeout)
