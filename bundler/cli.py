"""The `bundler` command: parse, call the core, print. Nothing else lives here."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import click

from bundler import __version__, spec_edit
from bundler.build import BuildOptions, build, make_plan
from bundler.errors import BundlerError
from bundler.runtime import open_bundle, start, status, stop, supervisorctl
from bundler.spec import load_spec
from bundler.supervisor import Process


class _Failure(click.ClickException):
    def __init__(self, error: BundlerError):
        super().__init__(str(error))
        self.exit_code = error.exit_code  # type: ignore[misc]  # click declares it per class


class _Group(click.Group):
    """Turns every BundlerError into one message on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BundlerError as exc:
            raise _Failure(exc) from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bundler")
@click.option("-C", "--directory", type=click.Path(file_okay=False, path_type=Path), default=".",
              help="The project folder (the one holding bundle.toml). Default: the current one.")
@click.pass_context
def cli(ctx: click.Context, directory: Path) -> None:
    """Build relocatable bundles of Python services for offline servers, and run them.

    In a project (a folder with bundle.toml): init, add-env, add-code, add-service, switch,
    check, build. Inside an unpacked bundle (its bin/bundler): start, stop, status,
    supervisorctl.
    """
    ctx.obj = directory


def _spec_path(ctx: click.Context) -> Path:
    return Path(ctx.obj) / "bundle.toml"


@cli.command()
@click.argument("name")
@click.pass_context
def init(ctx: click.Context, name: str) -> None:
    """Create NAME/bundle.toml with one example service (and its code in NAME/src).

    \b
    Example:
      bundler init smartbox && cd smartbox && bundler build
    """
    path = spec_edit.init_project(Path(ctx.obj) / name, name)
    click.echo(f"created {path}; next: bundler -C {path.parent} check")


@cli.command("add-env")
@click.argument("name")
@click.option("--virtualenv", metavar="ENV", help="Make a virtualenv on this bundle interpreter "
              "(base, or an env declared with --python).")
@click.option("--python", metavar="PREFIX", help="Copy this CPython (a prefix folder, an "
              "executable, or 'current') into envs/NAME.")
@click.option("-r", "--requirements-file", metavar="FILE", help="Install this requirements file.")
@click.option("-p", "--package", "packages", multiple=True, metavar="REQ",
              help="Install this requirement (repeatable), e.g. -p 'pillow>=10'.")
@click.pass_context
def add_env(ctx: click.Context, name: str, virtualenv: str | None, python: str | None,
            requirements_file: str | None, packages: tuple[str, ...]) -> None:
    """Declare envs/NAME: a virtualenv on a bundle interpreter, or another CPython.

    \b
    Examples:
      bundler add-env pyocr --virtualenv base -r requirements-ocr.txt
      bundler add-env py37 --python "$(pyenv prefix 3.7.16)"
    """
    spec_edit.edit(_spec_path(ctx), lambda doc: spec_edit.add_env(
        doc, name, virtualenv, python, list(packages), requirements_file))
    click.echo(f"added env {name} to {_spec_path(ctx)}")


@cli.command("add-code")
@click.argument("name")
@click.option("--path", metavar="DIR", help="Copy this folder (relative to bundle.toml).")
@click.option("--git", metavar="REPO", help="Take a `git archive` of this repository...")
@click.option("--ref", metavar="REF", help="...at this tag, branch or commit (default HEAD).")
@click.option("--pythonpath", multiple=True, metavar="ENTRY",
              help="A PYTHONPATH entry relative to the code folder (repeatable; default '.').")
@click.option("--bytecode", is_flag=True, help="Ship .pyc files only (no sources).")
@click.pass_context
def add_code(ctx: click.Context, name: str, path: str | None, git: str | None, ref: str | None,
             pythonpath: tuple[str, ...], bytecode: bool) -> None:
    """Declare code version NAME, shipped as <project>_NAME/ beside the others.

    \b
    Examples:
      bundler add-code v3 --path ../sam
      bundler add-code v3 --git . --ref v3 --pythonpath . --pythonpath code_django
    """
    spec_edit.edit(_spec_path(ctx), lambda doc: spec_edit.add_code(
        doc, name, path, git, ref, list(pythonpath), bytecode))
    click.echo(f"added code {name} to {_spec_path(ctx)}")


@cli.command("add-service")
@click.argument("name")
@click.option("--python", default="base", show_default=True, metavar="ENV",
              help="The interpreter: base, pyocr or envs/pyocr.")
@click.option("--code", required=True, metavar="VERSION", help="The code version it runs.")
@click.option("--command", required=True, metavar="CMD",
              help="The command; a leading 'python' is the chosen interpreter.")
@click.option("-e", "--env", "environment", multiple=True, metavar="KEY=VALUE",
              help="An environment variable (repeatable).")
@click.option("--numprocs", type=click.IntRange(min=1), help="How many processes to run.")
@click.option("--group", metavar="GROUP", help="Add it to this group (created if needed).")
@click.option("--set", "options", multiple=True, metavar="KEY=VALUE",
              help="Any other supervisor program option, e.g. --set startsecs=10.")
