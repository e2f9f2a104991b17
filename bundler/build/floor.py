"""The glibc floor: the oldest glibc a bundle's servers have ([bundle] glibc). What each
interpreter will need, predicted before a byte is copied; every ELF file that entered the bundle
checked against the floor; pip kept to the wheels the floor allows."""

from __future__ import annotations

import json
import platform
from collections import defaultdict
from collections.abc import Callable, Iterable, MutableMapping
from pathlib import Path
from typing import Any

from bundler.bundle import elf
from bundler.fsutil import shared_file_key

Version = tuple[int, ...]

# What a bundle's files need is the highest GLIBC_x.y symbol version of any of them.
# python-build-standalone's Linux builds (and conda-forge's packages) target glibc 2.17.
STANDALONE_FLOOR: Version = (2, 17)


def text(version: Version) -> str:
    return ".".join(map(str, version)) if version else "any"


def machine() -> str:
    return platform.machine()


def needs(files: Iterable[str | Path], memo: MutableMapping[str, Any] | None = None,
          key: Callable[[str | Path], str | None] = shared_file_key) -> dict[Path, Version]:
    """File -> the glibc it needs, for the ELF files among `files` that need one; `memo` keeps
    what files need by `key` (cache entries' files: fsutil.shared_file_key), from build to
    build."""
    found = {}
    for path in files:
        known = key(path) if memo is not None else None
        if known is not None and memo is not None and known in memo:
            glibc: Version = tuple(memo[known])
        else:
            info = elf.read(Path(path)) if elf.is_elf(path) else None
            glibc = info.glibc if info is not None else ()
            if known is not None and memo is not None:
                memo[known] = list(glibc)
        if glibc:
            found[Path(path)] = glibc
    return found


def highest(found: dict[Path, Version]) -> tuple[Version, Path | None]:
    if not found:
        return (), None
    path = max(found, key=lambda p: (found[p], str(p)))
    return found[path], path


def conda_floor(prefix: Path) -> Version:
    """The glibc a conda environment's packages declare they need (the `__glibc >=2.17`
    dependency conda-forge's packages carry)."""
    floor: Version = ()
    for record in (prefix / "conda-meta").glob("*.json"):
        try:
            depends = json.loads(record.read_text(encoding="utf-8")).get("depends", [])
        except (OSError, ValueError):
            continue
        for dep in depends:
            name, _, rest = str(dep).partition(" ")
            if name == "__glibc" and rest.startswith(">="):
                number = rest[2:].split(",")[0]
                floor = max(floor, elf.parse_version(number))
    return floor


def offenders(root: Path, found: dict[Path, Version], floor: Version) -> list[str]:
    """One line per group of files (a folder, or a package in site-packages) needing more than
    `floor`, then what to do instead."""
    groups: dict[str, list[tuple[str, Version]]] = defaultdict(list)
    for path, version in found.items():
        if version <= floor:
            continue
        rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
        group = _group(rel)
        groups[group].append((rel[len(group):].lstrip("/") or rel, version))
    lines, advice = [], []
    for group, files in sorted(groups.items()):
        files.sort(key=lambda f: (f[1], f[0]), reverse=True)
        shown = ", ".join(f"{name} needs {text(v)}" for name, v in files[:3])
        more = f" and {len(files) - 3} more" if len(files) > 3 else ""
        lines.append(f"{group}: {shown}{more}")
        what = _advice(group, floor)
        if what not in advice:
            advice.append(what)
    return lines + [f"to run on glibc {text(floor)}: {a}" for a in advice] if lines else []


def _group(rel: str) -> str:
    parts = rel.split("/")
    if "site-packages" in parts:
        at = parts.index("site-packages")
        return "/".join(parts[:at + 2])
    return "/".join(parts[:-1]) + "/" if len(parts) > 1 else rel


def _advice(group: str, floor: Version) -> str:
    if "site-packages/" in group:
        return (f"install wheels built for it (manylinux_{floor[0]}_{floor[1]} or older) or lower "
                "versions of those packages, or raise [bundle] glibc")
    return ("use an interpreter made for old servers (python = \"3.12\": a python-build-standalone "
            "CPython, glibc 2.17) or one built on such a system, or raise [bundle] glibc")


MANYLINUX_HOOK = """\
# Written by bundler for one pip run: wheels may need glibc {major}.{minor} at most (PEP 600).
def manylinux_compatible(tag_major, tag_minor, tag_arch):
    return (tag_major, tag_minor) <= ({major}, {minor})


manylinux1_compatible = manylinux_compatible(2, 5, "")
manylinux2010_compatible = manylinux_compatible(2, 12, "")
manylinux2014_compatible = manylinux_compatible(2, 17, "")
"""


def manylinux_hook(floor: Version) -> str:
    """The `_manylinux` module pip's tag selection asks (PEP 600) which manylinux wheels this
    system takes: none newer than the floor."""
    return MANYLINUX_HOOK.format(major=floor[0], minor=floor[1])
