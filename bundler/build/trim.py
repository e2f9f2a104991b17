"""What a copied CPython leaves out of a server bundle. Always: CPython's own test suite, caches,
static libraries and installed packages (a distribution's also its own packages and marker).
Unless `keep` names them (spec.model.KEEPABLE): tkinter, with turtle, which runs on it, and the
_tkinter module, so that the Tcl/Tk and X11 libraries only it loads are neither vendored nor
shipped (a headless server has no display); IDLE (idlelib) and the turtle demos (turtledemo),
which run on tkinter and keep it when kept; ensurepip's bundled pip and setuptools wheels, gone
once the build has bootstrapped pip from them (the server installs nothing)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from bundler.build import distro
from bundler.spec.model import KEEPABLE

# Stdlib folders that only CPython's own test suite uses.
TEST_DIRS = {"test", "tests", "idle_test"}
# The entries at the top of the stdlib each keepable part is.
_PARTS = {"tkinter": ("tkinter", "turtle.py"), "idlelib": ("idlelib",),
          "turtledemo": ("turtledemo",)}
# Extension modules (in lib-dynload) of each part.
_MODULES = {"tkinter": ("_tkinter",)}
# The Tcl/Tk script libraries a prefix may carry in its lib/ (python-build-standalone's do).
_TCL_PREFIXES = ("tcl8", "tk8", "tcl9", "tk9", "itcl", "thread", "tdbc")


def left_out(keep: Iterable[str]) -> frozenset[str]:
    """The keepable parts a copy leaves out; idlelib and turtledemo keep tkinter, which they run on."""
    kept = set(keep)
    if kept & {"idlelib", "turtledemo"}:
        kept.add("tkinter")
    return frozenset(KEEPABLE) - kept


def modules(left: frozenset[str]) -> set[str]:
    """The extension modules left out with `left`."""
    return {m for part in left for m in _MODULES.get(part, ())}


def is_left_out(path: Path, left: frozenset[str]) -> bool:
    """Whether an ELF file of the source (an extension module) stays out of the copy."""
    return path.name.split(".")[0] in modules(left)


def part_of(path: Path) -> str | None:
    """The keepable part an extension module belongs to ("tkinter" for _tkinter...so)."""
    name = path.name.split(".")[0]
    return next((part for part, names in _MODULES.items() if name in names), None)


def described(left: frozenset[str]) -> str:
    """What `left` means, for `bundler check` and the build's log."""
    words = {"tkinter": "tkinter (turtle, Tcl/Tk, X11)", "idlelib": "idlelib",
             "turtledemo": "turtledemo", "ensurepip": "ensurepip's wheels"}
    return ", ".join(words[p] for p in KEEPABLE if p in left)


def copy_stdlib(src: Path, dest: Path, left: frozenset[str], system: bool = False) -> None:
    """The standard library without what the module says; a distribution's also without its own
    packages (dist-packages), the EXTERNALLY-MANAGED marker that makes pip refuse to install, and
    links that lead out of it."""
    top = {name for part in left for name in _PARTS.get(part, ())} | TEST_DIRS
    drop = extension_filter(left)

    def ignore(folder: str, names: list[str]) -> set[str]:
        here = Path(folder)
        skipped = {n for n in names if n == "__pycache__"} | drop(folder, names)
        if system:
            skipped |= {n for n in names if n in distro.LEFT_OUT
                        or ((here / n).is_symlink() and not (here / n).resolve().is_relative_to(src))}
        if here == src:
            skipped |= {n for n in names if n in top}
        elif here.parent == src:
            skipped |= {n for n in names if n in TEST_DIRS}
            if here.name == "site-packages":
                skipped |= set(names)
            if here.name.startswith("config-"):
                skipped |= {n for n in names if n.endswith(".a")}
        return skipped

    shutil.copytree(src, dest, symlinks=True, ignore=ignore)


def extension_filter(left: frozenset[str]) -> Callable[[str, list[str]], set[str]]:
    """A copytree `ignore` that leaves out the extension modules of `left` in lib-dynload."""
    gone = modules(left)

    def ignore(folder: str, names: list[str]) -> set[str]:
        if Path(folder).name != "lib-dynload":
            return set()
        return {n for n in names if n.endswith(".so") and n.split(".")[0] in gone}

    return ignore


def copy_tcl_libraries(prefix: Path, dest: Path, left: frozenset[str]) -> list[str]:
    """A kept tkinter's Tcl/Tk script libraries (lib/tcl8.6, lib/tk8.6, ...), when its prefix has
    them; return their names."""
    if "tkinter" in left or not (prefix / "lib").is_dir():
        return []
    found = sorted(p for p in (prefix / "lib").iterdir()
                   if p.is_dir() and not p.is_symlink() and p.name.startswith(_TCL_PREFIXES))
    for folder in found:
        shutil.copytree(folder, dest / "lib" / folder.name, symlinks=True)
    return [p.name for p in found]


def drop_bundled_wheels(folder: Path, left: frozenset[str]) -> list[str]:
    """ensurepip's wheels out of the copied interpreter at `folder` (once pip was installed from
    them, or was not needed); return the names of those removed."""
    if "ensurepip" not in left:
        return []
    wheels = sorted(folder.glob("lib*/python*/ensurepip/_bundled/*.whl"))
    for wheel in wheels:
        wheel.unlink()
    return [w.name for w in wheels]
