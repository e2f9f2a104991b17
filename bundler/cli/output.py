"""How results are printed: aligned tables, uptimes, and the outcome of a change to a bundle."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from bundler.errors import BundlerError

if TYPE_CHECKING:
    from bundler.server.history import HistoryEntry
    from bundler.server.status import ServiceRow
    from bundler.server.transact import Outcome


def columns(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in [header, *rows])


def status_table(rows: list[ServiceRow]) -> str:
    """The one table of processes, which start and status both print; a process that runs
    files no longer on disk is marked, and said why under the table."""
    table = columns(["PROCESS", "STATE", "PID", "UPTIME", "PYTHON", "CODE"],
                    [[r.process, r.state + ("*" if r.stale else ""), str(r.pid or "-"),
                      uptime(r.uptime),
                      f"{r.python} ({r.python_version})" if r.python_version else r.python, r.code]
                     for r in rows])
    notes = [f"* {r.process}: {r.stale}: bin/bundler restart {r.service}"
             for r in rows if r.stale]
    return "\n".join([table, *notes])


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
        raise BundlerError(f"{names} did not reach RUNNING and pass its health probe, so the "
                           f"change was rolled back: {undone}")
    for entry in entries:
        click.echo(what(entry))
    if not outcome.live:
        click.echo("supervisord is not running: the change takes effect at the next bin/start")


def changed(entry: HistoryEntry) -> str:
    """One service's change, as the history recorded it."""
    return entry.change.describe() if entry.change is not None else "-"
