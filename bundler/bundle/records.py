"""The records one side writes and the other reads, each one class of record.Record (`parse`
and `text`; `read` and `write` come with it): the checksums (checksums.json), the relocation
record (relocate.json) and the journal of a relocation under way (relocate.journal), the build
machine's paths (origin.json), the server a bundle needs (.bundler/platform), the manifest of the
last release installed (release.toml), the monitor's configuration (_monitor.json), a patch's
patch.json, the site defaults' record (site-defaults.json) and a server's state (bin/bundler
state). The manifest (bundle.toml and its [build] table) is manifest.py's.

Records kept beside the code that needs them light or owns their format: the layout
(layout.py), the trusted keys (signing.py), a launched service's spec (launchspec.py), the log
faults supervisord records (logfaults.py) and the socket bin/start chose (server/supervisor.py).

Bundles already deployed hold these files: a new bundler reads them as they are and writes them
byte for byte as before (a patch that updates bundler itself must not make every conf.d file, and
so every service, look changed).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bundler.bundle.record import Journal, Record, plain_path
from bundler.spec.model import Alerts, Health, Listen

PATCH_FILE = "patch.json"  # inside a patch archive, beside files/
PATCH_SIGNATURE = "patch.sig"  # beside patch.json: a signing.Signature of its bytes
PATCH_SITE = "site"  # beside files/ in a patch: the default files of etc/app/


MIN_PREFIX = 4  # bytes: a relocation replaces the path everywhere in its files ("/opt" is 4)


def _malformed(exc: Exception) -> ValueError:
    """A record's JSON with a key missing or a value of the wrong kind."""
    return ValueError(f"malformed: {exc!r}")


def check_prefix(prefix: object) -> str:
    """`prefix` when it is a path a relocation may replace: absolute, normal (no `//`, `.`, `..`
    or trailing `/`), not `/`, of MIN_PREFIX bytes at least, no control characters. An empty or
    short one would be found everywhere (replace of b"" multiplies a file); raises ValueError."""
    if not isinstance(prefix, str) or not prefix.startswith("/") or prefix == "/" \
            or os.path.normpath(prefix) != prefix or prefix.startswith("//") \
            or len(os.fsencode(prefix)) < MIN_PREFIX \
            or any(ord(ch) < 32 or ord(ch) == 127 for ch in prefix):
        raise ValueError(f"the relocation prefix {prefix!r} is not an absolute path of "
                         f"{MIN_PREFIX} bytes or more")
    return prefix


