"""How results are printed: aligned tables, uptimes, and the outcome of a change to a bundle."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from bundler.errors import BundlerError

if TYPE_CHECKING:
    from bundler.server.history import HistoryEntry
    from bundler.server.status import InstalledRelease, ServiceRow
    from bundler.server.transact import Outcome


def columns(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in [header, *rows])


def status_table(rows: list[ServiceRow]) -> str:
    """The one table of processes, which start and status both print; a process that runs
    files no longer on disk is marked *, and said why under the table."""
    table = columns(["PROCESS", "STATE", "PID", "UPTIME", "HEALTH", "RESTARTS", "CPU", "MEM",
                     "PYTHON", "CODE"],
                    [[r.process, _state(r) + ("*" if r.stale else ""), str(r.pid or "-"),
                      uptime(r.uptime), r.health,
                      "-" if r.restarts is None else str(r.restarts),
                      "-" if r.cpu_percent is None else f"{r.cpu_percent:.1f}%",
                      "-" if r.rss is None else memory(r.rss),
                      f"{r.python} ({r.python_version})" if r.python_version else r.python, r.code]
                     for r in rows])
    notes = [f"* {r.process}: {r.stale}: bin/bundler restart {r.service}"
             for r in rows if r.stale]
    return "\n".join([table, *notes])


def failing_lines(rows: list[ServiceRow]) -> list[str]:
    """Why each failing process fails, as its last probe said, under the table."""
    return [f"{r.process}: failing since {when(r.health_since)}: {r.health_reason}"
            for r in rows if r.health == "failing"]


def release_line(release: InstalledRelease) -> str:
    """What the bundle runs: its name and version, who installed it when (or: as built)."""
    head = f"{release.name} {release.version}"
    if release.as_built:
        return f"{head}, as built" + (f" {when(release.at)}" if release.at else "")
    signed = ", signed" if release.signed_by else ""
    return f"{head}, installed {when(release.at)} by {release.by} ({release.patch}{signed})"


def when(stamp: str) -> str:
    """A UTC stamp of the records (2026-01-31T09:05:00Z) as people read it."""
    return stamp.replace("T", " ").replace("Z", " UTC") if stamp else "?"


def memory(size: int) -> str:
    """Bytes as top shows them (binary units): 812K, 9.5M, 148M, 1.2G."""
    if size < 1 << 20:
        return f"{size >> 10}K"
    if size < 10 << 20:
        return f"{size / (1 << 20):.1f}M"
    if size < 1 << 30:
        return f"{size >> 20}M"
    return f"{size / (1 << 30):.1f}G"


def _state(row: ServiceRow) -> str:
    """STOPPED (by ops at 2026-05-01T10:00:00Z) for a service stopped by `stop SERVICE`."""
    if not row.stopped_by:
        return row.state
    return f"{row.state} ({'' if row.state == 'STOPPED' else 'stopped '}by {row.stopped_by})"


def uptime(seconds: int) -> str:
    if not seconds:
        return "-"
    days, rest = divmod(seconds, 86400)
    text = f"{rest // 3600}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}d {text}" if days else text


def log_tail(title: str, log: str) -> None:
    """The end of a process's log, on stderr, under a title line."""
    click.echo(title, err=True)
    click.echo("\n".join(log.splitlines()[-20:]), err=True)


PREVIOUS_AGAIN = "nothing changed, the previous definition runs again"  # a change undone


def report(outcome: Outcome, entries: list[HistoryEntry],
           what: Callable[[HistoryEntry], str], undone: str) -> None:
    """Print what an operation on a bundle did; raise if it had to be undone."""
    if entries and entries[0].result == "unchanged":
        click.echo("nothing to change")
        return
    if outcome.failed:
        for failure in outcome.failed:
            log_tail(f"--- {failure.process} is {failure.state}"
                     + (f"; {failure.why}" if failure.why else "") + "; end of its log:", failure.log)
        names = ", ".join(f.process for f in outcome.failed)
        if outcome.unrestored:
            from bundler.server.transact import unrestored_line

            for failure in outcome.unrestored:
                log_tail(f"--- {failure.process} (as it was before) is {failure.state}"
                         + (f"; {failure.why}" if failure.why else "") + "; end of its log:",
                         failure.log)
            raise BundlerError(f"{names} did not reach RUNNING and pass its health probe, and "
                               f"{unrestored_line(outcome.unrestored)} (bin/bundler logs SERVICE "
                               "says why; bin/bundler restart SERVICE once it is fixed)")
        raise BundlerError(f"{names} did not reach RUNNING and pass its health probe, so the "
                           f"change was rolled back: {undone}")
    for entry in entries:
        click.echo(what(entry))
    if not outcome.live:
        click.echo("supervisord is not running: the change takes effect at the next bin/start")


def changed(entry: HistoryEntry) -> str:
    """One service's change, as the history recorded it."""
    return entry.change.describe() if entry.change is not None else "-"
