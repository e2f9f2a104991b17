"""What a build will do, checked before a byte is copied: which interpreter each folder gets and
from where, which Python version runs each bytecode-only code version. `bundler check` prints it."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bundler.build import cache, conda, floor, standalone, trim
from bundler.build.code import check_code_source
from bundler.build.interpreters import (
    PythonInfo,
    Unrelocatable,
    check_relocatable,
    find_python,
    probe,
)
from bundler.build.native import outside_runpaths, unresolvable
from bundler.build.site import site_files
from bundler.build.sources import Selection
from bundler.bundle import elf
from bundler.bundle.layout import Layout, load_layout
from bundler.bundle.signing import fingerprint, parse_keys
from bundler.errors import BundlerError
from bundler.fsutil import stable_file_key
from bundler.spec.model import Interpreter, Spec
from bundler.spec.tomlpos import locate

MIN_BASE = (3, 9)


@dataclass(frozen=True)
class PlannedInterpreter:
    interp: Interpreter
    folder: str         # relative to the bundle root: "." or "envs/<name>"
    python: str         # its python, relative to the bundle root
    minor: str          # "3.11"
    source: str         # what it is made from, for people
    info: PythonInfo | None = None  # the source CPython, for copied and conda interpreters
    conda: Path | None = None       # the conda environment, for conda interpreters
    glibc: floor.Version = ()       # the glibc it will need, predicted (() when unknown)
    glibc_from: str = ""            # what decides that: a file, or what the kind declares


@dataclass(frozen=True)
class Plan:
    spec: Spec
    layout: Layout
    interpreters: dict[str, PlannedInterpreter]
    code_interpreter: dict[str, str] = field(default_factory=dict)  # bytecode code -> interpreter
    trusted_keys: list[str] = field(default_factory=list)  # public key lines, files read
    code_selection: dict[str, Selection] = field(default_factory=dict)  # path code: left out
    site_files: dict[str, Path] = field(default_factory=dict)  # etc/app/ defaults: their sources
    native: list[str] = field(default_factory=list)  # code's native files: RUNPATHs, warnings

    def describe(self) -> list[str]:
        spec, layout = self.spec, self.layout
        lines = [f"bundle {spec.name} {spec.version} (format {spec.format}, layout {spec.layout})"]
        for p in self.interpreters.values():
            lines.append(f"  interpreter {p.interp.name:<10} {p.folder:<14} Python {p.minor}  "
                         f"{p.source}; needs glibc {floor.text(p.glibc)} ({p.glibc_from})")
            left = trim.left_out(p.interp.keep)
            if p.interp.python is not None and left:
                lines.append(f"    leaves out {trim.described(left)} (keep = [...] ships them)")
        lines.append(self.glibc_line())
        for c in spec.code.values():
            origin = f"copy of {c.path}" if c.path else f"git archive {c.ref} of {c.git}"
            extra = ", bytecode only" if c.bytecode else ""
            lines.append(f"  code {c.name:<10} {layout.code_dir(spec.project, c.name):<24} {origin}{extra}")
            selection = self.code_selection.get(c.name)
            lines += [f"    leaves out {line}" for line in (selection.summary() if selection else [])]
        for s in spec.services.values():
            group = f"  [group {s.group}]" if s.group else ""
            lines.append(f"  service {s.name:<10} python={s.python} code={s.code}: {s.command}{group}")
        lines += self.native
        if self.site_files:
            lines.append(f"  site config {layout.site_config}/: {len(self.site_files)} default "
                         f"file(s) from {spec.site_config}")
        lines += [f"  trusts key {fingerprint(k)}" for k in self.trusted_keys] or \
            ["  trusts no key: bin/bundler apply accepts unsigned patches"]
        return lines

    @property
    def glibc_need(self) -> floor.Version:
        """The highest glibc the interpreters will need (() when unknown)."""
        return max((p.glibc for p in self.interpreters.values()), default=())

    def glibc_line(self) -> str:
        need = self.glibc_need
        if self.spec.glibc is None:
            return (f"  glibc the bundle will need {floor.text(need)} or newer, as its interpreters "
                    "(no [bundle] glibc: set one, e.g. glibc = \"2.17\", to choose the servers' "
                    "floor and have the build hold every file to it)")
        return (f"  glibc floor {floor.text(self.spec.glibc)} ([bundle] glibc); the interpreters need "
                f"{floor.text(need)}; wheels up to manylinux_{self.spec.glibc[0]}_{self.spec.glibc[1]}"
                ", every ELF file checked at build")


def make_plan(spec: Spec, output: Path | None = None, fetch: bool = True,
              memo: bool = True) -> Plan:
    """Check everything that can be checked before copying a byte (cheap checks first); `output`
    is where the build writes (default: dist/ beside bundle.toml). Without `fetch`, a standalone
    CPython that would have to be downloaded is planned from its version alone; with `memo`, what
    an interpreter's files need is remembered in the build cache."""
    layout = load_layout(spec.layout)
    keys = trusted_keys(spec)
    defaults = site_files(spec)
    selections = {}
    for code in spec.code.values():
        selection = check_code_source(code, spec.folder, output or spec.folder / "dist")
        if selection is not None:
            selections[code.name] = selection
    planned: dict[str, PlannedInterpreter] = {}
    for interp in _ordered(spec):
        folder = layout.env_dir(interp.name)
        if interp.virtualenv is not None:
            parent = planned[interp.virtualenv]
            planned[interp.name] = PlannedInterpreter(
                interp, folder, f"{folder}/bin/python", parent.minor, f"virtualenv on {parent.interp.name}",
                glibc=parent.glibc, glibc_from=f"its parent {parent.interp.name}")
            continue
        python = "bin/python3" if folder == "." else f"{folder}/bin/python3"
        if interp.conda is not None:
            prefix = (spec.folder / os.path.expanduser(interp.conda)).absolute()
            conda.check_env(prefix)
            info = probe(prefix / "bin" / "python")
            declared = floor.conda_floor(prefix)
            planned[interp.name] = PlannedInterpreter(
                interp, folder, python, info.minor, f"conda-pack of {prefix} ({info.version})",
                info, prefix, declared, "its packages' __glibc constraint" if declared else
                "no package declares __glibc")
            _hold(spec, interp.name, planned[interp.name], [])
            continue
        assert interp.python is not None
        planned[interp.name] = _copied(spec, interp, folder, python, fetch, memo)
    _check_base(planned["base"])
    for interp in spec.interpreters.values():
        if interp.requirements_file:
            _project_file(spec, f"interpreter {interp.name}: requirements_file",
                          interp.requirements_file)
    code_interpreter = {}
    for code in spec.code.values():
        if not code.bytecode:
            continue
        services = [s for s in spec.services.values() if s.code == code.name]
        users = {s.python for s in services} or {"base"}
        if len({planned[u].minor for u in users}) > 1:
            detail = ", ".join(f"{s.name} on {s.python} ({planned[s.python].minor})"
                               for s in services)
            raise BundlerError(f"code {code.name} ships bytecode only, but its services run it on "
                               f"different Python versions: {detail}; use bytecode = false or "
                               "one Python version")
        code_interpreter[code.name] = sorted(users)[0]
    native = _native(spec, planned)
    return Plan(spec, layout, planned, code_interpreter, keys, selections, defaults, native)


