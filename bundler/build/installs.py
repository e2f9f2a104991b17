"""Each interpreter into the staging tree: taken from the build cache (cache.py) when everything
that decides its bytes is as before, else materialized, pip-installed and compiled, then cached."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import nullcontext
from dataclasses import dataclass, replace
from functools import cache as once
from pathlib import Path
from typing import Any

import bundler
from bundler import runner
from bundler.build import cache, conda, debuginfo, lock, serverside, trim
from bundler.build.interpreters import (
    BuildContext,
    CopiedCPython,
    Materializer,
    PythonInfo,
    Virtualenv,
    strip_debug,
)
from bundler.build.pip import (
    canonical,
    drop_installers,
    ensure_pip,
    installed_versions,
    pip_install,
)
from bundler.build.plan import Plan, PlannedInterpreter
from bundler.fsutil import sha256_file, stable_file_key
from bundler.runner import run

Log = Callable[[str], None]
# pip's configuration files: they decide what pip resolves as much as the requirements do.
PIP_CONFIGS = ("/etc/pip.conf", "/etc/xdg/pip/pip.conf", "~/.config/pip/pip.conf", "~/.pip/pip.conf")


def install(plan: Plan, root: Path, ctx: BuildContext, signs: bool, use_cache: bool,
            log: Log, link: bool = False, locks: dict[str, lock.Lock] | None = None,
            ) -> dict[str, dict[str, str]]:
    """Put every interpreter of `plan` under `root`; return what pip reports installed in each.
    `link`: the staging tree is packed and removed, so cached files may be hard-linked; `locks`:
    the interpreters that install exactly what their lock pins.

    Interpreters are made at once on several cores, each virtualenv once its parent is done;
    what each says is shown in the plan's order, as it would be one after the other."""
    locks = locks or {}
    others = tuple(sorted({Path(p.folder).parts[0] for p in plan.interpreters.values()
                           if p.folder != "."}))

    voices = _Voices(list(plan.interpreters), log)

    def one(name: str, p: PlannedInterpreter, parent: Future[_Made] | None) -> _Made:
        mine = replace(ctx, log=voices.of(name))  # binary_slots stays the one shared dict
        parent_key = parent.result().key if parent is not None else None  # it is made first
        requirements = lock.requirements_of(plan, name, signs)
        key = cache_key(plan, name, p, requirements, mine,
                        {p.interp.virtualenv or "": parent_key} if parent_key else {},
                        locks.get(name)) if use_cache else None
        versions = _make(plan, name, p, root, mine, requirements, locks.get(name), key, others,
                         link)
        voices.finished(name)
        return _Made(versions, key)

    made: dict[str, Future[_Made]] = {}
    try:
        with cache.locked() if use_cache else nullcontext(), \
                ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            try:
                for name, p in plan.interpreters.items():  # a parent before its virtualenvs
                    made[name] = pool.submit(one, name, p, made.get(p.interp.virtualenv or ""))
                _wait(made, voices)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                runner.stop_all()  # what the others run ends, and nothing more starts
                raise
    finally:
        runner.resume()
    if use_cache:
        cache.shrink()
    return {name: future.result().versions for name, future in made.items()}


def _wait(made: dict[str, Future[_Made]], voices: _Voices) -> None:
    """Wait until every interpreter is made; on the first failure, show all the failing one
    said, and raise its error."""
    running = set(made.values())
    while running:
        done, running = wait(running, return_when=FIRST_COMPLETED)
        for name, future in made.items():  # a parent before the virtualenvs its failure fails
            if future in done and future.exception() is not None:
                voices.show(name)
                future.result()


