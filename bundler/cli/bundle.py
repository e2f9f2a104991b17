"""The `bundler` command: parse, call the core, print. Nothing else lives here."""

from __future__ import annotations

import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from tomlkit.toml_document import TOMLDocument

from bundler import __version__, archive, integrity, live, patch, portability, spec_edit, systemd
from bundler.build import BuildOptions, build, make_plan
from bundler.bundle import Bundle, open_bundle
from bundler.errors import BundlerError, UsageError
from bundler.layout import META
from bundler.live import Outcome, read_manifest
from bundler.runtime import (
    NOT_RUNNING,
    last_lines,
    log_files,
    running_pid,
    service_rows,
    start,
    stop,
    supervisorctl,
)
from bundler.runtime import (
    follow as follow_lines,
)
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


_root_option = click.option(
    "--root", type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The bundle's root. Default: the bundle this command belongs to.")
_timeout_option = click.option(
    "--timeout", type=float, default=90.0, show_default=True,
    help="Seconds a (re)started service has to reach RUNNING before the change is rolled back.")


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
              "executable, a standalone CPython .tar.gz, or 'current') into envs/NAME.")
@click.option("--conda", metavar="PREFIX", help="Pack this conda environment (with conda-pack) "
              "into envs/NAME.")
@click.option("-r", "--requirements-file", metavar="FILE", help="Install this requirements file.")
@click.option("-p", "--package", "packages", multiple=True, metavar="REQ",
              help="Install this requirement (repeatable), e.g. -p 'pillow>=10'.")
@click.pass_context
def add_env(ctx: click.Context, name: str, virtualenv: str | None, python: str | None,
            conda: str | None, requirements_file: str | None, packages: tuple[str, ...]) -> None:
    """Declare envs/NAME: a virtualenv on a bundle interpreter, another CPython, or a conda
    environment.

    \b
    Examples:
      bundler add-env pyocr --virtualenv base -r requirements-ocr.txt
      bundler add-env py37 --python "$(pyenv prefix 3.7.16)"
      bundler add-env py312 --python cpython-3.12.8+20250106-x86_64-unknown-linux-gnu-install_only.tar.gz
      bundler add-env legacy --conda /opt/miniconda3/envs/legacy
    """
    spec_edit.edit(_spec_path(ctx), lambda doc: spec_edit.add_env(
        doc, name, virtualenv, python, conda, list(packages), requirements_file))
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
              help="Any other service key: a supervisor program option (--set startsecs=10, "
              "--set user=api), --set max_rss=512MB, --set 'health={ http = \"http://127.0.0.1:"
              "8080/health\", every = 10 }'. VALUE is read as TOML, else as a string.")
@_root_option
@_timeout_option
@click.pass_context
def add_service(ctx: click.Context, name: str, python: str, code: str, command: str,
                environment: tuple[str, ...], numprocs: int | None, group: str | None,
                options: tuple[str, ...], root: Path | None, timeout: float) -> None:
    """Declare service NAME: a supervisor program on an interpreter and a code version.

    In a bundle the service also starts at once (the others are left alone); if it does not
    reach RUNNING it is removed again and the command exits 1 with the end of its log.

    \b
    Examples:
      bundler add-service svc3 --python envs/pyocr --code v3 \\
          --command "python -m service.sam.run" -e PYTHON_APP_DEBUG=false --set startsecs=5
      /opt/smartbox/bin/bundler add-service svc11 --code v4 --command "python -m service.sam.run"
    """
    env = dict(spec_edit.parse_assignment(e, "--env") for e in environment)
    opts = dict(spec_edit.parse_option(o) for o in options)
    bundle = _deployed(ctx, root)
    if bundle is not None:
        outcome, entries = live.add_service(bundle, name, python, code, command, env, numprocs,
                                            group, opts, timeout)
        _report(outcome, entries, lambda e: f"added service {e['service']} on code {e['to']}",
                f"{name} was removed again")
        return
    spec_edit.edit(_spec_path(ctx), lambda doc: spec_edit.add_service(
        doc, name, python, code, command, env, numprocs, group, opts))
    click.echo(f"added service {name} to {_spec_path(ctx)}")


