"""Relocation: the build records where the bundle was and which files name that place; `bin/start`
rewrites those files when the tree has moved.

The record (`.bundler/relocate.json`) holds the prefix the files currently contain. Applying it is
idempotent, atomic per file (temp file + os.replace), serialised by a lock, and resumable: a journal
says which prefix each already rewritten file holds, so an interrupted run (or one interrupted and
then moved again) finishes the job the next time.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bundler.errors import BundlerError
from bundler.fsutil import write_atomic

RECORD = "relocate.json"
JOURNAL = "relocate.journal"
LOCK = "lock"
# Compiled bytecode names its source path, but the import system corrects it on load.
SKIP_SUFFIXES = (".pyc",)
# First lines of a Python script that run it with the interpreter found relative to the script.
_SH_LAUNCHER = """#!/bin/sh
'''exec' "$(dirname -- "$(readlink -f -- "$0")")/{rel}" "$0" "$@"
' '''
"""


def make_symlinks_relative(root: Path) -> None:
    """Turn absolute symlinks that point inside `root` into relative ones; refuse ones pointing out."""
    for link in _walk(root, links=True):
        target = os.readlink(link)
        if not os.path.isabs(target):
            continue
        resolved = Path(target)
        if not resolved.is_relative_to(root):
            raise BundlerError(f"{link.relative_to(root)} links to {target}, outside the bundle")
        link.unlink()
        link.symlink_to(os.path.relpath(resolved, link.parent))


def make_scripts_relocatable(root: Path) -> int:
    """Give Python scripts whose shebang names an interpreter inside `root` a relative launcher.

    A shebang must be absolute and breaks on paths with spaces, so the first line becomes a
    /bin/sh line that finds the interpreter next to the script; Python reads it as a string.
    """
    count = 0
    rewritten: set[str] = set()
    prefix = b"#!" + os.fsencode(root) + b"/"
    for folder in [root / "bin", *sorted((root).glob("*/*/bin"))]:
        if not folder.is_dir():
            continue
        for script in folder.iterdir():
            if script.is_symlink() or not script.is_file():
                continue
            with open(script, "rb") as f:
                head = f.read(len(prefix))
            if head != prefix:
                continue
            data = script.read_bytes()
            first, _, rest = data.partition(b"\n")
            interpreter = Path(os.fsdecode(first[2:].strip()))
            if b" " in first[2:].strip() or not interpreter.name.startswith("python"):
                continue
            rel = os.path.relpath(interpreter, folder)
            launcher = _SH_LAUNCHER.format(rel=rel).encode()
            script.write_bytes(launcher + rest)
            rewritten.add(os.path.normpath(script))
            count += 1
    _drop_stale_hashes(root, rewritten)
    return count


def _drop_stale_hashes(root: Path, scripts: set[str]) -> None:
    """pip's RECORD files hash the scripts as pip wrote them, with the build's path: leave those
    hashes empty (as RECORD does for .pyc files), which also keeps RECORD the same from build
    to build."""
    for record_file in root.glob("**/site-packages/*.dist-info/RECORD"):
        lines = record_file.read_text(encoding="utf-8").splitlines(keepends=True)
        changed = False
        for i, line in enumerate(lines):
            path = line.rsplit(",", 2)[0]
            if os.path.normpath(record_file.parent.parent / path) in scripts:
                lines[i] = f"{path},,\n"
                changed = True
        if changed:
            record_file.write_text("".join(lines), encoding="utf-8")


def record(root: Path, meta: Path, capacity: dict[str, int] | None = None) -> list[str]:
    """Find the files that contain `root` and write the record: text files, and binaries whose
    `capacity` (the longest root their NUL-padded strings can hold) is known. Return the
    binaries that contain `root` without a known capacity: those cannot be relocated."""
    capacity = capacity or {}
    needle = os.fsencode(root)
    texts: list[str] = []
    binaries: dict[str, int] = {}
    stuck: list[str] = []
    for path in _walk(root, links=False):
        if path.suffix in SKIP_SUFFIXES or path.is_relative_to(meta):
            continue
        data = path.read_bytes()
        if needle in data:
            rel = str(path.relative_to(root))
            if b"\x00" not in data:
                texts.append(rel)
            elif rel in capacity:
                binaries[rel] = capacity[rel]
            else:
                stuck.append(rel)
    rec: dict[str, object] = {"prefix": str(root), "files": sorted(texts)}
    if binaries:
        rec["binaries"] = dict(sorted(binaries.items()))
    _write_json(meta / RECORD, rec)
    return sorted(stuck)


def replace_padded(data: bytes, old: bytes, new: bytes) -> bytes:
    """Replace `old` with `new` inside the NUL-terminated strings of a binary without moving
    anything: a string that gets shorter is padded with NULs, one that gets longer takes them
    from its padding. The caller checks that `new` fits the string's original slot."""
    def replace(match: re.Match[bytes]) -> bytes:
        segment = match.group()
        body = segment.rstrip(b"\x00")
        spare = len(segment) - len(body)
        result = body.replace(old, new)
        if len(result) - len(body) >= spare:
            raise BundlerError(f"no room for {os.fsdecode(new)} in a binary string")
        return result + b"\x00" * (spare - (len(result) - len(body)))

    return re.sub(re.escape(old) + rb"[^\x00]*\x00+", replace, data)