def _project_file(spec: Spec, what: str, relative: str) -> None:
    """Refuse a file the spec names in the project that is missing, or leads out of the project
    through a link (pip would read /etc/passwd and print its first line)."""
    path = spec.folder / relative
    if not path.is_file():
        raise BundlerError(f"{what} {path} does not exist")
    if not path.resolve().is_relative_to(spec.folder.resolve()):
        raise BundlerError(f"{what} {relative} leads out of the project (to {path.resolve()}) "
                           "through a link: copy the file into the project")


def _copied(spec: Spec, interp: Interpreter, folder: str, python: str,
            fetch: bool, memo: bool) -> PlannedInterpreter:
    """A CPython to copy: probed, checked relocatable, its glibc need read off the files the copy
    will take (or, for a standalone CPython not downloaded yet, what its kind is built for, once
    its mirror answers). An interpreter that cannot be copied, or had, is refused with the ways
    out."""
    assert interp.python is not None
    value = interp.python
    try:
        found = _source(spec, value, fetch)
    except Unrelocatable as exc:
        raise BundlerError(_placed(spec, interp, f"{exc}.\n{WAYS_OUT}")) from None
    except BundlerError as exc:
        if not standalone.is_version(value):
            raise
        raise BundlerError(_placed(spec, interp, f"{exc}.\n{offline_ways_out()}")) from None
    if found is None:
        mirror = standalone.mirror_of(spec.python_mirror, spec.folder)
        why = standalone.unreachable(mirror)
        if why is not None:
            raise BundlerError(_placed(spec, interp, f"CPython {value} is not in bundler's cache "
                                       f"({standalone.cache_dir()}) and its python mirror {mirror} "
                                       f"cannot be reached ({why}): the build could not download "
                                       f"it.\n{offline_ways_out()}"))
        minor = ".".join(value.split(".")[:2])
        return PlannedInterpreter(interp, folder, python, minor, f"python-build-standalone "
                                  f"CPython {value} from {mirror} (downloaded at build)",
                                  glibc=floor.STANDALONE_FLOOR, glibc_from="what it is built for")
    info, standalone_kind = found
    with cache.memo("source-glibc", memo) as known:
        files = floor.needs(info.elf_files(interp.keep), known, stable_file_key)
    need, path = floor.highest(files)
    if info.system:
        source = (f"the distribution's CPython, gathered from {info.executable.resolve()} and "
                  f"{info.stdlib} ({info.version}, built for this system's glibc)")
    elif standalone_kind:
        source = f"standalone CPython copy of {info.prefix} ({info.version})"
    else:
        source = (f"copy of {info.prefix} ({info.version}, which needs the glibc of the system it "
                  "was compiled on, usually this one)")
    planned = PlannedInterpreter(interp, folder, python, info.minor, source, info,
                                 glibc=need, glibc_from=_rel(path, info.prefix) if path else "no file")
    _hold(spec, interp.name, planned, [(info.prefix, files)])
    return planned