@cli.command("remove-service")
@click.argument("name")
@_root_option
@_timeout_option
@click.pass_context
def remove_service(ctx: click.Context, name: str, root: Path | None, timeout: float) -> None:
    """Remove service NAME (and it from its group). In a bundle it is stopped first; the
    others keep running.

    \b
    Example:
      bin/bundler remove-service svc11
    """
    bundle = _deployed(ctx, root)
    if bundle is not None:
        outcome, entries = live.remove_service(bundle, name, timeout)
        _report(outcome, entries, lambda e: f"removed service {e['service']}",
                f"{name} is back")
        return
    spec_edit.edit(_spec_path(ctx), lambda doc: spec_edit.remove_service(doc, name))
    click.echo(f"removed service {name} from {_spec_path(ctx)}")


def _deployed(ctx: click.Context, root: Path | None) -> Bundle | None:
    """The built bundle a command acts on, or None when it acts on a project's bundle.toml.

    A project is a folder whose bundle.toml is not a bundle's manifest; otherwise the command
    acts on --root, on the bundle whose root is the folder, or on the bundle it is run from.
    """
    if root is not None:
        return open_bundle(root)
    folder = Path(ctx.obj)
    if (folder / "bundle.toml").is_file():
        return open_bundle(folder) if (folder / META).is_dir() else None
    try:
        return open_bundle(None)
    except BundlerError:
        raise UsageError(f"no bundle.toml in {folder.resolve()}: run this in a project (bundler "
                         "init NAME makes one), in a bundle, or with --root BUNDLE") from None


def _report(outcome: Outcome, entries: list[dict[str, str]], what: Callable[[dict[str, str]], str],
            undone: str) -> None:
    """Print what an operation on a bundle did; raise if it had to be undone."""
    if entries and entries[0]["result"] == "unchanged":
        click.echo("nothing to change")
        return
    if outcome.failed:
        for failure in outcome.failed:
            click.echo(f"--- {failure.process} is {failure.state}; end of its log:", err=True)
            click.echo("\n".join(failure.log.splitlines()[-20:]), err=True)
        names = ", ".join(f.process for f in outcome.failed)
        raise BundlerError(f"{names} did not reach RUNNING, so nothing changed: {undone}")
    for entry in entries:
        click.echo(what(entry))
    if not outcome.live:
        click.echo("supervisord is not running: the change takes effect at the next bin/start")


def _switched(entry: dict[str, str]) -> str:
    return f"{entry['service']}: code {entry['from']} -> {entry['to']}"


@cli.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("names", nargs=-1, required=True, metavar="[SERVICE] VERSION")
@click.option("--group", metavar="GROUP", help="Switch every service of this group.")
@_root_option
@_timeout_option
@click.pass_context
def switch(ctx: click.Context, names: tuple[str, ...], group: str | None, root: Path | None,
           timeout: float) -> None:
    """Point SERVICE (or every service of --group) at code VERSION.

    In a project this edits bundle.toml. In a bundle it also applies the change to the running
    supervisord, restarting only that service (not the rest of its group), waits until it is
    RUNNING, and otherwise rolls back to the previous version and exits 1 with the end of its log.

    \b
    Examples:
      bundler switch svc3 v2                      # in the project
      /opt/smartbox/bin/bundler switch svc3 v2    # on the server, live
      bin/bundler switch --group sam v3
    """
    if len(names) != (1 if group else 2):
        raise UsageError("give SERVICE VERSION, or --group GROUP VERSION")
    services, version = (None if group else [names[0]]), names[-1]
    bundle = _deployed(ctx, root)
    if bundle is not None:
        outcome, entries = live.switch(bundle, services, group, version, timeout)
        _report(outcome, entries, _switched, "the previous version runs again")
        return

    def change(doc: TOMLDocument) -> list[tuple[str, str]]:
        members = spec_edit.group_members(doc, group) if group else list(services or [])
        return [(name, spec_edit.switch(doc, name, version)) for name in members]

    moved: list[tuple[str, str]] = []
    spec = spec_edit.edit(_spec_path(ctx), lambda doc: moved.extend(change(doc)))
    if spec.code[version].bytecode:
        make_plan(spec)
    for name, previous in moved:
        click.echo(f"{name}: code {previous} -> {version}")


