"""The operator's commands of a built bundle that act on one service or group without changing it:
restart and run; and what `start SERVICE` and `stop SERVICE` (bundle.py's start and stop, given a
name) print."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bundler.cli import output
from bundler.cli.options import root_option, timeout_option
from bundler.cli.shell import complete
from bundler.errors import BundlerError, UsageError

if TYPE_CHECKING:
    from bundler.server.control import Acted

_group_option = click.option("--group", metavar="GROUP", shell_complete=complete("groups"),
                            help="Every service of this group, one after the other.")


def service_or_group(command: Any) -> Any:
    """[SERVICE] and --group GROUP: what start and stop act on instead of the whole bundle."""
    return click.argument("service", required=False, shell_complete=complete("services"))(
        _group_option(command))


def _told(acted: Acted, verb: str) -> None:
    """Print what a restart, stop or start did; raise when a process did not come back."""
    for entry in acted.entries:
        if entry.result == "unchanged":
            click.echo(f"{entry.service}: already {'stopped' if verb == 'stopped' else 'running'}")
        elif entry.result != "failed":
            click.echo(f"{verb} {entry.service}: {entry.detail}")
    for name, stop in acted.left.items():
        click.echo(f"left {name} stopped ({stop.describe()}; bin/bundler start {name} starts it)")
    if acted.failed:
        for failure in acted.failed:
            output.log_tail(f"--- {failure.process} is {failure.state}"
                            + (f"; {failure.why}" if failure.why else "") + "; end of its log:",
                            failure.log)
        names = ", ".join(f.process for f in acted.failed)
        raise BundlerError(f"{names} did not reach RUNNING and pass its health probe; the "
                           "processes after it were left as they were")
    if not acted.live and verb != "restarted":
        click.echo("supervisord is not running: bin/start "
                   + ("leaves it stopped" if verb == "stopped" else "starts it"))


def stop_services(root: Path | None, service: str | None, group: str | None) -> None:
    from bundler.bundle.tree import open_bundle
    from bundler.server import control

    _told(control.stop(open_bundle(root), service, group), "stopped")


def start_services(root: Path | None, service: str | None, group: str | None,
                   timeout: float, foreground: bool) -> None:
    from bundler.bundle.tree import open_bundle
    from bundler.server import control

    if foreground:
        raise UsageError("--foreground starts the whole bundle: give no SERVICE or --group")

    _told(control.start(open_bundle(root), service, group, timeout), "started")


@click.command("restart")
@service_or_group
@root_option
@timeout_option
def restart_cmd(service: str | None, group: str | None, root: Path | None,
                timeout: float) -> None:
    """Restart SERVICE (or every service of --group) one process at a time: each is waited for
    until RUNNING and, when its service has a health probe, healthy, before the next is
    restarted, so a numprocs service always keeps one running. A process that does not come back
    ends the command (exit 1, with the end of its log); the ones after it are left as they were.
    A service stopped by `stop SERVICE` is not restarted (start it).

    \b
    Examples:
      bin/bundler restart web
      bin/bundler restart --group sam --timeout 30
    """
    from bundler.bundle.tree import open_bundle
    from bundler.server import control

    _told(control.restart(open_bundle(root), service, group, timeout), "restarted")


@click.command("run", context_settings={"ignore_unknown_options": True,
                                        "allow_interspersed_args": False})
@root_option
@click.argument("service", shell_complete=complete("services"))
@click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="-- CMD [ARG]...")
def run_cmd(root: Path | None, service: str, command: tuple[str, ...]) -> None:
    """Run CMD once as a process of SERVICE runs: a leading `python` (or a script of its
    interpreter's bin/, like flask or alembic) is the service's interpreter; its code version on
    PYTHONPATH, its environment, its code folder as working folder, its user (when run as
    root) and umask. CMD has this terminal; its exit code is this command's. The history
    records it as it starts.

    \b
    Examples:
      bin/bundler run web -- python -m flask db upgrade
      bin/bundler run web -- bash
      sudo bin/bundler run svc3 -- python -c 'import os; print(os.getcwd())'
    """
    from bundler.bundle.tree import open_bundle
    from bundler.server import oneoff

    words = list(command)
    if words[:1] == ["--"]:
        words = words[1:]
    if not words:
        raise UsageError(f"give the command to run: bin/bundler run {service} -- CMD [ARG]...")
    bundle = open_bundle(root)
    one = oneoff.prepare(bundle, service, words)
    problem = oneoff.record(bundle, service, words)
    if problem:
        click.echo(f"warning: {problem}", err=True)
    sys.exit(oneoff.run(one, service))


COMMANDS = [restart_cmd, run_cmd]
