"""What a running bundle shows: one row per process (state, pid, uptime, interpreter, code), the
logs of a service, and supervisorctl wired to the bundle's supervisord."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bundler.bundle.layout import MONITOR
from bundler.bundle.manifest import Manifest
from bundler.bundle.tree import Bundle
from bundler.errors import BundlerError
from bundler.server import stale
from bundler.server.supervisor import Process, connect, recorded_socket

NOT_RUNNING = "not running"  # the state shown for every service when supervisord is down


@dataclass(frozen=True)
class ServiceRow:
    process: str     # supervisor's name for it: svc1, sam:svc1 (in group sam), web:web_00 (numprocs)
    service: str     # the bundle.toml service it runs ("" for a program bundler did not declare)
    group: str       # the bundle.toml group of that service ("" for none)
    state: str
    pid: int
    uptime: int
    python: str      # interpreter name (base, pyocr)
    python_version: str
    code: str
    autostart: bool
    stale: str = ""  # why it runs files that are no longer on disk ("" when it does not)


def service_rows(bundle: Bundle, processes: list[Process] | None = None) -> list[ServiceRow]:
    """One row per process of the running supervisord (or of `processes`, just read from it),
    or per service when it is not running (named as supervisord would name it: group:service in
    a group)."""
    manifest = Manifest.read(bundle.manifest)
    spec, interpreters = manifest.spec, manifest.build.interpreters
    changed = stale.FilesChanged.load(bundle)
    now = time.time()

    def row(process: str, service: str, state: str, pid: int = 0, uptime: int = 0,
            autostart: bool = True) -> ServiceRow:
        s = spec.services.get(service)
        if s is None:  # bundler's own monitor, or a program added by hand
            what = "bundler" if process == MONITOR else "?"
            return ServiceRow(process, "", "", state, pid, uptime, what, "", what, autostart)
        interpreter = interpreters.get(s.python)
        version = interpreter.python_version if interpreter is not None else "?"
        old = stale.stale(changed, s.code, s.python, now - uptime) if pid else ""
        return ServiceRow(process, s.name, s.group or "", state, pid, uptime, s.python, version,
                          s.code, autostart, old)

    if processes is None:
        sup = connect(bundle)
        if not sup.alive():
            return [row(f"{s.group}:{name}" if s.group else name, name, NOT_RUNNING)
                    for name, s in spec.services.items()]
        processes = sup.processes()
    rows = []
    for p in processes:
        rows.append(row(p.full_name, p.service(spec.services), p.state, p.pid, p.uptime,
                        p.autostart))
    return rows


def supervisorctl(bundle: Bundle, args: list[str]) -> int:
    from bundler.runner import interactive  # status and logs start no process: not on their path

    env = dict(os.environ, BUNDLER_SOCKET=recorded_socket(bundle))
    return interactive([str(bundle.python), "-I", "-m", "supervisor.supervisorctl",
                        "-c", str(bundle.conf), *args], what="supervisorctl", env=env)


def log_files(bundle: Bundle, service: str) -> list[Path]:
    """The log files of `service` (one per process; .err.log when stderr is kept apart)."""
    folder = bundle.log_dir
    names = [f"{service}.log", f"{service}.err.log"]
    found = [folder / n for n in names if (folder / n).is_file()]
    for pattern in (f"{service}_[0-9][0-9].log", f"{service}_[0-9][0-9].err.log"):
        found += sorted(folder.glob(pattern))
    return found


def logs_of(bundle: Bundle, names: list[str]) -> list[Path]:
    """The log files of the services, groups and _monitor that `names` lists (none: every
    service's, and the monitor's)."""
    spec = Manifest.read(bundle.manifest).spec
    services: list[str] = []
    for name in names or [*spec.services, MONITOR]:
        if name in spec.groups:
            services += spec.groups[name].programs
        elif name in spec.services or name == MONITOR:
            services.append(name)
        else:
            raise BundlerError(f"no log of {name}: it is not a service or group of this bundle, "
                               f"nor {MONITOR} (services: {', '.join(spec.services) or 'none'}; "
                               f"groups: {', '.join(spec.groups) or 'none'})")
    found = {s: log_files(bundle, s) for s in dict.fromkeys(services)}
    silent = [s for s, files in found.items() if not files]
    if names and silent or not any(found.values()):
        raise BundlerError(f"no log of {', '.join(silent)} in {bundle.log_dir} yet")
    return [path for files in found.values() for path in files]


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
