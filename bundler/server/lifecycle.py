"""Run a built bundle where it was unpacked: start (relocating first), stop, status.

Everything here runs on the server with the bundle's own interpreter.
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import secrets
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bundler.bundle import Bundle
from bundler.errors import BundlerError
from bundler.live import read_manifest, recover
from bundler.relocate import locked, relocate
from bundler.spec import Supervisord
from bundler.supervisor import (
    BACKOFF,
    MONITOR,
    RUNNING,
    SOCKET_RECORD,
    STARTING,
    STOPPED,
    Process,
    Supervisor,
    choose_socket,
    recorded_socket,
)
from bundler.systemd import managing_unit

ROOT_VAR = "BUNDLE_ROOT"
PASSWORD_FILE = "http-password"
# Variables supervisord (and so every service) keeps from the caller; all else is dropped.
KEEP_ENV = ("HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
# Supervisor pastes the bundle's path into its config: these characters would break quoting,
# %-expansion or PYTHONPATH (':'-separated).
_BAD_PATH_CHARS = ('"', "\\", "\n", "\r", "%", ":")


def supervisord_env(bundle: Bundle, socket_path: str) -> dict[str, str]:
    env = {k: os.environ[k] for k in KEEP_ENV if k in os.environ}
    env["PATH"] = f"{bundle.root}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    env[ROOT_VAR] = str(bundle.root)
    env["BUNDLER_SOCKET"] = socket_path
    return env


def _privileges(bundle: Bundle, settings: Supervisord, env: dict[str, str]) -> None:
    """Prepare what supervisord needs to run as [supervisor] user, own its socket and serve
    [supervisor.http]: writable log/ and run/, the socket's owner, the web password."""
    uid = os.geteuid()
    if settings.user:
        try:
            user = pwd.getpwnam(settings.user)
        except KeyError as exc:
            raise BundlerError(f"this bundle runs as user {settings.user!r} ([supervisor] user in "
                               "bundle.toml), which does not exist here: create it (useradd "
                               f"--system {settings.user})") from exc
        if uid not in (0, user.pw_uid):
            raise BundlerError(f"this bundle runs as user {settings.user!r} ([supervisor] user): "
                               f"start it as root (supervisord then drops to {settings.user}) "
                               f"or as {settings.user}")
        uid = user.pw_uid
        if os.geteuid() == 0:
            for folder in (bundle.root / bundle.layout.log, bundle.run_dir):
                for path in (folder, *folder.rglob("*")):
                    os.lchown(path, user.pw_uid, user.pw_gid)
    if settings.socket_group:
        try:
            grp.getgrnam(settings.socket_group)
        except KeyError as exc:
            raise BundlerError(f"socket_group {settings.socket_group!r} ([supervisor] in "
                               "bundle.toml) is no group on this machine: create it "
                               f"(groupadd {settings.socket_group})") from exc
        env["BUNDLER_SOCKET_OWNER"] = str(uid)
    if settings.http:
        env["BUNDLER_HTTP_PASSWORD"] = "{SHA}" + hashlib.sha1(
            http_password(bundle, uid).encode()).hexdigest()


