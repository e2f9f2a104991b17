"""The `bundler` command: parse, call one core function, print. Nothing else lives here.

project.py holds the commands of a project, bundle.py those of a built bundle, services.py the
three that act on either. Each command imports the core it calls only when it runs, so that
`bundler --help` and the in-bundle `bin/bundler status` load no more than they use (a unit test
checks that bin/bundler never loads the build machinery).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from bundler import __version__
from bundler.cli import bundle, project, services
from bundler.errors import BundlerError


class _Failure(click.ClickException):
    def __init__(self, error: BundlerError):
        super().__init__(str(error))
        self.exit_code = error.exit_code  # type: ignore[misc]  # click declares it per class


class _Group(click.Group):
    """Turns every BundlerError, and the system's errors (a full disk, a read-only folder, a
    permission), into one message on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BundlerError as exc:
            raise _Failure(exc) from exc
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            raise _Failure(BundlerError(f"{exc.strerror or exc}{where}")) from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bundler")
@click.option("-C", "--directory", type=click.Path(file_okay=False, path_type=Path), default=".",
              help="The project folder (the one holding bundle.toml). Default: the current one.")
@click.pass_context
def cli(ctx: click.Context, directory: Path) -> None:
    """Build relocatable bundles of Python services for offline servers, and run them.

    \b
    In a project (a folder with bundle.toml): init, add-env, add-code, add-service,
    remove-service, switch, set, check, lock, build, cache, keygen.
    Inside a built bundle (its bin/bundler, or --root): start, stop, status, logs, switch, set,
    rollback, history, add-service, remove-service, apply, state, verify, install-systemd,
    uninstall-systemd, supervisorctl.
    """
    ctx.obj = directory


for _command in (*project.COMMANDS, *services.COMMANDS, *bundle.COMMANDS):
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="bundler")
