"""pip, run for a build: a recent enough pip in each interpreter, installs kept to the wheels
the glibc floor allows, and what was installed."""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path

from bundler.build import floor, pipfail
from bundler.build.interpreters import BuildContext
from bundler.bundle import elf
from bundler.errors import BundlerError
from bundler.runner import call, clean_env, run
from bundler.runner import shown as show

MIN_PIP = (22, 0)  # older pips fail on a version for another Python instead of skipping it


def ensure_pip(ctx: BuildContext, python: Path) -> None:
    """A pip in `python`'s environment (from a wheel its distribution keeps, else downloaded,
    when it has none), upgraded when it is older than MIN_PIP (an interpreter's bundled pip,
    such as 3.9.2's 20.2)."""
    done = call([python, "-I", "-m", "pip", "--version"], what="pip --version", timeout=120)
    if done.returncode != 0:
        _bootstrap_pip(ctx, python)
        done = call([python, "-I", "-m", "pip", "--version"], what="pip --version", timeout=120)
    words = done.output.split()
    version = elf.parse_version(words[1]) if len(words) > 1 else ()
    if version < MIN_PIP:
        ctx.log(f"  upgrading its pip {floor.text(version)} to >= {floor.text(MIN_PIP)}")
        with tempfile.TemporaryDirectory(prefix="bundler-pip-") as wheels:
            run([python, "-I", "-m", "pip", "install", "--disable-pip-version-check", "--no-index",
                 "--upgrade", _download_pip(ctx, python, Path(wheels))], what="upgrading pip",
                env=clean_env())