class _Voices:
    """What each interpreter says, shown in the plan's order as if they were made one after the
    other: the first unfinished one's lines as they come, the others' when their turn comes."""

    def __init__(self, names: list[str], log: Log) -> None:
        self._lines: dict[str, list[str]] = {n: [] for n in names}
        self._shown = dict.fromkeys(names, 0)
        self._order, self._done, self._head = names, set[str](), 0
        self._log, self._lock = log, threading.Lock()

    def of(self, name: str) -> Log:
        def say(line: str) -> None:
            with self._lock:
                self._lines[name].append(line)
                self._advance()
        return say

    def finished(self, name: str) -> None:
        with self._lock:
            self._done.add(name)
            self._advance()

    def show(self, name: str) -> None:
        """All `name` said so far, whatever its turn (it failed)."""
        with self._lock:
            self._show(name)

    def _show(self, name: str) -> None:
        lines = self._lines[name]
        while self._shown[name] < len(lines):
            self._log(lines[self._shown[name]])
            self._shown[name] += 1

    def _advance(self) -> None:
        while self._head < len(self._order):
            name = self._order[self._head]
            self._show(name)
            if name not in self._done:
                return
            self._head += 1


@dataclass(frozen=True)
class _Made:
    versions: dict[str, str]
    key: str | None


def _make(plan: Plan, name: str, p: PlannedInterpreter, root: Path, ctx: BuildContext,
          requirements: tuple[str, ...], locked: lock.Lock | None, key: str | None,
          others: tuple[str, ...], link: bool) -> dict[str, str]:
    """One interpreter into `root`: from the cache entry of `key`, or made (and then cached)."""
    dest = root / p.folder
    entry = cache.lookup(key) if key else None
    if entry is not None:
        ctx.log(f"interpreter {name}: {p.source}: from the build cache")
        cache.restore(entry, dest, root, link)
        return dict(entry.versions)
    ctx.log(f"interpreter {name}: {p.source}")
    versions = _materialize(plan, name, p, requirements, root, ctx, locked)
    if key:
        cache.store(key, dest, root, f"interpreter {name}: {p.source}", versions,
                    leave_out=others if p.folder == "." else ())
    return versions


def _materialize(plan: Plan, name: str, p: PlannedInterpreter, requirements: tuple[str, ...],
                 root: Path, ctx: BuildContext, locked: lock.Lock | None) -> dict[str, str]:
    maker: Materializer
    if p.interp.virtualenv is not None:
        maker = Virtualenv(parent=root / plan.interpreters[p.interp.virtualenv].python)
    elif p.conda is not None:
        maker = conda.CondaPacked(p.conda)
    else:
        assert p.info is not None
        maker = CopiedCPython(p.info, vendor_libs=p.interp.vendor_libs, keep=p.interp.keep)
    maker.materialize(ctx, root / p.folder)
    python = root / p.python
    if requirements or p.interp.requirements_file:
        ensure_pip(ctx, python)
    if locked is not None:
        ctx.log(f"  installing the {len(locked.packages)} package(s) {lock.path_of(plan, name).name} pins")
        with tempfile.TemporaryDirectory(prefix="bundler-lock-") as scratch:
            pinned = Path(scratch, "requirements.txt")
            pinned.write_text(locked.requirements(), encoding="utf-8")
            pip_install(ctx, python, (), None, f"interpreter {name}", locked=pinned)
    else:
        pip_install(ctx, python, requirements, p.interp.requirements_file, f"interpreter {name}")
    if name == "base":
        site = root / "lib" / f"python{p.minor}" / "site-packages"
        serverside.install_self(site)
        _drop_cffi_backend(site)
    versions = installed_versions(python) if _has_pip(python) else {}
    if p.conda is None and _has_pip(python):  # a conda env's pip is a conda package
        dropped = drop_installers(ctx, python, requirements, p.interp.requirements_file)
        if dropped:
            ctx.log(f"  left out {', '.join(dropped)}: the server installs nothing (a requirement "
                    "that names one keeps it)")
        versions = {n: v for n, v in versions.items() if canonical(n) not in dropped}
    if isinstance(maker, CopiedCPython):  # the copy said it leaves them out
        trim.drop_bundled_wheels(root / p.folder, trim.left_out(p.interp.keep))
    strip_debug(ctx, root / p.folder)  # what pip installed (the copy's own files: when copied)
    ctx.log(f"compiling the bytecode of {name}")
    _compile(python, root / p.folder / "lib" / f"python{p.minor}", root)
    return versions


