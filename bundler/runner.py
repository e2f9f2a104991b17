"""Every external command bundler runs goes through here, so that each has a timeout and
stop_all() ends them all: `call` or `run` (pip, virtualenv, patchelf, git, ldd, systemctl, probes,
alerts), `stream` (a command whose output is read as it comes: tar) and `interactive` (one that
has the terminal: supervisorctl). On failure an error shows the command and the end of its
output."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Union

from bundler import progress
from bundler.errors import BundlerError

_TAIL = 40
TIMEOUT = 1800.0  # seconds; a pip install of large wheels from a slow index stays well inside


# What a command reads: nothing (None), these bytes (a str as UTF-8), or a file (object or
# descriptor) it reads from itself.
Input = Union[bytes, str, IO[Any], int, None]

# What runs now, from any thread: stop_all() ends them when the build is stopped.
_running: set[subprocess.Popen[Any]] = set()
_stopped = threading.Event()


def stop_all() -> None:
    """Kill every command this module runs (other threads' too), and refuse to start more until
    resume(): the threads that run them then fail and end."""
    _stopped.set()
    for proc in list(_running):
        proc.kill()


def resume() -> None:
    _stopped.clear()


class ToolMissing(BundlerError):
    """The program to run is not installed (callers may add how to get it)."""


class TimedOut(BundlerError):
    """The command did not end within its timeout, and was killed."""


@dataclass(frozen=True)
class Completed:
    argv: list[str]
    returncode: int
    output: str  # stdout, with stderr merged in unless asked to keep it apart
    errors: str  # stderr, when kept apart

    def tail(self) -> str:
        said = (self.output + self.errors).strip().splitlines()
        return "\n".join(said[-_TAIL:])


def call(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    what: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = TIMEOUT,
    merge: bool = True,
    stdin: Input = None,
) -> Completed:
    """Run `cmd` to its end, whatever its exit code; raise only when it cannot be run or does not
    finish within `timeout` seconds (TimedOut)."""
    argv = _argv(cmd)
    with _started(argv, what, cwd, env, stdin, stdout=subprocess.PIPE,
                  stderr=subprocess.STDOUT if merge else subprocess.PIPE, text=True,
                  errors="replace") as proc:
        try:
            if merge and progress.listening():
                out, err = _streamed(proc, timeout), ""
            else:
                out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            said = exc.output if isinstance(exc.output, str) else proc.communicate()[0]
            raise _timed_out(what, timeout, argv, said) from exc
    return Completed(argv, proc.returncode, out, err or "")


@contextmanager
def stream(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    what: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = TIMEOUT,
    stdin: Input = None,
    ok: tuple[int, ...] = (0,),
) -> Iterator[IO[bytes]]:
    """Run `cmd`, its output (bytes) read by the body as it comes; what the body leaves unread is
    dropped. Once the body is done the command must end, all within `timeout` seconds of its
    start (else TimedOut) and with an exit code in `ok`, else raise with the command and the end
    of its stderr."""
    argv = _argv(cmd)
    with _started(argv, what, cwd, env, stdin, stdout=subprocess.PIPE,
                  stderr=subprocess.PIPE) as proc:
        out, err = proc.stdout, proc.stderr
        assert out is not None and err is not None
        errors: list[bytes] = []
        listener = threading.Thread(target=lambda: errors.append(err.read()), daemon=True)
        listener.start()  # stderr is read meanwhile: a command that says much never blocks on it
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            proc.kill()

        timer = threading.Timer(timeout, expire)
        timer.daemon = True
        timer.start()
        try:
            yield out
            while out.read(1 << 20):
                pass
            proc.wait()
        except Exception as exc:
            if expired.is_set():  # the body failed on what the killed command left unsaid
                raise _timed_out(what, timeout, argv) from exc
            raise
        finally:
            timer.cancel()
        listener.join()
    said = b"".join(errors).decode(errors="replace")
    if expired.is_set():
        raise _timed_out(what, timeout, argv, said)
    if proc.returncode not in ok:
        raise BundlerError(f"{what} failed (exit {proc.returncode}): {shown(argv)}{_tail(said)}")


def interactive(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    what: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    user: str | None = None,
    umask: int = -1,
) -> int:
    """Run `cmd` on this process's terminal (its stdin, stdout and stderr), by default for as
    long as it takes (someone types into it); its exit code (-N: killed by signal N). Meanwhile
    the terminal's Ctrl-C and Ctrl-\\ are the command's alone: a shell or a REPL lives on, and
    this process waits for its end. `user` (which takes root): run it as that user, with the
    user's groups; `umask`: with that umask (-1: this process's)."""
    argv = _argv(cmd)
    as_user: dict[str, Any] = {}
    if user is not None:
        import pwd

        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            raise BundlerError(f"{what}: no user {user!r} on this machine") from None
        as_user = {"user": entry.pw_uid, "group": entry.pw_gid,
                   "extra_groups": os.getgrouplist(entry.pw_name, entry.pw_gid)}
    with _started(argv, what, cwd, env, stdin=None, inherit=True, umask=umask,
                  **as_user) as proc, _keys_to_the_command():
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise _timed_out(what, exc.timeout, argv) from exc


@contextmanager
def _keys_to_the_command() -> Iterator[None]:
    """Ignore SIGINT and SIGQUIT here (the main thread only can): the terminal sends them to the
    command too. Set once the command runs, whose own handlers are then the defaults again."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    import signal

    before = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGQUIT)}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _argv(cmd: Sequence[str | os.PathLike[str]]) -> list[str]:
    return [os.fspath(c) for c in cmd]


