"""Copying the build machine's shared libraries into an interpreter that needs them ("vendoring",
as auditwheel does for wheels), so the bundle runs on a server that lacks them."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bundler.build import floor, trim
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
    users: dict[str, Path] = field(default_factory=dict)  # soname -> a file that loads it


def needed(files: list[Path], prefix: Path, own: set[Path] | None = None) -> Needed:
    """Every non-system library `files` (of the CPython at `prefix`, resolved where they are,
    with their own RUNPATHs) load, directly or through each other. Its own are those under
    `prefix`, or the files in `own` (a distribution's Python, whose prefix is everyone's)."""
    found = Needed()
    inside = prefix.resolve()
    for path in files:
        for soname, where in resolve(path).items():
            found.users.setdefault(soname, path)
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


def within_floor(libs: Needed, glibc: floor.Version | None,
                 log: Callable[[str], None]) -> dict[str, Path]:
    """The host libraries that need no more than the floor. One that needs more is left to the
    servers when every server of the floor has it (elf.is_expected, the rule `verify` applies);
    else the build stops: a bundle that lacks it would fail `verify` and, where it is loaded,
    the server."""
    if glibc is None:
        return dict(libs.host)
    kept = {}
    for soname, path in sorted(libs.host.items()):
        need = floor.needs([path]).get(path, ())
        if need <= glibc:
            kept[soname] = path
            continue
        if elf.is_expected(soname, glibc):
            log(f"  not vendored: {soname} from {path} needs glibc {floor.text(need)}, above the "
                f"floor {floor.text(glibc)}; every server of glibc {floor.text(glibc)} has its own")
            continue
        user = libs.users.get(soname)
        part = trim.part_of(user) if user else None
        raise BundlerError(
            f"{soname} ({path}), loaded by {_loaded_by(soname, user, libs)}, needs glibc "
            f"{floor.text(need)}, above [bundle] glibc = {floor.text(glibc)}, and servers of that "
            f"glibc need not have it: raise [bundle] glibc to {floor.text(need)}, use a standalone "
            f"CPython (python = \"3.12\": built for glibc {floor.text(floor.STANDALONE_FLOOR)}, it "
            "carries its own libraries), or "
            + (f"leave {part} out of keep" if part else "a CPython built without the module that "
               "loads it" + (f" ({user.name})" if user else "")))
    return kept


def _loaded_by(soname: str, user: Path | None, libs: Needed) -> str:
    """"libfontconfig.so.1 for _tkinter.cpython-311-x86_64-linux-gnu.so": the library (or the
    file) that needs `soname`, and the copied file whose dependencies bring it."""
    if user is None:
        return "a file of the interpreter"
    direct = next((name for name, path in sorted({**libs.own, **libs.host}.items())
                   if (info := elf.read(path)) is not None and soname in info.needed), None)
    loaded = elf.read(user)
    if direct is None or (loaded is not None and soname in loaded.needed):
        return user.name
    return f"{direct} for {user.name}"