@cli.command()
@click.argument("service")
@_root_option
@_timeout_option
def rollback(service: str, root: Path | None, timeout: float) -> None:
    """Switch SERVICE back to the version it ran before its last switch (in a bundle).

    \b
    Example:
      bin/bundler rollback svc3
    """
    bundle = open_bundle(root)
    version = live.previous_version(bundle, service)
    outcome, entries = live.switch(bundle, [service], None, version, timeout, op="rollback")
    _report(outcome, entries, _switched, "the previous version runs again")


@cli.command("history")
@click.argument("service", required=False)
@_root_option
def history_cmd(service: str | None, root: Path | None) -> None:
    """List the switches, rollbacks and service changes made to this bundle (oldest first)."""
    entries = [e for e in live.history(open_bundle(root))
               if service is None or e.get("service") == service]
    if not entries:
        click.echo("no operations yet")
        return
    columns = ("at", "user", "op", "service", "from", "to", "result")
    click.echo(_columns([c.upper() for c in columns],
                        [[str(e.get(c, "-")) for c in columns] for e in entries]))


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
@click.option("--patch-from", type=click.Path(exists=True, path_type=Path), metavar="OLD",
              help="Write a patch with only what changed since OLD (an earlier archive, its "
              "unpacked tree, or its .bundler/checksums.json); apply it with bin/bundler apply.")
@click.pass_context
def build_cmd(ctx: click.Context, output: Path | None, fmt: str | None,
              find_links: tuple[str, ...], no_index: bool, index_url: str | None,
              keep_staging: bool, patch_from: Path | None) -> None:
    """Build the bundle: copy interpreters, create envs, copy code, render configs, pack.

    \b
    Examples:
      bundler build
      bundler build --format tar.zst --find-links ./wheels --no-index   # offline
      bundler build --patch-from dist/smartbox-2026.11.1.tar.gz         # only what changed
    """
    spec = load_spec(_spec_path(ctx))
    pip = [a for d in find_links for a in ("--find-links", str(Path(d).resolve()))]
    pip += ["--no-index"] if no_index else []
    pip += ["--index-url", index_url] if index_url else []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up staging on SIGTERM too
    options = BuildOptions(output=output or spec.folder / "dist", format=fmt,
                           pip_options=tuple(pip), keep_staging=keep_staging,
                           patch_from=patch_from)
    artifact = build(spec, options, log=lambda line: click.echo(line, err=True))
    click.echo(artifact)  # the only line on stdout, for scripts: scp "$(bundler build)" ...


def _columns(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in [header, *rows])


def _table(processes: list[Process]) -> str:
    return _columns(["SERVICE", "STATE", "PID", "DETAIL"],
                    [[p.full_name, p.state, str(p.pid or "-"), p.description] for p in processes])


def _uptime(seconds: int) -> str:
    if not seconds:
        return "-"
    days, rest = divmod(seconds, 86400)
    text = f"{rest // 3600}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}d {text}" if days else text


@cli.command("start")
@_root_option
@click.option("--timeout", type=float, default=60.0, show_default=True,
              help="Seconds to wait for the services to start.")
@click.option("--foreground", is_flag=True, help="Become supervisord in the foreground instead "
              "of waiting for the services (what the systemd unit runs).")
