"""Checksums of every file of a bundle: written by the build, kept current by bundler's own
operations, and checked on the server by `bundler verify`.

Files that the relocation rewrites are hashed with the bundle's path replaced by a placeholder,
so a bundle that moved still verifies. Folders the site or the running services own (log/, run/,
etc/app/) and bundler's own records are not covered.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, MutableMapping
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any

from bundler.bundle.cstrings import canonical_binary
from bundler.bundle.records import Checksums, Entry, Relocation
from bundler.bundle.tree import CHECKSUMS_RECORD, Bundle
from bundler.errors import BundlerError
from bundler.fsutil import shared_file_key, tree_entries

PLACEHOLDER = b"\x00BUNDLE_ROOT\x00"


def entry(path: Path, rel: str, reloc: Relocation) -> Entry:
    if path.is_symlink():
        return Entry(link=os.readlink(path))
    return entry_of(rel, path.read_bytes(), reloc, bool(path.stat().st_mode & 0o100))


def entry_of(rel: str, data: bytes, reloc: Relocation, executable: bool) -> Entry:
    """The entry of a file `rel` that holds `data`."""
    if rel in reloc.texts:
        data = data.replace(os.fsencode(reloc.prefix), PLACEHOLDER)
    elif rel in reloc.binaries:
        data = canonical_binary(data, os.fsencode(reloc.prefix), PLACEHOLDER)
    return entry_of_digest(rel, hashlib.sha256(data).hexdigest(), data[:16], executable)


def entry_of_digest(rel: str, sha256: str, head: bytes, executable: bool) -> Entry:
    """The entry of a file the relocation does not rewrite, from the SHA-256 of its bytes and
    their first 16."""
    if rel.endswith(".pyc") and len(head) >= 16 and head[4] & 1:
        # hash-based bytecode: magic number, flags and the hash of its source. Some Pythons
        # (3.7) do not compile the same source to the same bytes; patches compare this instead.
        return Entry(sha256, executable, source=head[:16].hex())
    return Entry(sha256, executable)


def walk(bundle: Bundle) -> list[tuple[str, Path]]:
    """(relative path, path) of every file and symlink that checksums cover, sorted."""
    return [(rel, Path(path)) for rel, path in _walk(bundle)]


def _walk(bundle: Bundle) -> list[tuple[str, str]]:
    top = str(bundle.root) + "/"
    found = []
    for item in tree_entries(bundle.root):
        rel = item.path[len(top):]
        if not bundle.unchecked(rel):
            found.append((rel, item.path))
    return sorted(found)


def scan(bundle: Bundle, memo: MutableMapping[str, Any] | None = None) -> dict[str, Entry]:
    """Every file's entry; `memo` keeps those of shared files (fsutil.shared_file_key) that
    the relocation does not rewrite, from build to build (each as its Entry's fields)."""
    reloc = Relocation.read(bundle.relocation)
    found = {}
    for rel, path in _walk(bundle):
        key = shared_file_key(path) if memo is not None and rel not in reloc else None
        if key is not None and memo is not None and key in memo:
            found[rel] = Entry(*memo[key])
            continue
        found[rel] = entry(Path(path), rel, reloc)
        if key is not None and memo is not None:
            memo[key] = astuple(found[rel])
    return found


def write(bundle: Bundle, memo: MutableMapping[str, Any] | None = None) -> dict[str, Entry]:
    entries = scan(bundle, memo)
    Checksums(entries).write(bundle.checksums)
    return entries


def load(root: Path) -> dict[str, Entry]:
    """The checksums of the bundle (or the unpacked tree of an earlier build) at `root`."""
    try:
        return Checksums.read(root / CHECKSUMS_RECORD).files
    except FileNotFoundError as exc:
        raise BundlerError(f"{root} has no checksums ({CHECKSUMS_RECORD}): it is not a bundle "
                           "bundler built, or its records were removed") from exc


def refresh(bundle: Bundle, rels: Iterable[str]) -> None:
    """Record the current content of `rels` (bundler changed them on purpose)."""
    if not bundle.checksums.exists():
        return
    entries = load(bundle.root)
    reloc = Relocation.read(bundle.relocation)
    for rel in rels:
        path = bundle.root / rel
        if path.is_symlink() or path.exists():
            entries[rel] = entry(path, rel, reloc)
        else:
            entries.pop(rel, None)
    Checksums(entries).write(bundle.checksums)


@dataclass
class Report:
    checked: int = 0
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)

    @property
    def differ(self) -> int:
        """How many files are not as built: changed, missing or added."""
        return len(self.changed) + len(self.missing) + len(self.added)

    @property
    def clean(self) -> bool:
        return not self.differ


def verify(bundle: Bundle) -> Report:
    """Compare the tree with its checksums. Bytecode caches Python writes while running are
    not counted as added files."""
    expected = load(bundle.root)
    reloc = Relocation.read(bundle.relocation)
    report = Report(checked=len(expected))
    seen = set()
    for rel, path in walk(bundle):
        seen.add(rel)
        if rel not in expected:
            if not (rel.endswith(".pyc") and "/__pycache__/" in f"/{rel}"):
                report.added.append(rel)
        elif entry(path, rel, reloc) != expected[rel]:
            report.changed.append(rel)
    report.missing = sorted(set(expected) - seen)
    return report
