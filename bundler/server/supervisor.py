"""A bundle's supervisord: where its socket lives, and its XML-RPC interface over that socket."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import stat
import tempfile
import xmlrpc.client
from collections.abc import Container
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bundler.bundle.record import Record
from bundler.bundle.tree import Bundle
from bundler.errors import BundlerError
from bundler.server import identity

# sun_path holds 108 bytes including the terminating NUL, and supervisord first binds
# "<socket>.<its pid>" (pid_max is at most 4194304: 7 digits) before renaming it.
SOCKET_LIMIT = 107 - len(".4194304")
RUNNING, STARTING, BACKOFF, STOPPED = "RUNNING", "STARTING", "BACKOFF", "STOPPED"


def choose_socket(root: Path, run_dir: Path, make: bool = True) -> str:
    """run/supervisor.sock, or a short per-bundle path when that one passes the socket limit
    (`make`: bin/start is about to use it, so a private folder may be made for it)."""
    default = str(run_dir / "supervisor.sock")
    if len(os.fsencode(default)) <= SOCKET_LIMIT:
        return default
    tag = hashlib.sha256(os.fsencode(root)).hexdigest()[:16]
    bases = [os.environ.get("XDG_RUNTIME_DIR"), "/run" if os.geteuid() == 0 else None,
             _private_tmp(make)]
    for base in bases:
        if base and os.path.isdir(base) and os.access(base, os.W_OK):
            path = os.path.join(base, f"bundler-{tag}.sock")
            if len(os.fsencode(path)) <= SOCKET_LIMIT:
                return path
    if not make:
        return default  # no socket there: supervisord is not running
    raise BundlerError(f"no folder for a unix socket shorter than {SOCKET_LIMIT} bytes "
                       f"(XDG_RUNTIME_DIR is not set, and {tempfile.gettempdir()} is not "
                       "writable): set XDG_RUNTIME_DIR to a short folder only this user can write")


def _private_tmp(make: bool) -> str | None:
    """/tmp/bundler-UID when this user made it (a folder, not a link, mode 0700); when another
    user did (anyone may create it first), a folder of its own made by mkdtemp, which
    run/socket.path then records (`make` only)."""
    folder = os.path.join(tempfile.gettempdir(), f"bundler-{os.geteuid()}")
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        st = os.lstat(folder)
    except OSError:
        return None
    if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and (st.st_mode & 0o077) == 0:
        return folder
    if not make:
        return None
    try:
        return tempfile.mkdtemp(prefix=f"bundler-{os.geteuid()}-")
    except OSError:
        return None


def release_socket_folder(socket_path: str) -> None:
    """Remove the folder _private_tmp made for a socket, once supervisord is gone (and so its
    socket)."""
    folder = os.path.dirname(socket_path)
    if os.path.dirname(folder) == tempfile.gettempdir() and \
            os.path.basename(folder).startswith(f"bundler-{os.geteuid()}-"):
        try:
            os.rmdir(folder)
        except OSError:
            pass  # not empty: not ours to clean


@dataclass(frozen=True)
class SocketPath(Record):
    """run/socket.path: the socket bin/start chose for supervisord, on one line."""

    path: str

    @classmethod
    def parse(cls, text: str) -> SocketPath:
        path = text.strip()
        if not path.startswith("/") or not path.isprintable():  # damaged: the default is tried
            raise ValueError("no socket path: one absolute path on one line")
        return cls(path)

    def text(self) -> str:
        return f"{self.path}\n"


def recorded_socket(bundle: Bundle) -> str:
    """The socket the running supervisord uses (recorded by bin/start), else the default choice."""
    if identity.ours(bundle):  # else a copy's run/ names the original's socket
        try:
            return SocketPath.read(bundle.socket_record).path
        except (FileNotFoundError, ValueError):
            pass
    return choose_socket(bundle.root, bundle.run_dir, make=False)


_XML_UNFIT = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]")  # what XML 1.0 has no place for


class _UnixTransport(xmlrpc.client.Transport):
    """XML-RPC over the unix socket, like supervisor's own SupervisorTransport, but with a timeout:
    a hung supervisord must not hang every bundler command."""

    accept_gzip_encoding = False  # parse_response reads the plain answer

    def __init__(self, path: str, timeout: float):
        super().__init__()
        self.path = path
        self.timeout = timeout

    def make_connection(self, host: Any) -> Any:
        import http.client

        path, timeout = self.path, self.timeout

        class Connection(http.client.HTTPConnection):
            def connect(self) -> None:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(timeout)
                self.sock.connect(path)

        return Connection("localhost")

    def parse_response(self, response: Any) -> Any:
        """The answer, with the control characters that XML cannot hold shown escaped: supervisord
        answers with what its processes printed (a log's colours) and what its config says, raw,
        and Python's parser stops at the first such byte (ExpatError: not well-formed)."""
        parser, unmarshaller = self.getparser()
        parser.feed(_XML_UNFIT.sub(lambda m: b"\\x%02x" % m.group()[0], response.read()))
        parser.close()
        return unmarshaller.close()


@dataclass(frozen=True)
class Process:
    group: str
    name: str
    state: str
    pid: int
    description: str
    autostart: bool
    started: bool
    uptime: int = 0  # seconds in its current run, 0 when not running

    @property
    def full_name(self) -> str:
        return self.name if self.group == self.name else f"{self.group}:{self.name}"

    def service(self, services: Container[str]) -> str:
        """The bundle.toml service this process runs (a group member, a numprocs process...)."""
        if self.group in services:
            return self.group
        if self.name in services:
            return self.name
        program = self.name.rsplit("_", 1)[0]  # <program>_NN of numprocs
        return program if program in services else self.name


def waiting_for(pending: list[Process]) -> str:
    """The status line of a wait for processes: "svc3: STARTING, web:web_00: BACKOFF"."""
    shown = ", ".join(f"{p.full_name}: {p.state}" for p in pending[:3])
    return shown + (f" and {len(pending) - 3} more" if len(pending) > 3 else "")


class Supervisor:
    """The supervisord of one bundle, reached over its unix socket. With `bundle`, one that
    serves another root (a copy's run/ names the original's socket) counts as not running."""

    def __init__(self, socket_path: str, timeout: float = 10.0, bundle: Bundle | None = None):
        self.socket_path = socket_path
        self.bundle = bundle
        self.proxy: Any = xmlrpc.client.ServerProxy(
            "http://localhost", transport=_UnixTransport(socket_path, timeout))

    def alive(self) -> bool:
        try:
            running = self.proxy.supervisor.getState()["statename"] == "RUNNING"
            return bool(running) and (self.bundle is None or self.serves(self.bundle))
        except PermissionError:
            raise BundlerError(f"permission denied on supervisord's socket {self.socket_path}: run "
                               "this as the bundle's user, root, or a member of its socket_group") \
                from None
        except (OSError, xmlrpc.client.Error):
            return False

    def serves(self, bundle: Bundle) -> bool:
        """Whether this supervisord runs `bundle` (its root, by device and inode), as it says
        itself; one started by an older bundler, by the config on its command line."""
        try:
            served = self.proxy.bundler.root()
        except xmlrpc.client.Fault:  # no such method
            return identity.pid_serves(self.pid(), bundle) is not False
        here = identity.RunRoot.of(bundle.root)
        return (served.get("dev"), served.get("ino")) == (str(here.dev), str(here.ino))

    def pid(self) -> int:
        return int(self.proxy.supervisor.getPID())

    def processes(self) -> list[Process]:
        configs = {(c["group"], c["name"]): c for c in self.proxy.supervisor.getAllConfigInfo()}
        result = []
        for info in self.proxy.supervisor.getAllProcessInfo():
            config = configs.get((info["group"], info["name"]), {})
            result.append(Process(group=info["group"], name=info["name"], state=info["statename"],
                                  pid=info["pid"], description=info["description"],
                                  autostart=bool(config.get("autostart", True)),
                                  started=info["start"] != 0,
                                  uptime=info["now"] - info["start"] if info["pid"] else 0))
        return result

    def starts(self) -> dict[str, int] | None:
        """How many times each process started since supervisord did (bundler.starts, in
        supervisor_rpc.py); None from a supervisord started before bundler counted them."""
        try:
            return {str(k): int(v) for k, v in self.proxy.bundler.starts().items()}
        except xmlrpc.client.Error:  # Fault: no such method
            return None

    def tail(self, process: Process, nbytes: int = 4000) -> str:
        try:
            text, _, _ = self.proxy.supervisor.tailProcessStdoutLog(process.full_name, 0, nbytes)
        except xmlrpc.client.Error as exc:
            return f"(no log: {exc})"
        return str(text)

    def shutdown(self) -> None:
        self.proxy.supervisor.shutdown()


def connect(bundle: Bundle, timeout: float = 10.0) -> Supervisor:
    """The bundle's supervisord, at the socket bin/start chose."""
    return Supervisor(recorded_socket(bundle), timeout, bundle)