def _download_pip(ctx: BuildContext, python: Path, folder: Path) -> Path:
    """The newest pip wheel that supports `python`, fetched by this machine's pip (from the
    index or --find-links the build names)."""
    minor = run([python, "-I", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                what="python version").strip()
    run([sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-deps",
         "--only-binary", ":all:", "--python-version", minor, *ctx.pip_options, "-d", folder,
         f"pip>={floor.text(MIN_PIP)}"], what="downloading pip", env=clean_env())
    return sorted(folder.glob("pip-*.whl"))[-1]


_WHEELS = "import sysconfig; print(sysconfig.get_config_var('WHEEL_PKG_DIR') or '')"


def _bootstrap_pip(ctx: BuildContext, python: Path) -> None:
    """Install a pip wheel, run from the wheel itself and not compiled (three times faster than
    ensurepip, which also compiles it: the build compiles every file at the end). The wheel is
    the one ensurepip carries, else the one a distribution keeps for it (Debian's and Fedora's
    /usr/share/python-wheels: their ensurepip refuses to run in their own Python), else one
    downloaded."""
    wheels = sorted(python.parent.parent.glob("lib/python*/ensurepip/_bundled/pip-*.whl"))
    kept = run([python, "-I", "-c", _WHEELS], what="python's wheel folder").strip()
    wheels = wheels or (sorted(Path(kept).glob("pip-*.whl")) if kept else [])
    with tempfile.TemporaryDirectory(prefix="bundler-pip-") as scratch:
        wheel = wheels[-1] if wheels else _download_pip(ctx, python, Path(scratch))
        run([python, "-I", wheel / "pip", "install", "--no-index", "--no-compile", "--no-cache-dir",
             "--disable-pip-version-check", "--quiet", wheel], what="installing pip",
            env=clean_env())


def pip_install(ctx: BuildContext, python: Path, requirements: tuple[str, ...],
                requirements_file: str | None, what: str, locked: Path | None = None) -> None:
    """Install into `python`'s environment with pip, then insist that `pip check` is clean.
    `locked`: a requirements file of pinned, hashed packages (from a lock), installed instead,
    exactly (no dependency is resolved)."""
    if locked is not None:
        args: list[str | Path] = ["-r", locked, "--require-hashes", "--no-deps"]
    elif requirements or requirements_file:
        args = [*requirements]
        if requirements_file:  # its existence was checked with the plan
            args += ["-r", (ctx.spec_folder / requirements_file).resolve()]
    else:
        return
    # --no-compile: the build compiles every file of the interpreter at the end, on every core
    pip_run(ctx, python, ["install", "--no-warn-script-location", "--disable-pip-version-check",
                          "--no-compile", *ctx.pip_options, *args], f"pip install for {what}")
    run([python, "-I", "-m", "pip", "check"], what=f"pip check for {what}", env=clean_env())


def pip_run(ctx: BuildContext, python: Path, args: list[str | Path], what: str) -> None:
    """Run `python`'s pip. With a glibc floor, pip takes only wheels made for it: it asks a
    `_manylinux` module (PEP 600) put first on its path, and builds no sdist against this
    machine's newer glibc. When it fails, pip's own reason comes first (pipfail)."""
    if ctx.glibc is None:
        done = call([python, "-I", "-m", "pip", *args], what=what, env=clean_env())
        binary_only = False
    else:
        binary_only = ctx.glibc < elf.host_glibc()
        with tempfile.TemporaryDirectory(prefix="bundler-pip-") as hook:
            Path(hook, "_manylinux.py").write_text(floor.manylinux_hook(ctx.glibc))
            done = call([python, "-I", "-c", _PIP_WITH_HOOK, hook, *args,
                         *(["--only-binary", ":all:"] if binary_only else [])],
                        what=what, env=clean_env())
    if done.returncode == 0:
        return
    refusal = pipfail.read(done.output)
    if refusal is None:
        shown = f" {show(done.argv)}" if ctx.glibc is None else ""
        raise BundlerError(f"{what} failed (exit {done.returncode}):{shown}\n{done.tail()}")
    blame = None if ctx.glibc is None else \
        pipfail.floor_to_blame(python, refusal, ctx.glibc, binary_only, ctx.pip_options)
    raise BundlerError(pipfail.message(what, refusal, blame))


# pip run with a folder first on sys.path (python -I ignores PYTHONPATH).
_PIP_WITH_HOOK = ("import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); sys.argv[0] = 'pip'; "
                  "runpy.run_module('pip', run_name='__main__', alter_sys=True)")


def installed_versions(python: Path) -> dict[str, str]:
    out = run([python, "-I", "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"],
              what="pip list", env=clean_env())
    return {p["name"]: p["version"] for p in json.loads(out)}


# Serve installs at build; the server installs nothing. pip goes last: it uninstalls the others.
INSTALLERS = ("setuptools", "wheel", "pip")
# Run in the interpreter: what is installed, and what the installed distributions other than
# the installers need, with the extras asked for (argv[1]: name -> extras of the requirements)
# and those their own requirements ask for. null below 3.8, where supervisor imports
# pkg_resources without declaring it, and everything stays.
_NEEDS = """
import json, re, sys
if sys.version_info < (3, 8):
    print("null"); sys.exit()
import importlib.metadata as md
from pip._vendor.packaging.requirements import Requirement
canon = lambda n: re.sub(r"[-_.]+", "-", n or "").lower()
graph = {canon(d.metadata["Name"]): [Requirement(r) for r in d.requires or []]
         for d in md.distributions()}
active = {name: set(extras) for name, extras in json.loads(sys.argv[1]).items()}
needed, changed = set(), True
while changed:
    changed = False
    for name, requirements in graph.items():
        if name in sys.argv[2:]:
            continue
        for req in requirements:
            extras = {""} | active.get(name, set())
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras):
                dep = canon(req.name)
                needed.add(dep)
                more = set(req.extras) - active.setdefault(dep, set())
                active[dep] |= more
                changed = changed or bool(more)
print(json.dumps({"installed": sorted(graph), "needed": sorted(needed)}))
"""


def drop_installers(ctx: BuildContext, python: Path, requirements: tuple[str, ...],
                    requirements_file: str | None) -> list[str]:
    """Uninstall pip, setuptools and wheel from `python`'s environment unless a requirement
    names one or an installed distribution needs one; return what went."""
    lines = list(requirements)
    if requirements_file:
        lines += _requirement_lines((ctx.spec_folder / requirements_file).resolve(), set())
    asked: dict[str, list[str]] = {}
    for match in filter(None, map(_NAME.match, lines)):
        extras = [e.strip() for e in (match[2] or "").split(",") if e.strip()]
        asked.setdefault(canonical(match[1]), []).extend(extras)
    facts = json.loads(run([python, "-I", "-c", _NEEDS, json.dumps(asked), *INSTALLERS],
                           what="reading what is installed", env=clean_env()))
    if facts is None:
        return []
    drop = [n for n in INSTALLERS if n in facts["installed"] and n not in facts["needed"]
            and n not in asked]
    if drop:
        run([python, "-I", "-m", "pip", "uninstall", "--yes", "--disable-pip-version-check", *drop],
            what=f"uninstalling {', '.join(drop)}", env=clean_env())
    return drop


_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")
_INCLUDE = re.compile(r"\s*(?:-r|--requirement)[\s=]+(\S+)")


def _requirement_lines(path: Path, seen: set[Path]) -> list[str]:
    """A requirements file's lines, with those of the files it includes (-r)."""
    if path in seen or not path.is_file():
        return []
    seen.add(path)
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        included = _INCLUDE.match(line)
        lines += _requirement_lines(path.parent / included[1], seen) if included else [line]
    return lines


def canonical(name: str) -> str:
    """A distribution's name as PEP 503 compares it."""
    return re.sub(r"[-_.]+", "-", name).lower()
