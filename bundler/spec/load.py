"""Reading bundle.toml: TOML into the model (model.py), every value checked, every error naming the
file, the line and the key, with a "did you mean" where a name is close to a known one."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError

from bundler.errors import BundlerError
from bundler.spec import values
from bundler.spec.checker import Checker, SpecError, did_you_mean, toml_error
from bundler.spec.model import (
    ALERT_EVENTS,
    FORMATS,
    KEEPABLE,
    NAME_RE,
    NAME_RULE,
    SPEC_VERSION,
    Alerts,
    CodeVersion,
    Group,
    Health,
    Interpreter,
    Listen,
    Service,
    Spec,
    Supervisord,
    normalize_python,
)

ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
RESERVED_ENV = ("BUNDLE_ROOT", "BUNDLER_TOKEN", "BUNDLER_SOCKET")

# [program:x] keys of supervisor that a service may set, with the TOML types each accepts.
PASSTHROUGH: dict[str, tuple[type, ...]] = {
    "autostart": (bool,), "autorestart": (bool, str), "exitcodes": (int, list),
    "startsecs": (int,), "startretries": (int,), "stopsignal": (str,), "stopwaitsecs": (int,),
    "stopasgroup": (bool,), "killasgroup": (bool,), "priority": (int,), "user": (str,),
    "umask": (str,), "process_name": (str,), "numprocs_start": (int,),
    "redirect_stderr": (bool,), "stdout_logfile_maxbytes": (str, int),
    "stdout_logfile_backups": (int,), "stderr_logfile_maxbytes": (str, int),
    "stderr_logfile_backups": (int,), "stdout_capture_maxbytes": (str, int),
    "stdout_events_enabled": (bool,), "stderr_events_enabled": (bool,),
    "stdout_syslog": (bool,), "stderr_syslog": (bool,),
}
SERVICE_KEYS = ("command", "python", "code", "environment", "numprocs", "health", "max_rss",
                *PASSTHROUGH)
TOP_KEYS = ("spec_version", "bundle", "base", "envs", "code", "services", "groups", "supervisor",
            "metrics", "alerts", "build")
BUNDLE_KEYS = ("name", "version", "project", "format", "layout", "trusted_keys", "site_config",
               "glibc", "python_mirror")
BASE_KEYS = ("python", "conda", "vendor_libs", "keep", "packages", "requirements_file")
ENV_KEYS = ("virtualenv", "python", "conda", "vendor_libs", "keep", "requirements",
            "requirements_file")
CODE_KEYS = ("path", "git", "ref", "pythonpath", "bytecode", "include", "exclude")
GROUP_KEYS = ("programs", "priority")
SUPERVISOR_KEYS = ("user", "socket_group", "http")
HTTP_KEYS = ("port", "host", "allow_remote", "username")
METRICS_KEYS = ("port", "host", "allow_remote")
ALERT_KEYS = ("webhook", "command", "on", "retries", "timeout")
PROBES = ("http", "tcp", "command")
HEALTH_KEYS = (*PROBES, "every", "timeout", "failures")
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B)?\s*\Z", re.IGNORECASE)


def load_spec(path: Path) -> Spec:
    """Read and validate `path` (a bundle.toml or a folder that holds one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "bundle.toml"
    try:
        text = read_text(path)
    except FileNotFoundError as exc:
        raise BundlerError(f"{path}: no such file (run `bundler init` to create one)") from exc
    return parse_spec(text, path)


def read_text(path: Path) -> str:
    """The text of the TOML file `path`; FileNotFoundError is left to the caller."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise BundlerError(f"{path}: cannot be read ({exc.strerror})") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise SpecError(f"{path}:{line}: is not UTF-8 text (byte {data[exc.start]:#04x}); "
                        "TOML files are UTF-8") from None


def parse_spec(text: str, path: Path) -> Spec:
    return spec_of(read_toml(text, path), text, path)


def read_toml(text: str, path: Path) -> dict[str, Any]:
    """The TOML document in `text` (read from `path`) as plain values."""
    try:
        raw: dict[str, Any] = tomlkit.parse(text).unwrap()
    except TOMLKitError as exc:
        raise toml_error(exc, text, path) from exc
    return raw


def spec_of(raw: dict[str, Any], text: str, path: Path) -> Spec:
    """Validate a document `read_toml` returned; errors name the lines of `text`."""
    return _build(raw, Checker(path, text), path.resolve())


def _build(raw: dict[str, Any], c: Checker, path: Path) -> Spec:
    _check_top(raw, c)
    values.no_control_characters(raw, c)
    version = c.typed(raw, (), "spec_version", (int,), default=SPEC_VERSION)
    if version > SPEC_VERSION:
        raise c.fail((), "spec_version", f"spec_version {version} is newer than this bundler "
                     f"understands ({SPEC_VERSION}): upgrade bundler")

    b = c.table(raw.get("bundle", {}), ("bundle",), BUNDLE_KEYS)
    name = c.typed(b, ("bundle",), "name", (str,), required=True)
    c.name(("bundle",), name)
    bundle_version = str(c.typed(b, ("bundle",), "version", (str, int), required=True))
    values.version(c, bundle_version)
    project = c.typed(b, ("bundle",), "project", (str,), default=name)
    c.name(("bundle",), project)
    fmt = c.typed(b, ("bundle",), "format", (str,), default="tar.gz")
    if fmt not in FORMATS:
        raise c.fail(("bundle",), "format", f"format {fmt!r} is not one of {', '.join(FORMATS)}"
                     + did_you_mean(fmt, FORMATS))
    layout = c.typed(b, ("bundle",), "layout", (str,), default="miniconda")
    trusted_keys = c.strings(b, ("bundle",), "trusted_keys")
    site_config = c.typed(b, ("bundle",), "site_config", (str,))
    glibc = values.glibc(c, c.typed(b, ("bundle",), "glibc", (str,)))
    python_mirror = c.typed(b, ("bundle",), "python_mirror", (str,))

    interpreters = {"base": _base(raw.get("base", {}), c)}
    envs_raw = c.typed(raw, (), "envs", (dict,), default={})
    for env_name, env_raw in envs_raw.items():
        c.name(("envs", env_name), env_name)
        if env_name == "base":
            raise c.fail(("envs", env_name), None, "'base' is reserved for the base interpreter")
        interpreters[env_name] = _env(env_name, env_raw, c)
    _check_virtualenv_parents(interpreters, c)

    code = {n: _code(n, r, c) for n, r in c.typed(raw, (), "code", (dict,), default={}).items()}
    groups_raw = c.typed(raw, (), "groups", (dict,), default={})
    services_raw = c.typed(raw, (), "services", (dict,), default={})
    membership: dict[str, str] = {}
    groups = {}
    for gname, graw in groups_raw.items():
        groups[gname] = _group(gname, graw, c, services_raw, membership)
    services = {}
    for sname, sraw in services_raw.items():
        services[sname] = _service(sname, sraw, c, interpreters, code, membership.get(sname))
    values.unique_logs(c, {s.name: (s.numprocs, s.options.get("numprocs_start", 0))
                           for s in services.values()})
    supervisor = _supervisor(raw.get("supervisor", {}), c, services_raw)
    metrics = _listen(raw["metrics"], ("metrics",), c, METRICS_KEYS) if "metrics" in raw else None
    alerts = _alerts(raw["alerts"], c) if "alerts" in raw else None
    return Spec(path=path, name=name, version=bundle_version, project=project, format=fmt,
                layout=layout, interpreters=interpreters, code=code, services=services,
                groups=groups, supervisor=supervisor, metrics=metrics, alerts=alerts,
                trusted_keys=trusted_keys, site_config=site_config, glibc=glibc,
                python_mirror=python_mirror)


def _check_top(raw: Mapping[str, Any], c: Checker) -> None:
    for key in raw:
        if key not in TOP_KEYS:
            raise c.fail((), key, f"unknown key {key!r}{did_you_mean(key, TOP_KEYS)}")


def _base(raw: Any, c: Checker) -> Interpreter:
    t = ("base",)
    raw = c.table(raw, t, BASE_KEYS)
    conda = c.typed(raw, t, "conda", (str,))
    python = c.typed(raw, t, "python", (str,), default=None if conda else "current")
    if python and conda:
        raise c.fail(t, "conda", "needs one of python = PREFIX or conda = ENV_PREFIX, not both")
    return Interpreter(name="base", python=python, conda=conda,
                       vendor_libs=_vendor_libs(raw, t, c, python), keep=_keep(raw, t, c, python),
                       requirements=_requirements(raw, t, c, "packages"),
                       requirements_file=_in_project(raw, t, c, "requirements_file"))


def _env(name: str, raw: Any, c: Checker) -> Interpreter:
    t = ("envs", name)
    raw = c.table(raw, t, ENV_KEYS)
    venv = c.typed(raw, t, "virtualenv", (str,))
    python = c.typed(raw, t, "python", (str,))
    conda = c.typed(raw, t, "conda", (str,))
    if [venv, python, conda].count(None) != 2:
        raise c.fail(t, None, "needs exactly one of virtualenv = ENV, python = PREFIX or "
                     "conda = ENV_PREFIX")
    return Interpreter(name=name, python=python, conda=conda,
                       virtualenv=normalize_python(venv) if venv is not None else None,
                       vendor_libs=_vendor_libs(raw, t, c, python), keep=_keep(raw, t, c, python),
                       requirements=_requirements(raw, t, c, "requirements"),
                       requirements_file=_in_project(raw, t, c, "requirements_file"))


def _requirements(raw: Mapping[str, Any], t: tuple[str, ...], c: Checker,
                  key: str) -> tuple[str, ...]:
    """Each one argument of pip install: '-r/etc/passwd' had pip print that file's first line."""
    found = c.strings(raw, t, key)
    for requirement in found:
        if requirement.lstrip().startswith("-"):
            raise c.fail(t, key, f"{key} names {requirement!r}, a pip option, not a requirement: "
                         "name packages here (options such as -e go in a requirements_file)")
    return found


def _in_project(raw: Mapping[str, Any], t: tuple[str, ...], c: Checker, key: str) -> str | None:
    """A file of the project: a relative path that stays inside it (the build also refuses one
    that leads out through a link)."""
    value = c.typed(raw, t, key, (str,))
    if value is not None and (not value or value.startswith(("/", "~")) or ".." in Path(value).parts):
        raise c.fail(t, key, f"{key} {value!r} must be a file of the project: a relative path "
                     "inside the folder of bundle.toml")
    return value


def _vendor_libs(raw: Mapping[str, Any], t: tuple[str, ...], c: Checker, python: str | None) -> bool:
    if "vendor_libs" in raw and python is None:
        raise c.fail(t, "vendor_libs", "vendor_libs applies to copied CPythons (python = ...); "
                     "conda environments carry their own libraries, virtualenvs their parent's")
    return bool(c.typed(raw, t, "vendor_libs", (bool,), default=True))


def _keep(raw: Mapping[str, Any], t: tuple[str, ...], c: Checker,
          python: str | None) -> tuple[str, ...]:
    """keep = ["tkinter"]: what a copied CPython ships although a server does not need it."""
    if "keep" in raw and python is None:
        raise c.fail(t, "keep", "keep applies to copied CPythons (python = ...), whose standard "
                     "library bundler trims; a virtualenv has its parent's, a conda environment "
                     "its packages")
    kept = c.strings(raw, t, "keep")
    for name in kept:
        if name not in KEEPABLE:
            raise c.fail(t, "keep", f"keep names {name!r}, which is not one of "
                         f"{', '.join(KEEPABLE)}{did_you_mean(name, KEEPABLE)}")
    return tuple(sorted(set(kept)))


def _check_virtualenv_parents(interpreters: Mapping[str, Interpreter], c: Checker) -> None:
    for interp in interpreters.values():
        parent = interp.virtualenv
        if parent is None:
            continue
        t = ("envs", interp.name)
        if parent not in interpreters:
            raise c.fail(t, "virtualenv", f"virtualenv names {parent!r}, which is neither 'base' "
                         f"nor an env{did_you_mean(parent, interpreters)}")
        if interpreters[parent].virtualenv is not None:
            raise c.fail(t, "virtualenv", f"virtualenv {parent!r} is itself a virtualenv: "
                         "build it on a real interpreter (base or a python = env)")


def _code(name: str, raw: Any, c: Checker) -> CodeVersion:
    t = ("code", name)
    c.name(t, name)
    raw = c.table(raw, t, CODE_KEYS)
    path = c.typed(raw, t, "path", (str,))
    git = c.typed(raw, t, "git", (str,))
    if (path is None) == (git is None):
        raise c.fail(t, None, "needs exactly one of path = DIR or git = REPO (with ref = REF)")
    if path is not None and "ref" in raw:
        raise c.fail(t, "ref", "ref only applies to git = REPO")
    pythonpath = c.strings(raw, t, "pythonpath") if "pythonpath" in raw else (".",)
    for entry in pythonpath:
        if entry.startswith("/") or ".." in Path(entry).parts:
            raise c.fail(t, "pythonpath", f"pythonpath entry {entry!r} must stay inside the code folder")
    return CodeVersion(name=name, path=path, git=git, ref=c.typed(raw, t, "ref", (str,), "HEAD"),
                       pythonpath=pythonpath, bytecode=c.typed(raw, t, "bytecode", (bool,), False),
                       include=c.strings(raw, t, "include"), exclude=c.strings(raw, t, "exclude"))


def _group(name: str, raw: Any, c: Checker, services: Mapping[str, Any],
           membership: dict[str, str]) -> Group:
    t = ("groups", name)
    c.name(t, name, service=True)
    raw = c.table(raw, t, GROUP_KEYS)
    programs = c.strings(raw, t, "programs")
    if not programs:
        raise c.fail(t, "programs", "programs must name at least one service")
    if name in services:
        raise c.fail(t, None, f"group {name!r} has the same name as a service")
    for program in programs:
        if program not in services:
            raise c.fail(t, "programs", f"programs names {program!r}, which is not a service"
                         + did_you_mean(program, services))
        if program in membership:
            raise c.fail(t, "programs", f"service {program!r} is already in group "
                         f"{membership[program]!r}; a service belongs to one group at most")
        membership[program] = name
    return Group(name=name, programs=programs, priority=c.typed(raw, t, "priority", (int,)))


def _service(name: str, raw: Any, c: Checker, interpreters: Mapping[str, Interpreter],
             code: Mapping[str, CodeVersion], group: str | None) -> Service:
    t = ("services", name)
    c.name(t, name, service=True)
    raw = c.table(raw, t, SERVICE_KEYS)
    command = c.typed(raw, t, "command", (str,), required=True)
    if not command.strip():
        raise c.fail(t, "command", "command is empty")
    values.command_words(c, t, command)
    python = normalize_python(c.typed(raw, t, "python", (str,), default="base"))
    if python not in interpreters:
        raise c.fail(t, "python", f"python names {python!r}, which is neither 'base' nor an env"
                     + did_you_mean(python, interpreters))
    version = c.typed(raw, t, "code", (str,), required=True)
    if version not in code:
        raise c.fail(t, "code", f"code names version {version!r}, which is not declared"
                     + did_you_mean(version, code))
    env_raw = c.typed(raw, t, "environment", (dict,), default={})
    environment = {}
    for key, value in env_raw.items():
        if not ENV_KEY_RE.fullmatch(key):
            raise c.fail(t, "environment", f"environment variable name {key!r} is invalid")
        if key in RESERVED_ENV:
            raise c.fail(t, "environment", f"{key} is set by bundler for every service (it is how "
                         "bin/stop knows the bundle's processes)")
        if isinstance(value, bool):
            value = "true" if value else "false"
        if not isinstance(value, (str, int, float)):
            raise c.fail(t, "environment", f"environment {key} must be a string or a number")
        environment[key] = str(value)
    numprocs = c.typed(raw, t, "numprocs", (int,), default=1)
    options = {}
    for key, types in PASSTHROUGH.items():
        if key in raw:
            options[key] = c.typed(raw, t, key, types)
    values.account(c, t, "user", options.get("user"))
    if isinstance(options.get("autorestart"), str) and options["autorestart"] != "unexpected":
        raise c.fail(t, "autorestart", "autorestart must be true, false or \"unexpected\"")
    if numprocs > 1 and "process_name" in options and "%(process_num)" not in options["process_name"]:
        raise c.fail(t, "process_name", "with numprocs > 1, process_name must contain %(process_num)s")
    values.supervisor_options(c, t, name, options, numprocs)
    health = _health(raw["health"], t, c) if "health" in raw else None
    if health is not None and numprocs > 1:
        raise c.fail(t, "health", "health checks need numprocs = 1: one address cannot tell which "
                     "of several processes is unhealthy")
    max_rss = None
    if "max_rss" in raw:
        max_rss = parse_size(c.typed(raw, t, "max_rss", (str, int)))
        if max_rss is None or max_rss <= 0:
            raise c.fail(t, "max_rss", f"max_rss {raw['max_rss']!r} is not a size like \"512MB\"")
    return Service(name=name, command=command, code=version, python=python,
                   environment=environment, numprocs=numprocs, options=options, group=group,
                   health=health, max_rss=max_rss)


def parse_size(value: str | int) -> int | None:
    """Bytes in "512MB", "1.5GiB", "200K" or a plain integer (K, M, G, T are powers of 1024,
    as in supervisor's own sizes); None when `value` is no size."""
    if isinstance(value, int):
        return value
    match = _SIZE.fullmatch(value)
    if not match:
        return None
    return int(float(match.group(1)) * 1024 ** " KMGT".index(match.group(2).upper() or " "))


def _number(raw: Mapping[str, Any], t: tuple[str, ...], key: str, c: Checker,
            default: float, at: str | None = None) -> float:
    """A positive number; errors point at the line of `at` (the inline table holding it)."""
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise c.fail(t, at or key, f"{key} must be a number more than 0, not {value!r}")
    return float(value)


def _health(raw: Any, t: tuple[str, ...], c: Checker) -> Health:
    raw = c.table(raw, (*t, "health"), HEALTH_KEYS)
    probes = [p for p in PROBES if p in raw]
    if len(probes) != 1:
        raise c.fail(t, "health", "health needs exactly one of http = URL, tcp = \"HOST:PORT\" "
                     "or command = CMD")
    probe = probes[0]
    target = c.typed(raw, t, probe, (str,))
    if probe == "http" and not target.startswith(("http://", "https://")):
        raise c.fail(t, "health", f"health http {target!r} must be an http:// or https:// URL")
    if probe == "tcp" and not re.fullmatch(r"\[?[^\s\]]+\]?:\d+", target):
        raise c.fail(t, "health", f"health tcp {target!r} must be HOST:PORT")
    failures = c.typed(raw, t, "failures", (int,), default=3)
    if failures < 1:
        raise c.fail(t, "health", "health failures must be at least 1")
    return Health(probe=probe, target=target, every=_number(raw, t, "every", c, 10.0, "health"),
                  timeout=_number(raw, t, "timeout", c, 3.0, "health"), failures=failures)


def _listen(raw: Any, t: tuple[str, ...], c: Checker, keys: tuple[str, ...]) -> Listen:
    raw = c.table(raw, t, keys)
    port = c.typed(raw, t, "port", (int,), required=True)
    if not 0 < port < 65536:
        raise c.fail(t, "port", f"port {port} is not a TCP port (1-65535)")
    host, loopback = values.listen_host(c, t, c.typed(raw, t, "host", (str,), default="127.0.0.1"),
                                        ipv4_only=t == ("supervisor", "http"))
    if not loopback and not c.typed(raw, t, "allow_remote", (bool,), default=False):
        raise c.fail(t, "host", f"host {host!r} opens the port to other machines: add "
                     "allow_remote = true to mean it (the default, 127.0.0.1, stays on this host)")
    username = c.typed(raw, t, "username", (str,), default="admin")
    if not NAME_RE.fullmatch(username):
        raise c.fail(t, "username", f"username {username!r} is invalid: {NAME_RULE}")
    return Listen(port=port, host=host, username=username)


def _supervisor(raw: Any, c: Checker, services: Mapping[str, Any]) -> Supervisord:
    t = ("supervisor",)
    raw = c.table(raw, t, SUPERVISOR_KEYS)
    user = c.typed(raw, t, "user", (str,))
    values.account(c, t, "user", user)
    for name, service in services.items():
        if user and isinstance(service, Mapping) and service.get("user", user) != user:
            raise c.fail(("services", name), "user", f"user {service['user']!r}: supervisord runs "
                         f"as {user!r} ([supervisor] user), which cannot start a process as "
                         "another user")
    http = _listen(raw["http"], (*t, "http"), c, HTTP_KEYS) if "http" in raw else None
    socket_group = c.typed(raw, t, "socket_group", (str,))
    values.account(c, t, "socket_group", socket_group)
    return Supervisord(user=user, socket_group=socket_group, http=http)


def _alerts(raw: Any, c: Checker) -> Alerts:
    t = ("alerts",)
    raw = c.table(raw, t, ALERT_KEYS)
    webhook = c.typed(raw, t, "webhook", (str,))
    command = c.typed(raw, t, "command", (str,))
    if webhook is None and command is None:
        raise c.fail(t, None, "needs webhook = URL, command = CMD or both")
    if webhook is not None and not webhook.startswith(("http://", "https://")):
        raise c.fail(t, "webhook", f"webhook {webhook!r} must be an http:// or https:// URL")
    on = c.strings(raw, t, "on") if "on" in raw else ALERT_EVENTS
    for event in on:
        if event not in ALERT_EVENTS:
            raise c.fail(t, "on", f"on names {event!r}, which is not one of "
                         f"{', '.join(ALERT_EVENTS)}{did_you_mean(event, ALERT_EVENTS)}")
    retries = c.typed(raw, t, "retries", (int,), default=3)
    if not 0 <= retries <= 10:
        raise c.fail(t, "retries", "retries must be between 0 and 10")
    return Alerts(webhook=webhook, command=command, on=tuple(on), retries=retries,
                  timeout=_number(raw, t, "timeout", c, 5.0))
