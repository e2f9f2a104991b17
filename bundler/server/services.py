"""The changes `bin/bundler` makes to a deployed bundle's services: switch code versions, add and
remove services. Each edits the manifest and says what it did, for the history; transact.py
applies it to what runs, or undoes it all."""

from __future__ import annotations

from typing import Any

from tomlkit.toml_document import TOMLDocument

from bundler.bundle.tree import Bundle
from bundler.errors import UsageError
from bundler.server.transact import Outcome, transact
from bundler.spec import edit


def switch(bundle: Bundle, services: list[str] | None, group: str | None, version: str,
           timeout: float, op: str = "switch") -> tuple[Outcome, list[dict[str, str]]]:
    def change(doc: TOMLDocument) -> list[dict[str, str]]:
        names = edit.group_members(doc, group) if group else list(services or [])
        code = doc.get("code", {})
        if version not in code:
            raise UsageError(f"no code version {version!r} in this bundle (it has "
                             f"{', '.join(code) or 'none'})")
        return [{"service": name, "from": edit.switch(doc, name, version), "to": version}
                for name in names]
    return transact(bundle, op, change, timeout)


def add_service(bundle: Bundle, name: str, python: str, code: str, command: str,
                environment: dict[str, str], numprocs: int | None, group: str | None,
                options: dict[str, Any], timeout: float) -> tuple[Outcome, list[dict[str, str]]]:
    def change(doc: TOMLDocument) -> list[dict[str, str]]:
        edit.add_service(doc, name, python, code, command, environment, numprocs, group, options)
        return [{"service": name, "to": code}]
    return transact(bundle, "add-service", change, timeout)


def remove_service(bundle: Bundle, name: str, timeout: float) -> tuple[Outcome, list[dict[str, str]]]:
    def change(doc: TOMLDocument) -> list[dict[str, str]]:
        previous = str(doc.get("services", {}).get(name, {}).get("code", ""))
        edit.remove_service(doc, name)
        return [{"service": name, "from": previous}]
    return transact(bundle, "remove-service", change, timeout)
