"""`bin/bundler run SERVICE -- CMD ...`: a one-off command (a migration, a shell) run as a process
of SERVICE is: a leading `python` (or a script of the interpreter's bin/) is the service's
interpreter; the code version on PYTHONPATH, the environment and the working folder are those
render.py gives the service's program, on top of what supervisord passes every service
(supervisord_env); its user (dropped to when run as root) and umask. The command has this
terminal, and its exit code is the caller's.

It changes nothing, so it takes no lock; the history records it as it starts (a shell may last
for hours). It does not carry the bundle's run/token, which marks the bundle's own processes: a
shell left open is no process bin/stop kills, nor one that keeps bin/start from starting.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from bundler.bundle.manifest import Manifest
from bundler.bundle.render import Renderer
from bundler.bundle.tree import Bundle
from bundler.server import history
from bundler.server.control import require_service
from bundler.server.history import HistoryEntry
from bundler.server.lifecycle import supervisord_env
from bundler.server.supervisor import recorded_socket
from bundler.server.transact import check_runnable

SUPERVISORD_UMASK = 0o027  # supervisord.conf's umask=, which every service inherits
# What an interactive command needs of the caller's terminal beyond what services get.
TERMINAL_ENV = ("TERM", "COLORTERM", "COLUMNS", "LINES")


@dataclass(frozen=True)
class OneOff:
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    user: str | None  # the user to become (only when run as root)
    umask: int


def prepare(bundle: Bundle, name: str, command: list[str]) -> OneOff:
    """How `command` runs as a process of service `name`."""
    manifest = Manifest.read(bundle.manifest)
    spec = manifest.spec
    service = require_service(spec, name)
    check_runnable(bundle, manifest, service)
    renderer = Renderer(spec, bundle.layout, manifest.build.pythons)
    root = bundle.root

    def place(relative: str) -> str:  # as supervisor reads the service's %(here)s/../../x
        return renderer.here(relative).replace("%(here)s", str(bundle.programs), 1)

    program = renderer.program_in_bundle(command[0], service.python, root)
    env = supervisord_env(bundle, recorded_socket(bundle))
    env.update({k: os.environ[k] for k in TERMINAL_ENV if k in os.environ})
    env.update(renderer.own_environment(service, place))
    env.update(service.environment)
    user = service.options.get("user") or spec.supervisor.user
    try:
        umask = int(str(service.options.get("umask", "")), 8)
    except ValueError:
        umask = SUPERVISORD_UMASK
    return OneOff(argv=[place(program) if program else command[0], *command[1:]],
                  cwd=Path(place(bundle.layout.code_dir(spec.project, service.code))), env=env,
                  user=user if user and os.geteuid() == 0 else None, umask=umask)


def record(bundle: Bundle, name: str, command: list[str]) -> str | None:
    """Add the run to the history; why it could not be (the caller may not write it), or None."""
    try:
        history.stamp(bundle, [HistoryEntry("run", "started", service=name,
                                            detail=shlex.join(command))])
    except OSError as exc:
        return f"not recorded in the history: {exc.strerror or exc}: {bundle.history}"
    return None


def run(one: OneOff, name: str) -> int:
    """Run it on this terminal; its exit code (128 + N when killed by signal N, as shells say)."""
    from bundler.runner import interactive

    code = interactive(one.argv, what=f"run {name}", cwd=one.cwd, env=one.env, user=one.user,
                       umask=one.umask)
    return 128 - code if code < 0 else code
