"""Checksums of every file of a bundle: written by the build, kept current by bundler's own
operations, and checked on the server by `bundler verify`.

Files that the relocation rewrites are hashed with the bundle's path replaced by a placeholder,
so a bundle that moved still verifies. Folders the site or the running services own (log/, run/,
etc/app/) and bundler's own records are not covered.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bundler.errors import BundlerError
from bundler.fsutil import write_atomic
from bundler.layout import META, Layout
from bundler.relocate import RECORD, canonical_binary

CHECKSUMS = "checksums.json"
PLACEHOLDER = b"\x00BUNDLE_ROOT\x00"

Entry = dict[str, Any]  # {"sha256": hex, "exec": bool} for a file, {"link": target} for a symlink


def skipped(rel: str, layout: Layout) -> bool:
    """Paths no checksum covers: runtime state, site configuration, bundler's records."""
    return any(rel == top or rel.startswith(top + "/")
               for top in (layout.log, layout.run, layout.site_config, META))


@dataclass(frozen=True)
class Relocation:
    """The prefix the relocatable files hold now, and those files."""

    prefix: str
    texts: frozenset[str]
    binaries: dict[str, int]  # binary -> the longest prefix it can hold

    def __contains__(self, rel: str) -> bool:
        return rel in self.texts or rel in self.binaries


def relocation(root: Path) -> Relocation:
    rec = json.loads((root / META / RECORD).read_text())
    return Relocation(rec["prefix"], frozenset(rec["files"]), rec.get("binaries", {}))


def entry(path: Path, rel: str, reloc: Relocation) -> Entry:
    if path.is_symlink():
        return {"link": os.readlink(path)}
    data = path.read_bytes()
    if rel in reloc.texts:
        data = data.replace(os.fsencode(reloc.prefix), PLACEHOLDER)
    elif rel in reloc.binaries:
        data = canonical_binary(data, os.fsencode(reloc.prefix), PLACEHOLDER)
    found = entry_of_bytes(data, executable=bool(path.stat().st_mode & 0o100))
    if rel.endswith(".pyc") and len(data) >= 16 and data[4] & 1:
        # hash-based bytecode: magic number, flags and the hash of its source. Some Pythons
        # (3.7) do not compile the same source to the same bytes; patches compare this instead.
        found["source"] = data[:16].hex()
    return found


def entry_of_bytes(data: bytes, executable: bool) -> Entry:
    return {"sha256": hashlib.sha256(data).hexdigest(), "exec": executable}


def walk(root: Path, layout: Layout) -> Iterable[tuple[str, Path]]:
    """(relative path, path) of every file and symlink that checksums cover, sorted."""
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        names = files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]
        for name in sorted(names):
            path = Path(folder, name)
            rel = path.relative_to(root).as_posix()
            if not skipped(rel, layout):
                yield rel, path


def scan(root: Path, layout: Layout) -> dict[str, Entry]:
    reloc = relocation(root)
    return {rel: entry(path, rel, reloc) for rel, path in walk(root, layout)}


def write(root: Path, layout: Layout) -> dict[str, Entry]:
    entries = scan(root, layout)
    save(root, entries)
    return entries


def load(root: Path) -> dict[str, Entry]:
    try:
        text = (root / META / CHECKSUMS).read_text()
    except FileNotFoundError as exc:
        raise BundlerError(f"{root} has no checksums ({META}/{CHECKSUMS}): it was built by an "
                           "older bundler") from exc
    return parse(text)


def parse(text: str | bytes) -> dict[str, Entry]:
    """The entries of a checksums.json."""
    data: dict[str, Entry] = json.loads(text)["files"]
    return data


def dumps(entries: dict[str, Entry]) -> str:
    """The text of a checksums.json."""
    return json.dumps({"files": dict(sorted(entries.items()))}, indent=0) + "\n"


def save(root: Path, entries: dict[str, Entry]) -> None:
    write_atomic(root / META / CHECKSUMS, dumps(entries))


def refresh(root: Path, rels: Iterable[str]) -> None:
    """Record the current content of `rels` (bundler changed them on purpose)."""
    if not (root / META / CHECKSUMS).exists():
        return
    entries = load(root)
    reloc = relocation(root)
    for rel in rels:
        path = root / rel
        if path.is_symlink() or path.exists():
            entries[rel] = entry(path, rel, reloc)
        else:
            entries.pop(rel, None)
    save(root, entries)


@dataclass
class Report:
    checked: int = 0
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.changed or self.missing or self.added)


def verify(root: Path, layout: Layout) -> Report:
    """Compare the tree with its checksums. Bytecode caches Python writes while running are
    not counted as added files."""
    expected = load(root)
    reloc = relocation(root)
    report = Report(checked=len(expected))
    seen = set()
    for rel, path in walk(root, layout):
        seen.add(rel)
        if rel not in expected:
            if not (rel.endswith(".pyc") and "/__pycache__/" in f"/{rel}"):
                report.added.append(rel)
        elif entry(path, rel, reloc) != expected[rel]:
            report.changed.append(rel)
    report.missing = sorted(set(expected) - seen)
    return report