def http_password(bundle: Bundle, owner: int) -> str:
    """The password of supervisor's web server: made where the bundle first runs, kept in
    run/http-password (0600, for `owner`), never part of a build or an archive."""
    path = bundle.run_dir / PASSWORD_FILE
    if path.exists():
        return path.read_text().strip()
    password = secrets.token_urlsafe(24)
    bundle.run_dir.mkdir(exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    if os.geteuid() == 0:
        os.chown(path, owner, -1)
    return password


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


def start(bundle: Bundle, timeout: float = 60.0, foreground: bool = False) -> StartReport:
    """Relocate if the bundle moved, start supervisord and wait for the services. In the
    foreground (for systemd) this process becomes `supervisord -n` and never returns."""
    bad = [c for c in _BAD_PATH_CHARS if c in str(bundle.root)]
    if bad:
        raise BundlerError(f"the bundle's path {bundle.root} contains {bad[0]!r}, which supervisor "
                           "configs and PYTHONPATH cannot carry: move the bundle to another path")
    with locked(bundle.meta):
        moved = relocate(bundle.root, bundle.meta)
        recover(bundle)  # an operation that was killed half-way leaves no half-written config
        pid = running_pid(bundle)
        already = pid is not None
        if already and foreground:
            raise BundlerError(f"this bundle's supervisord already runs (pid {pid}), started by "
                               "bin/start: stop it with bin/stop first")
        if not already:
            orphans = bundle_processes(bundle)
            if orphans:
                raise BundlerError(
                    f"{len(orphans)} process(es) of this bundle still run without supervisord "
                    f"(pids {' '.join(map(str, orphans))}): run bin/stop first")
            cmd, env = _prepare(bundle)
            if not foreground:
                _launch(bundle, cmd, env)
    if foreground:
        os.chdir(bundle.root)
        os.execve(cmd[0], [*cmd, "-n"], env)
    sup = bundle.supervisor()
    processes = _wait_settled(sup, timeout)
    failed = [(p, sup.tail(p)) for p in processes if p.autostart and p.state != RUNNING]
    return StartReport(moved=moved, already_running=already, processes=processes, failed=failed)


def _prepare(bundle: Bundle) -> tuple[list[str], dict[str, str]]:
    """supervisord's command line and environment; records the socket it will use."""
    socket_path = choose_socket(bundle.root, bundle.run_dir)
    bundle.run_dir.mkdir(exist_ok=True)
    (bundle.run_dir / SOCKET_RECORD).write_text(socket_path + "\n")
    env = supervisord_env(bundle, socket_path)
    _privileges(bundle, read_manifest(bundle).spec.supervisor, env)
    return [str(bundle.python), "-I", "-m", "supervisor.supervisord", "-c", str(bundle.conf)], env


def _launch(bundle: Bundle, cmd: list[str], env: dict[str, str]) -> None:
    with tempfile.TemporaryFile() as output:
        code = subprocess.call(cmd, env=env, cwd=bundle.root,
                               stdin=subprocess.DEVNULL, stdout=output, stderr=output)
        output.seek(0)
        text = output.read().decode(errors="replace").strip().removeprefix("Error: ")
    if code != 0:
        raise BundlerError(f"supervisord did not start (exit {code}): {text}")
    socket_path = env["BUNDLER_SOCKET"]
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
        unit = managing_unit(bundle, pid) if pid is not None else None
        if unit is not None:
            raise BundlerError(f"supervisord runs under systemd: stop it with `systemctl stop {unit}`"
                               " (systemd would start it again after bin/stop)")
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


NOT_RUNNING = "not running"  # the state shown for every service when supervisord is down


@dataclass(frozen=True)
class ServiceRow:
    process: str
    state: str
    pid: int
    uptime: int
    python: str      # interpreter name and Python version
    code: str
    autostart: bool


def service_rows(bundle: Bundle) -> list[ServiceRow]:
    """One row per process of the running supervisord, or per service when it is not running."""
    deployed = read_manifest(bundle)
    spec, interpreters = deployed.spec, deployed.build["interpreters"]

    def row(process: str, service: str, state: str, pid: int = 0, uptime: int = 0,
            autostart: bool = True) -> ServiceRow:
        s = spec.services.get(service)
        if s is None:  # bundler's own monitor, or a program added by hand
            what = "bundler" if process == MONITOR else "?"
            return ServiceRow(process, state, pid, uptime, what, what, autostart)
        version = interpreters.get(s.python, {}).get("python_version", "?")
        return ServiceRow(process, state, pid, uptime, f"{s.python} ({version})", s.code, autostart)

    sup = bundle.supervisor()
    if not sup.alive():
        return [row(name, name, NOT_RUNNING) for name in spec.services]
    rows = []
    for p in sup.processes():
        rows.append(row(p.full_name, p.service(spec.services), p.state, p.pid, p.uptime,
                        p.autostart))
    return rows


def supervisorctl(bundle: Bundle, args: list[str]) -> int:
    env = dict(os.environ, BUNDLER_SOCKET=recorded_socket(bundle.root, bundle.run_dir))
    return subprocess.call([str(bundle.python), "-I", "-m", "supervisor.supervisorctl",
                            "-c", str(bundle.conf), *args], env=env)


def log_files(bundle: Bundle, service: str) -> list[Path]:
    """The log files of `service` (one per process; .err.log when stderr is kept apart)."""
    folder = bundle.root / bundle.layout.log
    names = [f"{service}.log", f"{service}.err.log"]
    found = [folder / n for n in names if (folder / n).is_file()]
    for pattern in (f"{service}_[0-9][0-9].log", f"{service}_[0-9][0-9].err.log"):
        found += sorted(folder.glob(pattern))
    return found


def last_lines(path: Path, count: int) -> list[str]:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 256 * 1024))
        return f.read().decode(errors="replace").splitlines()[-count:] if count else []


def follow(paths: list[Path], interval: float = 0.5) -> Iterator[tuple[Path, str]]:
    """New complete lines of `paths` as they are written; survives rotation and truncation."""
    positions = {}
    for path in paths:
        st = path.stat()
        positions[path] = (st.st_ino, st.st_size)
    while True:
        for path in paths:
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            inode, pos = positions[path]
            if st.st_ino != inode or st.st_size < pos:
                pos = 0
            if st.st_size > pos:
                with open(path, "rb") as f:
                    f.seek(pos)
                    data = f.read()
                cut = data.rfind(b"\n") + 1
                for line in data[:cut].decode(errors="replace").splitlines():
                    yield path, line
                pos += cut
            positions[path] = (st.st_ino, pos)
        time.sleep(interval)
