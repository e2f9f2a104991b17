"""Options several commands share, and where a command finds the project's bundle.toml."""

from __future__ import annotations

from pathlib import Path

import click

root_option = click.option(
    "--root", type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The bundle's root. Default: the bundle this command belongs to.")
timeout_option = click.option(
    "--timeout", type=float, default=90.0, show_default=True,
    help="Seconds a (re)started service has to reach RUNNING before the change is rolled back.")


def project_folder(ctx: click.Context) -> Path:
    """The folder given with -C (default: the current one)."""
    return Path(ctx.obj)


def spec_path(ctx: click.Context) -> Path:
    return project_folder(ctx) / "bundle.toml"
