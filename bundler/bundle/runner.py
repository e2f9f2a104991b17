"""Every external command (pip, virtualenv, patchelf, git) goes through `run`."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from bundler.errors import BundlerError

_TAIL = 40


def run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    what: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    ok: tuple[int, ...] = (0,),
) -> str:
    """Run `cmd`, return its stdout; on an exit code not in `ok` raise with the command and its
    output."""
    argv = [os.fspath(c) for c in cmd]
    try:
        proc = subprocess.run(
            argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, text=True, errors="replace", check=False,
        )
    except OSError as exc:
        raise BundlerError(f"{what}: cannot run {argv[0]}: {exc.strerror}") from exc
    if proc.returncode not in ok:
        tail = "\n".join(proc.stdout.strip().splitlines()[-_TAIL:])
        raise BundlerError(
            f"{what} failed (exit {proc.returncode}): {' '.join(argv)}\n{tail}"
        )
    return proc.stdout


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without variables that would leak into a build step."""
    drop = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV",
            "CONDA_PREFIX", "PIP_REQUIRE_VIRTUALENV", "PIP_TARGET", "PIP_PREFIX", "__PYVENV_LAUNCHER__")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PYTHONNOUSERSITE"] = "1"
    env.update(extra or {})
    return env
