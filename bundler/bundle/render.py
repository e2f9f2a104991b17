"""Render etc/supervisord.conf, etc/conf.d/*.ini and the bin/ launchers from templates.

Supervisor reads values in two steps: the ini parser (where whitespace followed by ';' or '#'
starts a comment, and lines end values), then '%(name)s' expansion, then its own splitting
(shlex for command=, a quote-stripping lexer for environment=). Values that survive all three
unchanged are written inline; a service with any other value is started through bundler.launch,
which reads its arguments and environment from a JSON file beside the .ini (launchspec.py).
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from bundler import __version__
from bundler.bundle import launchspec
from bundler.bundle.launchspec import LaunchSpec
from bundler.bundle.layout import GROUP_PREFIX, MONITOR, Layout
from bundler.bundle.records import MonitorConfig, Watched
from bundler.bundle.tree import META, Bundle
from bundler.errors import BundlerError
from bundler.spec.model import PYTHON_WORD, Service, Spec
from bundler.spec.values import CONTROL, ini_safe, log_names

LAUNCHERS = {
    "start": "start every service (relocating the bundle first if it moved) and wait for them",
    "stop": "stop supervisord and every process of this bundle",
    "supervisorctl": "supervisorctl for this bundle's supervisord",
    "bundler": "the bundler command of this bundle (status, start, stop, ...)",
}
DEFAULTS: dict[str, Any] = {
    "autostart": True, "autorestart": True, "startsecs": 3, "startretries": 5,
    "stopasgroup": True, "killasgroup": True, "redirect_stderr": True,
    "stdout_logfile_maxbytes": "50MB", "stdout_logfile_backups": 10,
}


@dataclass(frozen=True)
class Program:
    name: str
    python: str
    code: str
    command: str
    directory: str
    environment: str
    options: list[tuple[str, str]]
    launch: LaunchSpec | None


def templates() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("bundler", "templates"),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                              autoescape=False)


PRIVATE = 0o640  # files that hold services' environments: bundle.toml, etc/conf.d/*


def file_text(name: str, text: str) -> str:
    """`text` as generated file `name` holds it, refused if a control character (but the line
    ends), or in a supervisor config anything but ASCII, came through: the spec's checks keep
    them out, this is the last line of defence (JSON writes them escaped inside strings)."""
    bad = CONTROL.search(text.replace("\n", " "))
    if bad is None and name.endswith((".ini", ".conf")) and not text.isascii():
        bad = re.search(r"[^\x00-\x7f]", text)  # supervisor reads it in the locale's encoding
    if bad:
        line = text[:bad.start()].count("\n") + 1
        raise BundlerError(f"refusing to write {name}: line {line} would hold {bad[0]!r}, which "
                           "a supervisor config and its XML-RPC answers cannot carry "
                           f"({text.split(chr(10))[line - 1][:60]!r})")
    return text


def escape_percent(value: str) -> str:
    return value.replace("%", "%%")


def literal(value: str) -> str | None:
    """`value` escaped for %-expansion, or None when no escape exists: supervisor replaces the
    text '%(here)s' in every value before expanding, so even '%%(here)s' would be changed."""
    return None if "%(here)s" in value else escape_percent(value)


def env_value_inline(value: str) -> str | None:
    """`"value"` as supervisor's environment= lexer reads it back, or None if it cannot."""
    escaped = literal(value)
    if escaped is None or '"' in value or value.startswith("'") or value.endswith("'") \
            or "\x00" in value:
        return None
    rendered = f'"{escaped}"'
    return rendered if ini_safe(rendered) else None


def command_inline(words: list[str]) -> str | None:
    escaped = [literal(shlex.quote(w)) for w in words]
    if None in escaped:
        return None
    rendered = " ".join(w for w in escaped if w is not None)
    return rendered if ini_safe(rendered) and "\x00" not in rendered else None


def option_value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, list):
        text = ",".join(str(v) for v in value)
    else:
        text = str(value)
    if not ini_safe(text):
        raise BundlerError(f"option {key}={value!r} cannot be written to a supervisor config "
                           "(ASCII only, no control characters, no whitespace before ';' or '#')")
    return text


