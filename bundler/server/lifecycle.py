"""Start a built bundle where it was unpacked (relocating it first if it moved) and stop it: its
supervisord, a clean environment for it, the privileges it drops to, and the processes of a
previous run that must not be left beside a new one."""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import secrets
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bundler import fsutil, progress
from bundler.bundle.manifest import Manifest
from bundler.bundle.relocation import relocate
from bundler.bundle.tree import Bundle
from bundler.errors import BundlerError
from bundler.fsutil import write_atomic
from bundler.runner import call
from bundler.server import identity
from bundler.server.supervisor import (
    BACKOFF,
    RUNNING,
    STARTING,
    STOPPED,
    Process,
    SocketPath,
    Supervisor,
    choose_socket,
    connect,
    recorded_socket,
    release_socket_folder,
    waiting_for,
)
from bundler.server.systemd import managing_unit
from bundler.server.transact import recover
from bundler.spec.model import Listen, Supervisord

ROOT_VAR = "BUNDLE_ROOT"
TOKEN_VAR = "BUNDLER_TOKEN"
# Variables supervisord (and so every service) keeps from the caller; all else is dropped.
KEEP_ENV = ("HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
# Where supervisord read the web server's password before run/http.ini (a config built then)
_OLD_HTTP_VAR = "BUNDLER_HTTP_PASSWORD"
# Supervisor pastes the bundle's path into its config: these characters would break quoting,
# %-expansion or PYTHONPATH (':'-separated).
_BAD_PATH_CHARS = ('"', "\\", "\n", "\r", "%", ":")


def supervisord_env(bundle: Bundle, socket_path: str) -> dict[str, str]:
    env = {k: os.environ[k] for k in KEEP_ENV if k in os.environ}
    env["PATH"] = f"{bundle.root}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    env[ROOT_VAR] = str(bundle.root)  # for the services; it proves nothing (anyone can set it)
    env["BUNDLER_SOCKET"] = socket_path
    return env


def _privileges(bundle: Bundle, settings: Supervisord, env: dict[str, str]) -> None:
    """Prepare what supervisord needs to run as [supervisor] user, own its socket and serve
    [supervisor.http]: writable log/ and run/, the socket's owner, the web password."""
    uid = os.geteuid()
    # supervisord opens its own log before it applies its umask: made here, not world-readable
    bundle.log_dir.mkdir(exist_ok=True)
    os.close(os.open(bundle.supervisord_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640))
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
            for folder in (bundle.log_dir, bundle.run_dir):  # the user's folders: any depth
                for top, dirs, files in fsutil.walk(folder):
                    for name in (".", *dirs, *files):
                        os.lchown(os.path.join(top, name), user.pw_uid, user.pw_gid)
            # supervisord re-reads these as the user when a service changes
            for path in (bundle.manifest, *bundle.programs.iterdir()):
                os.lchown(path, -1, user.pw_gid)
    env[TOKEN_VAR] = _token(bundle, uid)
    for log in bundle.log_dir.glob("*"):
        if log.is_file() and not log.is_symlink():
            log.chmod(log.stat().st_mode & 0o750)  # logs of older runs: not for other users
    if settings.socket_group:
        try:
            grp.getgrnam(settings.socket_group)
        except KeyError as exc:
            raise BundlerError(f"socket_group {settings.socket_group!r} ([supervisor] in "
                               "bundle.toml) is no group on this machine: create it "
                               f"(groupadd {settings.socket_group})") from exc
        env["BUNDLER_SOCKET_OWNER"] = str(uid)
    if settings.http:
        digest = "{SHA}" + hashlib.sha1(http_password(bundle, uid).encode()).hexdigest()
        write_http_section(bundle, settings.http, digest, uid)
        if f"%(ENV_{_OLD_HTTP_VAR})s" in bundle.conf.read_text(encoding="utf-8"):
            env[_OLD_HTTP_VAR] = digest  # a config built by an older bundler reads it there


def write_http_section(bundle: Bundle, http: Listen, digest: str, owner: int) -> None:
    """run/http.ini, which etc/supervisord.conf includes: supervisor's web server, with the
    digest of its password. Only `owner` reads it (mode 0600); no environment carries it (all
    the services inherit supervisord's)."""
    text = ("; Written by bin/start for [supervisor.http] in bundle.toml: do not edit.\n"
            f"[inet_http_server]\nport={http.host}:{http.port}\nusername={http.username}\n"
            f"password={digest}\n")
    write_atomic(bundle.http_section, text, 0o600)
    if os.geteuid() == 0:
        os.chown(bundle.http_section, owner, -1)


def http_password(bundle: Bundle, owner: int) -> str:
    """The password of supervisor's web server: made where the bundle first runs, kept in
    run/http-password (0600, for `owner`), never part of a build or an archive."""
    return _run_secret(bundle.http_password, owner, lambda: secrets.token_urlsafe(24))


def _token(bundle: Bundle, owner: int) -> str:
    """run/token: made at the first start, readable by `owner` only, kept across starts (processes
    left from an earlier run carry it too)."""
    return _run_secret(bundle.run_token, owner, lambda: secrets.token_hex(16))


def _run_secret(path: Path, owner: int, make: Callable[[], str]) -> str:
    """A secret in run/, made once where the bundle runs: mode 0600, owned by `owner` (the user
    the bundle runs as now, when root starts it)."""
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # made a moment ago by another start
        else:
            with os.fdopen(fd, "w") as f:
                f.write(make() + "\n")
    if os.geteuid() == 0:
        os.chown(path, owner, -1)
    return path.read_text().strip()


def _marker(bundle: Bundle) -> tuple[bytes, int] | None:
    """What a process of this bundle carries in its environment, and the user it runs as
    (None when run/ was made for another root: a copy's run/ names the original's token)."""
    if not identity.ours(bundle):
        return None
    try:
        owner = bundle.run_token.stat().st_uid
        return f"{TOKEN_VAR}={bundle.run_token.read_text().strip()}\0".encode(), owner
    except FileNotFoundError:
        pass
    except PermissionError:
        raise BundlerError(f"permission denied: {bundle.run_token} is readable by the bundle's "
                           "user only; run this as that user or as root") from None
    try:  # started by a bundler without run/token: its root marker, owned as its pid file is
        owner = bundle.pidfile.stat().st_uid
    except FileNotFoundError:
        return None
    return f"{ROOT_VAR}={bundle.root}\0".encode(), owner


def bundle_processes(bundle: Bundle) -> list[int]:
    """Pids of live processes started for this bundle: they run as its user and carry its token
    (run/token, which other users cannot read) in their environment."""
    marker = _marker(bundle)
    if marker is None:
        return []
    text, owner = marker
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if entry.stat().st_uid != owner:
                continue
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if text in environ and not _zombie(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)


def running_pid(bundle: Bundle) -> int | None:
    """The pid of this bundle's live supervisord, removing a stale pid file."""
    try:
        pid = int(bundle.pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    except PermissionError:
        raise BundlerError(f"permission denied: cannot read {bundle.pidfile}; run this as the "
                           "bundle's user or as root") from None
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
    with bundle.locked():
        moved = relocate(bundle)
        if recover(bundle):  # an operation that was killed half-way leaves no half-written config
            progress.log("undid an operation that was interrupted (killed half-way)")
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
    sup = connect(bundle)
    processes = _wait_settled(sup, timeout)
    failed = [(p, sup.tail(p)) for p in processes if p.autostart and p.state != RUNNING]
    return StartReport(moved=moved, already_running=already, processes=processes, failed=failed)


def _prepare(bundle: Bundle) -> tuple[list[str], dict[str, str]]:
    """supervisord's command line and environment; records the socket it will use."""
    if identity.claim(bundle):
        progress.log("run/ was made for another bundle (this one is a copy of it): this one "
                     "gets its own token and socket")
    socket_path = choose_socket(bundle.root, bundle.run_dir)
    SocketPath(socket_path).write(bundle.socket_record)
    env = supervisord_env(bundle, socket_path)
    _privileges(bundle, Manifest.read(bundle.manifest).spec.supervisor, env)
    return [str(bundle.python), "-I", "-m", "supervisor.supervisord", "-c", str(bundle.conf)], env


def _launch(bundle: Bundle, cmd: list[str], env: dict[str, str]) -> None:
    # supervisord daemonizes: its parent exits, and the child closes the output it inherited
    done = call(cmd, what="starting supervisord", cwd=bundle.root, env=env, timeout=120)
    if done.returncode != 0:
        said = [line for line in done.output.splitlines()  # not its "For help, use ..."
                if line.strip() and not line.startswith("For help, use ")]
        raise BundlerError(f"supervisord did not start (exit {done.returncode}): "
                           f"{' '.join(said).removeprefix('Error: ')}")
    socket_path = env["BUNDLER_SOCKET"]
    sup = Supervisor(socket_path)
    deadline = time.monotonic() + 15
    progress.waiting("starting supervisord")
    while not sup.alive():
        if time.monotonic() > deadline:
            log = bundle.supervisord_log
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
        progress.waiting(waiting_for(pending))
        time.sleep(0.2)


def stop(bundle: Bundle, timeout: float = 60.0) -> list[int]:
    """Stop supervisord and its services; kill what is left of this bundle. Returns killed pids."""
    with bundle.locked():
        pid = running_pid(bundle)
        unit = managing_unit(bundle, pid) if pid is not None else None
        if unit is not None:
            raise BundlerError(f"supervisord runs under systemd: stop it with `systemctl stop {unit}`"
                               " (systemd would start it again after bin/stop)")
        socket_path = recorded_socket(bundle)
        sup = connect(bundle)
        if sup.alive():  # it serves this root (a copy's run/ may name the original's socket)
            served = sup.pid()
            sup.shutdown()
            _wait_gone([served], timeout)
        if pid is not None:
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
        release_socket_folder(socket_path)
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
