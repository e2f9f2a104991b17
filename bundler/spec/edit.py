"""Edit bundle.toml with tomlkit, keeping the user's comments and layout; validate before saving."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import Table, Whitespace
from tomlkit.toml_document import TOMLDocument

from bundler.errors import BundlerError, UsageError, printable
from bundler.fsutil import write_atomic
from bundler.spec import versions
from bundler.spec.checker import did_you_mean, toml_error
from bundler.spec.load import load_spec, parse_spec
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
# glibc = "2.17"           # the oldest glibc of the servers (2.17 CentOS 7, 2.28 RHEL 8, 2.31
                           # Debian 11); with python = "3.12", which is built for such servers

[base]
python = "current"         # a copy of the Python running bundler: builds wherever PyPI is reached;
                           # the bundle needs this machine's glibc or newer (`bundler check` says).
                           # "3.12": a standalone CPython for older servers, downloaded from
                           # [bundle] python_mirror or python-build-standalone's releases
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
    if not NAME_RE.fullmatch(name):
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


def read_version(spec_path: Path) -> str:
    """[bundle] version of the project's bundle.toml (the whole spec checked)."""
    return load_spec(spec_path).version


def change_version(spec_path: Path, new: str | None = None, part: str | None = None
                   ) -> tuple[str, str]:
    """Set [bundle] version to `new`, or bump its `part` (versions.bump); keep every comment;
    return the version before and after."""
    seen: list[str] = []

    def change(doc: TOMLDocument) -> None:
        table = doc.get("bundle")
        if not isinstance(table, MutableMapping) or "version" not in table:
            raise UsageError(f"{spec_path} has no [bundle] version to change")
        old = table["version"]
        seen.append(str(old))
        try:
            value = new if new is not None else versions.bump(str(old), part or "patch")
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        table["version"] = int(value) if isinstance(old, int) and value.isdigit() else value
        seen.append(value)

    edit(spec_path, change)
    return seen[0], seen[1]


def _super_table(doc: TOMLDocument, key: str) -> Any:
    if key not in doc:
        doc[key] = tomlkit.table(is_super_table=True)
    return doc[key]


def _new_entry(doc: TOMLDocument, kind: str, name: str, values: dict[str, Any]) -> None:
    pattern, rule = (SERVICE_NAME_RE, SERVICE_NAME_RULE) if kind == "service" else (NAME_RE, NAME_RULE)
    if not pattern.fullmatch(name):
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
        raise UsageError("give exactly one of --virtualenv ENV, --python PYTHON or --conda PREFIX")
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


def switch(doc: TOMLDocument, service: str, version: str | None, python: str | None = None
           ) -> None:
    """Point `service` at code `version` and/or interpreter `python`."""
    table = _service(doc, service)
    if version is not None:
        table["code"] = version
    if python is not None:
        env = normalize_python(python)
        table["python"] = env if env == "base" else f"envs/{env}"


def _service(doc: TOMLDocument, name: str) -> Any:
    services = doc.get("services", {})
    if name not in services:
        raise UsageError(f"no service {name!r} in bundle.toml{did_you_mean(name, services)}")
    return services[name]


# Keys `set` may not change: they name the service or have their own command.
NOT_SETTABLE = {"group": "groups are changed with add-service --group and remove-service"}


def set_keys(doc: TOMLDocument, name: str, values: dict[str, Any], unset: list[str]) -> None:
    """Set (or remove) keys of service `name`; `environment.KEY` names one variable."""
    table = _service(doc, name)
    for key in [*values, *unset]:
        if key.split(".", 1)[0] in NOT_SETTABLE:
            raise UsageError(f"{key}: {NOT_SETTABLE[key.split('.', 1)[0]]}")
    for key, value in values.items():
        head, dot, var = key.partition(".")
        if dot and head == "environment":
            if "environment" not in table:
                table["environment"] = tomlkit.inline_table()
            table["environment"][var] = str(value)
        elif dot:
            raise UsageError(f"{key}: only environment.KEY takes a dotted name")
        else:
            table[key] = value
    for key in unset:
        head, dot, var = key.partition(".")
        holder = table.get("environment", {}) if dot and head == "environment" else table
        if (var if dot else key) not in holder:
            raise UsageError(f"service {name} has no {key} to unset")
        del holder[var if dot else key]