@contextmanager
def _started(argv: list[str], what: str, cwd: Path | None, env: Mapping[str, str] | None,
             stdin: Input, inherit: bool = False, **popen: Any) -> Iterator[subprocess.Popen[Any]]:
    """`argv` running (killed if the body raises), known to stop_all() until it is waited for.
    Bytes for its stdin are fed through a pipe by a thread of their own, which no way of reading
    its output then has to mind. `inherit`: its stdin, stdout and stderr are this process's."""
    if _stopped.is_set():
        raise BundlerError(f"{what}: not started, the build is stopping")
    data = stdin.encode() if isinstance(stdin, str) else stdin
    feed = os.pipe() if isinstance(data, bytes) else None
    if feed:
        source: Any = feed[0]
    elif data is None:
        source = None if inherit else subprocess.DEVNULL
    else:
        source = data
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=source, **popen)
    except BaseException as exc:
        if feed:
            os.close(feed[1])
        if isinstance(exc, OSError):
            raise _not_run(exc, argv, what, cwd) from exc
        raise
    finally:
        if feed:
            os.close(feed[0])
    if feed:
        assert isinstance(data, bytes)
        threading.Thread(target=_feed, args=(feed[1], data), daemon=True).start()
    with proc:
        _running.add(proc)
        if _stopped.is_set():  # stop_all() came between the check above and now
            proc.kill()
        try:
            yield proc
        except BaseException:
            proc.kill()
            raise
        finally:
            _running.discard(proc)


def _not_run(exc: OSError, argv: list[str], what: str, cwd: Path | None) -> BundlerError:
    if not isinstance(exc, FileNotFoundError):
        return BundlerError(f"{what}: cannot run {argv[0]}: {exc.strerror}")
    if cwd is not None and not Path(cwd).is_dir():
        return BundlerError(f"{what}: cannot run {argv[0]} in {cwd}: no such folder")
    return ToolMissing(f"{what}: cannot run {argv[0]}: no such program")


def _timed_out(what: str, timeout: float, argv: list[str], said: str = "") -> TimedOut:
    return TimedOut(f"{what}: no end after {timeout:g} s, stopped: {shown(argv)}{_tail(said)}")


def _feed(fd: int, data: bytes) -> None:
    try:
        with open(fd, "wb") as pipe:
            pipe.write(data)
    except OSError:  # the command ended (or was killed) without reading it all
        pass


def _tail(said: str) -> str:
    """The end of what a command said, on lines of its own under the error's."""
    lines = said.strip().splitlines()[-_TAIL:]
    return "".join(f"\n{line}" for line in lines)


def shown(argv: Sequence[str]) -> str:
    """A command line for people: a `-c` program is shown as its first line only."""
    words = list(argv)
    for i, word in enumerate(words[:-1]):
        if word == "-c" and "\n" in words[i + 1].strip():
            words[i + 1] = repr(words[i + 1].strip().splitlines()[0] + " ...")
    return " ".join(words)


def _streamed(proc: subprocess.Popen[str], timeout: float) -> str:
    """The output of `proc`, each line handed to progress as it comes (-v prints it)."""
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        proc.kill()

    timer = threading.Timer(timeout, expire)
    timer.start()
    lines = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            progress.output(line)
        proc.wait()
    finally:
        timer.cancel()
    if expired.is_set():
        raise subprocess.TimeoutExpired(proc.args, timeout, output="".join(lines))
    return "".join(lines)


def run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    what: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    ok: tuple[int, ...] = (0,),
    timeout: float = TIMEOUT,
    merge: bool = True,
    stdin: Input = None,
) -> str:
    """Run `cmd`, return its output; on an exit code not in `ok` raise with the command and the
    end of its output."""
    done = call(cmd, what=what, cwd=cwd, env=env, timeout=timeout, merge=merge, stdin=stdin)
    if done.returncode not in ok:
        raise BundlerError(f"{what} failed (exit {done.returncode}): {shown(done.argv)}\n"
                           f"{done.tail()}")
    return done.output


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without variables that would leak into a build step."""
    drop = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV",
            "CONDA_PREFIX", "PIP_REQUIRE_VIRTUALENV", "PIP_TARGET", "PIP_PREFIX", "__PYVENV_LAUNCHER__")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PYTHONNOUSERSITE"] = "1"
    env.update(extra or {})
    return env
