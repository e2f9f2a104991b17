"""Locked inputs: each interpreter's requirements resolved once to exact versions and files with
their hashes, in a PEP 751 lock file beside bundle.toml (pylock.NAME.toml), and installed from
it by every build after, so next month's build is the same bundle.

The lock also records what it was made from ([tool.bundler]: the requirements, the requirements
file's hash, the Python version, the glibc floor); a build whose spec asks something else does
not take it (and `build --locked` refuses).
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError

import bundler
from bundler.build import floor, serverside
from bundler.build.interpreters import BuildContext, PythonInfo
from bundler.build.pip import canonical, pip_run
from bundler.build.plan import Plan, PlannedInterpreter
from bundler.errors import BundlerError
from bundler.fsutil import write_atomic
from bundler.runner import clean_env, run

LOCK_VERSION = "1.0"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    file: str    # the wheel's or sdist's file name
    url: str
    sha256: str

    @property
    def is_wheel(self) -> bool:
        return self.file.endswith(".whl")


@dataclass(frozen=True)
class Lock:
    interpreter: str
    inputs: dict[str, Any]
    packages: tuple[Package, ...]

    def requirements(self) -> str:
        """The lock as pip installs it: every package pinned, with its file's hash."""
        return "".join(f"{p.name}=={p.version} --hash=sha256:{p.sha256}\n" for p in self.packages)

    def text(self) -> str:
        doc = tomlkit.document()
        doc.add(tomlkit.comment(f"pylock for interpreter {self.interpreter}: written by `bundler "
                                "lock`, read by `bundler build`; do not edit"))
        doc["lock-version"] = LOCK_VERSION
        doc["created-by"] = "bundler"
        doc["requires-python"] = f"=={self.inputs['python']}"
        packages = tomlkit.aot()
        for p in self.packages:
            table = tomlkit.table()
            table["name"], table["version"] = p.name, p.version
            file = tomlkit.inline_table()
            file.update({"name": p.file, "url": p.url, "hashes": {"sha256": p.sha256}})
            if p.is_wheel:
                table["wheels"] = tomlkit.array()
                table["wheels"].append(file)
            else:
                table["sdist"] = file
            packages.append(table)
        doc["packages"] = packages
        doc["tool"] = {"bundler": {"interpreter": self.interpreter, "bundler": bundler.__version__,
                                   "inputs": self.inputs}}
        return tomlkit.dumps(doc)


def requirements_of(plan: Plan, name: str, signs: bool) -> tuple[str, ...]:
    """What pip installs into interpreter `name` (the base also gets bundler's own packages,
    and what checks signatures when the bundle trusts keys or the build signs)."""
    p = plan.interpreters[name]
    if name != "base":
        return p.interp.requirements
    return (*serverside.base_packages(bool(plan.trusted_keys) or signs), *p.interp.requirements)


def path_of(plan: Plan, name: str) -> Path:
    return plan.spec.folder / f"pylock.{name}.toml"


def inputs(plan: Plan, name: str, requirements: tuple[str, ...]) -> dict[str, Any] | None:
    """What decides the resolution of interpreter `name`; None when it installs nothing or
    is not pip's (a conda environment)."""
    p = plan.interpreters[name]
    file = p.interp.requirements_file
    if p.conda is not None or (not requirements and not file):
        return None
    return {"python": _python(plan, p).version, "requirements": list(requirements),
            "requirements_file": file or "",
            "requirements_file_sha256": hashlib.sha256(
                (plan.spec.folder / file).read_bytes()).hexdigest() if file else "",
            "glibc": floor.text(plan.spec.glibc) if plan.spec.glibc else ""}


def _python(plan: Plan, p: PlannedInterpreter) -> PythonInfo:
    """The PythonInfo that runs `p`: its own, or its virtualenv parent's."""
    while p.interp.virtualenv is not None:
        p = plan.interpreters[p.interp.virtualenv]
    if p.info is None:
        raise BundlerError(f"interpreter {p.interp.name}: its Python is not known yet")
    return p.info


def read(path: Path) -> Lock | None:
    """The lock at `path`; None when there is none; BundlerError when it cannot be used."""
    try:
        doc = tomlkit.parse(path.read_text(encoding="utf-8")).unwrap()
    except FileNotFoundError:
        return None
    except (OSError, TOMLKitError, UnicodeDecodeError) as exc:
        raise BundlerError(f"{path}: cannot be read ({exc}); write it again with `bundler lock`") from None
    try:
        if str(doc["lock-version"]).split(".")[0] != LOCK_VERSION.split(".")[0]:
            raise BundlerError(f"{path}: lock-version {doc['lock-version']} is not one bundler "
                               f"reads ({LOCK_VERSION}); write it again with `bundler lock`")
        own = doc["tool"]["bundler"]
        packages = []
        for entry in doc.get("packages", []):
            file = entry["wheels"][0] if entry.get("wheels") else entry["sdist"]
            packages.append(Package(entry["name"], entry["version"], file["name"], file["url"],
                                    file["hashes"]["sha256"]))
        return Lock(own["interpreter"], dict(own["inputs"]), tuple(packages))
    except (KeyError, IndexError, TypeError) as exc:
        raise BundlerError(f"{path}: not a lock bundler wrote (no {exc}); write it again with "
                           "`bundler lock`") from None


