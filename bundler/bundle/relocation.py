"""Relocation: `bin/start` rewrites the files that name the bundle's path when the tree has moved.

The build records (build/relocatable.py) which files name the build's path; the record
(`.bundler/relocate.json`, records.Relocation) holds the path those files contain now. Applying it
is idempotent, atomic per file (temp file + os.replace), serialised by the bundle's lock, and
resumable: a journal (records.RelocationJournal) says which path each already rewritten file
holds, so an interrupted run (or one interrupted and then moved again) finishes the job the next
time.

A rewrite never fills the disk: a file's new size is known before it is written (its
occurrences of the old path times the difference in length), may be at most GROWTH_FACTOR times
the old size plus GROWTH_SLACK, and must leave fsutil.SPARE_BYTES free (check_growth).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from bundler.bundle.cstrings import replace_padded
from bundler.bundle.records import Relocation, RelocationJournal, check_prefix
from bundler.bundle.tree import Bundle
from bundler.errors import BundlerError
from bundler.fsutil import check_space, write_atomic

GROWTH_FACTOR = 8         # a relocated file is at most this many times its old size,
GROWTH_SLACK = 1 << 20    # plus this: paths are a small part of any real file


def relocate(bundle: Bundle) -> bool:
    """Rewrite the recorded files for the bundle's root; True when the tree had moved. Caller
    holds the lock."""
    root = bundle.root
    try:
        rec = Relocation.read(bundle.relocation)
    except FileNotFoundError as exc:
        raise BundlerError(f"{root} is not a built bundle (no "
                           f"{bundle.relocation.relative_to(root)})") from exc
    new = str(root)
    journal = bundle.relocation_journal
    rewritten = RelocationJournal.read(journal).rewritten
    if rec.prefix == new and not rewritten:
        return False
    try:
        check_prefix(new)
    except ValueError:
        raise BundlerError(f"the bundle is now at {root}, too short a path to relocate it to (the "
                           "path is replaced in every file that names it): move it to a longer "
                           "one") from None
    too_long = {rel: cap for rel, cap in rec.binaries.items() if len(os.fsencode(new)) > cap}
    if too_long:
        rel, cap = min(too_long.items(), key=lambda item: item[1])
        raise BundlerError(f"the bundle is now at {root} ({len(os.fsencode(new))} bytes), but "
                           f"{rel} (from a conda package) can hold a path of at most {cap}: "
                           "move the bundle to a shorter path")
    try:
        RelocationJournal().append(journal)  # made first: no file is rewritten unrecorded
        for rel in [*sorted(rec.texts), *rec.binaries]:
            current = rewritten.get(rel, rec.prefix)
            if current != new:
                _inside(root, rel)
                _replace_in_file(root, rel, current.encode(), new.encode(), rel in rec.binaries)
                RelocationJournal({rel: new}).append(journal)
    except PermissionError as exc:
        raise BundlerError(f"the bundle moved to {root} but {exc.filename} cannot be rewritten: "
                           "run bin/start once as the owner of the bundle") from exc
    dataclasses.replace(rec, prefix=new).write(bundle.relocation)
    journal.unlink()
    return True


def _inside(root: Path, rel: str) -> None:
    """A recorded file is rewritten only where it is: inside the bundle, reached through no link."""
    path = root / rel
    if path.is_symlink() or not path.parent.resolve().is_relative_to(root.resolve()):
        raise BundlerError(f"refusing to rewrite {rel}: it is a link or is reached through a link "
                           "out of the bundle (run bin/bundler verify)")


def check_growth(rel: str, data: bytes, old: bytes, new: bytes, folder: Path,
                 after: str = "nothing was changed") -> None:
    """Refuse to rewrite `rel` (holding `data`) with `old` replaced by `new` when the result is
    out of proportion, or would leave the disk (nearly) full."""
    size = len(data) + data.count(old) * (len(new) - len(old)) if old else -1
    if size < 0 or size > len(data) * GROWTH_FACTOR + GROWTH_SLACK:
        raise BundlerError(f"refusing to relocate {rel}: it would grow from {len(data)} bytes to "
                           f"{'without end' if size < 0 else f'{size} bytes'} (more than "
                           f"{GROWTH_FACTOR} times its size and {GROWTH_SLACK >> 20} MiB); "
                           f"{after}")
    check_space(folder, size, f"relocating {rel}")


def _replace_in_file(root: Path, rel: str, old: bytes, new: bytes, binary: bool = False) -> None:
    path = root / rel
    data = path.read_bytes()
    if old in data:
        if not binary:  # a binary's strings keep their slots: it keeps its size
            check_growth(rel, data, old, new, path.parent, "run bin/bundler verify: the record "
                         "or the file is not what the build made")
        write_atomic(path, replace_padded(data, old, new) if binary else data.replace(old, new))
