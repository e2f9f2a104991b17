"""Debian roots made with debootstrap (cached under ~/.cache by their make.sh) and the one way
tests run something inside them."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def made_root(make: Path, *args: str) -> Path:
    """Run `make` (made once, then reused) and return the cache folder it prints; skip where
    a debootstrap root cannot be made."""
    if os.geteuid() != 0:
        pytest.skip("a debootstrap root and chroot need root")
    missing = [t for t in ("debootstrap", "chroot", "unshare", "flock") if not shutil.which(t)]
    if missing:
        pytest.skip(f"not installed here: {', '.join(missing)} (.ci/run installs debootstrap)")
    done = subprocess.run([str(make), *args], capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, f"{make} failed:\n{done.stderr}"
    return Path(done.stdout.strip().splitlines()[-1])


@contextmanager
def folder_in(root: Path, name: str) -> Iterator[tuple[Path, str]]:
    """A fresh folder under the root's /opt: (its path here, its path there); removed
    afterwards, so the cached root stays as it was made."""
    here = root / "opt" / f"{name}-{os.getpid()}"
    shutil.rmtree(here, ignore_errors=True)
    here.mkdir(parents=True)
    try:
        yield here, f"/opt/{here.name}"
    finally:
        shutil.rmtree(here, ignore_errors=True)


def inside(root: Path, script: str, timeout: float = 600,
           **env: str) -> subprocess.CompletedProcess[str]:
    """Run `script` in the root, in new mount and pid namespaces with their own /proc ($ORIGIN
    needs it) and the machine's /dev (pseudo-terminals): every process it starts ends with it.
    The root is a mount point there, as a real system's is, so `unshare -m` works inside."""
    r = shlex.quote(str(root))
    setup = (f"mount --bind {r} {r} && mount --rbind /dev {r}/dev && mount -t proc proc {r}/proc"
             f' && exec chroot {r} /bin/sh -c "$0"')
    return subprocess.run(["unshare", "-m", "-p", "-f", "sh", "-c", setup, script],
                          capture_output=True, text=True, timeout=timeout,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", **env})