def disagreement(lock: Lock, wanted: dict[str, Any]) -> str | None:
    """How the spec now differs from what the lock was made from; None when it does not."""
    changed = [f"{k} {lock.inputs.get(k)!r} -> {v!r}" for k, v in wanted.items()
               if lock.inputs.get(k) != v]
    return "; ".join(changed) or None


def for_build(plan: Plan, signs: bool, strict: bool, log: Callable[[str], None]) -> dict[str, Lock]:
    """The locks a build installs from, by interpreter. Without one, or with one made for other
    inputs, the interpreter's requirements are resolved afresh, which the build says; `strict`
    (build --locked) refuses instead."""
    found = {}
    for name in plan.interpreters:
        wanted = inputs(plan, name, requirements_of(plan, name, signs))
        if wanted is None:
            continue
        path = path_of(plan, name)
        existing = read(path)
        differs = disagreement(existing, wanted) if existing is not None else None
        if existing is not None and differs is None:
            found[name] = existing
            continue
        problem = (f"no {path.name}" if existing is None
                   else f"{path.name} was made for other inputs ({differs})")
        if strict:
            raise BundlerError(f"interpreter {name}: {problem}; run `bundler lock` (build --locked "
                               "installs only what a lock pins)")
        log(f"interpreter {name}: {problem}: pip resolves its requirements afresh, and what it "
            "picks may change from build to build (`bundler lock` pins it)")
    return found


def write_all(plan: Plan, ctx: BuildContext) -> list[Path]:
    """Resolve every interpreter that installs packages and write its lock; return the files."""
    written = []
    for name in plan.interpreters:
        requirements = requirements_of(plan, name, signs=False)
        if inputs(plan, name, requirements) is None:
            continue
        made = resolve(plan, name, requirements, ctx)
        path = path_of(plan, name)
        write_atomic(path, made.text())
        ctx.log(f"{path.name}: {len(made.packages)} package(s) for interpreter {name} "
                f"(Python {made.inputs['python']})")
        written.append(path)
    for path in sorted(plan.spec.folder.glob("pylock.*.toml")):
        if path not in written and path.name[len("pylock."):-len(".toml")] not in plan.interpreters:
            ctx.log(f"warning: {path.name} is the lock of no interpreter of bundle.toml; remove it")
    return written


def resolve(plan: Plan, name: str, requirements: tuple[str, ...], ctx: BuildContext) -> Lock:
    """Resolve interpreter `name`'s requirements as its build would (its Python, the glibc
    floor's wheels, the same pip options), in a scratch virtualenv, without installing."""
    wanted = inputs(plan, name, requirements)
    assert wanted is not None
    p = plan.interpreters[name]
    file = p.interp.requirements_file
    with tempfile.TemporaryDirectory(prefix="bundler-lock-") as scratch:
        venv = Path(scratch, "venv")
        run([sys.executable, "-m", "virtualenv", "--quiet", "--no-periodic-update",
             "--no-setuptools", "--python", _python(plan, p).executable, venv],
            what=f"making a scratch virtualenv for interpreter {name}", env=clean_env())
        report = Path(scratch, "report.json")
        pip_run(ctx, venv / "bin" / "python",
                ["install", "--dry-run", "--ignore-installed", "--report", str(report),
                 "--disable-pip-version-check", *ctx.pip_options, *requirements,
                 *(["-r", str((plan.spec.folder / file).resolve())] if file else [])],
                f"resolving interpreter {name}")
        resolved = json.loads(report.read_text(encoding="utf-8"))
    packages = [_package(item, name) for item in resolved["install"]]
    return Lock(name, wanted, tuple(sorted(packages, key=lambda p: p.name)))


def _package(item: dict[str, Any], interpreter: str) -> Package:
    meta, info = item["metadata"], item["download_info"]
    sha256 = info.get("archive_info", {}).get("hashes", {}).get("sha256")
    name = meta["name"]
    if not sha256:
        kind = "a VCS checkout" if "vcs_info" in info else "a local folder"
        raise BundlerError(f"interpreter {interpreter}: {name} comes from {kind} ({info['url']}), "
                           "which a lock cannot pin by hash: build it into a wheel and give its "
                           "folder with --find-links")
    file = urllib.parse.unquote(info["url"].split("#")[0].rsplit("/", 1)[-1])
    return Package(canonical(name), meta["version"], file, info["url"], sha256)
