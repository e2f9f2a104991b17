"""Native files in code versions: a C extension keeps the RUNPATH its build machine gave it
(setuptools under pyenv writes `-Wl,-rpath,<prefix>/lib`), which points out of the bundle.

At build the RUNPATH of each such file is rewritten: to `$ORIGIN`-relative folders of the bundle
that hold the libraries it needs (an interpreter's lib/), or dropped where the system's loader
finds them. What neither the bundle nor the system has is reported; `bundler check` says the same
before the build, from the source folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from bundler.build import hostlibs
from bundler.bundle import elf
from bundler.runner import run

SYSTEM_DIRS = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib")


def outside_runpaths(folder: Path, within: Path | None = None) -> dict[Path, list[str]]:
    """The ELF files under `folder` whose RUNPATH (or RPATH) leaves `within` (default: the
    folder itself), with the folders outside."""
    found = {}
    for path in elf.elf_files(folder):
        info = elf.read(path)
        if info is None:
            continue
        out = [d for d in _expanded(info, path) if not _under(d, [str(within or folder)])]
        if out:
            found[path] = out
    return found


def _expanded(info: elf.ElfInfo, path: Path) -> list[str]:
    return [os.path.normpath(d) for d in info.search_dirs(path)]


def unresolvable(path: Path, carried: list[Path]) -> list[str]:
    """The libraries `path` needs that only its RUNPATH provides: neither the system's folders
    nor `carried` (folders whose libraries the bundle will hold) have them."""
    folders = [*SYSTEM_DIRS, *map(str, carried)]
    return sorted(soname for soname, where in hostlibs.resolve(path).items()
                  if not elf.is_system(soname) and (
                      where is None or not (_under(where, folders)
                                            or _under(os.path.realpath(where), folders))))


def _under(path: str, folders: list[str]) -> bool:
    return any(path.startswith(folder.rstrip("/") + "/") for folder in folders)


def fix_runpaths(folder: Path, root: Path, lib_dirs: list[Path], patchelf: str) -> list[str]:
    """Rewrite the RUNPATHs under `folder` that leave the bundle at `root` (see the module);
    return a warning for each library that no folder of the bundle and no system folder
    provides."""
    warnings = []
    for path, dirs in outside_runpaths(folder, root).items():
        info = elf.read(path)
        assert info is not None
        wanted = [d for d, real in zip(info.runpath, _expanded(info, path))
                  if d and _under(real, [str(root)])]
        for soname in info.needed:
            holder = next((d for d in lib_dirs if (d / soname).exists()), None)
            if holder is not None:
                entry = "$ORIGIN/" + os.path.relpath(holder, path.parent)
                if entry not in wanted:
                    wanted.append(entry)
        if wanted:
            run([patchelf, "--set-rpath", ":".join(wanted), path], what=f"patchelf {path.name}")
        else:
            run([patchelf, "--remove-rpath", path], what=f"patchelf {path.name}")
        rel = path.relative_to(folder.parent)
        warnings += [f"{rel} needs {soname}, which the bundle does not carry and no system "
                     f"folder holds (this machine has it in {', '.join(dirs)})"
                     for soname in unresolvable(path, lib_dirs)]
    return warnings
