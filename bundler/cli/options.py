"""Options several commands share, and where a command finds the project's bundle.toml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from bundler import DISTRIBUTION
from bundler.errors import UsageError

root_option = click.option(
    "--root", type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The bundle's root. Default: the bundle this command belongs to.")
timeout_option = click.option(
    "--timeout", type=float, default=90.0, show_default=True,
    help="Seconds a (re)started service has to reach RUNNING before the change is rolled back.")


json_option = click.option(
    "--json", "as_json", is_flag=True,
    help="Print one JSON document on stdout instead of text (keys: README, Machine-readable output).")


def pip_sources(command: Any) -> Any:
    """--find-links, --no-index, --index-url: where pip takes packages from (build and lock)."""
    for option in reversed([
        click.option("--find-links", multiple=True, metavar="DIR",
                     help="Let pip take packages from this folder (repeatable)."),
        click.option("--no-index", is_flag=True, help="Never ask a package index (offline builds)."),
        click.option("--index-url", metavar="URL", help="Use this package index instead of PyPI."),
    ]):
        command = option(command)
    return command


def pip_options(find_links: tuple[str, ...], no_index: bool, index_url: str | None) -> tuple[str, ...]:
    options = [a for d in find_links for a in ("--find-links", str(Path(d).resolve()))]
    options += ["--no-index"] if no_index else []
    options += ["--index-url", index_url] if index_url else []
    return tuple(options)


def project_folder(ctx: click.Context) -> Path:
    """The folder given with -C (default: the current one)."""
    return Path(ctx.obj)


def spec_path(ctx: click.Context) -> Path:
    """The project's bundle.toml, for the commands that edit or build a project."""
    not_in_bundle(ctx)
    return project_folder(ctx) / "bundle.toml"


# The commands of a project (cli/project.py), which a bundle's bin/bundler carries no code of.
BUILD_COMMANDS = ("init", "add-env", "add-code", "check", "version", "lock", "build", "cache",
                  "keygen", "remove-code", "remove-env")


def build_machine_only(command: str) -> str:
    """Why a bundle does not run `command`, and where to run it."""
    return (f"`bundler {command}` is a build-machine command: run it there, in the project folder "
            f"(the one with bundle.toml), with bundler installed by `pip install {DISTRIBUTION}`; "
            "here, change the services with switch, set, add-service or remove-service, or "
            "install a release with bin/bundler apply")


def not_in_bundle(ctx: click.Context) -> None:
    """Project commands are the build machine's: a bundle's interpreter refuses them (its
    bin/bundler does not even have them; this is a bundler installed into one)."""
    from bundler.bundle.tree import own_bundle

    if own_bundle() is not None:
        raise UsageError(build_machine_only(ctx.info_name or ""))