def service_table(doc: TOMLDocument, name: str) -> dict[str, Any] | None:
    """Service `name` as plain data (None when there is none), for the history and merges."""
    table = doc.get("services", {}).get(name)
    return None if table is None else dict(table.unwrap())


def put_service(doc: TOMLDocument, name: str, table: Mapping[str, object] | None,
                group: str | None = None) -> None:
    """Make service `name` exactly `table` (None: remove it); a service that comes back joins
    `group` again."""
    services = doc.get("services", {})
    if table is None:
        if name in services:
            remove_service(doc, name)
        return
    if name not in services:
        add_service(doc, name, str(table.get("python", "base")), str(table.get("code", "")),
                    str(table.get("command", "")), {}, None, group, {})
    entry = services[name] if name in services else doc["services"][name]
    for key in [k for k in entry if k not in table]:
        del entry[key]
    for key, value in table.items():
        if entry.get(key) != value:
            entry[key] = _toml_value(value)


def put_group(doc: TOMLDocument, name: str, table: Mapping[str, object] | None) -> None:
    """Make group `name` exactly `table` (None: remove it)."""
    groups = _super_table(doc, "groups")
    if table is None:
        groups.pop(name, None)
        return
    entry = tomlkit.table()
    for key, value in table.items():
        entry[key] = _toml_value(value)
    groups[name] = entry


def _toml_value(value: object) -> Any:
    """Tables inside a service (environment, health) stay inline, as a user writes them."""
    if isinstance(value, dict):
        inline = tomlkit.inline_table()
        inline.update({k: _toml_value(v) for k, v in value.items()})
        return inline
    return value


def describe_change(before: Mapping[str, object] | None, after: Mapping[str, object] | None
                    ) -> str:
    """What changed between two definitions of a service: 'code: v1 -> v3; python: base ->
    envs/pytest', 'added', 'removed'."""
    if before is None:
        return "added" if after is not None else "-"
    if after is None:
        return "removed"

    def value(table: Mapping[str, object], key: str) -> object:
        return table.get(key, SHOWN_DEFAULTS.get(key))

    keys = sorted(k for k in {*before, *after} if value(before, k) != value(after, k))
    return "; ".join(f"{k}: {show_value(value(before, k))} -> {show_value(value(after, k))}"
                     for k in keys) or "unchanged"


SHOWN_DEFAULTS = {"python": "base", "numprocs": 1}  # what a service without the key has


def show_value(value: object) -> str:  # on one line, control characters escaped
    return printable("-" if value is None else value if isinstance(value, str) else json.dumps(value))


def switch_services(spec_path: Path, services: list[str] | None, group: str | None,
                    version: str | None, python: str | None = None,
                    check: Callable[[Spec, list[str]], object] | None = None) -> dict[str, str]:
    """Point `services` (or every member of `group`) at code `version` and/or interpreter
    `python` in a project's bundle.toml, saved only once the new spec is valid and passes
    `check`; return what changed, by service."""
    moved: dict[str, str] = {}

    def change(doc: TOMLDocument) -> None:
        for name in group_members(doc, group) if group else list(services or []):
            before = service_table(doc, name)
            switch(doc, name, version, python)
            moved[name] = describe_change(before, service_table(doc, name))

    edit(spec_path, change, None if check is None else lambda spec: check(spec, list(moved)))
    return moved


def group_members(doc: TOMLDocument, group: str) -> list[str]:
    groups = doc.get("groups", {})
    if group not in groups:
        raise UsageError(f"no group {group!r} in bundle.toml{did_you_mean(group, groups)}")
    return [str(p) for p in groups[group].get("programs", [])]


