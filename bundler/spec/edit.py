"""Edit bundle.toml with tomlkit, keeping the user's comments and layout; validate before saving."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.toml_document import TOMLDocument

from bundler.errors import BundlerError, UsageError
from bundler.fsutil import write_atomic
from bundler.spec.checker import did_you_mean, toml_error
from bundler.spec.load import parse_spec
from bundler.spec.model import (
    NAME_RE,
    NAME_RULE,
    SERVICE_NAME_RE,
    SERVICE_NAME_RULE,
    Spec,
    normalize_python,
)

INIT_TEMPLATE = '''\
# bundle.toml: the spec bundler builds {name} from. `bundler check` validates it and prints the plan.
spec_version = 1

[bundle]
name = "{name}"            # the root folder inside the archive
version = "0.1.0"
project = "{project}"      # code versions go to {project}_<version>/
format = "tar.gz"          # tar.gz | tar.zst | dir

[base]
python = "current"         # the base interpreter: "current" or a CPython prefix (pyenv prefix 3.11.7)
packages = []              # extra packages for the base (supervisor is always there)

[code.v1]
path = "src"               # copied into the bundle; or git = ".", ref = "v1"
pythonpath = ["."]

[services.hello]
command = "python -m hello"   # 'python' is the interpreter named by python =
python = "base"
code = "v1"
'''

HELLO = '''\
"""An example service: replace it with yours."""
import time

while True:
    print("hello from the bundle", flush=True)
    time.sleep(10)
'''


def init_project(folder: Path, name: str) -> Path:
    """Create folder/bundle.toml (and an example service in folder/src) for a new bundle."""
    if not NAME_RE.match(name):
        raise UsageError(f"invalid bundle name {name!r}: {NAME_RULE}")
    spec_path = folder / "bundle.toml"
    if spec_path.exists():
        raise BundlerError(f"{spec_path} already exists")
    project = name.replace("-", "_").replace(".", "_")
    hello = folder / "src" / "hello"
    hello.mkdir(parents=True, exist_ok=True)
    if not (hello / "__main__.py").exists():
        (hello / "__init__.py").write_text("")
        (hello / "__main__.py").write_text(HELLO)
    write_atomic(spec_path, INIT_TEMPLATE.format(name=name, project=project))
    return spec_path


def edit(spec_path: Path, change: Callable[[TOMLDocument], object],
         check: Callable[[Spec], object] | None = None) -> Spec:
    """Apply `change` to the document; save only if the result is a valid spec (and passes
    `check`, which raises to refuse it)."""
    try:
        text = spec_path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise BundlerError(f"{spec_path}: no such file (run `bundler init NAME` first)") from exc
    try:
        doc = tomlkit.parse(text)
    except TOMLKitError as exc:
        raise toml_error(exc, text, spec_path) from exc
    if "build" in doc:
        raise BundlerError(f"{spec_path} is the manifest of a built bundle: editing it would not "
                           "change what runs; edit the project's bundle.toml and rebuild, or change "
                           "the bundle's services with its bin/bundler (switch, add-service, "
                           "remove-service)")
    change(doc)
    new_text = tomlkit.dumps(doc)
    spec = parse_spec(new_text, spec_path)
    if check is not None:
        check(spec)
    write_atomic(spec_path, new_text)
    return spec


def _super_table(doc: TOMLDocument, key: str) -> Any:
    if key not in doc:
        doc[key] = tomlkit.table(is_super_table=True)
    return doc[key]


def _new_entry(doc: TOMLDocument, kind: str, name: str, values: dict[str, Any]) -> None:
    pattern, rule = (SERVICE_NAME_RE, SERVICE_NAME_RULE) if kind == "service" else (NAME_RE, NAME_RULE)
    if not pattern.match(name):
        raise UsageError(f"invalid {kind} name {name!r}: {rule}")
    section = {"env": "envs", "code": "code", "service": "services"}[kind]
    table = _super_table(doc, section)
    if name in table:
        raise UsageError(f"{kind} {name!r} already exists in bundle.toml")
    entry = tomlkit.table()
    for key, value in values.items():
        if value not in (None, [], {}):
            entry[key] = value
    table[name] = entry


def add_env(doc: TOMLDocument, name: str, virtualenv: str | None, python: str | None,
            conda: str | None, requirements: list[str], requirements_file: str | None) -> None:
    if [virtualenv, python, conda].count(None) != 2:
        raise UsageError("give exactly one of --virtualenv ENV, --python PREFIX or --conda PREFIX")
    _new_entry(doc, "env", name, {
        "virtualenv": normalize_python(virtualenv) if virtualenv is not None else None,
        "python": python, "conda": conda, "requirements": requirements,
        "requirements_file": requirements_file})


def add_code(doc: TOMLDocument, name: str, path: str | None, git: str | None, ref: str | None,
             pythonpath: list[str], bytecode: bool) -> None:
    if (path is None) == (git is None):
        raise UsageError("give exactly one of --path DIR or --git REPO")
    if ref is not None and git is None:
        raise UsageError("--ref applies to --git only")
    _new_entry(doc, "code", name, {"path": path, "git": git, "ref": ref,
                                   "pythonpath": pythonpath, "bytecode": bytecode or None})


def add_service(doc: TOMLDocument, name: str, python: str, code: str, command: str,
                environment: dict[str, str], numprocs: int | None, group: str | None,
                options: dict[str, Any]) -> None:
    values: dict[str, Any] = {"command": command, "python": python, "code": code}
    if environment:
        inline = tomlkit.inline_table()
        inline.update(environment)
        values["environment"] = inline
    values["numprocs"] = numprocs
    values.update(options)
    _new_entry(doc, "service", name, values)
    if group:
        groups = _super_table(doc, "groups")
        if group not in groups:
            groups[group] = tomlkit.table()
            groups[group]["programs"] = tomlkit.array()
        groups[group]["programs"].append(name)


def switch(doc: TOMLDocument, service: str, version: str) -> str:
    """Point `service` at code `version`; return the version it had."""
    services = doc.get("services", {})
    if service not in services:
        raise UsageError(f"no service {service!r} in bundle.toml{did_you_mean(service, services)}")
    previous = str(services[service].get("code", ""))
    services[service]["code"] = version
    return previous


def switch_services(spec_path: Path, services: list[str] | None, group: str | None, version: str,
                    check: Callable[[Spec], object] | None = None) -> list[tuple[str, str]]:
    """Point `services` (or every member of `group`) at code `version` in a project's
    bundle.toml, saved only once the new spec is valid and passes `check`; return each service
    with the version it had."""
    moved: list[tuple[str, str]] = []

    def change(doc: TOMLDocument) -> None:
        members = group_members(doc, group) if group else list(services or [])
        moved.extend((name, switch(doc, name, version)) for name in members)

    edit(spec_path, change, check)
    return moved


def group_members(doc: TOMLDocument, group: str) -> list[str]:
    groups = doc.get("groups", {})
    if group not in groups:
        raise UsageError(f"no group {group!r} in bundle.toml{did_you_mean(group, groups)}")
    return [str(p) for p in groups[group].get("programs", [])]


def remove_service(doc: TOMLDocument, name: str) -> None:
    """Remove service `name`, and it from its group (and the group once it is empty)."""
    services = doc.get("services", {})
    if name not in services:
        raise UsageError(f"no service {name!r} in bundle.toml{did_you_mean(name, services)}")
    del services[name]
    groups = doc.get("groups", {})
    for group in list(groups):
        programs = groups[group].get("programs", [])
        if name in programs:
            programs.remove(name)
            if not programs:
                del groups[group]


def parse_assignment(text: str, what: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"{what} {text!r} must look like KEY=VALUE")
    return key.strip(), value


def parse_option(text: str) -> tuple[str, Any]:
    """--set KEY=VALUE: VALUE is read as a TOML value (10, true, [0, 2]) or else as a string."""
    key, raw = parse_assignment(text, "--set")
    try:
        value = tomlkit.parse(f"v = {raw}").unwrap()["v"]
    except TOMLKitError:
        value = raw
    return key, value
