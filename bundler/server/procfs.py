"""What a process uses, read straight from /proc (no psutil, no subprocess: `bin/bundler status`
reads it for every process at each call).

CPU % is the process's average over its life, as `ps` shows it: its user and system time since
it started, over the time since it started. It needs no second look and no sleep; a process
busy for the last minute after a quiet day still shows little (the monitor's metrics give the
CPU seconds to take rates from). Both figures are of the process itself, as `ps` shows them: the
workers a service forks are not added in (the monitor's memory limit and metrics add them)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class Usage:
    cpu_percent: float  # of one CPU, over the process's life (can pass 100 with threads)
    rss: int            # resident memory, bytes


def stat_times(line: str) -> tuple[int, int]:
    """(utime + stime, starttime) in clock ticks, from a /proc/PID/stat line. The command name
    (field 2, in parentheses) may hold spaces and parentheses itself: fields are counted from
    the last ')'."""
    head, paren, rest = line.rpartition(")")
    if not paren or "(" not in head:
        raise ValueError(f"not a /proc/PID/stat line: {line[:60]!r}")
    fields = rest.split()  # fields[0] is field 3 (state): field N is fields[N - 3]
    return int(fields[11]) + int(fields[12]), int(fields[19])


def statm_rss(text: str, page_size: int) -> int:
    """Resident memory in bytes, from /proc/PID/statm (sizes in pages; resident is field 2)."""
    return int(text.split()[1]) * page_size


def cpu_percent(busy_ticks: int, start_ticks: int, uptime: float, ticks_per_second: int) -> float:
    """The lifetime average: CPU time over time since start, 0 for a process just started."""
    alive = uptime - start_ticks / ticks_per_second
    return 100.0 * busy_ticks / ticks_per_second / alive if alive > 0 else 0.0


def usage(pid: int, proc: Path = PROC) -> Usage | None:
    """The process's CPU % and resident memory; None when it is gone or /proc hides it."""
    try:
        busy, start = stat_times((proc / str(pid) / "stat").read_text())
        rss = statm_rss((proc / str(pid) / "statm").read_text(), os.sysconf("SC_PAGE_SIZE"))
        uptime = float((proc / "uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return Usage(cpu_percent(busy, start, uptime, os.sysconf("SC_CLK_TCK")), rss)