WAYS_OUT = """Ways out:
  python = "current"       a copy of the Python running bundler, whichever way it was installed
  python = "3.12"          a standalone CPython (python-build-standalone's, as uv installs them) from
                           [bundle] python_mirror or $BUNDLER_PYTHON_MIRROR (default: its latest release)
  python = "/path/prefix"  a CPython installed under one folder: `uv python install 3.12` (then
                           `uv python find 3.12`), pyenv, or ./configure --prefix=...
  python = "cpython-3.12.8+...-install_only.tar.gz"   such an archive, downloaded by hand
  conda = "/path/env"      a conda environment, packed with conda-pack"""


def offline_ways_out() -> str:
    """The ways to a base that need no download, with the floor `current` implies here."""
    glibc = elf.host_glibc()
    here = floor.text(glibc) if glibc else "unknown"
    current = find_python("current", Path.cwd())
    return f"""Ways out that need no download:
  python = "current"       a copy of the Python running bundler, {current} ({sys.version.split()[0]});
                           the bundle then needs this machine's glibc ({here}) at most
  python = "/path/prefix"  a CPython installed under one folder (pyenv, ./configure --prefix=...)
  python = "cpython-3.12.8+...-install_only.tar.gz"   a standalone archive brought here by hand
  BUNDLER_PYTHON_MIRROR=DIR   a folder of python-build-standalone archives and their SHA256SUMS
                           (or a URL this machine reaches); [bundle] python_mirror says the same"""


def _source(spec: Spec, value: str, fetch: bool) -> tuple[PythonInfo, bool] | None:
    """The CPython `python = VALUE` names, probed and checked relocatable, and whether it is a
    standalone one; None: a standalone CPython that would have to be downloaded."""
    executable = find_python(value, spec.folder, spec.python_mirror, fetch)
    if executable is None:
        return None
    info = probe(executable)
    standalone_kind = standalone.is_version(value) or standalone.is_archive(value)
    check_relocatable(info, unpacked=standalone_kind)
    return info, standalone_kind


