"""A tiny bundle tree (one code version, its records and checksums) for tests of patches and
archives, and a snapshot of a tree that sees every byte, mode and link."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from bundler.bundle import integrity
from bundler.bundle.layout import load_layout
from bundler.bundle.tree import Bundle

MANIFEST = '''spec_version = 1
[bundle]
name = "tiny"
version = "1"
project = "app"
[base]
python = "current"
[code.v1]
path = "src"
[services.web]
command = "python -m web"
code = "v1"
[build.interpreters.base]
folder = "."
python = "bin/python3"
python_version = "3.11"
[build.code.v1]
folder = "app_v1"
'''


def make_tiny(root: Path, trusted_keys: str | None = None) -> Bundle:
    bundle = Bundle(root, load_layout())
    bundle.meta.mkdir(parents=True)
    bundle.layout.write(bundle.layout_record)
    bundle.relocation.write_text(json.dumps({"prefix": str(root), "files": []}))
    (root / "app_v1").mkdir()
    (root / "app_v1" / "web.py").write_text("print('v1')\n")
    (root / "etc" / "conf.d").mkdir(parents=True)
    (root / "etc" / "app").mkdir()
    (root / "etc" / "supervisord.conf").write_text("[supervisord]\n")
    (root / "log").mkdir()
    (root / "bundle.toml").write_text(MANIFEST)
    if trusted_keys is not None:
        bundle.trusted_keys.write_text(trusted_keys)
    integrity.write(bundle)
    bundle.lock_file.touch()
    return bundle


def files_of(root: Path) -> dict[str, bytes]:
    """The regular files under `root` and their bytes (the lock file aside)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "lock"}


def snapshot(root: Path) -> dict[str, tuple[str, int, bytes | str]]:
    """Everything under `root`, links not followed: kind, mode, and the bytes or link target."""
    found: dict[str, tuple[str, int, bytes | str]] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            st = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("link", 0, os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("dir", stat.S_IMODE(st.st_mode), "")
            else:
                found[rel] = ("file", stat.S_IMODE(st.st_mode), path.read_bytes())
    return found
