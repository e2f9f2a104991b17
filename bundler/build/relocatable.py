"""Making a staged bundle relocatable: links inside it relative, scripts started by a launcher that
finds their interpreter next to them, and the record of every file that names the build's path
(bundle/relocation.py rewrites those where the bundle is unpacked)."""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from bundler.bundle.records import Relocation
from bundler.bundle.safetree import Overlay
from bundler.bundle.tree import Bundle
from bundler.errors import BundlerError
from bundler.fsutil import shared_file_key, tree_entries, write_atomic

# Compiled bytecode names its source path, but the import system corrects it on load.
SKIP_SUFFIXES = (".pyc",)
# First lines of a Python script that run it with the interpreter found relative to the script.
_SH_LAUNCHER = """#!/bin/sh
'''exec' "$(dirname -- "$(readlink -f -- "$0")")/{rel}" "$0" "$@"
' '''
"""


class RootSearch:
    """Which files of a staging tree hold its root. The files of build cache entries (hard links,
    never written in place) are remembered in `memo` by whether they hold `marker`, a part of
    every staging root's path: a file without it cannot hold this build's root either."""

    def __init__(self, root: Path, marker: str, memo: MutableMapping[str, Any] | None) -> None:
        self.needle = os.fsencode(root)
        self.marker = os.fsencode(marker) if memo is not None and marker in str(root) else b""
        self.memo = memo if memo is not None else {}

    def holds(self, path: str) -> bool:
        key = shared_file_key(path) if self.marker else None
        if key is not None and self.memo.get(key) is False:
            return False
        with open(path, "rb") as f:
            data = f.read()
        if key is not None:
            self.memo[key] = self.marker in data
        return self.needle in data


def make_symlinks_relative(root: Path) -> None:
    """Turn absolute symlinks that point inside `root` into relative ones; refuse ones pointing out,
    and relative ones that lead out once followed (`..` above the root, through other links)."""
    top = str(root) + "/"
    links = []
    for item in tree_entries(root):
        if not item.is_symlink():
            continue
        links.append(item.path[len(top):])
        target = os.readlink(item.path)
        if not os.path.isabs(target):
            continue
        if not target.startswith(top):
            raise BundlerError(f"{item.path[len(top):]} links to {target}, outside the bundle")
        os.unlink(item.path)
        os.symlink(os.path.relpath(target, os.path.dirname(item.path)), item.path)
    tree = Overlay(root)
    for rel in links:
        if tree.resolve(rel) is None:
            raise BundlerError(f"{rel} links to {os.readlink(root / rel)}, which leads out of the "
                               "bundle (or round in a loop)")


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


def record(bundle: Bundle, capacity: dict[str, int] | None = None,
           search: RootSearch | None = None) -> list[str]:
    """Find the files that contain the bundle's root and write the relocation record: text
    files, and binaries whose `capacity` (the longest root their NUL-padded strings can hold)
    is known. Return the binaries that contain the root without a known capacity: those cannot
    be relocated."""
    root = bundle.root
    search = search or RootSearch(root, "", None)
    top, meta = str(root) + "/", str(bundle.meta) + "/"
    capacity = capacity or {}
    texts: list[str] = []
    binaries: dict[str, int] = {}
    stuck: list[str] = []
    for item in tree_entries(root):
        path = item.path
        if (not item.is_file(follow_symlinks=False) or path.endswith(SKIP_SUFFIXES)
                or path.startswith(meta) or not search.holds(path)):
            continue
        rel = path[len(top):]
        if b"\x00" not in Path(path).read_bytes():
            texts.append(rel)
        elif rel in capacity:
            binaries[rel] = capacity[rel]
        else:
            stuck.append(rel)
    bundle.meta.mkdir(parents=True, exist_ok=True)
    Relocation(str(root), frozenset(texts), binaries).write(bundle.relocation)
    return sorted(stuck)


def drop_bytecode_naming(root: Path, search: RootSearch) -> None:
    """Bytecode that names the build path (pip compiles the scripts it installs; _sysconfigdata
    holds prefixes as constants), or whose source does (its hash then differs from build to
    build, and it goes stale when the relocation rewrites the source): these caches go, and
    Python compiles them again where the bundle runs."""
    stale = []
    for item in tree_entries(root):
        folder, name = os.path.split(item.path)
        if not name.endswith(".pyc") or os.path.basename(folder) != "__pycache__":
            continue
        source = os.path.join(os.path.dirname(folder), name.split(".", 1)[0] + ".py")
        if search.holds(item.path) or (os.path.isfile(source) and search.holds(source)):
            stale.append(item.path)
    for path in stale:
        os.unlink(path)
    for folder in {os.path.dirname(p) for p in stale}:
        if not os.listdir(folder):
            os.rmdir(folder)
