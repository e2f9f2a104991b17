"""The manifest: bundle.toml inside a bundle, the spec it was built from plus its [build] table
(what the build resolved), read into the model and checked; composed by the build."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomlkit

from bundler.errors import BundlerError
from bundler.spec.load import read_text, read_toml, spec_of
from bundler.spec.model import Spec

if TYPE_CHECKING:
    from bundler.spec.live import LiveManifest


@dataclass(frozen=True)
class BuiltInterpreter:
    folder: str           # relative to the bundle root: "." or "envs/<name>"
    python: str           # its python, relative to the bundle root
    python_version: str   # "3.11"
    packages: Mapping[str, str] = field(default_factory=dict)  # what pip resolved


@dataclass(frozen=True)
class BuiltCode:
    folder: str
    python_version: str | None = None  # bytecode-only code: the one Python version that runs it


@dataclass(frozen=True)
class BuildRecord:
    """The manifest's [build] table: what the build resolved."""

    bundler_version: str
    built_at: str
    spec_sha256: str
    interpreters: Mapping[str, BuiltInterpreter]
    code: Mapping[str, BuiltCode]

    @property
    def pythons(self) -> dict[str, str]:
        """Interpreter name -> its python, relative to the bundle root."""
        return {name: i.python for name, i in self.interpreters.items()}

    @classmethod
    def from_table(cls, raw: Mapping[str, Any]) -> BuildRecord:
        interpreters = {name: BuiltInterpreter(i["folder"], i["python"], i["python_version"],
                                               dict(i.get("packages", {})))
                        for name, i in raw["interpreters"].items()}
        code = {name: BuiltCode(c["folder"], c.get("python_version"))
                for name, c in raw.get("code", {}).items()}
        return cls(str(raw.get("bundler_version", "")), str(raw.get("built_at", "")),
                   str(raw.get("spec_sha256", "")), interpreters, code)

    def table(self) -> Any:
        build = tomlkit.table()
        build.add(tomlkit.comment("Written by bundler build: what this bundle holds, resolved."))
        build["bundler_version"] = self.bundler_version
        build["built_at"] = self.built_at
        build["spec_sha256"] = self.spec_sha256
        interpreters = tomlkit.table(is_super_table=True)
        for name, i in self.interpreters.items():
            entry = tomlkit.table()
            entry["folder"] = i.folder
            entry["python"] = i.python
            entry["python_version"] = i.python_version
            entry["packages"] = dict(sorted(i.packages.items()))
            interpreters[name] = entry
        build["interpreters"] = interpreters
        code = tomlkit.table(is_super_table=True)
        for name, c in self.code.items():
            code[name] = {"folder": c.folder} if c.python_version is None else \
                {"folder": c.folder, "python_version": c.python_version}
        build["code"] = code
        return build


@dataclass(frozen=True)
class Manifest:
    """bundle.toml inside a bundle: the spec it was built from (as the user wrote it, comments
    included, and as changed since on the server), plus its [build] table."""

    text: str
    spec: Spec
    build: BuildRecord

    @classmethod
    def read(cls, path: Path, text: str | None = None) -> Manifest:
        """The manifest at `path` (or `text`, a manifest about to be written there)."""
        if text is None:
            try:
                text = read_text(path)
            except FileNotFoundError as exc:
                raise BundlerError(f"{path} is missing: this bundle has no manifest") from exc
        return cls._validated(read_toml(text, path), text, path)

    @classmethod
    def of(cls, live: LiveManifest, text: str | None = None) -> Manifest:
        """The manifest a live document holds: given the text it was parsed from, without
        parsing it again; else (it was edited) the text it will write, parsed: tomlkit can write
        edits that read back otherwise (dotted keys, inline tables), and what is written is what
        must be a valid manifest."""
        if text is None:
            return cls.read(live.path, live.text())
        return cls._validated(live.plain(), text, live.path)

    @classmethod
    def _validated(cls, document: dict[str, Any], text: str, path: Path) -> Manifest:
        spec = spec_of(document, text, path)
        raw = document.get("build")
        if not isinstance(raw, dict) or "interpreters" not in raw:
            raise BundlerError(f"{path} is not a built bundle's manifest (no [build] table)")
        try:
            build = BuildRecord.from_table(raw)
        except (KeyError, TypeError, AttributeError) as exc:
            raise BundlerError(f"{path}: its [build] table is damaged ({exc!r} missing or "
                               "malformed): restore the bundle.toml the build wrote") from exc
        return cls(text, spec, build)

    @staticmethod
    def compose(spec_text: str, build: BuildRecord) -> str:
        """The manifest's text: the spec as written, its own [build] (if any) replaced."""
        doc = tomlkit.parse(spec_text)
        doc.pop("build", None)
        doc["build"] = build.table()
        return tomlkit.dumps(doc)
