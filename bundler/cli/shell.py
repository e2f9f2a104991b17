"""Shell completion: `bundler completion SHELL` prints the script, and the functions that
complete service, code version, interpreter and group names from the project's bundle.toml or
the bundle's live manifest (click calls them through $_BUNDLER_COMPLETE)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click
from click.shell_completion import CompletionItem, get_completion_class

from bundler.errors import BundlerError

if TYPE_CHECKING:
    from bundler.spec.model import Spec

SHELLS = ("bash", "zsh", "fish")
Completer = Callable[[click.Context, click.Parameter, str], list[CompletionItem]]


def _spec(ctx: click.Context) -> Spec | None:
    """The spec the command line being completed acts on: the bundle's live manifest (its
    bin/bundler, or --root), else the project's bundle.toml (-C); None when there is neither."""
    from bundler.bundle.manifest import Manifest
    from bundler.bundle.tree import acting_on
    from bundler.spec.load import load_spec

    folder = Path(ctx.find_root().params.get("directory") or ".")
    try:
        bundle = acting_on(folder, ctx.params.get("root"))
        return Manifest.read(bundle.manifest).spec if bundle else load_spec(folder / "bundle.toml")
    except (BundlerError, OSError, ValueError):
        return None


def _items(names: list[str], incomplete: str, help: str = "") -> list[CompletionItem]:
    return [CompletionItem(n, help=help or None) for n in names if n.startswith(incomplete)]


def _names(kind: str, ctx: click.Context) -> list[str]:
    spec = _spec(ctx)
    if spec is None:
        return []
    if kind == "services":
        return list(spec.services)
    if kind == "versions":
        return list(spec.code)
    if kind == "groups":
        return list(spec.groups)
    return ["base", *(f"envs/{n}" for n in spec.interpreters if n != "base")]


def complete(kind: str) -> Completer:
    """A completer of `kind`: services, versions, groups or envs."""
    def completer(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
        return _items(_names(kind, ctx), incomplete, kind[:-1])
    return completer


def complete_service_then_version(ctx: click.Context, param: click.Parameter,
                                  incomplete: str) -> list[CompletionItem]:
    """switch's [SERVICE] [VERSION]: a service first (unless --group names them), then a version."""
    given = ctx.params.get(param.name or "") or ()
    if ctx.params.get("group") or given:
        return _items(_names("versions", ctx), incomplete, "version")
    return _items(_names("services", ctx), incomplete, "service")


def complete_log_target(ctx: click.Context, param: click.Parameter,
                        incomplete: str) -> list[CompletionItem]:
    """logs' targets: services, groups, and the monitor's own log."""
    return (_items(_names("services", ctx), incomplete, "service")
            + _items(_names("groups", ctx), incomplete, "group")
            + _items(["_monitor"], incomplete, "the monitor"))


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL (bash, zsh or fish).

    It completes commands, options, and the names of services, code versions, interpreters and
    groups, read from the project's bundle.toml (or -C DIR) or, for a bundle's bin/bundler, from
    the bundle itself.

    \b
    Examples:
      bundler completion bash > ~/.local/share/bash-completion/completions/bundler
      bundler completion zsh > "${fpath[1]}/_bundler"
      bundler completion fish > ~/.config/fish/completions/bundler.fish
      eval "$(bundler completion bash)"     # this shell only
    """
    cls = get_completion_class(shell)
    assert cls is not None  # every shell of SHELLS is one of click's
    root = click.get_current_context().find_root().command
    click.echo(cls(root, {}, "bundler", "_BUNDLER_COMPLETE").source())


COMMANDS = [completion]
