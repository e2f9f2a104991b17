"""Every external command (pip, virtualenv, patchelf, git, ldd, systemctl) goes through `call` or
`run`: with a timeout, and on failure an error that shows the command and the end of its output."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bundler import progress
from bundler.errors import BundlerError

_TAIL = 40
TIMEOUT = 1800.0  # seconds; a pip install of large wheels from a slow index stays well inside


# What call() runs now, from any thread: stop_all() ends them when the build is stopped.
_running: set[subprocess.Popen[str]] = set()
_stopped = threading.Event()


def stop_all() -> None:
    """Kill every command call() runs (other threads' too), and refuse to start more until
    resume(): the threads that run them then fail and end."""
    _stopped.set()
    for proc in list(_running):
        proc.kill()


def resume() -> None:
    _stopped.clear()


class ToolMissing(BundlerError):
    """The program to run is not installed (callers may add how to get it)."""


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
) -> Completed:
    """Run `cmd` to its end, whatever its exit code; raise only when it cannot be run or does not
    finish within `timeout` seconds."""
    argv = [os.fspath(c) for c in cmd]
    if _stopped.is_set():
        raise BundlerError(f"{what}: not started, the build is stopping")
    try:
        with subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT if merge else subprocess.PIPE,
                              stdin=subprocess.DEVNULL, text=True, errors="replace") as proc:
            _running.add(proc)
            if _stopped.is_set():  # stop_all() came between the check above and now
                proc.kill()
            try:
                if merge and progress.listening():
                    out, err = _streamed(proc, timeout), ""
                else:
                    out, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired as exc:
                proc.kill()
                exc.output = exc.output or proc.communicate()[0]
                raise
            except BaseException:
                proc.kill()
                raise
            finally:
                _running.discard(proc)
    except FileNotFoundError as exc:
        if cwd is not None and not Path(cwd).is_dir():
            raise BundlerError(f"{what}: cannot run {argv[0]} in {cwd}: no such folder") from exc
        raise ToolMissing(f"{what}: cannot run {argv[0]}: no such program") from exc
    except OSError as exc:
        raise BundlerError(f"{what}: cannot run {argv[0]}: {exc.strerror}") from exc
    except subprocess.TimeoutExpired as exc:
        said = exc.output if isinstance(exc.output, str) else (exc.output or b"").decode(errors="replace")
        tail = "\n".join(said.strip().splitlines()[-_TAIL:])
        raise BundlerError(f"{what}: no end after {timeout:g} s, stopped: {shown(argv)}"
                           + (f"\n{tail}" if tail else "")) from exc
    return Completed(argv, proc.returncode, out, err or "")


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
) -> str:
    """Run `cmd`, return its output; on an exit code not in `ok` raise with the command and the
    end of its output."""
    done = call(cmd, what=what, cwd=cwd, env=env, timeout=timeout, merge=merge)
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
