"""A distribution's own CPython (Debian's and Ubuntu's /usr/bin/python3.X, RHEL's and Fedora's)
made into a prefix of its own.

Its files lie across the system's /usr with every other package's: the executable in /usr/bin,
the stdlib in /usr/lib/python3.X (lib64 on RHEL and Fedora), the C headers in /usr/include.
interpreters.CopiedCPython gathers each part at the same place relative to the new prefix, where
the copy finds it from its own location. What differs from upstream CPython are the
distribution's patches that install into the system, and they are made the copy's own here:
- Debian's sysconfig installs into `posix_local` (local/lib/python3.X/dist-packages) and its
  site reads dist-packages: the copy's sysconfig gets upstream's scheme back, and a
  sitecustomize (site itself is frozen into the interpreter) its own site-packages;
- the distribution's packages (dist-packages) and its EXTERNALLY-MANAGED marker stay out;
- _sysconfigdata and the config Makefile name the copy's folders, not /usr/lib/python3.X;
- Debian's pyconfig.h, which includes a multiarch one, becomes that one.
Parts packaged apart (ensurepip, distutils, lib2to3; tkinter when kept: trim.py) come along when
installed.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from bundler.errors import BundlerError
from bundler.runner import call, clean_env

if TYPE_CHECKING:
    from bundler.build.interpreters import PythonInfo

# What a distribution keeps in its stdlib folder that is not the stdlib.
# (Debian: _distutils_system_mod.py applies its install layout to setuptools' distutils)
LEFT_OUT = {"dist-packages", "EXTERNALLY-MANAGED", "sitecustomize.py", "_distutils_system_mod.py"}
_SYSCONFIG_ANCHOR = "\ndef get_paths("
_MULTIARCH_INCLUDE = re.compile(r'^#\s*include\s*<([^>]+/pyconfig\.h)>', re.M)


def moves(info: PythonInfo, dest: Path, stdlib: Path) -> list[tuple[Path, Path]]:
    """The distribution's folders the copy has, each with where the copy has it."""
    found = [(info.stdlib, stdlib)]
    if info.include and info.include.is_relative_to(info.prefix):
        found.append((info.include, dest / info.include.relative_to(info.prefix)))
    return found


def make_own(info: PythonInfo, dest: Path, stdlib: Path) -> None:
    """Make the parts gathered under `dest` (its stdlib at `stdlib`) one prefix that installs
    into itself (its files already name its own folders: interpreters.forget_paths)."""
    if info.include and info.include.is_relative_to(info.prefix):
        _pyconfig(dest / info.include.relative_to(info.prefix))
    _own_scheme(stdlib)
    (dest / "lib" / f"python{info.minor}" / "site-packages").mkdir(parents=True, exist_ok=True)


def _template(name: str) -> str:
    return resources.files("bundler").joinpath("templates", name).read_text(encoding="utf-8")


def _own_scheme(stdlib: Path) -> None:
    """Upstream's install scheme in the copy's sysconfig (before get_paths, whose default
    scheme is chosen where it is defined), and its own site-packages in a sitecustomize."""
    sysconfig = stdlib / "sysconfig.py"
    if not sysconfig.is_file():
        sysconfig = stdlib / "sysconfig" / "__init__.py"  # 3.13
    text = sysconfig.read_text(encoding="utf-8")
    at = text.find(_SYSCONFIG_ANCHOR)
    if at < 0:
        raise BundlerError(f"{sysconfig}: no `def get_paths(`, before which bundler gives the copy "
                           "its own install scheme; this Python's sysconfig is not one bundler "
                           "knows: name a CPython installed under one folder instead")
    sysconfig.write_text(text[:at] + "\n" + _template("distro-sysconfig.py.in") + text[at:],
                         encoding="utf-8")
    (stdlib / "sitecustomize.py").write_text(_template("distro-sitecustomize.py.in"),
                                             encoding="utf-8")


def _pyconfig(include: Path) -> None:
    """Debian's pyconfig.h only includes the multiarch one (<x86_64-linux-gnu/python3.11/
    pyconfig.h>); the copy's becomes that file, so its headers hold all they need."""
    header = include / "pyconfig.h"
    if not header.is_file():
        return
    for name in _MULTIARCH_INCLUDE.findall(header.read_text(encoding="utf-8", errors="replace")):
        real = Path("/usr/include", name)
        if real.is_file():
            header.unlink()
            header.write_bytes(real.read_bytes())
            return


_WHERE = """
import json, site, sys, sysconfig
paths = sysconfig.get_paths()
print(json.dumps({"purelib": paths["purelib"], "platlib": paths["platlib"],
                  "scripts": paths["scripts"], "site": site.getsitepackages(),
                  "path": [p for p in sys.path if p]}))
"""


def check_own(copy: PythonInfo, dest: Path) -> None:
    """The gathered copy installs into, and reads, its own site-packages and nothing of the
    system's: else stop, naming what leaks."""
    done = call([copy.executable, "-I", "-c", _WHERE], what="asking the copy where it installs",
                env=clean_env(), timeout=60, merge=False)
    if done.returncode != 0:
        raise BundlerError(f"the gathered copy {copy.executable} cannot start: {done.errors.strip()}")
    where = json.loads(done.output)
    own = dest / "lib" / f"python{copy.minor}" / "site-packages"
    paths = [where["purelib"], where["platlib"], where["scripts"], *where["site"], *where["path"]]
    outside = [p for p in paths if not Path(p).is_relative_to(dest) or "dist-packages" in p]
    if Path(where["purelib"]) != own or outside:
        raise BundlerError(f"the gathered copy of the distribution's Python would install into "
                           f"{where['purelib']} (not {own})"
                           + (f" and use {', '.join(sorted(set(outside)))}" if outside else "")
                           + ": its distribution patches sysconfig or site in a way bundler does "
                           "not know; name a CPython installed under one folder instead "
                           "(python = \"/path/prefix\")")