class Renderer:
    """Writes the generated files of one bundle; every path is relative to %(here)s."""

    def __init__(self, spec: Spec, layout: Layout, pythons: dict[str, str]):
        self.spec = spec
        self.layout = layout
        self.pythons = pythons  # interpreter name -> its python, relative to the bundle root
        self.jinja = templates()
        self.up = layout.up_from(layout.programs)  # from etc/conf.d back to the root

    def here(self, relative: str) -> str:
        return f"%(here)s/{self.up}/{relative}"

    def program(self, service: Service, root: Path) -> Program:
        layout, spec = self.layout, self.spec
        code_dir = layout.code_dir(spec.project, service.code)
        try:
            words = shlex.split(service.command)
        except ValueError as exc:
            raise BundlerError(f"service {service.name}: cannot split command "
                               f"{service.command!r}: {exc}") from exc
        program = self._program_path(words[0], service.python, root)
        own = self.own_environment(service, self.here)
        user_env = dict(service.environment)
        inline_env = {k: env_value_inline(v) for k, v in user_env.items()}
        args = command_inline(words[1:])
        env_items = {k: f'"{v}"' for k, v in own.items() if k not in user_env}
        launch = None
        if args is None or None in inline_env.values():
            launch = LaunchSpec(tuple(words[1:]), user_env)
            base_python = f'"{self.here(self.pythons["base"])}"'
            spec_file = f'"%(here)s/{launchspec.file_name(service.name)}"'
            command = f"{base_python} -I -m bundler.launch {spec_file} {program}"
        else:
            command = f"{program} {args}".rstrip()
            env_items.update({k: v for k, v in inline_env.items() if v is not None})
        return Program(
            name=service.name, python=service.python, code=service.code, command=command,
            directory=self.here(code_dir),
            environment=",".join(f"{k}={v}" for k, v in env_items.items()),
            options=[(k, option_value(k, v)) for k, v in self._options(service).items()],
            launch=launch)

    def own_environment(self, service: Service, place: Callable[[str], str]) -> dict[str, str]:
        """What bundler adds to a service's environment (the service's own environment wins over
        it), each path in the bundle written by `place`: the code version's pythonpath and the
        site configuration."""
        code_dir = self.layout.code_dir(self.spec.project, service.code)
        pythonpath = ":".join(place(code_dir if e in (".", "") else f"{code_dir}/{e}")
                              for e in self.spec.code[service.code].pythonpath)
        return {"PYTHONUNBUFFERED": "1", "PYTHONPATH": pythonpath,
                "PYTHON_APP_CONF": place(self.layout.site_config)}

    def _options(self, service: Service) -> dict[str, Any]:
        """The [program:x] options: bundler's defaults, log files, then the user's own."""
        options = dict(DEFAULTS)
        log_name = "%(program_name)s"
        if service.numprocs > 1:
            log_name = "%(program_name)s_%(process_num)02d"
            options["numprocs"] = service.numprocs
            options["process_name"] = log_name
        options["stdout_logfile"] = self.here(f"{self.layout.log}/{log_name}.log")
        options.update(service.options)
        if options.get("redirect_stderr") is False:
            options.setdefault("stderr_logfile", self.here(f"{self.layout.log}/{log_name}.err.log"))
        return options

    def program_in_bundle(self, first: str, python: str, root: Path) -> str | None:
        """The program a command's first word names in the bundle, relative to its root: 'python'
        is the interpreter `python`, a script of the interpreter's bin/ that script; None for any
        other (a path, or a name looked up on PATH)."""
        interpreter = self.pythons[python]
        if PYTHON_WORD.fullmatch(first):
            return interpreter
        if "/" not in first:
            script = str(Path(interpreter).parent / first)
            if (root / script).is_file():
                return script
        return None

    def _program_path(self, first: str, python: str, root: Path) -> str:
        inside = self.program_in_bundle(first, python, root)
        if inside is not None:
            return f'"{self.here(inside)}"'
        escaped = literal(shlex.quote(first))
        if escaped is None or not ini_safe(escaped):
            raise BundlerError(f"command {first!r}: a program path cannot contain '%(here)s', "
                               "a control character, a space before ';' or '#', or non-ASCII")
        return escaped

    def program_files(self, root: Path) -> dict[str, str]:
        """The files of etc/conf.d (name -> text): one .ini per service and group, and a
        .launch.json for each service started through bundler.launch."""
        self.check_logs_apart(root)
        files = {}
        template = self.jinja.get_template("program.ini.j2")
        for service in self.spec.services.values():
            p = self.program(service, root)
            files[f"{service.name}.ini"] = template.render(p=p)
            if p.launch is not None:
                files[launchspec.file_name(service.name)] = p.launch.text()
        group_template = self.jinja.get_template("group.ini.j2")
        for group in self.spec.groups.values():
            files[f"{GROUP_PREFIX}{group.name}.ini"] = group_template.render(g=group)
        if self.spec.monitored:
            files[f"{MONITOR}.ini"] = self.jinja.get_template("monitor.ini.j2").render(
                name=MONITOR, python=f'"{self.here(self.pythons["base"])}"',
                log=self.here(f"{self.layout.log}/{MONITOR}.log"))
            files[f"{MONITOR}.json"] = self.monitor_config().text()
        return {name: file_text(name, text) for name, text in files.items()}

    def check_logs_apart(self, root: Path) -> None:
        """Refuse two writers of one file in log/: services' processes, supervisord, the monitor
        (the spec's checks refuse it first; this holds whatever the names)."""
        owner = {Bundle(root, self.layout).supervisord_log.stem: "supervisord", MONITOR: MONITOR}
        for service in self.spec.services.values():
            for stem in log_names(service.name, service.numprocs,
                                  service.options.get("numprocs_start", 0)):
                if stem in owner:
                    raise BundlerError(f"service {service.name}: its log {self.layout.log}/"
                                       f"{stem}.log is {owner[stem]}'s: rename the service")
                owner[stem] = f"service {service.name}"

    def monitor_config(self) -> MonitorConfig:
        """What the monitor watches; paths relative to the bundle root."""
        spec = self.spec
        services = {s.name: Watched(s.name, s.health, s.max_rss, self.pythons[s.python],
                                    self.layout.code_dir(spec.project, s.code))
                    for s in spec.services.values() if s.health is not None or s.max_rss is not None}
        return MonitorConfig(spec.name, spec.version, services, tuple(spec.services),
                             f"{self.layout.log}/supervisord.log", spec.alerts, spec.metrics)

    def write(self, root: Path) -> None:
        layout = self.layout
        etc, programs = root / layout.etc, root / layout.programs
        programs.mkdir(parents=True, exist_ok=True)
        for folder in (layout.log, layout.run, layout.site_config, META):
            (root / folder).mkdir(parents=True, exist_ok=True)
        conf = self.jinja.get_template("supervisord.conf.j2").render(
            bundler_version=__version__, name=self.spec.name, version=self.spec.version,
            up=layout.up_from(layout.etc), log=layout.log, run=layout.run,
            programs_from_etc=os.path.relpath(layout.programs, layout.etc),
            supervisor=self.spec.supervisor)
        (etc / "supervisord.conf").write_text(file_text("supervisord.conf", conf), encoding="utf-8")
        for name, text in self.program_files(root).items():
            (programs / name).write_text(text, encoding="utf-8")
            (programs / name).chmod(PRIVATE)  # services' environments: tokens, passwords
        self.write_launchers(root / "bin")

    def write_launchers(self, bin_dir: Path) -> None:
        template = self.jinja.get_template("launcher.sh.j2")
        bin_dir.mkdir(parents=True, exist_ok=True)
        for verb, doc in LAUNCHERS.items():
            path = bin_dir / verb
            if path.is_symlink() or path.exists():
                path.unlink()
            path.write_text(template.render(doc=f"bin/{verb}: {doc}.",
                                            verb="" if verb == "bundler" else f"{verb} "))
            path.chmod(0o755)