def cache_key(plan: Plan, name: str, p: PlannedInterpreter, requirements: tuple[str, ...],
              ctx: BuildContext, keys: dict[str, str], locked: lock.Lock | None = None
              ) -> str | None:
    """The SHA-256 of everything that decides the interpreter's bytes; None when it is not
    cached (conda environments, whose packing is conda-pack's)."""
    if p.conda is not None:
        return None
    interp = p.interp
    parts: dict[str, Any] = {
        "bundler": bundler.__version__, "bundler_files": _self_digest(), "name": name,
        "folder": p.folder, "glibc": plan.spec.glibc, "requirements": list(requirements),
        "requirements_file": _digest(plan.spec.folder / interp.requirements_file)
        if interp.requirements_file else None,
        "pip_options": list(ctx.pip_options), "pip_config": _pip_config(),
        "lock": locked.requirements() if locked is not None else None,
        "strip": debuginfo.RULE,
    }
    if interp.virtualenv is not None:
        parent = keys.get(interp.virtualenv)
        if parent is None:
            return None
        parts["virtualenv_on"] = parent
        parts["virtualenv_version"] = _virtualenv_version()
    else:
        assert p.info is not None
        info = p.info
        parts["source"] = {"prefix": str(info.prefix), "version": info.version,
                           "files": _prefix_digest(info)}
        parts["vendor_libs"] = interp.vendor_libs
        parts["keep"] = list(interp.keep)
        parts["host_libraries"] = _stamp(Path("/etc/ld.so.cache"))  # ldconfig runs on each change
    return cache.key_of(parts)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _stamp(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


@once
def _self_digest() -> str:
    """This bundler's own files: the base carries its server side, the rest makes the bundle (a
    changed file is another bundle even when the version is not)."""
    source = Path(bundler.__file__).parent
    h = hashlib.sha256()
    for path in sorted(source.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            h.update(path.relative_to(source).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


@once
def _prefix_digest(info: PythonInfo) -> str:
    """A CPython prefix's identity: its executable and shared libraries by content, its
    standard library by names, sizes and times."""
    h = hashlib.sha256()
    with cache.memo("source-digests") as known:
        assert known is not None
        for path in [info.executable.resolve(), *info.libraries()]:
            key = stable_file_key(path)
            if key is not None:
                if key not in known:
                    known[key] = sha256_file(path)
                h.update(f"{path.name}\0{known[key]}".encode())
    for folder, dirs, files in os.walk(info.stdlib):
        dirs[:] = sorted(d for d in dirs if d not in ("site-packages", "dist-packages", "__pycache__"))
        for name in sorted(files):
            h.update(f"{folder}/{name}:{_stamp(Path(folder, name))}".encode())
    return h.hexdigest()


def _pip_config() -> dict[str, Any]:
    files = [os.environ.get("PIP_CONFIG_FILE", ""), *(os.path.expanduser(p) for p in PIP_CONFIGS)]
    return {"env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("PIP_")},
            "files": {f: _digest(Path(f)) for f in files if f and Path(f).is_file()}}


@once
def _virtualenv_version() -> str:
    return importlib.metadata.version("virtualenv")


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


def _drop_cffi_backend(site: Path) -> None:
    """zstandard's wheel carries two backends of 12 MB each; CPython imports the C one, so the
    cffi one goes (and its lines of RECORD, which stays true)."""
    package = site / "zstandard"
    if not any(package.glob("backend_c.*.so")):
        return
    gone = {p.relative_to(site).as_posix() for p in [
        *package.glob("_cffi.*.so"), package / "backend_cffi.py",
        *package.glob("__pycache__/backend_cffi.*.pyc")] if p.exists()}
    for rel in gone:
        (site / rel).unlink()
    for record in site.glob("zstandard-*.dist-info/RECORD"):
        lines = record.read_text(encoding="utf-8").splitlines(keepends=True)
        record.write_text("".join(line for line in lines if line.split(",")[0] not in gone
                                  and "/backend_cffi." not in line.split(",")[0]), encoding="utf-8")

