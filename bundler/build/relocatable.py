"""Making a staged bundle relocatable: links inside it relative, scripts started by a launcher that
finds their interpreter next to them, and the record of every file that names the build's path
(bundle/relocation.py rewrites those where the bundle is unpacked)."""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

from bundler.bundle.records import Relocation
from bundler.bundle.tree import Bundle
from bundler.errors import BundlerError
from bundler.fsutil import write_atomic

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


# What distlib (pip, virtualenv) writes instead of a shebang longer than the kernel takes: a
# /bin/sh line that execs the interpreter. Rewritten like a shebang, so that how long the build's
# folder was does not show in the bundle.
_DISTLIB_SH = b"#!/bin/sh\n'''exec' "


def _distlib_form(root: Path) -> re.Pattern[bytes]:
    return re.compile(re.escape(_DISTLIB_SH) + rb'"?(' + re.escape(os.fsencode(root))
                      + rb'/[^"\n]+?)"? "\$0" "\$@"\n' + re.escape(b"' '''\n"))


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
            if head != prefix and not head.startswith(_DISTLIB_SH):
                continue
            data = script.read_bytes()
            match = _distlib_form(root).match(data)
            if match:
                first, rest = b"#!" + match[1], data[match.end():]
            elif data.startswith(prefix):
                first, _, rest = data.partition(b"\n")
            else:
                continue
            interpreter = Path(os.fsdecode(first[2:].strip()))
            if b" " in first[2:].strip() or not interpreter.name.startswith("python"):
                continue
            rel = os.path.relpath(interpreter, folder)
            launcher = _SH_LAUNCHER.format(rel=rel).encode()
            write_atomic(script, launcher + rest)  # a new file: it may be a cache entry's link
            rewritten.add(os.path.normpath(script))
            count += 1
    _drop_stale_hashes(root, rewritten)
    return count


def _drop_stale_hashes(root: Path, scripts: set[str]) -> None:
    """pip's RECORD files hash the scripts as pip wrote them, with the build's path; some are
    rewritten since (the relative launcher above; bin/supervisorctl, which the bundle renders).
    Those hashes are left empty (as RECORD does for .pyc files), which keeps RECORD true and the
    same from build to build."""
    for record_file in root.glob("**/site-packages/*.dist-info/RECORD"):
        lines = record_file.read_text(encoding="utf-8").splitlines(keepends=True)
        changed = False
        for i, line in enumerate(lines):
            parts = line.rsplit(",", 2)
            path, digest = parts[0], parts[1] if len(parts) == 3 else ""
            if not digest or not path.startswith("../"):  # installed outside site-packages
                continue
            target = os.path.normpath(record_file.parent.parent / path)
            if target in scripts or _record_digest(Path(target)) != digest:
                lines[i] = f"{path},,\n"
                changed = True
        if changed:
            write_atomic(record_file, "".join(lines))


def _record_digest(path: Path) -> str | None:
    """A file's hash as RECORD writes it (PEP 376/427), or None when it is not a file."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    raw = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={raw}"


def record(bundle: Bundle, capacity: dict[str, int] | None = None) -> list[str]:
    """Find the files that contain the bundle's root and write the relocation record: text
    files, and binaries whose `capacity` (the longest root their NUL-padded strings can hold)
    is known. Return the binaries that contain the root without a known capacity: those cannot
    be relocated."""
    root = bundle.root
    capacity = capacity or {}
    needle = os.fsencode(root)
    texts: list[str] = []
    binaries: dict[str, int] = {}
    stuck: list[str] = []
    for path in _walk(root, links=False):
        if path.suffix in SKIP_SUFFIXES or path.is_relative_to(bundle.meta):
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
    bundle.meta.mkdir(parents=True, exist_ok=True)
    Relocation(str(root), frozenset(texts), binaries).write(bundle.relocation)
    return sorted(stuck)


def _walk(root: Path, links: bool) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            path = Path(folder, name)
            if path.is_symlink() == links and (links or path.is_file()):
                yield path
