"""Copying the build machine's shared libraries into an interpreter that needs them ("vendoring",
as auditwheel does for wheels), so the bundle runs on a server that lacks them."""

from __future__ import annotations

import os
import re
import shutil
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


def vendor(prefix: Path, libdir: Path, patchelf: str) -> tuple[list[str], list[str]]:
    """Copy every non-system library the ELF files under `prefix` load from outside it into
    `libdir`. Return (what was copied, what this machine does not have either).

    The copied libraries find each other through RUNPATH $ORIGIN; the interpreter's own files
    must already point their RUNPATH at `libdir`.
    """
    wanted: dict[str, Path] = {}
    absent: set[str] = set()
    for path in elf.elf_files(prefix):
        for soname, where in resolve(path).items():
            if elf.is_system(soname):
                continue
            if where is None:
                absent.add(f"{soname} (for {path.relative_to(prefix)})")
            elif not Path(where).resolve().is_relative_to(prefix.resolve()):
                wanted.setdefault(soname, Path(where).resolve())
    libdir.mkdir(parents=True, exist_ok=True)
    for soname, source in sorted(wanted.items()):
        target = libdir / soname
        shutil.copyfile(source, target)
        os.chmod(target, 0o755)
        info = elf.read(target)
        if info and any(n in wanted for n in info.needed):
            run([patchelf, "--set-rpath", "$ORIGIN", target], what=f"patchelf {soname}")
    return sorted(wanted), sorted(absent)
