"""What a command shows while it works, on stderr: its log lines (one per step), and on a terminal
one status line under them that says what it is doing or waiting for and for how long, redrawn
in place and cleared before the next line. `-q` shows neither (errors still reach stderr); `-v`
also streams the output of the programs it runs (pip, virtualenv, conda-pack ...). On a pipe
there is no status line: scripts and CI logs get the log lines only."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

SPINNER = "-\\|/"
QUIET_FOR = 0.5  # seconds without a new line before the status line appears


class _Display:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.stream: TextIO = sys.stderr
        self.quiet = False
        self.verbose = False
        self.live = False          # a terminal, and not -q: the status line is drawn
        self.status = ""           # the step or the wait
        self.detail = ""           # its latest detail: a program's last line, bytes written
        self.watched: Path | None = None  # a file whose size is the detail
        self.since = time.monotonic()
        self.last_line = time.monotonic()
        self.drawn = False
        self.frame = 0

    def clear(self) -> None:
        if self.drawn:
            self.stream.write("\r\x1b[K")
            self.drawn = False

    def line(self, text: str) -> None:
        """A whole line above the status line (which is cleared first, and redrawn later)."""
        with self.lock:
            self.clear()
            self.stream.write(text + "\n")
            self.stream.flush()
            self.last_line = time.monotonic()

    def draw(self) -> None:
        with self.lock:
            now = time.monotonic()
            if not self.status or now - self.last_line < QUIET_FOR:
                return
            detail = self.detail
            if self.watched is not None:
                try:
                    detail = f"{self.watched.stat().st_size / 2**20:.1f} MiB written"
                except OSError:
                    pass
            self.frame += 1
            width = _columns(self.stream) - 1
            status = self.status
            if detail and len(status) > width // 2:  # room for the detail, which changes
                status = status[:width // 2 - 1] + "~"
            text = f"{SPINNER[self.frame % len(SPINNER)]} {status} ({now - self.since:.0f} s)"
            text += f"  {detail}" if detail else ""
            self.stream.write("\r\x1b[K" + (text if len(text) <= width else text[:width - 1] + "~"))
            self.stream.flush()
            self.drawn = True


_display = _Display()


def _columns(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80  # 0: a terminal of no size
    except (OSError, ValueError):
        return 80


def configure(quiet: bool = False, verbose: bool = False, stream: TextIO | None = None) -> None:
    """Set -q / -v and the stream (stderr by default); the status line is drawn only on a
    terminal and without -q."""
    d = _display
    d.stream = stream or sys.stderr
    d.quiet, d.verbose = quiet, verbose and not quiet
    d.live = not quiet and d.stream.isatty()


def log(line: str) -> None:
    """A step's line: printed (not with -q); the status line now times this step."""
    d = _display
    with d.lock:
        d.clear()
        if not d.quiet:
            d.line(line)
        d.status, d.detail, d.watched = line.strip(), "", None
        d.since = d.last_line = time.monotonic()


def waiting(status: str) -> None:
    """What the command waits for now (a service starting, a lock): the status line's text,
    timed from the first call with this text."""
    d = _display
    with d.lock:
        if status != d.status:
            d.status, d.detail, d.watched, d.since = status, "", None, time.monotonic()


def watch(path: Path | None) -> None:
    """Show the size of `path` (an archive being written) as the detail; None stops."""
    _display.watched = path


def output(line: str) -> None:
    """A line a program printed: streamed with -v, else the status line's detail."""
    d = _display
    if d.verbose:
        d.line("    " + line.rstrip("\n"))
    elif line.strip() and not line.startswith(("{", "[")):  # JSON is a probe's answer, not news
        d.detail = line.strip()


def listening() -> bool:
    """Whether programs' output is wanted as it comes (-v, or a status line to feed)."""
    return _display.verbose or _display.live


class _ClearingStdout:
    """stdout while the status line is shown: each write clears the status line first, so the
    command's own output is never written after it on the same line."""

    def __init__(self, real: TextIO) -> None:
        self.real = real

    def write(self, text: str) -> int:
        with _display.lock:
            _display.clear()
            _display.last_line = time.monotonic()
            return self.real.write(text)

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)


@contextmanager
def shown() -> Iterator[None]:
    """Redraw the status line while the body runs (on a terminal); clear it at the end."""
    d = _display
    if not d.live:
        yield
        return
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(0.2):
            d.draw()

    ticker = threading.Thread(target=tick, name="progress", daemon=True)
    ticker.start()
    real, sys.stdout = sys.stdout, _ClearingStdout(sys.stdout)
    try:
        yield
    finally:
        sys.stdout = real
        stop.set()
        ticker.join()
        with d.lock:
            d.clear()
            d.stream.flush()
            d.status = ""