def start_cmd(root: Path | None, timeout: float, foreground: bool) -> None:
    """Start the bundle: relocate it if it moved, start supervisord, wait for every service.

    Exits 1 if a service that should run is not RUNNING, with the tail of its log.
    """
    bundle = open_bundle(root)
    report = start(bundle, timeout, foreground)
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
    """One line per process: state, pid, uptime, interpreter and code version.

    Exits 3 when supervisord is not running or a process that should run does not.
    """
    bundle = open_bundle(root)
    rows = service_rows(bundle)
    click.echo(_columns(["SERVICE", "STATE", "PID", "UPTIME", "PYTHON", "CODE"],
                        [[r.process, r.state, str(r.pid or "-"), _uptime(r.uptime), r.python,
                          r.code] for r in rows]))
    if not rows or rows[0].state == NOT_RUNNING:
        click.echo("supervisord is not running (bin/start starts it)", err=True)
        sys.exit(3)
    if any(r.state != "RUNNING" and r.autostart for r in rows):
        sys.exit(3)


@cli.command("logs")
@click.argument("service")
@click.option("-n", "--lines", type=click.IntRange(min=0), default=50, show_default=True,
              help="How many lines of the end to show.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C to stop).")
@_root_option
def logs_cmd(service: str, lines: int, follow: bool, root: Path | None) -> None:
    """Show the end of SERVICE's log (each process's, with numprocs), works without supervisord.

    \b
    Example:
      bin/bundler logs svc3 -f
    """
    bundle = open_bundle(root)
    paths = log_files(bundle, service)
    if not paths:
        raise BundlerError(f"no log of {service} in {bundle.root / bundle.layout.log}")

    def label(path: Path) -> str:
        return f"{path.stem}| " if len(paths) > 1 else ""

    for path in paths:
        for line in last_lines(path, lines):
            click.echo(label(path) + line)
    if follow:
        try:
            for path, line in follow_lines(paths):
                click.echo(label(path) + line)
        except KeyboardInterrupt:
            pass


@cli.command("apply")
@click.argument("patch_file", metavar="PATCH", type=click.Path(dir_okay=False, exists=True,
                                                                path_type=Path))
@_root_option
def apply_cmd(patch_file: Path, root: Path | None) -> None:
    """Apply a patch made by `bundler build --patch-from` to this bundle.

    Every member's checksum and path is checked before anything is written; files changed
    here since the build, site configuration (etc/app/) and logs are never overwritten; a
    failure leaves the bundle as it was. Services keep running their code: move them to new
    versions with `bin/bundler switch`.

    \b
    Example:
      bin/bundler apply /tmp/smartbox-2026.12.1.patch.tar.gz && bin/bundler switch svc3 v4
    """
    done = patch.apply(open_bundle(root), patch_file)
    click.echo(f"applied {patch_file.name}: {done.files} file(s) written, {done.removed} removed; "
               f"bundle version {done.version}")
    for hint in done.hints:
        click.echo(f"  next: {hint}")


@cli.command("verify")
@click.argument("bundle", required=False, type=click.Path(exists=True, path_type=Path))
def verify_cmd(bundle: Path | None) -> None:
    """Check BUNDLE (default: this one; or a built archive) file by file, and whether it will run
    on another machine.

    \b
    Integrity: files changed, missing or added since the build (switches and patches applied by
    bundler are accounted for; log/, run/ and etc/app/ are not checked).
    Portability: for every ELF file, the libraries it needs that the bundle does not carry
    (glibc and the compiler runtime come from the system); the oldest glibc the bundle runs
    on; files that still contain a path of the build machine.

    Exits 1 if any file differs, any library is missing or any build path is left.

    \b
    Examples:
      bin/bundler verify
      bundler verify dist/smartbox-2026.11.1.tar.gz
    """
    if bundle is not None and bundle.is_file():
        with tempfile.TemporaryDirectory(prefix="bundler-verify-") as tmp:
            archive.extract(bundle, Path(tmp))
            tops = [p for p in Path(tmp).iterdir() if p.is_dir()]
            if len(tops) != 1:
                raise BundlerError(f"{bundle} is not a bundle archive (expected one top folder)")
            _verify(open_bundle(tops[0]), str(bundle))
    else:
        target = open_bundle(bundle)
        _verify(target, str(target.root))


