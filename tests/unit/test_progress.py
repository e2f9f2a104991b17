"""The status line on a real pseudo-terminal (it appears, timed, and is cleared), on a pipe (it
does not), with -q (nothing) and -v (programs' output streamed)."""

from __future__ import annotations

import os
import pty
import select
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

import pytest

from bundler import progress
from bundler.runner import call


def _drain(fd: int) -> str:
    out = b""
    while select.select([fd], [], [], 0.2)[0]:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    return out.decode(errors="replace")


@contextmanager
def _ends(writer: int, reader: int) -> Iterator[tuple[TextIO, int]]:
    """(the stream bundler writes to, the fd what it wrote is read from); both closed after."""
    stream = os.fdopen(writer, "w")
    try:
        yield stream, reader
    finally:
        progress.configure()
        stream.close()
        os.close(reader)


@pytest.fixture
def terminal() -> Iterator[tuple[TextIO, int]]:
    """A pseudo-terminal."""
    screen, device = pty.openpty()
    with _ends(device, screen) as ends:
        yield ends


@pytest.fixture
def pipe() -> Iterator[tuple[TextIO, int]]:
    reader, writer = os.pipe()
    with _ends(writer, reader) as ends:
        yield ends


def _session(stream: TextIO, step: float = 1.2, **options: bool) -> None:
    progress.configure(stream=stream, **options)
    with progress.shown():
        progress.log("installing the base")
        progress.output("Collecting pillow\n")  # a line pip printed
        time.sleep(step)
        progress.waiting("svc3: STARTING")
        time.sleep(0.7)
        progress.log("packing tar.gz")


def test_on_a_terminal_the_status_line_shows_the_step_and_its_time(terminal) -> None:
    stream, screen = terminal
    _session(stream)
    shown = _drain(screen)
    assert "installing the base\r\n" in shown and "packing tar.gz\r\n" in shown
    assert "installing the base (1 s)  Collecting pillow" in shown, repr(shown)
    assert "svc3: STARTING (0 s)" in shown, repr(shown)
    assert "\r\x1b[K" in shown
    assert shown.rstrip().endswith("packing tar.gz") or shown.endswith("\r\x1b[K"), repr(shown)


def test_on_a_pipe_only_the_step_lines_appear(pipe) -> None:
    stream, reader = pipe
    _session(stream, step=0.7)
    stream.flush()
    assert _drain(reader) == "installing the base\npacking tar.gz\n"


def test_quiet_shows_nothing_even_on_a_terminal(terminal) -> None:
    stream, screen = terminal
    _session(stream, step=0.7, quiet=True)
    assert _drain(screen) == ""


def test_verbose_streams_what_programs_print(pipe) -> None:
    stream, reader = pipe
    progress.configure(stream=stream, verbose=True)
    done = call(["sh", "-c", "echo Collecting pillow; echo Installing collected packages"],
                what="a pip-like program")
    stream.flush()
    assert done.output == "Collecting pillow\nInstalling collected packages\n"
    assert _drain(reader) == "    Collecting pillow\n    Installing collected packages\n"


def test_a_streamed_program_that_does_not_end_is_stopped(pipe) -> None:
    from bundler.errors import BundlerError

    stream, _ = pipe
    progress.configure(stream=stream, verbose=True)
    with pytest.raises(BundlerError, match="no end after 0.5 s.*\n.*started"):
        call(["sh", "-c", "echo started; exec sleep 30"], what="a stuck program", timeout=0.5)
