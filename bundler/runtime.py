"""Run a built bundle where it was unpacked: start (relocating first), stop, status.

Everything here runs on the server with the bundle's own interpreter.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import tomlkit

from bundler.errors import BundlerError
from bundler.layout import LAYOUT_FILE, META, Layout
from bundler.relocate import locked, relocate
from bundler.supervisor import (
    BACKOFF,
    RUNNING,
    SOCKET_RECORD,
    STARTING,
    STOPPED,
    Process,
    Supervisor,
    choose_socket,
    recorded_socket,
)

ROOT_VAR = "BUNDLE_ROOT"
# Variables supervisord (and so every service) keeps from the caller; all else is dropped.
KEEP_ENV = ("HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
# Supervisor pastes the bundle's path into its config: these characters would break quoting,
# %-expansion or PYTHONPATH (':'-separated).
_BAD_PATH_CHARS = ('"', "\\", "\n", "\r", "%", ":")


@dataclass(frozen=True)
class Bundle:
    """An unpacked bundle: its root and where things are inside it."""

    root: Path
    layout: Layout

    @property
    def meta(self) -> Path:
        return self.root / META

    @property
    def run_dir(self) -> Path:
        return self.root / self.layout.run

    @property
    def conf(self) -> Path:
        return self.root / self.layout.etc / "supervisord.conf"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "supervisord.pid"

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python3"

    def supervisor(self) -> Supervisor:
        return Supervisor(recorded_socket(self.root, self.run_dir))


def open_bundle(root: Path | None) -> Bundle:
    """The bundle at `root`, or the one whose interpreter runs this code."""
    root = Path(root if root is not None else sys.prefix).resolve()
    layout_file = root / META / LAYOUT_FILE
    if not layout_file.is_file():
        raise BundlerError(f"{root} is not a bundle (no {META}/{LAYOUT_FILE}); run this from a "
                           "bundle's bin/ or pass --root")
    return Bundle(root=root, layout=Layout(**tomlkit.parse(layout_file.read_text()).unwrap()))


def supervisord_env(bundle: Bundle, socket_path: str) -> dict[str, str]:
    env = {k: os.environ[k] for k in KEEP_ENV if k in os.environ}
    env["PATH"] = f"{bundle.root}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    env[ROOT_VAR] = str(bundle.root)
    env["BUNDLER_SOCKET"] = socket_path
    return env


def bundle_processes(bundle: Bundle) -> list[int]:
    """Pids of live processes started for this bundle (they carry BUNDLE_ROOT=<root>)."""
    marker = f"{ROOT_VAR}={bundle.root}\0".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in environ and not _zombie(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)


def running_pid(bundle: Bundle) -> int | None:
    """The pid of this bundle's live supervisord, removing a stale pid file."""
    try:
        pid = int(bundle.pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    if pid in bundle_processes(bundle):
        return pid
    bundle.pidfile.unlink(missing_ok=True)
    return None


@dataclass(frozen=True)
class StartReport:
    moved: bool
    already_running: bool
    processes: list[Process]
    failed: list[tuple[Process, str]]  # each failed process with the tail of its log


def start(bundle: Bundle, timeout: float = 60.0) -> StartReport:
    bad = [c for c in _BAD_PATH_CHARS if c in str(bundle.root)]
    if bad:
        raise BundlerError(f"the bundle's path {bundle.root} contains {bad[0]!r}, which supervisor "
                           "configs and PYTHONPATH cannot carry: move the bundle to another path")
    with locked(bundle.meta):
        moved = relocate(bundle.root, bundle.meta)
        already = running_pid(bundle) is not None
        if not already:
            orphans = bundle_processes(bundle)
            if orphans:
                raise BundlerError(
                    f"{len(orphans)} process(es) of this bundle still run without supervisord "
                    f"(pids {' '.join(map(str, orphans))}): run bin/stop first")
            _launch(bundle)
    sup = bundle.supervisor()
    processes = _wait_settled(sup, timeout)
    failed = [(p, sup.tail(p)) for p in processes if p.autostart and p.state != RUNNING]
    return StartReport(moved=moved, already_running=already, processes=processes, failed=failed)


def _launch(bundle: Bundle) -> None:
    socket_path = choose_socket(bundle.root, bundle.run_dir)
    bundle.run_dir.mkdir(exist_ok=True)
    (bundle.run_dir / SOCKET_RECORD).write_text(socket_path + "\n")
    cmd = [str(bundle.python), "-I", "-m", "supervisor.supervisord", "-c", str(bundle.conf)]
    with tempfile.TemporaryFile() as output:
        code = subprocess.call(cmd, env=supervisord_env(bundle, socket_path), cwd=bundle.root,
                               stdin=subprocess.DEVNULL, stdout=output, stderr=output)
        output.seek(0)
        text = output.read().decode(errors="replace").strip().removeprefix("Error: ")
    if code != 0:
        raise BundlerError(f"supervisord did not start (exit {code}): {text}")
    sup = Supervisor(socket_path)
    deadline = time.monotonic() + 15
    while not sup.alive():
        if time.monotonic() > deadline:
            log = bundle.root / bundle.layout.log / "supervisord.log"
            raise BundlerError(f"supervisord did not answer on {socket_path}; see {log}")
        time.sleep(0.1)


def _wait_settled(sup: Supervisor, timeout: float) -> list[Process]:
    """Wait until no process is starting or backing off (FATAL and RUNNING are both final)."""
    deadline = time.monotonic() + timeout
    while True:
        processes = sup.processes()
        pending = [p for p in processes if p.state in (STARTING, BACKOFF)
                   or (p.state == STOPPED and p.autostart and not p.started)]
        if not pending or time.monotonic() > deadline:
            return processes
        time.sleep(0.2)


def stop(bundle: Bundle, timeout: float = 60.0) -> list[int]:
    """Stop supervisord and its services; kill what is left of this bundle. Returns killed pids."""
    with locked(bundle.meta):
        pid = running_pid(bundle)
        if pid is not None:
            sup = bundle.supervisor()
            if sup.alive():
                sup.shutdown()
            _wait_gone([pid], timeout)
        leftovers = bundle_processes(bundle)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for p in leftovers:
                try:
                    os.kill(p, sig)
                except ProcessLookupError:
                    pass
            leftovers = _wait_gone(leftovers, 5.0)
            if not leftovers:
                break
        if leftovers:
            raise BundlerError(f"processes {leftovers} of this bundle survived SIGKILL")
        bundle.pidfile.unlink(missing_ok=True)
    return leftovers


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in pids if Path(f"/proc/{p}").exists() and not _zombie(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return False


def status(bundle: Bundle) -> list[Process] | None:
    """The processes of the running supervisord, or None when it is not running."""
    sup = bundle.supervisor()
    return sup.processes() if sup.alive() else None


def supervisorctl(bundle: Bundle, args: list[str]) -> int:
    env = dict(os.environ, BUNDLER_SOCKET=recorded_socket(bundle.root, bundle.run_dir))
    return subprocess.call([str(bundle.python), "-I", "-m", "supervisor.supervisorctl",
                            "-c", str(bundle.conf), *args], env=env)
