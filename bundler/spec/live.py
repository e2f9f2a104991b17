"""A deployed bundle's bundle.toml as one object: typed reads and edits of its services, groups,
code versions and interpreters over the format-preserving document (the user's comments and
layout stay). The server reads and changes its manifest only through this; a service or group is
a `Definition` wherever it travels (the merge, the history, a transaction)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.toml_document import TOMLDocument

from bundler.errors import UsageError
from bundler.spec import edit
from bundler.spec.checker import toml_error
from bundler.spec.model import normalize_python


@dataclass(frozen=True, eq=False)
class Definition(Mapping[str, object]):
    """A service or a group as bundle.toml writes it: its keys and their plain TOML values
    (inline tables as dicts). Compares equal to another with the same keys and values."""

    table: Mapping[str, object]

    def __getitem__(self, key: str) -> object:
        return self.table[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.table)

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        return f"Definition({dict(self.table)!r})"

    def plain(self) -> dict[str, object]:
        """As JSON writes it (the history)."""
        return dict(self.table)


@dataclass(frozen=True)
class Definitions:
    """Every service and group of one bundle.toml, by name."""

    services: Mapping[str, Definition]
    groups: Mapping[str, Definition]

    def of(self, kind: str) -> Mapping[str, Definition]:
        return self.services if kind == "services" else self.groups


class LiveManifest:
    """bundle.toml of a bundle (or a release's), parsed once; `text()` is what to write back."""

    def __init__(self, document: TOMLDocument, path: Path):
        self._doc = document
        self.path = path

    @classmethod
    def parse(cls, text: str, path: Path) -> LiveManifest:
        try:
            return cls(tomlkit.parse(text), path)
        except TOMLKitError as exc:
            raise toml_error(exc, text, path) from exc

    def text(self) -> str:
        return tomlkit.dumps(self._doc)

    def plain(self) -> dict[str, Any]:
        """The whole document as plain values, for the model (records.Manifest) to validate."""
        raw: dict[str, Any] = self._doc.unwrap()
        return raw

    # --- reads

    @property
    def version(self) -> str:
        return str(self._doc["bundle"]["version"])

    def code_versions(self) -> list[str]:
        return [str(name) for name in self._doc.get("code", {})]

    def interpreters(self) -> list[str]:
        """"base", then each env's name."""
        return ["base", *(str(name) for name in self._doc.get("envs", {}))]

    def service(self, name: str) -> Definition | None:
        return _definition(self._doc.get("services", {}).get(name))

    def group_of(self, service: str) -> str | None:
        return edit.group_of(self._doc, service)

    def group_members(self, group: str) -> list[str]:
        return edit.group_members(self._doc, group)

    def definitions(self) -> Definitions:
        """The services and groups, as the three-way merge compares them (a service's python
        "pyocr", "envs/pyocr/" or absent is written one way). Raises ValueError when they are not
        tables of tables."""
        found: dict[str, dict[str, Definition]] = {}
        for kind in ("services", "groups"):
            tables = self._doc.get(kind, {})
            if not isinstance(tables, dict) or not all(isinstance(t, dict)
                                                       for t in tables.values()):
                raise ValueError(f"[{kind}] is not a table of tables")
            found[kind] = {}
            for name, table in tables.items():
                plain = dict(table.unwrap() if hasattr(table, "unwrap") else table)
                if kind == "services":
                    env = normalize_python(str(plain.get("python", "base")))
                    plain["python"] = env if env == "base" else f"envs/{env}"
                found[kind][str(name)] = Definition(plain)
        return Definitions(found["services"], found["groups"])

    def differing(self, other: LiveManifest, keys: tuple[str, ...]) -> list[str]:
        """Those of the top-level `keys` whose tables differ between the two manifests."""
        return [key for key in keys if self._doc.get(key) != other._doc.get(key)]

    # --- edits: each raises UsageError, naming the service, when it cannot be made

    def switch(self, service: str, version: str | None, python: str | None) -> None:
        """Point `service` at code `version` and/or interpreter `python` (which must exist)."""
        if version is not None and version not in self.code_versions():
            raise UsageError(f"no code version {version!r} in this bundle (it has "
                                  f"{', '.join(self.code_versions()) or 'none'})")
        envs = self.interpreters()
        if python is not None and normalize_python(python) not in envs:
            raise UsageError(f"no interpreter {python!r} in this bundle (it has "
                                  f"{', '.join(envs)})")
        edit.switch(self._doc, service, version, python)

    def set_keys(self, service: str, values: Mapping[str, object], unset: list[str]) -> None:
        edit.set_keys(self._doc, service, dict(values), unset)

    def add_service(self, name: str, python: str, code: str, command: str,
                    environment: Mapping[str, str], numprocs: int | None, group: str | None,
                    options: Mapping[str, object]) -> None:
        edit.add_service(self._doc, name, python, code, command, dict(environment), numprocs,
                         group, dict(options))

    def remove_service(self, name: str) -> None:
        edit.remove_service(self._doc, name)

    def put_service(self, name: str, definition: Definition | None,
                    group: str | None = None) -> None:
        """Make service `name` exactly `definition` (None: remove it); one that comes back joins
        `group` again."""
        edit.put_service(self._doc, name, definition, group)

    def put_group(self, name: str, definition: Definition | None) -> None:
        edit.put_group(self._doc, name, definition)

    def take_release(self, release: LiveManifest) -> None:
        """The release's version, code versions, interpreters and [build] record; the services
        and groups stay as they are (apply converges them). Raises ValueError when the release
        is no built bundle's manifest."""
        try:
            _take(self._doc, release._doc)
        except (TOMLKitError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(str(exc)) from None


def _take(doc: TOMLDocument, new: TOMLDocument) -> None:
    for key in ("code", "envs"):
        for name, table in new.get(key, {}).items():
            if key not in doc:
                doc[key] = tomlkit.table(is_super_table=True)
            doc[key][name] = table
    if "base" in new:
        doc["base"] = new["base"]
    else:  # the default base (python = "current")
        doc.pop("base", None)
    for key in ("interpreters", "code"):
        for name, table in new["build"].get(key, {}).items():
            if key not in doc["build"]:
                doc["build"][key] = tomlkit.table(is_super_table=True)
            doc["build"][key][name] = table
    doc["bundle"]["version"] = new["bundle"]["version"]


def _definition(table: Any) -> Definition | None:
    return None if table is None else Definition(dict(table.unwrap()))