def _verify(target: Bundle, name: str) -> None:
    report = integrity.verify(target.root, target.layout)
    for title, paths in (("changed", report.changed), ("missing", report.missing),
                         ("added", report.added)):
        for path in paths:
            click.echo(f"{title:<8} {path}")
    differ = len(report.changed) + len(report.missing) + len(report.added)
    click.echo(f"integrity {report.checked - len(report.changed) - len(report.missing)} of "
               f"{report.checked} files as built" + (f", {differ} differ" if differ else ""))
    port = portability.check(target.root)
    for line in port.lines():
        click.echo(line)
    problems = ([f"{differ} file(s) differ from the build"] if differ else []) + \
        ([f"{len(port.missing)} library(ies) missing"] if port.missing else []) + \
        ([f"{len(port.outside)} file(s) look for libraries outside it"] if port.outside else []) + \
        ([f"{len(port.leaks)} file(s) name build paths"] if port.leaks else [])
    if problems:
        raise BundlerError(f"{name}: " + "; ".join(problems))
    click.echo(f"{name}: as built, and carries what it needs")


@cli.command("install-systemd")
@_root_option
@click.option("--user", metavar="NAME", help="Run supervisord as this user (the bundle is chowned "
              "to it). Without it systemd starts supervisord as root, which drops to "
              "[supervisor] user and each service's user.")
@click.option("--name", metavar="UNIT", help="The unit's name (default bundler-<bundle name>).")
@click.option("--print", "show", is_flag=True, help="Print the unit and validate it; install "
              "nothing.")
def install_systemd_cmd(root: Path | None, user: str | None, name: str | None, show: bool) -> None:
    """Register this bundle's supervisord as a systemd service that always comes back.

    Writes /etc/systemd/system/<UNIT>.service (Type=simple, supervisord -n, Restart=always,
    RestartSec=5, StartLimitIntervalSec=0, KillMode=mixed, hardening), enables and starts it.
    Stop the bundle started by bin/start first.
    """
    bundle = open_bundle(root)
    unit = systemd.render(bundle, read_manifest(bundle).spec, name, user)
    if show:
        click.echo(unit.text, nl=False)
        problem = systemd.validate(unit)
        if problem:
            raise BundlerError(f"systemd-analyze rejects the unit: {problem}")
        return
    systemd.require_systemd()
    if running_pid(bundle) is not None:
        raise BundlerError("the bundle runs (started by bin/start): stop it with bin/stop, then "
                           "install the unit, which starts it")
    if user:
        click.echo(f"giving {bundle.root} to user {user}")
    path = systemd.install(bundle, unit, user)
    click.echo(f"installed {path}; enabled and started (systemctl status {unit.name})")


@cli.command("uninstall-systemd")
@_root_option
@click.option("--name", metavar="UNIT", help="The unit's name (default bundler-<bundle name>).")
def uninstall_systemd_cmd(root: Path | None, name: str | None) -> None:
    """Stop, disable and remove this bundle's systemd unit (the bundle stays as it is)."""
    bundle = open_bundle(root)
    unit = systemd.unit_name(read_manifest(bundle).spec, name)
    path = systemd.uninstall(bundle, unit)
    click.echo(f"stopped, disabled and removed {path}")


@cli.command("supervisorctl", context_settings={"ignore_unknown_options": True})
@_root_option
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def supervisorctl_cmd(root: Path | None, args: tuple[str, ...]) -> None:
    """Run supervisorctl against this bundle's supervisord (e.g. `tail -f svc1`)."""
    sys.exit(supervisorctl(open_bundle(root), list(args)))


def main() -> None:
    cli(prog_name="bundler")
