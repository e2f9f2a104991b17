"""What a service's process tree uses: resident memory and CPU time, read with psutil."""

from __future__ import annotations

import psutil


def tree(pid: int) -> list[psutil.Process]:
    """A process and its live descendants (the workers a service forks count as the service)."""
    try:
        top = psutil.Process(pid)
        return [top, *top.children(recursive=True)]
    except psutil.Error:
        return []


def rss(pid: int) -> int:
    total = 0
    for p in tree(pid):
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass  # it ended meanwhile
    return total


def cpu_seconds(pid: int) -> float:
    """User + system time of the process and of the children it has waited for."""
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(t.user + t.system + t.children_user + t.children_system)
