"""The `bundler` command: parse, call one core function, print. Nothing else lives here.

project.py holds the commands of a project, bundle.py those of a built bundle (operate.py its
restart and run), services.py the three that act on either. Each command imports the core it
calls only when it runs, so that `bundler --help` and the in-bundle `bin/bundler status` load no
more than they use (a unit test checks that bin/bundler never loads the build machinery).

A bundle's bin/bundler carries no build side (bundler/build/, project.py): it lists the bundle's
commands only, and answers a project command's name with where to run it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from bundler import __version__
from bundler.cli import bundle, operate, services, shell
from bundler.cli.options import BUILD_COMMANDS, build_machine_only
from bundler.errors import BundlerError, UsageError, printable


class _Failure(click.ClickException):
    def __init__(self, error: BundlerError):
        from bundler.redact import redact  # not on --help's path

        # a URL's userinfo and query are not shown, nor a control character raw
        super().__init__(printable(redact(str(error)), lines=True))
        self.exit_code = error.exit_code  # type: ignore[misc]  # click declares it per class


def _escaped(exc: click.ClickException) -> click.ClickException:
    """`exc`, or the same message with its control characters escaped (`--x\\x1b`)."""
    text = printable(exc.format_message(), lines=True)
    if text == exc.format_message():
        return exc
    new = click.UsageError(text, exc.ctx) if isinstance(exc, click.UsageError) \
        else click.ClickException(text)
    new.exit_code = exc.exit_code  # type: ignore[misc]  # click declares it per class
    return new


# Whether this bundler has its build side: a bundle's bin/bundler ships without it.
BUILD_SIDE = importlib.util.find_spec("bundler.build") is not None


def sections(build_side: bool) -> list[tuple[str, list[click.Command]]]:
    """The commands `bundler --help` lists, by section: a bundle's bin/bundler has no project's."""
    project: list[tuple[str, list[click.Command]]] = []
    if build_side:
        from bundler.cli import project as commands

        project = [("Project commands (on the build machine, in a folder with bundle.toml, or -C "
                    "DIR)", commands.COMMANDS)]
    return [
        *project,
        ("Bundle commands (on a server: the bundle's bin/bundler, or --root DIR)", bundle.COMMANDS),
        ("Operations on one service or group of a bundle", operate.COMMANDS),
        ("Project and bundle commands (edit bundle.toml in a project; change a bundle live)"
         if build_side else "Service commands (change the bundle's services live)",
         services.COMMANDS),
        ("Other commands", shell.COMMANDS),
    ]


SHORT_HELP = {  # one line each in `bundler --help`
    "init": "Create a project: NAME/bundle.toml and an example service.",
    "add-env": "Declare an interpreter: virtualenv, CPython or conda env.",
    "add-code": "Declare a code version (a folder or a git ref).",
    "check": "Validate bundle.toml and print the build plan.",
    "version": "Print, set or bump [bundle] version.",
    "lock": "Pin every interpreter's packages into pylock.NAME.toml.",
    "build": "Build the bundle (or a patch) into dist/.",
    "cache": "Show or prune the build cache.",
    "keygen": "Create an Ed25519 key to sign releases.",
    "start": "Start supervisord and every service, or one service.",
    "stop": "Stop supervisord and every process, or one service.",
    "restart": "Restart a service or group, a process at a time.",
    "run": "Run a command as a process of a service would.",
    "status": "Release, and per process: state, health, CPU, memory.",
    "logs": "Show (and follow) the logs of services, a group, or all.",
    "rollback": "Undo a service's last change (or go back to one).",
    "history": "List the changes made to this bundle.",
    "apply": "Install a release patch and move the services to it.",
    "state": "Print what this bundle runs (JSON), for a patch build.",
    "verify": "Check a bundle file by file, and where it can run.",
    "install-systemd": "Run this bundle's supervisord as a systemd service.",
    "uninstall-systemd": "Remove this bundle's systemd service.",
    "supervisorctl": "Run supervisorctl on this bundle's supervisord.",
    "add-service": "Declare a service (started at once in a bundle).",
    "remove-service": "Remove a service (stopped first in a bundle).",
    "switch": "Move a service or group to another code version or python.",
    "set": "Change any key of a service (live in a bundle).",
    "completion": "Print the shell completion script (bash, zsh, fish).",
    "remove-code": "Remove a code version no service runs.",
    "remove-env": "Remove an interpreter no service or virtualenv uses.",
}


class _Group(click.Group):
    """Lists its commands by section, each with its one-line summary; turns every
    BundlerError, and the system's errors (a full disk, a read-only folder, a permission), into
    one message on stderr and its exit code; any message shows control characters escaped."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("context_settings", {}).setdefault("max_content_width", 100)
        super().__init__(*args, **kwargs)
        self.sections: list[tuple[str, list[click.Command]]] = []

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        for title, commands in self.sections:
            with formatter.section(title):
                formatter.write_dl([(c.name or "", SHORT_HELP[c.name or ""])
                                    for c in commands if not c.hidden])

    def resolve_command(self, ctx: click.Context, args: list[str]
                        ) -> tuple[str | None, click.Command | None, list[str]]:
        if args[0] in BUILD_COMMANDS and args[0] not in self.commands and not ctx.resilient_parsing:
            raise UsageError(build_machine_only(args[0]))  # not click's "No such command"
        return super().resolve_command(ctx, args)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.ClickException as exc:  # a bad option of bundler itself
            raise _escaped(exc) from exc.__cause__

    def invoke(self, ctx: click.Context) -> Any:
        from bundler import progress

        progress.configure(ctx.params.get("quiet", False), ctx.params.get("verbose", False))
        try:
            with progress.shown():
                return super().invoke(ctx)
        except BundlerError as exc:
            raise _Failure(exc) from exc
        except click.ClickException as exc:  # click's own: a bad option of a command
            raise _escaped(exc) from exc.__cause__
        except BrokenPipeError:  # `bin/bundler status | head -1`: the reader took what it wanted
            _stdout_closed()
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            raise _Failure(BundlerError(f"{exc.strerror or exc}{where}")) from exc


def _stdout_closed() -> NoReturn:
    """Exit as Python's docs advise on EPIPE: stdout pointed at /dev/null, so that flushing it at
    exit raises nothing more (it printed 'Exception ignored ... BrokenPipeError')."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    raise SystemExit(1)


def make_cli(build_side: bool) -> click.Group:
    """The `bundler` command: every section's commands, the project's only with the build side."""

    @click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(__version__, "-V", "--version", prog_name="bundler")
    @click.option("-C", "--directory", type=click.Path(file_okay=False, path_type=Path),
                  default=".", help="The project folder (the one holding bundle.toml). Default: "
                  "the current one.")
    @click.option("-q", "--quiet", is_flag=True,
                  help="Print results and errors only: no step lines, no progress.")
    @click.option("-v", "--verbose", is_flag=True,
                  help="Also print the output of the programs run (pip, virtualenv, conda-pack).")
    @click.pass_context
    def cli(ctx: click.Context, directory: Path, quiet: bool, verbose: bool) -> None:
        """Build relocatable bundles of Python services for offline servers, and run them.

        `bundler COMMAND --help` explains a command, with examples.
        """
        ctx.obj = directory  # -q and -v: progress.configure, in _Group.invoke

    assert isinstance(cli, _Group)
    cli.sections = sections(build_side)
    for _title, commands in cli.sections:
        for command in commands:
            cli.add_command(command)
    return cli


cli = make_cli(BUILD_SIDE)


def main() -> None:
    cli(prog_name="bundler")
