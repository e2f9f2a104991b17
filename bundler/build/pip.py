"""pip, run for a build: a recent enough pip in each interpreter, installs kept to the wheels
the glibc floor allows, and what was installed."""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path

from bundler.build import floor
from bundler.build.interpreters import BuildContext
from bundler.bundle import elf
from bundler.errors import BundlerError
from bundler.runner import call, clean_env, run

MIN_PIP = (22, 0)  # older pips fail on a version for another Python instead of skipping it


def ensure_pip(ctx: BuildContext, python: Path) -> None:
    """A pip in `python`'s environment (ensurepip's when it has none), upgraded when it is
    older than MIN_PIP (an interpreter's bundled pip, such as 3.9.2's 20.2)."""
    done = call([python, "-I", "-m", "pip", "--version"], what="pip --version", timeout=120)
    if done.returncode != 0:
        run([python, "-I", "-m", "ensurepip", "--default-pip"], what="ensurepip", env=clean_env())
        done = call([python, "-I", "-m", "pip", "--version"], what="pip --version", timeout=120)
    words = done.output.split()
    version = elf.parse_version(words[1]) if len(words) > 1 else ()
    wanted = floor.text(MIN_PIP)
    if version < MIN_PIP:
        ctx.log(f"  upgrading its pip {floor.text(version)} to >= {wanted}")
        minor = run([python, "-I", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                    what="python version").strip()
        with tempfile.TemporaryDirectory(prefix="bundler-pip-") as wheels:
            # This machine's pip picks the newest pip that supports `python`; its old pip
            # installs that wheel.
            run([sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-deps",
                 "--only-binary", ":all:", "--python-version", minor, *ctx.pip_options, "-d", wheels,
                 f"pip>={wanted}"], what="downloading pip", env=clean_env())
            run([python, "-I", "-m", "pip", "install", "--disable-pip-version-check", "--no-index",
                 "--upgrade", *Path(wheels).glob("pip-*.whl")], what="upgrading pip", env=clean_env())


def pip_install(ctx: BuildContext, python: Path, requirements: tuple[str, ...],
                requirements_file: str | None, what: str) -> None:
    """Install into `python`'s environment with pip, then insist that `pip check` is clean.
    With a glibc floor, pip takes only wheels made for it: it asks a `_manylinux` module
    (PEP 600) put first on its path, and builds no sdist against this machine's newer glibc."""
    if not requirements and not requirements_file:
        return
    options: list[str | Path] = ["install", "--no-warn-script-location",
                                 "--disable-pip-version-check", *ctx.pip_options, *requirements]
    if requirements_file:  # its existence was checked with the plan
        options += ["-r", (ctx.spec_folder / requirements_file).resolve()]
    if ctx.glibc is None:
        run([python, "-I", "-m", "pip", *options], what=f"pip install for {what}", env=clean_env())
    else:
        binary_only = ctx.glibc < elf.host_glibc()
        with tempfile.TemporaryDirectory(prefix="bundler-pip-") as hook:
            Path(hook, "_manylinux.py").write_text(floor.manylinux_hook(ctx.glibc))
            done = call([python, "-I", "-c", _PIP_WITH_HOOK, hook, *options,
                         *(["--only-binary", ":all:"] if binary_only else [])],
                        what=f"pip install for {what}", env=clean_env())
        if done.returncode != 0:
            raise BundlerError(_no_wheel(done.output, what, ctx.glibc, binary_only)
                               or f"pip install for {what} failed (exit {done.returncode}):\n"
                               f"{done.tail()}")
    run([python, "-I", "-m", "pip", "check"], what=f"pip check for {what}", env=clean_env())


# pip run with a folder first on sys.path (python -I ignores PYTHONPATH).
_PIP_WITH_HOOK = ("import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); sys.argv[0] = 'pip'; "
                  "runpy.run_module('pip', run_name='__main__', alter_sys=True)")
_NO_MATCH = re.compile(r"No matching distribution found for (\S+)")


def _no_wheel(output: str, what: str, glibc: floor.Version, binary_only: bool) -> str | None:
    """pip found no wheel for the floor: name the requirement and the ways out."""
    match = _NO_MATCH.search(output)
    if match is None:
        return None
    kind = "wheel" if binary_only else "distribution"
    return (f"pip install for {what}: no {kind} of {match[1]} runs on glibc {floor.text(glibc)} "
            f"([bundle] glibc; wheels tagged manylinux_{glibc[0]}_{glibc[1]} or older"
            f"{', and no sdist is built against this machine' if binary_only else ''}): put a "
            "wheel built for that glibc in a folder and build with --find-links FOLDER, ask for a "
            "lower version of it, or raise [bundle] glibc")


def installed_versions(python: Path) -> dict[str, str]:
    out = run([python, "-I", "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"],
              what="pip list", env=clean_env())
    return {p["name"]: p["version"] for p in json.loads(out)}
