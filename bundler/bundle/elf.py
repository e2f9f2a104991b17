"""What the dynamic loader needs to know about an ELF file: the libraries it needs, where it
looks for them, and the glibc symbol versions it requires."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAGIC = b"\x7fELF"
_GLIBC = re.compile(r"^GLIBC_(\d+(?:\.\d+)*)$")

# Libraries every Linux with glibc has, that must come from the system (never copied into a
# bundle): glibc itself, the dynamic loader and the compiler runtime.
_SYSTEM = {
    "libc.so.6", "libm.so.6", "libdl.so.2", "librt.so.1", "libpthread.so.0", "libutil.so.1",
    "libresolv.so.2", "libanl.so.1", "libnsl.so.1", "libmvec.so.1", "libBrokenLocale.so.1",
    "libthread_db.so.1", "libc_malloc_debug.so.0", "libgcc_s.so.1", "libstdc++.so.6",
    "linux-vdso.so.1", "linux-gate.so.1",
    "libcrypt.so.1",  # glibc's until 2.39; distributions keep it (libxcrypt) as a system library
}


# Not part of glibc, but the manylinux policy lets wheels assume it, so wheels on PyPI link it
# from the system: a bundle is not faulted for it (a copied CPython still gets its own copy).
_ASSUMED = {"libz.so.1"}


def is_system(soname: str) -> bool:
    """Never copied into a bundle."""
    return soname in _SYSTEM or soname.startswith(("ld-linux", "ld64.so", "libnss_"))


def is_expected(soname: str) -> bool:
    """Not reported when a bundle does not carry it."""
    return is_system(soname) or soname in _ASSUMED


@dataclass(frozen=True)
class ElfInfo:
    needed: tuple[str, ...]
    runpath: tuple[str, ...]   # DT_RUNPATH, or DT_RPATH when there is no RUNPATH
    soname: str | None
    glibc: tuple[int, ...]     # the highest GLIBC_x.y version required, () for none

    def search_dirs(self, path: Path) -> list[Path]:
        origin = str(path.parent)
        return [Path(d.replace("${ORIGIN}", origin).replace("$ORIGIN", origin))
                for d in self.runpath if d]


def host_glibc() -> tuple[int, ...]:
    """This machine's glibc, e.g. (2, 36); () when it has none (musl)."""
    try:
        found = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        return ()
    return parse_version(found.partition(" ")[2])


def parse_version(text: str) -> tuple[int, ...]:
    """"2.31" -> (2, 31)."""
    return tuple(int(n) for n in text.split(".") if n.isdigit())


def is_elf(path: str | Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == MAGIC
    except OSError:
        return False


def read(path: Path) -> ElfInfo | None:
    """The dynamic-linking facts of `path`, or None when it is not a readable ELF file."""
    # here: pyelftools is slow to import, and most commands never parse an ELF file
    from elftools.common.exceptions import ELFError
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile
    from elftools.elf.gnuversions import GNUVerNeedSection

    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            needed: list[str] = []
            runpath: list[str] = []
            rpath: list[str] = []
            soname = None
            glibc: tuple[int, ...] = ()
            for section in elf.iter_sections():
                if isinstance(section, DynamicSection):
                    for tag in section.iter_tags():
                        kind = tag.entry.d_tag
                        if kind == "DT_NEEDED":
                            needed.append(_text(tag, "needed"))
                        elif kind == "DT_RUNPATH":
                            runpath += _text(tag, "runpath").split(":")
                        elif kind == "DT_RPATH":
                            rpath += _text(tag, "rpath").split(":")
                        elif kind == "DT_SONAME":
                            soname = _text(tag, "soname")
                elif isinstance(section, GNUVerNeedSection):
                    for _, auxiliaries in section.iter_versions():
                        for aux in auxiliaries:
                            match = _GLIBC.match(aux.name)
                            if match:
                                glibc = max(glibc, tuple(int(n) for n in match[1].split(".")))
    except (ELFError, OSError, ValueError, AssertionError):
        return None
    return ElfInfo(tuple(needed), tuple(runpath or rpath), soname, glibc)


def _text(tag: Any, name: str) -> str:
    """A string-valued dynamic tag (pyelftools sets these attributes per tag kind)."""
    return str(getattr(tag, name))


def elf_files(root: Path) -> list[Path]:
    """Every regular ELF file under `root` (symlinks not followed)."""
    found = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs.sort()
        for name in sorted(files):
            path = here / name
            if not path.is_symlink() and is_elf(path):
                found.append(path)
    return found
