"""What the dynamic loader needs to know about an ELF file: the libraries it needs, where it
looks for them, and the glibc symbol versions it requires."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bundler import fsutil

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


# What the base system of every Linux server with glibc carries besides glibc itself: soname ->
# the oldest floor ([bundle] glibc) from which every server has it. A bundle need not carry these
# (a copied CPython still gets its own copy when one fits the floor), and `verify` does not ask
# for them; the build stops on a library above the floor that is not here (build/hostlibs.py).
# Conservative on purpose:
# - zlib: Priority "required" in Debian and Ubuntu (dpkg links it), in the minimal images of RHEL,
#   CentOS, Fedora, SUSE and Amazon Linux (rpm links it), since glibc 2.5 (CentOS 5); every
#   manylinux policy (PEP 513, 599, 600) lets wheels link it from the system;
# - not here, though most servers have them: libexpat, libbz2, liblzma, libffi, libuuid, ncurses
#   (libtinfo.so.5 on CentOS 7, .6 from RHEL 8), OpenSSL (1.0, 1.1 or 3 by release): minimal and
#   container images lack one or another.
# glibc's own libraries (_SYSTEM) are on every server of their glibc; one that came later
# (libmvec in 2.22, libc_malloc_debug in 2.34) is only needed by files that need that glibc's
# symbol versions, which the floor check holds. (libcrypt.so.1, glibc's until 2.38 and libxcrypt's
# since, is in Debian's, Ubuntu's and SUSE's base; RHEL 9 and Fedora carry libcrypt.so.2 and ship
# .1 in libxcrypt-compat: only the deprecated crypt module loads it.)
BASE_SYSTEM: dict[str, tuple[int, ...]] = {"libz.so.1": (2, 5)}
OLDEST_FLOOR = (2, 5)  # the oldest [bundle] glibc a spec may declare


def is_system(soname: str) -> bool:
    """Never copied into a bundle."""
    return soname in _SYSTEM or soname.startswith(("ld-linux", "ld64.so", "libnss_"))


def is_expected(soname: str, floor: tuple[int, ...] = ()) -> bool:
    """On every server whose glibc is at least `floor` (() when no floor is declared: the
    oldest), so a bundle need not carry it: the one rule of the build and `verify`."""
    since = BASE_SYSTEM.get(soname)
    return is_system(soname) or (since is not None and max(floor, OLDEST_FLOOR) >= since)


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
    for folder, dirs, files in fsutil.walk(root):
        here = Path(folder)
        dirs.sort()
        for name in sorted(files):
            path = here / name
            if not path.is_symlink() and is_elf(path):
                found.append(path)
    return found
