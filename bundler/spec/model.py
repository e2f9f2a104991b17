"""What a bundle.toml says, as frozen dataclasses: the interpreters, code versions, services and
groups of one bundle, and its production settings. load.py builds them; nothing here reads files."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SPEC_VERSION = 1
FORMATS = ("tar.gz", "tar.zst", "dir")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
NAME_RULE = "use letters, digits, '_', '.', '-' (not first)"
# Services and groups become supervisor program and group names and conf.d file names, where a
# '.' would be read as the end of the name: they use no dots.
SERVICE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*\Z")
SERVICE_NAME_RULE = "use letters, digits, '_', '-' (not first); no '.'"
# Names a service or group may not take, each a name the bundle itself gives its own files or
# that supervisor reads otherwise: supervisord writes log/supervisord.log, the monitor is the
# program _monitor (log/_monitor.log, etc/conf.d/_monitor.*), supervisorctl reads `all` as every
# process. bundle/tree.py and bundle/layout.py name those files (a unit test holds them together).
RESERVED_NAMES = ("supervisord", "_monitor", "all")
PYTHON_WORD = re.compile(r"python(3(\.\d+)?)?\Z")  # a command's first word naming its python
ALERT_EVENTS = ("fatal", "exit", "health", "memory", "log")
# What a copied CPython leaves out of a server bundle unless `keep` names it (build/trim.py):
# tkinter (with turtle, its Tcl/Tk and X11 libraries), IDLE, the turtle demos, ensurepip's wheels.
KEEPABLE = ("tkinter", "idlelib", "turtledemo", "ensurepip")


@dataclass(frozen=True)
class Interpreter:
    """The base ("base") or one env: a copied CPython (prefix, executable or standalone archive),
    a conda environment packed with conda-pack, or a virtualenv on another one."""

    name: str
    python: str | None = None        # "current", "3.12" (standalone), a prefix / executable / archive
    virtualenv: str | None = None    # the bundle interpreter this virtualenv sits on
    conda: str | None = None         # a conda environment's prefix
    vendor_libs: bool = True         # copy the host libraries a copied CPython loads
    keep: tuple[str, ...] = ()       # parts of KEEPABLE a copied CPython ships all the same
    requirements: tuple[str, ...] = ()
    requirements_file: str | None = None


@dataclass(frozen=True)
class CodeVersion:
    name: str
    path: str | None = None
    git: str | None = None
    ref: str = "HEAD"
    pythonpath: tuple[str, ...] = (".",)
    bytecode: bool = False
    include: tuple[str, ...] = ()   # .gitignore-style patterns shipped whatever else says
    exclude: tuple[str, ...] = ()   # .gitignore-style patterns left out


@dataclass(frozen=True)
class Health:
    """A probe run by the bundle's monitor: `failures` misses in a row restart the service."""

    probe: str      # "http", "tcp" or "command"
    target: str     # the URL, host:port or command line
    every: float = 10.0
    timeout: float = 3.0
    failures: int = 3


@dataclass(frozen=True)
class Service:
    name: str
    command: str
    code: str
    python: str = "base"
    environment: Mapping[str, str] = field(default_factory=dict)
    numprocs: int = 1
    options: Mapping[str, Any] = field(default_factory=dict)
    group: str | None = None
    health: Health | None = None
    max_rss: int | None = None  # bytes: the monitor restarts the service above this


@dataclass(frozen=True)
class Listen:
    """A TCP endpoint bundler opens (supervisor's web UI, the metrics)."""

    port: int
    host: str = "127.0.0.1"
    username: str = "admin"


@dataclass(frozen=True)
class Supervisord:
    user: str | None = None          # supervisord drops to this user when started as root
    socket_group: str | None = None  # the socket is 0770 for this group (else 0700)
    http: Listen | None = None       # supervisor's inet_http_server, off unless asked


@dataclass(frozen=True)
class Alerts:
    webhook: str | None = None
    command: str | None = None
    on: tuple[str, ...] = ALERT_EVENTS
    retries: int = 3
    timeout: float = 5.0


@dataclass(frozen=True)
class Group:
    name: str
    programs: tuple[str, ...]
    priority: int | None = None


@dataclass(frozen=True)
class Spec:
    path: Path
    name: str
    version: str
    project: str
    format: str
    layout: str
    interpreters: Mapping[str, Interpreter]
    code: Mapping[str, CodeVersion]
    services: Mapping[str, Service]
    groups: Mapping[str, Group]
    supervisor: Supervisord = Supervisord()
    metrics: Listen | None = None
    alerts: Alerts | None = None
    trusted_keys: tuple[str, ...] = ()  # public key lines, or files of them (relative paths)
    site_config: str | None = None      # a folder of default files for etc/app/
    glibc: tuple[int, int] | None = None  # the oldest glibc the servers have (the floor)
    python_mirror: str | None = None    # where python = "3.12" finds standalone archives

    @property
    def monitored(self) -> bool:
        """Whether the bundle runs its monitor (health, memory, alerts, metrics)."""
        return bool(self.metrics or self.alerts
                    or any(s.health or s.max_rss for s in self.services.values()))

    @property
    def folder(self) -> Path:
        return self.path.parent


def normalize_python(value: str) -> str:
    """'base', 'pyocr' and 'envs/pyocr' all name bundle interpreters; return 'base' or 'pyocr'."""
    value = value.strip().rstrip("/")
    if value in ("", ".", "base"):
        return "base"
    return value[len("envs/"):] if value.startswith("envs/") else value
