"""Will this bundle run on another machine? Libraries its ELF files need that it does not carry,
the oldest glibc it can run on, and files that still name a path of the build machine."""

from __future__ import annotations

import os
import platform
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from bundler import fsutil
from bundler.bundle import elf
from bundler.bundle.records import Origin, Platform, Relocation
from bundler.bundle.tree import META, Bundle


@dataclass
class Report:
    elf_files: int = 0
    carried: int = 0                       # non-system libraries found inside the bundle
    glibc: tuple[int, ...] = ()
    glibc_file: str = ""
    missing: dict[str, list[str]] = field(default_factory=dict)   # soname -> needing files
    outside: dict[str, list[str]] = field(default_factory=dict)   # RUNPATH out of the bundle
    leaks: dict[str, list[str]] = field(default_factory=dict)     # file -> build paths in it
    notes: dict[str, list[str]] = field(default_factory=dict)     # binary -> source prefixes
    platform: Platform | None = None       # what the build recorded: machine, need, floor
    here: tuple[str, tuple[int, ...]] = ("", ())  # this machine: architecture, glibc

    @property
    def floor(self) -> tuple[int, ...]:
        return elf.parse_version(self.platform.floor) if self.platform and self.platform.floor else ()

    @property
    def above_floor(self) -> bool:
        return bool(self.floor) and self.glibc > self.floor

    @property
    def clean(self) -> bool:
        return not (self.missing or self.outside or self.leaks or self.above_floor)

    def lines(self) -> list[str]:
        glibc = ".".join(map(str, self.glibc)) if self.glibc else "any"
        floor = self.platform.floor if self.platform else ""
        out = [f"glibc     needs {glibc} or newer"
               + (f" (for {self.glibc_file})" if self.glibc_file else "")
               + (f"; floor {floor} ([bundle] glibc)" if floor else "; no floor declared")
               + (": ABOVE THE FLOOR" if self.above_floor else "")]
        machine, have = self.here
        target = self.platform.machine if self.platform else "not recorded"
        fits = "" if not self.platform else (
            ": it cannot run here" if machine != target or (have and have < self.glibc) else
            ": it can run here")
        out.append(f"target    {target}; this machine {machine}, glibc "
                   f"{'.'.join(map(str, have)) if have else 'unknown'}{fits}")
        out.append(f"libraries {self.elf_files} ELF files; {self.carried} non-system libraries, "
                   f"{'all' if not self.missing else 'not all'} inside the bundle")
        for soname, users in sorted(self.missing.items()):
            out.append(f"missing   {soname}, needed by {_some(users)}")
        for rel, dirs in sorted(self.outside.items()):
            out.append(f"outside   {rel} looks for libraries in {', '.join(dirs)}")
        for rel, paths in sorted(self.leaks.items()):
            out.append(f"leak      {rel} contains {', '.join(paths)}")
        if not self.leaks:
            out.append("leaks     no file names a path of the build machine")
        for rel, paths in sorted(self.notes.items()):
            out.append(f"note      {rel} has {', '.join(paths)} compiled in (a default, not "
                       "used to load libraries)")
        return out


def _some(items: list[str], limit: int = 3) -> str:
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(sorted(items)[:limit]) + more


def check(bundle: Bundle) -> Report:
    report = Report(platform=Platform.read(bundle.platform), here=(platform.machine(), elf.host_glibc()))
    elf_files = _check_leaks(bundle, report)
    _check_libraries(bundle.root, elf_files, report)
    return report


def _check_libraries(root: Path, files: list[Path], report: Report) -> None:
    names = {p.name for p in files}
    report.elf_files = len(files)
    carried: set[str] = set()
    missing: dict[str, list[str]] = defaultdict(list)
    for path in files:
        info = elf.read(path)
        if info is None:
            continue
        rel = path.relative_to(root).as_posix()
        if info.glibc > report.glibc:
            report.glibc, report.glibc_file = info.glibc, rel
        dirs = info.search_dirs(path)
        outside = [str(d) for d in dirs if not _inside(d, root)]
        if outside:
            report.outside[rel] = outside
        for soname in info.needed:
            if elf.is_expected(soname, report.floor):
                continue
            if any(_inside(d, root) and (d / soname).exists() for d in dirs) or \
                    (soname.startswith("libpython") and soname in names) or \
                    (path.parent / soname).exists():
                # on its search path; libpython: loaded by the executable; a sibling: a wheel's
                # .libs/ folder, found through the DT_RPATH of the module that loads them all
                carried.add(soname)
            else:
                missing[soname].append(rel)
    report.carried = len(carried)
    report.missing = dict(missing)


def _inside(path: Path, root: Path) -> bool:
    return os.path.normpath(path).startswith(str(root) + os.sep) or Path(path) == root


def build_paths(bundle: Bundle) -> tuple[dict[str, str], dict[str, str]]:
    """The build machine's paths the build recorded, each with what it was: (paths no file
    may name, the source interpreters' prefixes)."""
    origin = Origin.read(bundle.origin)
    if origin is None:
        return {}, {}
    build = {origin.staging: "the build's staging folder", origin.project: "the project"}
    sources = {path: f"the source of interpreter {name}" for name, path in origin.sources.items()}
    return build, sources


def _check_leaks(bundle: Bundle, report: Report) -> list[Path]:
    """Files naming a path of the build machine; returns the ELF files, so that each file is
    read once. The relocation's own files name the bundle's recorded root (bin/start rewrites
    them). A source interpreter's prefix compiled into a binary (libpython keeps its configure
    --prefix as a last-resort default) is only noted: it is not used to find libraries, which
    the RUNPATH check covers."""
    root = bundle.root
    skip = (bundle.layout.log, bundle.layout.run, META)
    build, sources = build_paths(bundle)
    reloc = Relocation.read(bundle.relocation)
    recorded = os.fsencode(reloc.prefix)
    needles = [(os.fsencode(p), p, False) for p in build if p != "/"]
    needles += [(os.fsencode(p), p, True) for p in sources if p not in ("/", "/usr")]
    elf_files = []
    for folder, dirs, files in fsutil.walk(root):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if (here / d).relative_to(root).as_posix() not in skip)
        for name in sorted(files):
            path = here / name
            if path.is_symlink():
                continue
            rel = path.relative_to(root).as_posix()
            data = path.read_bytes()
            if data.startswith(elf.MAGIC):
                elf_files.append(path)
            if rel in reloc:
                data = data.replace(recorded, b"")
            binary = b"\x00" in data
            for needle, text, source in needles:
                if needle in data:
                    found = report.notes if source and binary else report.leaks
                    found.setdefault(rel, []).append(text)
    return elf_files