def _placed(spec: Spec, interp: Interpreter, message: str) -> str:
    """`message` prefixed with where bundle.toml says python = (file and line)."""
    table = ("base",) if interp.name == "base" else ("envs", interp.name)
    try:
        line = locate(spec.path.read_text(encoding="utf-8"), table, "python")
    except OSError:
        line = None
    where = f"{spec.path}:{line}" if line else str(spec.path)
    return f"{where}: [{'.'.join(table)}] python = {interp.python!r}: {message}"


def _rel(path: Path, prefix: Path) -> str:
    return path.relative_to(prefix).as_posix() if path.is_relative_to(prefix) else str(path)


def _hold(spec: Spec, name: str, planned: PlannedInterpreter,
          files: list[tuple[Path, dict[Path, floor.Version]]]) -> None:
    """Refuse, before copying, an interpreter that needs more than [bundle] glibc."""
    if spec.glibc is None or planned.glibc <= spec.glibc:
        return
    lines = [f"interpreter {name} ({planned.source}) needs glibc {floor.text(planned.glibc)}, "
             f"above [bundle] glibc = {floor.text(spec.glibc)} (from {planned.glibc_from}):"]
    for prefix, found in files:
        lines += [f"  {line}" for line in floor.offenders(prefix, found, spec.glibc)]
    if not files:
        lines.append("  use a conda environment made for that glibc, an interpreter built on such a "
                     "system, or raise [bundle] glibc")
    raise BundlerError("\n".join(lines))


def _check_base(base: PlannedInterpreter) -> None:
    if tuple(int(n) for n in base.minor.split(".")) < MIN_BASE:
        raise BundlerError(f"the base is Python {base.minor}, but it runs supervisor and bundler "
                           f"itself, which need Python {'.'.join(map(str, MIN_BASE))} or newer: "
                           "use a newer base and put the older Python in envs/")


def _native(spec: Spec, planned: dict[str, PlannedInterpreter]) -> list[str]:
    """What the build will do to the RUNPATHs of the code folders' native files, and what it
    cannot fix (build/native.py)."""
    carried = [p.info.prefix / "lib" for p in planned.values() if p.info is not None]
    lines = []
    for code in spec.code.values():
        if code.path is None:
            continue
        for path, dirs in outside_runpaths(spec.folder / code.path).items():
            rel = path.relative_to(spec.folder)
            lines.append(f"  code {code.name}: {rel} looks for libraries in {', '.join(dirs)}: "
                         "the build points it at the bundle's copies or the system's")
            lines += [f"  warning: {rel} needs {soname}, which the bundle will not carry and no "
                      "system folder holds" for soname in unresolvable(path, carried)]
    return lines


def trusted_keys(spec: Spec) -> list[str]:
    """[bundle] trusted_keys: public key lines as written, and the lines of the files named."""
    keys = []
    for entry in spec.trusted_keys:
        if entry.startswith("ssh-"):
            keys += parse_keys(entry, f"{spec.path}: [bundle] trusted_keys")
            continue
        path = spec.folder / entry
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BundlerError(f"{spec.path}: [bundle] trusted_keys names {entry!r}, which cannot "
                               f"be read ({exc})") from None
        found = parse_keys(text, str(path))
        if not found:
            raise BundlerError(f"{path} (in [bundle] trusted_keys) holds no public key")
        keys += found
    return keys


def _ordered(spec: Spec) -> list[Interpreter]:
    """Real interpreters first (base leading), then virtualenvs that sit on them."""
    interps = list(spec.interpreters.values())
    return [i for i in interps if i.virtualenv is None] + [i for i in interps if i.virtualenv]


def check_switch(spec: Spec, services: list[str]) -> None:
    """A service moved to bytecode-only code, or its code to another interpreter, must leave it
    one Python version to run on: plan the changed spec (which probes the interpreters); other
    changes need no probe."""
    if any(spec.code[spec.services[name].code].bytecode for name in services
           if name in spec.services and spec.services[name].code in spec.code):
        make_plan(spec)
