"""The commands of a built bundle (its bin/bundler, or --root): start, stop, status, logs,
rollback, history, apply, verify, install-systemd, uninstall-systemd, supervisorctl (start and
stop of one service: operate.py, with restart and run)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bundler.cli import jsondocs, operate, output
from bundler.cli.options import json_option, root_option, timeout_option
from bundler.cli.shell import complete, complete_log_target
from bundler.errors import BundlerError, UsageError


@click.command("start")
@operate.service_or_group
@root_option
@click.option("--timeout", type=float, default=60.0, show_default=True,
              help="Seconds to wait for the services to start.")
@click.option("--foreground", is_flag=True, help="Become supervisord in the foreground instead "
              "of waiting for the services (what the systemd unit runs).")
def start_cmd(service: str | None, group: str | None, root: Path | None, timeout: float,
              foreground: bool) -> None:
    """Start the bundle: relocate it if it moved, start supervisord, wait for every service.
    With SERVICE (or --group): start that one only, a process at a time, gated as restart is.

    Exits 1 if a service that should run is not RUNNING, with the tail of its log.

    \b
    Examples:
      /opt/smartbox/bin/start                  # the same as bin/bundler start
      bin/bundler start --timeout 120
      bin/bundler start web
    """
    from bundler.bundle.tree import open_bundle
    from bundler.server.lifecycle import start
    from bundler.server.status import service_rows

    if service or group:
        return operate.start_services(root, service, group, timeout, foreground)
    bundle = open_bundle(root)
    report = start(bundle, timeout, foreground)
    if report.moved:
        click.echo(f"relocated the bundle to {bundle.root}")
    if report.already_running:
        click.echo("supervisord was already running")
    click.echo(output.status_table(service_rows(bundle, report.processes)))
    if report.failed:
        for process, tail in report.failed:
            output.log_tail(f"\n--- {process.full_name} is {process.state}; end of its log:", tail)
        names = ", ".join(p.full_name for p, _ in report.failed)
        raise BundlerError(f"not running: {names} (the others keep running; bin/stop stops all)")


@click.command("stop")
@operate.service_or_group
@root_option
def stop_cmd(service: str | None, group: str | None, root: Path | None) -> None:
    """Stop supervisord and every process of this bundle. With SERVICE (or --group): that one
    only, kept stopped (by bin/start and changes too) until `start SERVICE`; status says by whom.

    \b
    Examples:
      /opt/smartbox/bin/stop                   # the same as bin/bundler stop
      bin/bundler stop web
    """
    from bundler.bundle.tree import open_bundle
    from bundler.server.lifecycle import stop

    if service or group:
        return operate.stop_services(root, service, group)
    bundle = open_bundle(root)
    stop(bundle)
    click.echo(f"stopped {bundle.root}")


@click.command("status")
@root_option
@json_option
def status_cmd(root: Path | None, as_json: bool) -> None:
    """The release this bundle runs (version; who installed it, when), then one line per
    process: state, pid, uptime, health, restarts, CPU, memory, interpreter and code version
    (the table bin/start prints too).

    \b
    HEALTH    what the last health probe said: passing or failing (why, under the table);
              none: no probe; unknown: not probed since this run started (or no monitor).
    RESTARTS  starts after the first since supervisord started, whatever the cause: a crash,
              the monitor (failed probes, memory), a switch or a restart.
    CPU       % of one CPU, averaged over the process's life (as ps shows it).
    MEM       resident memory of the process itself (K, M, G: binary units).

    Exits 3 when supervisord is not running or a process that should run is down (STARTING
    counts as up, as in supervisorctl), with --json too. Exits 4 when an operation was killed
    half-way (its journal in .bundler/ is left: the files may not be what runs), and says so
    ("interrupted" in --json); bin/start undoes it. A damaged record of health probes, stopped
    services or changed files is named in a warning ("damaged" in --json).

    \b
    Examples:
      bin/bundler status
      bin/bundler status --json | jq -r '.processes[] | select(.state != "RUNNING") | .name'
      bin/bundler status --json | jq -r '.processes[] | select(.health == "failing") | .name'
    """
    from bundler.bundle.manifest import Manifest
    from bundler.bundle.tree import open_bundle
    from bundler.server.status import (
        NOT_RUNNING,
        damaged_records,
        installed_release,
        interrupted,
        service_rows,
    )

    bundle = open_bundle(root)
    manifest = Manifest.read(bundle.manifest)
    rows = service_rows(bundle, manifest=manifest)
    release = installed_release(bundle, manifest)
    running = bool(rows) and rows[0].state != NOT_RUNNING
    left = interrupted(bundle)
    damaged = damaged_records(bundle)
    if as_json:
        jsondocs.emit(jsondocs.status(bundle.root, running, rows, release, left, damaged))
    else:
        click.echo(output.release_line(release))
        click.echo(output.status_table(rows))
        for line in output.failing_lines(rows):
            click.echo(line)
        for op in left:
            click.echo(op.line(), err=True)
        for line in damaged:
            click.echo(f"warning: {line}", err=True)
    if left:
        sys.exit(4)
    if not running:
        if not as_json:
            click.echo("supervisord is not running (bin/start starts it)", err=True)
        sys.exit(3)
    if any(r.state not in ("RUNNING", "STARTING") and r.autostart for r in rows):
        sys.exit(3)


@click.command("logs")
@click.argument("names", nargs=-1, metavar="[SERVICE|GROUP|_monitor]...",
                shell_complete=complete_log_target)
@click.option("-n", "--lines", type=click.IntRange(min=0), default=50, show_default=True,
              help="How many lines of the end of each log to show.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C to stop).")
@root_option
def logs_cmd(names: tuple[str, ...], lines: int, follow: bool, root: Path | None) -> None:
    """Show the end of the logs of services, of a group's services, or of bundler's monitor
    (_monitor); without a name, of all of them. With more than one log, each line starts with
    its process's name. Works without supervisord.

    \b
    Examples:
      bin/bundler logs -f                # everything, as it comes
      bin/bundler logs svc3 -n 200
      bin/bundler logs sam _monitor -f   # group sam, and the monitor's health and memory checks
    """
    from bundler.bundle.tree import open_bundle
    from bundler.server import status

    paths = status.logs_of(open_bundle(root), list(names))
    width = max(len(p.name.removesuffix(".log")) for p in paths)

    def label(path: Path) -> str:
        return f"{path.name.removesuffix('.log'):<{width}} | " if len(paths) > 1 else ""

    for path in paths:
        for line in status.last_lines(path, lines):
            click.echo(label(path) + line)
    if follow:
        try:
            for path, line in status.follow(paths):
                click.echo(label(path) + line)
        except KeyboardInterrupt:
            pass


@click.command()
@click.argument("service", shell_complete=complete("services"))
@click.option("--to", "to", type=click.IntRange(min=1), metavar="ID", help="Give it the "
              "definition it had once change ID (an id `history SERVICE` shows) was done.")
@root_option
@timeout_option
def rollback(service: str, to: int | None, root: Path | None, timeout: float) -> None:
    """Give SERVICE back the definition it had before its last change (in a bundle): the code
    and interpreter of a switch, the keys of a set, what an apply changed; a removed service
    comes back, an added one goes. With --to ID, the definition it had right after change ID.
    Live and gated like switch.

    \b
    Examples:
      bin/bundler rollback svc3
      bin/bundler rollback svc3 --to 12
    """
    from bundler.bundle.tree import open_bundle
    from bundler.server import services

    outcome, entries = services.rollback(open_bundle(root), service, timeout, to)
    output.report(outcome, entries, output.changed, output.PREVIOUS_AGAIN)


@click.command("history")
@click.argument("service", required=False, shell_complete=complete("services"))
@root_option
@json_option
def history_cmd(service: str | None, root: Path | None, as_json: bool) -> None:
    """List the changes made to this bundle, oldest first: switches, settings, rollbacks, services
    added and removed, patches applied (and what each changed: key: old -> new); restarts,
    stops, starts and commands run. ID is what `rollback SERVICE --to ID` takes.

    \b
    Examples:
      bin/bundler history
      bin/bundler history svc3
      bin/bundler history --json
    """
    from bundler.bundle.tree import open_bundle
    from bundler.server.history import numbered

    bundle = open_bundle(root)
    entries = [(i, e) for i, e in numbered(bundle) if service is None or e.target == service]
    if as_json:
        jsondocs.emit(jsondocs.history(bundle.root, entries))
        return
    if not entries:
        click.echo("no operations yet")
        return
    rows = [[str(i), e.at, e.user, e.op, e.target or "-", e.what(), e.result] for i, e in entries]
    click.echo(output.columns(["ID", "AT", "USER", "OP", "SERVICE", "CHANGE", "RESULT"], rows))


@click.command("apply")
@click.argument("patch_file", metavar="PATCH", type=click.Path(dir_okay=False, exists=True,
                                                                path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check the patch and print what it would change; "
              "change nothing.")
@click.option("--prefer", type=click.Choice(["release", "server"]),
              help="Settle conflicts (a service key changed here and by the release) this way.")
@click.option("--files-only", is_flag=True, help="Install the files only; leave every service "
              "as it is (status then marks the processes that run files no longer on disk).")
@click.option("--allow-downgrade", is_flag=True, help="Install a release older than the one "
              "installed, or one of the same version with other content.")
@root_option
@timeout_option
@json_option
def apply_cmd(patch_file: Path, dry_run: bool, prefer: str | None, files_only: bool,
              allow_downgrade: bool, root: Path | None, timeout: float, as_json: bool) -> None:
    """Apply a release made by `bundler build --patch-from`: install its files, then move the
    services to what it says.

    \b
    Files: every member's checksum and path is checked before anything is written; files changed
    here since the build and logs are never overwritten; a failure leaves the bundle as it was.
    A patch for another bundle is refused, and so is an unsigned or wrongly signed one once the
    bundle trusts a key (etc/trusted_keys). Site defaults for etc/app/ are added, or updated
    where this server left them alone; one it changed is kept, the release's beside it as .new.
    Services (a three-way merge of the last release, this server, the new release): a service
    or group changed only by the release is changed (code, interpreter, settings, added,
    removed); one changed only here keeps the change; a key changed on both sides to different
    values is a conflict, and the patch is refused unless --prefer settles it. A service whose
    code version or interpreter has files the release changes is restarted even where its
    definition stays. The changes are one transaction, gated like switch: one failure rolls
    every service back and takes the files out again. Releases move forward: one older than the
    installed release, or of its version with other content, is refused (signed or not) unless
    --allow-downgrade. --dry-run prints all this and changes nothing; it exits 1 when apply
    would refuse the patch.

    \b
    Examples:
      bin/bundler apply --dry-run /tmp/smartbox-2026.12.1.patch.tar.gz
      bin/bundler apply --dry-run --json /tmp/smartbox-2026.12.1.patch.tar.gz
      bin/bundler apply /tmp/smartbox-2026.12.1.patch.tar.gz
    """
    from bundler.bundle.tree import open_bundle
    from bundler.server.apply import apply

    if as_json and not dry_run:
        raise UsageError("--json goes with --dry-run (an apply itself prints what it does)")
    bundle = open_bundle(root)
    done = apply(bundle, patch_file, dry_run, prefer, files_only, timeout, allow_downgrade)
    if as_json:
        doc = jsondocs.applied(patch_file, done, bundle.layout.site_config)
        jsondocs.emit(doc)
        sys.exit(1 if doc["conflicts"] else 0)
    verb = "would write" if dry_run else "applied: wrote"
    click.echo(f"{patch_file.name}: {verb} {done.files} file(s), removed {done.removed}; "
               f"bundle version {done.version}")
    converged = done.outcome is not None
    for note in done.notes:
        click.echo(f"  note: {note}")
    for change in done.site:
        if change.action != "same":
            click.echo(f"  {change.describe(bundle.layout.site_config)}")
    for merged in done.merged:  # (once applied, each service's change is told as it is done)
        if merged.kept or merged.conflicts or merged.changes and (
                merged.kind == "groups" or not converged):
            click.echo(f"  {merged.describe()}")
    for service, why in done.restarts.items():
        verb = "restarted" if done.outcome is not None and not done.outcome.failed else "restart"
        click.echo(f"  {verb} {service}: {why}")
    conflicts = sum(1 for m in done.merged if m.conflicts)
    if dry_run and conflicts:
        raise BundlerError(f"{conflicts} conflict(s): apply refuses this patch unless --prefer "
                           "release|server settles them")
    if done.outcome is None or not any(m.changes for m in done.merged) and not done.restarts:
        return
    output.report(done.outcome, done.entries, lambda e: f"  {output.changed(e)}",
                  "every service runs as before the apply, on its files as they were")


@click.command("state")
@root_option
def state_cmd(root: Path | None) -> None:
    """Print, as JSON, what this bundle runs: its live manifest, the last release installed
    and its checksums. Give it to the build machine: `bundler build --patch-from state.json`
    makes a patch for exactly this server. It holds the services' environments, as bundle.toml
    does: keep it as private.

    \b
    Example:
      bin/bundler state > /media/usb/smartbox-state.json
    """
    from bundler.bundle.tree import open_bundle
    from bundler.server.state import state

    click.echo(state(open_bundle(root)).text(), nl=False)


@click.command("verify")
@click.argument("bundle", required=False, type=click.Path(exists=True, path_type=Path))
@json_option
def verify_cmd(bundle: Path | None, as_json: bool) -> None:
    """Check BUNDLE (default: this one; or a built archive) file by file, and whether it will run
    on another machine.

    \b
    Integrity: files changed, missing or added since the build (switches and patches applied by
    bundler are accounted for; log/, run/ and etc/app/ are not checked), and links that lead
    out of the bundle or out of their code folder once followed.
    Portability: for every ELF file, the libraries it needs that the bundle does not carry
    (glibc and the compiler runtime come from the system); the oldest glibc the bundle runs
    on; files that still contain a path of the build machine.
    Signature: who signed the build (bundler build --sign), and whether the bundle trusts that
    key (compare the fingerprint with your release key's: ssh-keygen -lf KEY.pub).

    Exits 1 if any file differs, any link leads out, any library is missing, any build path is
    left, or the signature does not match (with --json too).

    \b
    Examples:
      bin/bundler verify
      bundler verify dist/smartbox-2026.11.1.tar.gz
      bundler verify --json dist/smartbox-2026.11.1.tar.gz | jq .problems
    """
    from bundler.server.verify import verify

    verdict = verify(bundle)
    if as_json:
        doc = jsondocs.verify(verdict)
        jsondocs.emit(doc)
        sys.exit(0 if doc["ok"] else 1)
    for line in verdict.lines():
        click.echo(line)
    problems = verdict.problems()
    if problems:
        raise BundlerError(f"{verdict.name}: " + "; ".join(problems))
    click.echo(f"{verdict.name}: as built, and carries what it needs")


@click.command("install-systemd")
@root_option
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

    \b
    Examples:
      bin/bundler install-systemd --print      # show the unit, install nothing
      sudo bin/bundler install-systemd --user smartbox
    """
    from bundler.bundle.manifest import Manifest
    from bundler.bundle.tree import open_bundle
    from bundler.server import systemd
    from bundler.server.lifecycle import running_pid

    bundle = open_bundle(root)
    unit = systemd.render(bundle, Manifest.read(bundle.manifest).spec, name, user)
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


@click.command("uninstall-systemd")
@root_option
@click.option("--name", metavar="UNIT", help="The unit's name (default bundler-<bundle name>).")
def uninstall_systemd_cmd(root: Path | None, name: str | None) -> None:
    """Stop, disable and remove this bundle's systemd unit (the bundle stays as it is).

    \b
    Example:
      sudo bin/bundler uninstall-systemd
    """
    from bundler.bundle.manifest import Manifest
    from bundler.bundle.tree import open_bundle
    from bundler.server import systemd

    bundle = open_bundle(root)
    unit = systemd.unit_name(Manifest.read(bundle.manifest).spec, name)
    path = systemd.uninstall(bundle, unit)
    click.echo(f"stopped, disabled and removed {path}")


@click.command("supervisorctl", context_settings={"ignore_unknown_options": True})
@root_option
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def supervisorctl_cmd(root: Path | None, args: tuple[str, ...]) -> None:
    """Run supervisorctl against this bundle's supervisord, with any of its arguments.

    \b
    Examples:
      bin/bundler supervisorctl tail -f svc1
      bin/supervisorctl status                 # the same, as a script of the bundle
    """
    from bundler.bundle.tree import open_bundle
    from bundler.server.status import supervisorctl

    sys.exit(supervisorctl(open_bundle(root), list(args)))


COMMANDS = [start_cmd, stop_cmd, status_cmd, logs_cmd, rollback, history_cmd, apply_cmd,
            state_cmd, verify_cmd, install_systemd_cmd, uninstall_systemd_cmd, supervisorctl_cmd]
