"""The one runner for external commands: a timeout, and failures that show what ran and what it
said."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

from bundler.errors import BundlerError
from bundler.runner import TimedOut, ToolMissing, call, interactive, resume, run, stop_all, stream

REPO = Path(__file__).resolve().parents[2]


def test_output_and_accepted_exit_codes() -> None:
    assert run(["sh", "-c", "echo out; echo err >&2"], what="both") == "out\nerr\n"
    assert run(["sh", "-c", "echo out; echo err >&2"], what="apart", merge=False) == "out\n"
    assert run(["sh", "-c", "exit 1"], what="one is fine", ok=(0, 1)) == ""
    done = call(["sh", "-c", "echo said; exit 4"], what="any code")
    assert (done.returncode, done.output) == (4, "said\n")


def test_a_failure_names_the_command_and_shows_the_end_of_its_output() -> None:
    with pytest.raises(BundlerError) as info:
        run(["sh", "-c", "for i in $(seq 100); do echo line$i; done; echo why >&2; exit 3"],
            what="pip install for base", merge=False)
    text = str(info.value)
    assert text.startswith("pip install for base failed (exit 3): sh -c ")
    assert text.endswith("line100\nwhy") and "line60\n" not in text  # the end, not all of it


def test_a_command_that_does_not_end_is_stopped() -> None:
    with pytest.raises(BundlerError, match=r"^nap: no end after 0.5 s, stopped: sleep 30"):
        run(["sleep", "30"], what="nap", timeout=0.5)


def test_a_missing_program_is_named() -> None:
    with pytest.raises(ToolMissing, match="^ldd: cannot run no-such-tool-here: no such program"):
        call(["no-such-tool-here"], what="ldd")


def test_a_failure_shows_a_c_program_by_its_first_line_only() -> None:
    program = "import sys\nprint('the real cause', file=sys.stderr)\nsys.exit(3)\n"
    with pytest.raises(BundlerError) as info:
        run([sys.executable, "-I", "-c", program], what="a probe")
    said = str(info.value)
    assert "-c 'import sys ...'" in said and "sys.exit(3)" not in said
    assert said.endswith("the real cause")


def test_stdin_takes_bytes_text_or_a_file(tmp_path: Path) -> None:
    assert run(["cat"], what="cat", stdin=b"bytes\n") == "bytes\n"
    assert run(["cat"], what="cat", stdin="text é\n") == "text é\n"
    listing = tmp_path / "listing"
    listing.write_text("from a file\n")
    with open(listing, "rb") as f:
        assert run(["cat"], what="cat", stdin=f) == "from a file\n"
    assert run(["cat"], what="cat") == ""  # no stdin: it reads nothing, and ends
    big = b"x" * (4 << 20)  # more than a pipe holds
    assert run(["wc", "-c"], what="count", stdin=big).strip() == str(len(big))
    assert run(["true"], what="reads none", stdin=big) == ""


def test_a_stream_is_read_as_it_comes_and_its_rest_is_dropped() -> None:
    script = "echo first; read line; echo $line; head -c 3000000 /dev/zero; head -c 300000 /dev/zero >&2"
    with stream(["sh", "-c", script], what="talk", stdin=b"second\n") as out:
        assert out.readline() == b"first\n"  # before the command ends: it waits for its stdin
        assert out.readline() == b"second\n"
        assert out.read(10) == b"\0" * 10  # and stops reading; what it says on stderr never blocks it


def test_a_failing_stream_names_the_command_and_shows_the_end_of_its_stderr() -> None:
    script = "echo out; for i in $(seq 100); do echo line$i >&2; done; exit 2"
    with pytest.raises(BundlerError) as info:
        with stream(["sh", "-c", script], what="packing") as out:
            assert out.read() == b"out\n"
    said = str(info.value)
    assert said.startswith("packing failed (exit 2): sh -c ")
    assert said.endswith("\nline100") and "line60\n" not in said
    with stream(["sh", "-c", "exit 1"], what="one is fine", ok=(0, 1)) as out:
        assert out.read() == b""


def test_a_stream_that_does_not_end_is_stopped() -> None:
    start = time.monotonic()
    with pytest.raises(TimedOut, match=r"^nap: no end after 0.5 s, stopped: sh -c"):
        with stream(["sh", "-c", "echo half; echo why >&2; exec sleep 30"], what="nap",
                    timeout=0.5) as out:
            assert out.read() == b"half\n"  # the end comes when it is killed
    assert time.monotonic() - start < 10


def test_a_body_that_fails_kills_its_command() -> None:
    start = time.monotonic()
    with pytest.raises(ValueError, match="the reader broke"):
        with stream(["sleep", "30"], what="nap"):
            raise ValueError("the reader broke")
    assert time.monotonic() - start < 10


def test_stop_all_kills_a_streamed_command_and_starts_no_more() -> None:
    with pytest.raises(BundlerError, match=r"^tar failed \(exit -9\): sh -c"):
        with stream(["sh", "-c", "echo started; exec sleep 30"], what="tar") as out:
            assert out.readline() == b"started\n"
            threading.Timer(0.2, stop_all).start()  # as a parallel build's failing thread does
            try:
                assert out.read() == b""  # its end
                with pytest.raises(BundlerError, match="^next: not started, the build is stopping"):
                    call(["true"], what="next")
            finally:
                resume()
    assert run(["echo", "again"], what="after resume") == "again\n"


def test_an_interactive_command_has_the_terminal_and_gives_its_exit_code(
        capfd: pytest.CaptureFixture[str]) -> None:
    assert interactive(["sh", "-c", "echo to the terminal; echo and its stderr >&2; exit 7"],
                       what="supervisorctl") == 7
    assert capfd.readouterr() == ("to the terminal\n", "and its stderr\n")
    # its stdin is ours: what is typed reaches it
    program = ("import sys\nfrom bundler.runner import interactive\n"
               "sys.exit(interactive(['sh', '-c', 'read line; echo got $line; exit 3'], what='sh'))")
    done = call([sys.executable, "-c", program], what="a terminal", stdin=b"typed\n",
                env={**os.environ, "PYTHONPATH": str(REPO)})
    assert (done.returncode, done.output) == (3, "got typed\n")
    with pytest.raises(TimedOut, match="^sh: no end after 0.5 s, stopped: sleep 30"):
        interactive(["sleep", "30"], what="sh", timeout=0.5)
    capfd.readouterr()
    assert interactive(["sh", "-c", "umask"], what="sh", umask=0o077) == 0
    assert capfd.readouterr().out == "0077\n"
    with pytest.raises(BundlerError, match="^sh: no user 'no-such-user-here' on this machine"):
        interactive(["true"], what="sh", user="no-such-user-here")


def test_the_terminals_ctrl_c_goes_to_an_interactive_command_alone(tmp_path: Path) -> None:
    """As a shell does for its foreground job: Ctrl-C (SIGINT to the terminal's process group)
    is the command's to handle, and bundler waits for it and passes on its exit code."""
    import signal
    import subprocess

    ready = tmp_path / "ready"
    program = ("import sys\nfrom bundler.runner import interactive\n"
               "sys.exit(interactive(['sh', '-c', 'trap \"exit 5\" INT; touch " + str(ready)
               + "; while :; do sleep 0.05; done'], what='sh'))")
    proc = subprocess.Popen([sys.executable, "-c", program], start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal sends on Ctrl-C
        assert proc.wait(30) == 5
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
