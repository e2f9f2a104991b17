"""Copying the build machine's shared libraries into an interpreter that needs them ("vendoring",
as auditwheel does for wheels), so the bundle runs on a server that lacks them."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from bundler.bundle import elf
from bundler.errors import BundlerError
from bundler.runner import ToolMissing, call, run

_LDD_LINE = re.compile(r"^\s*(\S+)\s+=>\s+(not found|\S+)")


def resolve(path: Path) -> dict[str, str | None]:
    """soname -> the file the build machine's loader picks for it (None: not found), for the
    whole dependency tree of `path`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LD_")}
    try:
        out = call(["ldd", path], what="ldd", env=env, timeout=60, merge=False).output
    except ToolMissing as exc:
        raise BundlerError("ldd not found: vendoring host libraries needs glibc's ldd "
                           "(package libc-bin), or set vendor_libs = false") from exc
    found: dict[str, str | None] = {}
    for line in out.splitlines():
        match = _LDD_LINE.match(line)
        if match:
            found[match[1]] = None if match[2] == "not found" else match[2]
    return found


@dataclass
class Needed:
    """The libraries some ELF files load, by where the build machine's loader finds them."""

    own: dict[str, Path] = field(default_factory=dict)    # inside the interpreter's prefix
    host: dict[str, Path] = field(default_factory=dict)   # elsewhere on this machine
    absent: list[str] = field(default_factory=list)       # nowhere: "soname (for file)"


def needed(files: list[Path], prefix: Path, own: set[Path] | None = None) -> Needed:
    """Every non-system library `files` (of the CPython at `prefix`, resolved where they are,
    with their own RUNPATHs) load, directly or through each other. Its own are those under
    `prefix`, or the files in `own` (a distribution's Python, whose prefix is everyone's)."""
    found = Needed()
    inside = prefix.resolve()
    for path in files:
        for soname, where in resolve(path).items():
            if elf.is_system(soname) or soname in found.own or soname in found.host:
                continue
            if where is None:
                found.absent.append(f"{soname} (for {path.name})")
                continue
            real = Path(where).resolve()
            if real in own if own is not None else real.is_relative_to(inside):
                found.own[soname] = real
            else:
                found.host[soname] = real
    return found


def copy_libraries(libraries: dict[str, Path], libdir: Path, patchelf: str) -> None:
    """Copy each library into `libdir` under its soname; the copies find each other through
    RUNPATH $ORIGIN."""
    libdir.mkdir(parents=True, exist_ok=True)
    for soname, source in sorted(libraries.items()):
        target = libdir / soname
        if target.exists() or target.is_symlink():
            continue
        shutil.copyfile(source, target)
        os.chmod(target, 0o755)
        info = elf.read(target)
        if info and (info.runpath or any((libdir / n).exists() or n in libraries
                                         for n in info.needed)):
            run([patchelf, "--set-rpath", "$ORIGIN", target], what=f"patchelf {soname}")
