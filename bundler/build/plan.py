"""What a build will do, checked before a byte is copied: which interpreter each folder gets and
from where, which Python version runs each bytecode-only code version. `bundler check` prints it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from bundler.build import conda, standalone
from bundler.build.code import check_code_source
from bundler.build.interpreters import PythonInfo, check_relocatable, find_python, probe
from bundler.build.native import outside_runpaths, unresolvable
from bundler.build.site import site_files
from bundler.build.sources import Selection
from bundler.bundle.layout import Layout, load_layout
from bundler.bundle.signing import fingerprint, parse_keys
from bundler.errors import BundlerError
from bundler.spec.model import Interpreter, Spec

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
                         f"{p.source}")
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


def make_plan(spec: Spec, output: Path | None = None) -> Plan:
    """Check everything that can be checked before copying a byte (cheap checks first); `output`
    is where the build writes (default: dist/ beside bundle.toml)."""
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
                interp, folder, f"{folder}/bin/python", parent.minor, f"virtualenv on {parent.interp.name}")
            continue
        python = "bin/python3" if folder == "." else f"{folder}/bin/python3"
        if interp.conda is not None:
            prefix = (spec.folder / os.path.expanduser(interp.conda)).absolute()
            conda.check_env(prefix)
            info = probe(prefix / "bin" / "python")
            planned[interp.name] = PlannedInterpreter(
                interp, folder, python, info.minor, f"conda-pack of {prefix} ({info.version})",
                info, prefix)
            continue
        assert interp.python is not None
        info = probe(find_python(interp.python, spec.folder))
        check_relocatable(info, unpacked=standalone.is_archive(interp.python))
        planned[interp.name] = PlannedInterpreter(interp, folder, python, info.minor,
                                                  f"copy of {info.prefix} ({info.version})", info)
    base = planned["base"]
    if tuple(int(n) for n in base.minor.split(".")) < MIN_BASE:
        raise BundlerError(f"the base is Python {base.minor}, but it runs supervisor and bundler "
                           f"itself, which need Python {'.'.join(map(str, MIN_BASE))} or newer: "
                           "use a newer base and put the older Python in envs/")
    for interp in spec.interpreters.values():
        if interp.requirements_file and not (spec.folder / interp.requirements_file).is_file():
            raise BundlerError(f"interpreter {interp.name}: requirements_file "
                               f"{spec.folder / interp.requirements_file} does not exist")
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
