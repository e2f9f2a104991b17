"""A real conda environment, made offline: conda packages built here (a Python, and a small C
tool with its data path compiled in, as openssl or ncurses have), indexed as a local channel,
then solved and installed by py-rattler, a real conda installer.

Conda channels are out of reach from this machine, so the Python package is this machine's
CPython copied by bundler itself (libraries vendored), with its prefix written as the
placeholder conda packages carry and installers replace.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bundler.build.interpreters import BuildContext, CopiedCPython, probe

# conda-build's own placeholders are this long, so that binaries can take any install prefix.
PLACEHOLDER = "/opt/conda-bld/_h_env_" + "placehold_" * 18
GREET_C = r"""
#include <stdio.h>
int main(void) {
    static const char path[] = GREET_DATA;
    FILE *f = fopen(path, "r");
    char line[256];
    if (!f) { fprintf(stderr, "greet: cannot open %s\n", path); return 1; }
    if (fgets(line, sizeof line, f)) fputs(line, stdout);
    fclose(f);
    return 0;
}
"""
GREETING = "hello from a relocated conda package\n"


def _package(root: Path, name: str, version: str, out: Path,
             prefixed: dict[str, str] | None = None) -> None:
    """Write root/info/ and pack root as out/NAME-VERSION-0.conda. `prefixed`: file -> mode
    ("text" or "binary") for files that hold PLACEHOLDER."""
    from conda_package_handling import api

    prefixed = prefixed or {}
    entries = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink()):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            entries.append({"_path": rel, "path_type": "softlink"})
            continue
        data = path.read_bytes()
        entry = {"_path": rel, "path_type": "hardlink", "size_in_bytes": len(data),
                 "sha256": hashlib.sha256(data).hexdigest()}
        if rel in prefixed:
            entry.update(prefix_placeholder=PLACEHOLDER, file_mode=prefixed[rel])
        entries.append(entry)
    info = root / "info"
    info.mkdir()
    (info / "paths.json").write_text(json.dumps({"paths": entries, "paths_version": 1}))
    (info / "files").write_text("".join(e["_path"] + "\n" for e in entries))
    (info / "index.json").write_text(json.dumps({
        "name": name, "version": version, "build": "0", "build_number": 0, "depends": [],
        "subdir": "linux-64", "platform": "linux", "arch": "x86_64", "license": "MIT",
        "timestamp": int(time.time() * 1000)}))
    files = [p.relative_to(root).as_posix() for p in root.rglob("*")
             if p.is_file() or p.is_symlink()]
    api.create(str(root), files, f"{name}-{version}-0.conda", out_folder=str(out),
               compression_level=1)


def python_package(work: Path, channel: Path) -> str:
    """This machine's CPython as a conda package; returns its version."""
    info = probe(Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}")
    root = work / "python"
    CopiedCPython(info).materialize(BuildContext(spec_folder=work), root)
    for cache in list(root.rglob("__pycache__")):
        shutil.rmtree(cache)
    here = os.fsencode(root)
    prefixed = {}
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and here in (data := path.read_bytes()):
            assert b"\0" not in data, path  # bundler wrote binaries' prefix out already
            path.write_bytes(data.replace(here, PLACEHOLDER.encode()))
            prefixed[path.relative_to(root).as_posix()] = "text"
    _package(root, "python", info.version, channel, prefixed)
    return info.version


def greet_package(work: Path, channel: Path) -> None:
    """A C tool that prints a file from its package's share/: the path is compiled in."""
    root = work / "greet"
    (root / "bin").mkdir(parents=True)
    (root / "share" / "greet").mkdir(parents=True)
    (root / "share" / "greet" / "message.txt").write_text(GREETING)
    source = work / "greet.c"
    source.write_text(GREET_C)
    define = f'-DGREET_DATA="{PLACEHOLDER}/share/greet/message.txt"'
    subprocess.run(["gcc", "-O2", define, "-o", str(root / "bin" / "greet"), str(source)],
                   check=True)
    _package(root, "greet", "1.0", channel, {"bin/greet": "binary"})


def make_env(work: Path, prefix: Path) -> str:
    """Build the packages, index them, install them into `prefix`; returns Python's version."""
    import rattler
    from rattler.index import index_fs

    channel = work / "channel"
    (channel / "noarch").mkdir(parents=True)
    (channel / "linux-64").mkdir()
    version = python_package(work / "pkg", channel / "linux-64")
    greet_package(work / "pkg", channel / "linux-64")

    async def install() -> None:
        await index_fs(channel)
        records = await rattler.solve([rattler.Channel(channel.as_uri())], ["python", "greet"],
                                      platforms=["linux-64", "noarch"])
        await rattler.install(records, prefix, cache_dir=work / "pkgs", show_progress=False)

    asyncio.run(install())
    shutil.rmtree(work / "pkg")
    return version