def canonical_binary(data: bytes, prefix: bytes, placeholder: bytes) -> bytes:
    """`data` with `prefix` replaced by `placeholder` and the padding after those strings
    dropped: the same for every place the binary was relocated to."""
    return re.sub(re.escape(prefix) + rb"[^\x00]*\x00+",
                  lambda m: m.group().rstrip(b"\x00").replace(prefix, placeholder) + b"\x00", data)


@contextmanager
def locked(meta: Path) -> Iterator[None]:
    """An exclusive lock on the bundle for operations that must not run twice at once."""
    try:
        meta.mkdir(parents=True, exist_ok=True)
        handle = open(meta / LOCK, "a")
    except PermissionError as exc:
        raise BundlerError(f"cannot lock the bundle: {meta} is not writable by this user; run as "
                           "the user that owns the bundle") from exc
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def relocate(root: Path, meta: Path) -> bool:
    """Rewrite the recorded files for `root`; True when the tree had moved. Caller holds the lock."""
    rec_path, journal_path = meta / RECORD, meta / JOURNAL
    try:
        rec = json.loads(rec_path.read_text())
    except FileNotFoundError as exc:
        raise BundlerError(f"{root} is not a built bundle (no {rec_path.relative_to(root)})") from exc
    new = str(root)
    rewritten = _read_journal(journal_path)
    if rec["prefix"] == new and not rewritten:
        return False
    binaries: dict[str, int] = rec.get("binaries", {})
    too_long = {rel: cap for rel, cap in binaries.items() if len(os.fsencode(new)) > cap}
    if too_long:
        rel, cap = min(too_long.items(), key=lambda item: item[1])
        raise BundlerError(f"the bundle is now at {root} ({len(os.fsencode(new))} bytes), but "
                           f"{rel} (from a conda package) can hold a path of at most {cap}: "
                           "move the bundle to a shorter path")
    try:
        with open(journal_path, "a", encoding="utf-8") as journal:
            for rel in [*rec["files"], *binaries]:
                current = rewritten.get(rel, rec["prefix"])
                if current != new:
                    _replace_in_file(root / rel, current.encode(), new.encode(), rel in binaries)
                    journal.write(json.dumps({"file": rel, "prefix": new}) + "\n")
                    journal.flush()
    except PermissionError as exc:
        raise BundlerError(f"the bundle moved to {root} but {exc.filename} cannot be rewritten: "
                           "run bin/start once as the owner of the bundle") from exc
    rec["prefix"] = new
    _write_json(rec_path, rec)
    journal_path.unlink()
    return True


def _read_journal(path: Path) -> dict[str, str]:
    """File -> the prefix it holds, for files an unfinished relocation already rewrote."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return {}
    rewritten = {}
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line cut short by an interruption
        rewritten[entry["file"]] = entry["prefix"]
    return rewritten


def _replace_in_file(path: Path, old: bytes, new: bytes, binary: bool = False) -> None:
    data = path.read_bytes()
    if old in data:
        write_atomic(path, replace_padded(data, old, new) if binary else data.replace(old, new))


def record_text(rec: object) -> str:
    """The text of a relocate.json."""
    return json.dumps(rec, indent=1) + "\n"


def _write_json(path: Path, data: object) -> None:
    write_atomic(path, record_text(data))


def _walk(root: Path, links: bool) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            path = Path(folder, name)
            if path.is_symlink() == links and (links or path.is_file()):
                yield path
