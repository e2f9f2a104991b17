"""Standalone CPython archives (python-build-standalone's `install_only` format, which uv uses):
unpacked once into bundler's cache, then copied into bundles like any CPython prefix."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from bundler.bundle.safetree import extract
from bundler.errors import BundlerError
from bundler.fsutil import sha256_file

SUFFIXES = (".tar.gz", ".tgz", ".tar.zst", ".tar.xz", ".tar.bz2", ".tar")


def is_archive(value: str) -> bool:
    return value.endswith(SUFFIXES)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "bundler" / "pythons"


def unpack(archive: Path) -> Path:
    """The prefix (the archive's one top-level folder, e.g. python/) unpacked from `archive`;
    reused when the same archive (by SHA-256) was unpacked before."""
    final = cache_dir() / sha256_file(archive)[:32]
    if not final.is_dir():
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=final.parent))
        try:
            extract(archive, staging)
            os.replace(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    tops = [p for p in final.iterdir() if p.is_dir() and (p / "bin").is_dir()]
    if len(tops) != 1:
        raise BundlerError(f"{archive} is not a standalone CPython archive: expected one folder "
                           "with bin/ inside (as python/ in python-build-standalone's "
                           "install_only archives)")
    return tops[0]