def group_of(doc: TOMLDocument, name: str) -> str | None:
    """The group service `name` belongs to, if any."""
    return next((str(g) for g, table in doc.get("groups", {}).items()
                 if name in table.get("programs", [])), None)


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


def remove_code(doc: TOMLDocument, name: str) -> None:
    """Remove code version `name`, refused while a service runs it."""
    versions = doc.get("code", {})
    if name not in versions:
        raise UsageError(f"no code version {name!r} in bundle.toml{did_you_mean(name, versions)}")
    users = _services_where(doc, lambda table: str(table.get("code", "")) == name)
    if users:
        raise BundlerError(f"code {name} is in use by {users}: switch them to another version "
                           "(bundler switch SERVICE VERSION) or remove them first")
    _drop_table(doc, versions, name)


def remove_env(doc: TOMLDocument, name: str) -> None:
    """Remove interpreter envs/`name`, refused while a service runs it or a virtualenv sits on
    it."""
    name = normalize_python(name)
    if name == "base":
        raise UsageError("the base interpreter ([base]) runs bundler itself: it cannot be removed")
    envs = doc.get("envs", {})
    if name not in envs:
        raise UsageError(f"no env {name!r} in bundle.toml{did_you_mean(name, envs)}")
    users = _services_where(
        doc, lambda table: normalize_python(str(table.get("python", "base"))) == name)
    over = [str(e) for e, table in envs.items()
            if normalize_python(str(table.get("virtualenv", ""))) == name]
    if users or over:
        what = [f"services {users}" if users else "",
                f"virtualenvs {', '.join(f'envs/{e}' for e in over)} (made on it)" if over else ""]
        how = ["switch the services to another interpreter (bundler switch SERVICE --python ENV) "
               "or remove them" if users else "",
               "remove those virtualenvs or make them on another interpreter" if over else ""]
        raise BundlerError(f"env {name} is in use by {' and '.join(filter(None, what))}: "
                           + "; ".join(filter(None, how)) + " first")
    _drop_table(doc, envs, name)


def _services_where(doc: TOMLDocument, uses: Callable[[Any], bool]) -> str:
    """The services whose table `uses` says yes to, named with their group: 'svc1 (group sam),
    svc3' ('' for none)."""
    return ", ".join(f"{name} (group {group})" if (group := group_of(doc, str(name))) else str(name)
                     for name, table in doc.get("services", {}).items() if uses(table))


def _drop_table(doc: TOMLDocument, parent: Any, name: str) -> None:
    """Delete table `name` of `parent` with its own lines: its header, keys, and the comments
    among them; the comments after it that follow a blank line introduce what comes next, and
    stay (tomlkit holds them in the table's body: they move to the table before it)."""
    table = parent[name]
    body = table.value.body
    last_key = max((i for i, (key, _) in enumerate(body) if key is not None), default=-1)
    after = [item for _, item in body[last_key + 1:]]
    blank = next((i for i, item in enumerate(after) if isinstance(item, Whitespace)), len(after))
    kept = after[blank:]
    tables = _tables(doc)
    before = [t for t in tables[:next(i for i, t in enumerate(tables) if t is table)]
              if not t.is_super_table()]
    del parent[name]
    if before and any(not isinstance(item, Whitespace) for item in kept):
        before[-1].value.body.extend((None, item) for item in kept)


def _tables(container: Any) -> list[Table]:
    """Every table of the document, in the order of its text."""
    found = []
    for _, item in container.body:
        if isinstance(item, Table):
            found += [item, *_tables(item.value)]
    return found


def parse_assignment(text: str, what: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"{what} {text!r} must look like KEY=VALUE")
    return key.strip(), value


def parse_option(text: str) -> tuple[str, Any]:
    """--set KEY=VALUE: VALUE is read as a TOML value (10, true, [0, 2]) or else as a string;
    an environment.NAME variable's value is always the string as given."""
    key, raw = parse_assignment(text, "--set")
    if key.startswith("environment."):
        return key, raw
    try:
        value = tomlkit.parse(f"v = {raw}").unwrap()["v"]
    except TOMLKitError:
        value = raw
    return key, value