# --- .bundler/checksums.json --------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """A file as built (the SHA-256 of its bytes with the bundle's path taken out, its exec bit,
    and for hash-based bytecode the hash of its source), or a symlink (its target). Written in
    checksums.json and patch.json by _entry_json, read back by _entry."""

    sha256: str | None = None
    executable: bool = False
    source: str | None = None
    link: str | None = None

    @classmethod
    def of_bytes(cls, data: bytes, executable: bool) -> Entry:
        return cls(sha256=hashlib.sha256(data).hexdigest(), executable=executable)

    def same_build(self, old: Entry | None) -> bool:
        """The same file, or bytecode of the same source (valid whichever build compiled it):
        some Pythons (3.7) do not compile the same source to the same bytes."""
        return old == self or (old is not None and self.source is not None
                               and old.source == self.source)


def _entry_json(entry: Entry) -> dict[str, Any]:
    if entry.link is not None:
        return {"link": entry.link}
    found: dict[str, Any] = {"sha256": entry.sha256, "exec": entry.executable}
    if entry.source is not None:
        found["source"] = entry.source
    return found


def _entry(raw: Mapping[str, Any]) -> Entry:
    if "link" in raw:
        return Entry(link=str(raw["link"]))
    return Entry(sha256=str(raw["sha256"]), executable=bool(raw["exec"]), source=raw.get("source"))


@dataclass(frozen=True)
class Checksums(Record):
    """Every file and symlink the checksums cover, by path relative to the bundle root."""

    files: dict[str, Entry]

    @classmethod
    def parse(cls, text: str) -> Checksums:
        try:
            return cls({rel: _entry(e) for rel, e in json.loads(text)["files"].items()})
        except (KeyError, TypeError, AttributeError) as exc:
            raise _malformed(exc) from None

    def text(self) -> str:
        return json.dumps({"files": {rel: _entry_json(e) for rel, e in sorted(self.files.items())}},
                          indent=0) + "\n"


# --- .bundler/relocate.json and relocate.journal ------------------------------------------

@dataclass(frozen=True)
class Relocation(Record):
    """The path the relocatable files hold now (`prefix`), the text files that hold it, and the
    binaries with the longest path each can hold (conda packages' NUL-padded strings)."""

    prefix: str
    texts: frozenset[str] = frozenset()
    binaries: Mapping[str, int] = field(default_factory=dict)

    def __contains__(self, rel: object) -> bool:
        return rel in self.texts or rel in self.binaries

    @classmethod
    def parse(cls, text: str) -> Relocation:
        try:
            raw = json.loads(text)
            files, binaries = raw["files"], raw.get("binaries", {})
            if not isinstance(files, list) or not isinstance(binaries, dict):
                raise TypeError('not {"prefix": PATH, "files": [PATH], "binaries": {PATH: SIZE}}')
            if any(type(cap) is not int or cap < 0 for cap in binaries.values()):
                raise TypeError("a binary's capacity is not a size")
            return cls(check_prefix(raw["prefix"]), frozenset(map(plain_path, files)),
                       {plain_path(rel): cap for rel, cap in binaries.items()})
        except (KeyError, TypeError, AttributeError) as exc:
            raise _malformed(exc) from None

    def text(self) -> str:
        raw: dict[str, object] = {"prefix": self.prefix, "files": sorted(self.texts)}
        if self.binaries:
            raw["binaries"] = dict(sorted(self.binaries.items()))
        return json.dumps(raw, indent=1) + "\n"


@dataclass(frozen=True)
class RelocationJournal(Journal):
    """The files a relocation under way has rewritten, and the path each holds now: a line each,
    appended as it is done, so that an interrupted relocation (moved again since, or not)
    finishes the job the next time."""

    rewritten: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> RelocationJournal:
        """The journal at `path`; empty when there is none (no relocation was interrupted)."""
        try:
            return super().read(path)
        except FileNotFoundError:
            return cls()

    @classmethod
    def parse(cls, text: str) -> RelocationJournal:
        return cls(dict(cls.lines(text, _rewritten)))

    def text(self) -> str:
        return "".join(json.dumps({"file": rel, "prefix": prefix}) + "\n"
                       for rel, prefix in self.rewritten.items())


def _rewritten(line: str) -> tuple[str, str]:
    entry = json.loads(line)
    return plain_path(entry["file"]), check_prefix(entry["prefix"])


# --- .bundler/origin.json and .bundler/platform ------------------------------------------

@dataclass(frozen=True)
class Origin(Record):
    """The build machine's paths, which `bundler verify` looks for in the bundle's files: the
    staging folder, the project folder and each copied interpreter's source prefix."""

    staging: str
    project: str
    sources: Mapping[str, str]  # interpreter -> the prefix it was copied or packed from

    @classmethod
    def read(cls, path: Path) -> Origin | None:  # type: ignore[override]
        """The record at `path`; None when there is none (built before bundler recorded it)."""
        try:
            return super().read(path)
        except FileNotFoundError:
            return None

    @classmethod
    def parse(cls, text: str) -> Origin:
        try:
            raw = json.loads(text)
            return cls(str(raw["staging"]), str(raw["project"]), dict(raw["sources"]))
        except (KeyError, TypeError, AttributeError) as exc:
            raise _malformed(exc) from None

    def text(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1) + "\n"


@dataclass(frozen=True)
class Platform(Record):
    """The server a bundle needs: its architecture, the glibc its files need (the highest
    GLIBC_x.y symbol version of any), and the floor the spec declared ("" for none). One line,
    "MACHINE GLIBC FLOOR" ("-" for no floor), which bin/ launchers read with the shell."""

    machine: str
    glibc: str
    floor: str = ""

    @classmethod
    def read(cls, path: Path) -> Platform | None:  # type: ignore[override]
        """The record at `path`; None when there is none or it cannot be read (built before
        bundler recorded it)."""
        try:
            return super().read(path)
        except (FileNotFoundError, ValueError):
            return None

    @classmethod
    def parse(cls, text: str) -> Platform:
        fields = text.split()
        if len(fields) < 2:
            raise ValueError(f"not MACHINE GLIBC [FLOOR]: {text[:40]!r}")
        return cls(fields[0], fields[1], fields[2] if len(fields) > 2 and fields[2] != "-" else "")

    def text(self) -> str:
        return f"{self.machine} {self.glibc} {self.floor or '-'}\n"


# --- .bundler/release.toml ----------------------------------------------------------------

@dataclass(frozen=True)
class Release(Record):
    """The manifest of the last release installed (the build's, then each patch's): the base of
    apply's three-way merge. Any text is one: apply says so when it is no bundle spec."""

    manifest: str

    @classmethod
    def read(cls, path: Path) -> Release | None:  # type: ignore[override]
        """The record at `path`; None when there is none (built before bundler kept it)."""
        try:
            return super().read(path)
        except FileNotFoundError:
            return None

    @classmethod
    def parse(cls, text: str) -> Release:
        return cls(text)

    def text(self) -> str:
        return self.manifest


# --- etc/conf.d/_monitor.json -------------------------------------------------------------

@dataclass(frozen=True)
class Watched:
    name: str
    health: Health | None
    max_rss: int | None
    python: str      # relative to the bundle root
    directory: str   # the service's code folder, relative to the bundle root


@dataclass(frozen=True)
class MonitorConfig(Record):
    """What the monitor watches (rendered with the services, re-read by the monitor whenever it
    changes); paths are relative to the bundle root."""

    bundle: str
    version: str
    services: Mapping[str, Watched]
    names: tuple[str, ...]  # every service of bundle.toml
    supervisord_log: str
    alerts: Alerts | None
    metrics: Listen | None

    @classmethod
    def parse(cls, text: str) -> MonitorConfig:
        try:
            raw = json.loads(text)
            services = {name: Watched(name=name,
                                      health=Health(**s["health"]) if s["health"] else None,
                                      max_rss=s["max_rss"], python=s["python"],
                                      directory=s["directory"])
                        for name, s in raw["services"].items()}
            alerts = raw["alerts"]
            if alerts is not None:
                alerts = Alerts(**{**alerts, "on": tuple(alerts["on"])})
            metrics = Listen(**raw["metrics"]) if raw["metrics"] else None
            return cls(raw["bundle"], raw["version"], services, tuple(raw["names"]),
                       raw["supervisord_log"], alerts, metrics)
        except (KeyError, TypeError, AttributeError) as exc:
            raise _malformed(exc) from None

    def text(self) -> str:
        services = {name: {"health": dataclasses.asdict(w.health) if w.health else None,
                           "max_rss": w.max_rss, "python": w.python, "directory": w.directory}
                    for name, w in self.services.items()}
        raw = {"bundle": self.bundle, "version": self.version, "services": services,
               "names": list(self.names), "supervisord_log": self.supervisord_log,
               "alerts": dataclasses.asdict(self.alerts) if self.alerts else None,
               "metrics": dataclasses.asdict(self.metrics) if self.metrics else None}
        return json.dumps(raw, indent=2) + "\n"


# --- patch.json, inside a patch archive ---------------------------------------------------

@dataclass(frozen=True)
class PatchFile:
    """One file a patch carries (patch.json's "files"; PatchRecord writes and reads it)."""

    sha256: str          # of the file as the patch carries it
    relocatable: bool    # it names the build's path: apply makes it name the bundle's
    checksum: Entry      # its entry in the bundle's checksums once applied
    capacity: int | None = None  # a relocatable binary: the longest path it can hold


@dataclass(frozen=True)
class PatchRecord(Record):
    """What a patch carries (files, links, removals, the new manifest) and what it expects to
    find in place of each path it touches (`base`: None where the path must not exist)."""

    FORMAT = 1

    prefix: str  # the build path the relocatable files name
    files: Mapping[str, PatchFile]
    links: Mapping[str, str]
    remove: tuple[str, ...]
    base: Mapping[str, Entry | None]
    manifest: str
    bundle: str = ""   # the name of the bundle it is for ("": a patch of bundler 0.x, any)
    against: str = ""  # the SHA-256 of the checksums.json it was made against
    release_base: str = ""  # the manifest of the release it was made against ("": unknown)
    site: Mapping[str, str] = field(default_factory=dict)  # etc/app/ defaults: path -> SHA-256
    platform: str = ""  # the release's .bundler/platform ("": not recorded)

    @classmethod
    def parse(cls, text: str) -> PatchRecord:
        """Raises ValueError when `text` is no patch.json of this format."""
        try:
            raw = json.loads(text)
            if raw.get("format") != cls.FORMAT:
                raise ValueError(f"format {raw.get('format')!r}")
            files = {str(rel): PatchFile(str(f["sha256"]), bool(f["relocatable"]),
                                         _entry(f["checksum"]),
                                         int(f["capacity"]) if "capacity" in f else None)
                     for rel, f in raw["files"].items()}
            base = {str(rel): _entry(e) if e is not None else None
                    for rel, e in raw["base"].items()}
            return cls(check_prefix(raw["prefix"]), files,
                       {str(k): str(v) for k, v in raw["links"].items()},
                       tuple(str(r) for r in raw["remove"]), base, str(raw["manifest"]),
                       str(raw.get("bundle", "")), str(raw.get("against", "")),
                       str(raw.get("release_base", "")),
                       {str(rel): str(digest) for rel, digest in raw.get("site", {}).items()},
                       str(raw.get("platform", "")))
        except (KeyError, TypeError, AttributeError) as exc:
            raise _malformed(exc) from exc

    def text(self) -> str:
        files = {}
        for rel, f in self.files.items():
            files[rel] = {"sha256": f.sha256, "relocatable": f.relocatable,
                          "checksum": _entry_json(f.checksum)}
            if f.capacity is not None:
                files[rel]["capacity"] = f.capacity
        raw = {"format": self.FORMAT, "prefix": self.prefix, "files": files,
               "links": dict(self.links), "remove": list(self.remove),
               "base": {rel: _entry_json(e) if e is not None else None
                        for rel, e in self.base.items()},
               "manifest": self.manifest}
        if self.bundle:
            raw.update(bundle=self.bundle, against=self.against)
        if self.release_base:
            raw["release_base"] = self.release_base
        if self.site:
            raw["site"] = dict(self.site)
        if self.platform:
            raw["platform"] = self.platform
        return json.dumps(raw, indent=1) + "\n"


# --- .bundler/site-defaults.json ---------------------------------------------------------

@dataclass(frozen=True)
class SiteDefaults(Record):
    """The SHA-256 of each default file of etc/app/ as last shipped (build/site.py writes it,
    server/site.py updates it, build/patch.py ships the files it names)."""

    files: Mapping[str, str]  # path inside etc/app/ -> SHA-256

    @classmethod
    def read(cls, path: Path) -> SiteDefaults:
        """The record at `path`; empty when there is none (a bundle without site defaults, or
        built before them)."""
        try:
            return super().read(path)
        except FileNotFoundError:
            return cls({})

    @classmethod
    def parse(cls, text: str) -> SiteDefaults:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("not an object of path: SHA-256")
        return cls({str(rel): str(digest) for rel, digest in raw.items()})

    def text(self) -> str:
        return json.dumps(dict(self.files), indent=1, sort_keys=True) + "\n"


# --- bin/bundler state: what a server runs, for the next patch ----------------------------

@dataclass(frozen=True)
class ServerState(Record):
    """What one deployed bundle holds: its live manifest, the manifest of the last release
    installed, and its checksums.json as written (so that a patch names it by its SHA-256)."""

    FORMAT = 1
    MARK = '"state_format"'  # a key only a state has

    bundle: str
    manifest: str
    release: str
    checksums: str

    @classmethod
    def parse(cls, text: str) -> ServerState:
        """Raises ValueError when `text` is no state of this format."""
        raw = json.loads(text)
        if not isinstance(raw, dict) or raw.get("state_format") != cls.FORMAT:
            raise ValueError(f"not state_format {cls.FORMAT}")
        try:
            return cls(*(str(raw[k]) for k in ("bundle", "manifest", "release", "checksums")))
        except KeyError as exc:
            raise ValueError(f"malformed: {exc!r} missing") from None

    def text(self) -> str:
        return json.dumps({"state_format": self.FORMAT, **dataclasses.asdict(self)}, indent=1) + "\n"