@click.pass_context
def add_service(ctx: click.Context, name: str, python: str, code: str, command: str,
                environment: tuple[str, ...], numprocs: int | None, group: str | None,
                options: tuple[str, ...]) -> None:
    """Declare service NAME: a supervisor program on an interpreter and a code version.

    \b
    Example:
      bundler add-service svc3 --python envs/pyocr --code v3 \\
          --command "python -m service.sam.run" -e PYTHON_APP_DEBUG=false --set startsecs=5
    """
    env = dict(spec_edit.parse_assignment(e, "--env") for e in environment)
    opts = dict(spec_edit.parse_option(o) for o in options)
    spec_edit.edit(_spec_path(ctx), lambda doc: spec_edit.add_service(
        doc, name, python, code, command, env, numprocs, group, opts))
    click.echo(f"added service {name} to {_spec_path(ctx)}")


@cli.command()
@click.argument("service")
@click.argument("version")
@click.pass_context
def switch(ctx: click.Context, service: str, version: str) -> None:
    """Point SERVICE at code VERSION in bundle.toml (checked before it is saved).

    \b
    Example:
      bundler switch svc3 v2
    """
    previous: list[str] = []
    spec = spec_edit.edit(_spec_path(ctx),
                          lambda doc: previous.append(spec_edit.switch(doc, service, version)))
    if spec.code[version].bytecode:
        make_plan(spec)
    click.echo(f"{service}: code {previous[0]} -> {version}")


@cli.command()
@click.pass_context
def check(ctx: click.Context) -> None:
    """Validate bundle.toml and the interpreters it names, and print the build plan."""
    for line in make_plan(load_spec(_spec_path(ctx))).describe():
        click.echo(line)


@cli.command("build")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path),
              help="Where the artifact goes. Default: dist/ beside bundle.toml.")
@click.option("--format", "fmt", type=click.Choice(["tar.gz", "tar.zst", "dir"]),
              help="Override [bundle] format.")
@click.option("--find-links", multiple=True, metavar="DIR",
              help="Let pip take packages from this folder (repeatable).")
@click.option("--no-index", is_flag=True, help="Never ask a package index (offline builds).")
@click.option("--index-url", metavar="URL", help="Use this package index instead of PyPI.")
@click.option("--keep-staging", is_flag=True, help="Keep the staging tree (for debugging).")
@click.pass_context
def build_cmd(ctx: click.Context, output: Path | None, fmt: str | None,
              find_links: tuple[str, ...], no_index: bool, index_url: str | None,
              keep_staging: bool) -> None:
    """Build the bundle: copy interpreters, create envs, copy code, render configs, pack.

    \b
    Examples:
      bundler build
      bundler build --format tar.zst --find-links ./wheels --no-index   # offline
    """
    spec = load_spec(_spec_path(ctx))
    pip = [a for d in find_links for a in ("--find-links", str(Path(d).resolve()))]
    pip += ["--no-index"] if no_index else []
    pip += ["--index-url", index_url] if index_url else []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up staging on SIGTERM too
    options = BuildOptions(output=output or spec.folder / "dist", format=fmt,
                           pip_options=tuple(pip), keep_staging=keep_staging)
    artifact = build(spec, options, log=lambda line: click.echo(line, err=True))
    click.echo(artifact)  # the only line on stdout, for scripts: scp "$(bundler build)" ...


_root_option = click.option(
    "--root", type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The bundle's root. Default: the bundle this command belongs to.")


def _table(processes: list[Process]) -> str:
    rows = [(p.full_name, p.state, str(p.pid or "-"), p.description) for p in processes]
    widths = [max(len(r[i]) for r in rows + [("SERVICE", "STATE", "PID", "")]) for i in range(3)]
    lines = [f"{'SERVICE':<{widths[0]}}  {'STATE':<{widths[1]}}  {'PID':<{widths[2]}}  DETAIL"]
    lines += [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}" for r in rows]
    return "\n".join(lines)


@cli.command("start")
@_root_option
@click.option("--timeout", type=float, default=60.0, show_default=True,
              help="Seconds to wait for the services to settle.")
def start_cmd(root: Path | None, timeout: float) -> None:
    """Start the bundle: relocate it if it moved, start supervisord, wait for every service.

    Exits 1 if a service that should run is not RUNNING, with the tail of its log.
    """
    bundle = open_bundle(root)
    report = start(bundle, timeout)
    if report.moved:
        click.echo(f"relocated the bundle to {bundle.root}")
    if report.already_running:
        click.echo("supervisord was already running")
    click.echo(_table(report.processes))
    if report.failed:
        for process, tail in report.failed:
            click.echo(f"\n--- {process.full_name} is {process.state}; end of its log:", err=True)
            click.echo("\n".join(tail.splitlines()[-20:]), err=True)
        names = ", ".join(p.full_name for p, _ in report.failed)
        raise BundlerError(f"not running: {names} (the others keep running; bin/stop stops all)")


@cli.command("stop")
@_root_option
def stop_cmd(root: Path | None) -> None:
    """Stop supervisord and every process of this bundle."""
    bundle = open_bundle(root)
    stop(bundle)
    click.echo(f"stopped {bundle.root}")


@cli.command("status")
@_root_option
def status_cmd(root: Path | None) -> None:
    """Show every service of the running bundle (exit 3 when supervisord is not running)."""
    processes = status(open_bundle(root))
    if processes is None:
        click.echo("supervisord is not running")
        sys.exit(3)
    click.echo(_table(processes))


@cli.command("supervisorctl", context_settings={"ignore_unknown_options": True})
@_root_option
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def supervisorctl_cmd(root: Path | None, args: tuple[str, ...]) -> None:
    """Run supervisorctl against this bundle's supervisord (e.g. `tail -f svc1`)."""
    sys.exit(supervisorctl(open_bundle(root), list(args)))


def main() -> None:
    cli(prog_name="bundler")
