"""spec -> plan -> materialize -> render -> pack: `bundler check` and `bundler build`."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import tomlkit

import bundler
from bundler import archive, conda, integrity, patch, portability, standalone
from bundler.code import check_code_source, compile_bytecode_only, materialize_code
from bundler.errors import BundlerError
from bundler.interpreters import (
    BASE_PACKAGES,
    BuildContext,
    CopiedCPython,
    Materializer,
    PythonInfo,
    Virtualenv,
    check_relocatable,
    ensure_pip,
    find_python,
    installed_versions,
    pip_install,
    probe,
)
from bundler.layout import LAYOUT_FILE, META, Layout, load_layout
from bundler.relocate import make_scripts_relocatable, make_symlinks_relative, record
from bundler.render import Renderer
from bundler.runner import run
from bundler.spec import Interpreter, Spec

Log = Callable[[str], None]
STAGING_PREFIX = ".bundler-staging-"
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
        for s in spec.services.values():
            group = f"  [group {s.group}]" if s.group else ""
            lines.append(f"  service {s.name:<10} python={s.python} code={s.code}: {s.command}{group}")
        return lines


def make_plan(spec: Spec) -> Plan:
    """Check everything that can be checked before copying a byte."""
    layout = load_layout(spec.layout)
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
    for code in spec.code.values():
        check_code_source(code, spec.folder)
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
    return Plan(spec, layout, planned, code_interpreter)


def _ordered(spec: Spec) -> list[Interpreter]:
    """Real interpreters first (base leading), then virtualenvs that sit on them."""
    interps = list(spec.interpreters.values())
    return [i for i in interps if i.virtualenv is None] + [i for i in interps if i.virtualenv]


@dataclass(frozen=True)
class BuildOptions:
    output: Path
    format: str | None = None
    pip_options: tuple[str, ...] = ()
    keep_staging: bool = False
    patch_from: Path | None = None  # build a patch against this earlier build instead


def build(spec: Spec, options: BuildOptions, log: Log = print) -> Path:
    """Build the bundle and return the artifact; on any failure nothing is left in the output."""
    plan = make_plan(spec)
    fmt = options.format or spec.format
    old = patch.old_checksums(options.patch_from) if options.patch_from else None
    output = options.output.resolve()
    output.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_staging(output)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=output))
    root = staging / spec.name
    try:
        started = time.monotonic()
        materialize(plan, root, options, log)
        if old is not None:
            fmt = "tar.zst" if fmt == "dir" else fmt
            patch_dir = staging / f"{spec.name}-{spec.version}.patch"
            counts = patch.make(root, plan.layout, spec.project, old, patch_dir)
            log(f"patch against {options.patch_from}: {counts['files']} file(s), "
                f"{counts['links']} link(s), {counts['remove']} removal(s)")
            root = patch_dir
        log(f"packing {fmt}")
        artifact = archive.pack(root, output, root.name if old is not None
                                else f"{spec.name}-{spec.version}", fmt)
        log(f"built {artifact} in {time.monotonic() - started:.1f}s")
        return artifact
    finally:
        if options.keep_staging:
            log(f"staging kept at {staging}")
        else:
            shutil.rmtree(staging, ignore_errors=True)


def _remove_abandoned_staging(output: Path) -> None:
    """Staging folders of builds that were killed (their pid no longer runs)."""
    for folder in output.glob(f"{STAGING_PREFIX}*"):
        pid = folder.name[len(STAGING_PREFIX):].split("-")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(folder, ignore_errors=True)


def materialize(plan: Plan, root: Path, options: BuildOptions, log: Log) -> None:
    spec, layout = plan.spec, plan.layout
    ctx = BuildContext(spec_folder=spec.folder, pip_options=options.pip_options, log=log)
    resolved: dict[str, dict[str, str]] = {}
    for name, p in plan.interpreters.items():
        dest = root / p.folder
        log(f"interpreter {name}: {p.source}")
        maker: Materializer
        if p.interp.virtualenv is not None:
            maker = Virtualenv(parent=root / plan.interpreters[p.interp.virtualenv].python)
        elif p.conda is not None:
            maker = conda.CondaPacked(p.conda)
        else:
            assert p.info is not None
            maker = CopiedCPython(p.info, vendor_libs=p.interp.vendor_libs)
        maker.materialize(ctx, dest)
        python = root / p.python
        requirements = p.interp.requirements
        if name == "base":
            requirements = (*BASE_PACKAGES, *requirements)
        if requirements or p.interp.requirements_file:
            ensure_pip(python)
        pip_install(ctx, python, requirements, p.interp.requirements_file, f"interpreter {name}")
        if name == "base":
            install_self(root, p.minor)
        resolved[name] = installed_versions(python) if _has_pip(python) else {}
        log(f"compiling the bytecode of {name}")
        _compile(python, root / p.folder / "lib" / f"python{p.minor}", root)
    for code in spec.code.values():
        dest = root / layout.code_dir(spec.project, code.name)
        log(f"code {code.name} -> {dest.name}")
        materialize_code(code, spec.folder, dest, options.output.resolve())
        if code.bytecode:
            compile_bytecode_only(dest, root / plan.interpreters[plan.code_interpreter[code.name]].python)
    Renderer(spec, layout, {n: p.python for n, p in plan.interpreters.items()}).write(root)
    _write_manifest(plan, root, resolved)
    make_symlinks_relative(root)
    make_scripts_relocatable(root)
    _drop_bytecode_naming(root)
    _write_origin(plan, root)
    capacity = {str(path.relative_to(root)): room - (len(os.fsencode(env)) - len(os.fsencode(root)))
                for path, (env, room) in ctx.binary_slots.items() if path.exists()}
    stuck = record(root, root / META, capacity)
    integrity.write(root, layout)
    for path in stuck:
        log(f"warning: {path} contains the build path and cannot be rewritten when the bundle moves")


def _drop_bytecode_naming(root: Path) -> None:
    """Bytecode that names the build path (pip compiles the scripts it installs; _sysconfigdata
    holds prefixes as constants): the relocation rewrites sources only, so these caches go, and
    Python compiles them again where the bundle runs."""
    needle = os.fsencode(root)
    for cache in root.rglob("__pycache__"):
        for pyc in cache.glob("*.pyc"):
            if needle in pyc.read_bytes():
                pyc.unlink()


def _write_origin(plan: Plan, root: Path) -> None:
    """The build machine's paths, which `bundler verify` looks for in the bundle's files."""
    sources = {}
    for name, p in plan.interpreters.items():
        source = p.conda or (p.info.prefix if p.info else None)
        if source is not None:
            sources[name] = str(source)
    origin = {"staging": str(root), "project": str(plan.spec.folder), "sources": sources}
    (root / META).mkdir(parents=True, exist_ok=True)
    (root / META / portability.ORIGIN).write_text(json.dumps(origin, indent=1) + "\n")


def _has_pip(python: Path) -> bool:
    return any(python.parent.parent.glob("lib/python*/site-packages/pip"))


def _compile(python: Path, folder: Path, root: Path) -> None:
    """Compile an interpreter's lib/ afresh (-f: also what imports during the build cached).

    Hash-checked bytecode stays valid whatever the unpacked files' mtimes, and -d keeps the
    build path out of it. Files that do not compile (test data some packages ship) stay as
    sources, as pip leaves them: compileall's exit code 1 is accepted.
    """
    run([python, "-I", "-m", "compileall", "-qq", "-f", "-j", "0",
         "--invalidation-mode", "checked-hash", "-d", folder.relative_to(root), folder],
        what=f"compiling {folder}", ok=(0, 1))


def install_self(root: Path, minor: str) -> None:
    """Put this bundler (package and its data) into the base, so the bundle carries bin/bundler."""
    site = root / "lib" / f"python{minor}" / "site-packages"
    source = Path(bundler.__file__).parent
    shutil.copytree(source, site / "bundler", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    info = site / f"bundler-{bundler.__version__}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: bundler\nVersion: {bundler.__version__}\n")
    (info / "INSTALLER").write_text("bundler\n")
    files = [p.relative_to(site) for p in (site / "bundler").rglob("*") if p.is_file()]
    files += [Path(info.name, n) for n in ("METADATA", "INSTALLER", "RECORD")]
    (info / "RECORD").write_text("".join(f"{f},,\n" for f in sorted(files)))


def _write_manifest(plan: Plan, root: Path, resolved: dict[str, dict[str, str]]) -> None:
    """bundle.toml inside the bundle: the spec as written, plus what the build resolved."""
    spec = plan.spec
    text = spec.path.read_text(encoding="utf-8")
    doc = tomlkit.parse(text)
    doc.pop("build", None)
    build = tomlkit.table()
    build.add(tomlkit.comment("Written by bundler build: what this bundle holds, resolved."))
    build["bundler_version"] = bundler.__version__
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    build["built_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                      time.gmtime(int(epoch) if epoch else None))
    build["spec_sha256"] = hashlib.sha256(text.encode()).hexdigest()
    interps = tomlkit.table(is_super_table=True)
    for name, p in plan.interpreters.items():
        entry = tomlkit.table()
        entry["folder"] = p.folder
        entry["python"] = p.python
        entry["python_version"] = p.minor
        entry["packages"] = dict(sorted(resolved.get(name, {}).items()))
        interps[name] = entry
    build["interpreters"] = interps
    code = tomlkit.table(is_super_table=True)
    for c in spec.code.values():
        folder = {"folder": plan.layout.code_dir(spec.project, c.name)}
        if c.bytecode:  # the only Python version that can run it
            folder["python_version"] = plan.interpreters[plan.code_interpreter[c.name]].minor
        code[c.name] = folder
    build["code"] = code
    doc["build"] = build
    (root / "bundle.toml").write_text(tomlkit.dumps(doc), encoding="utf-8")
    layout = tomlkit.document()
    layout.update(vars(plan.layout))
    (root / META / LAYOUT_FILE).write_text(tomlkit.dumps(layout))
