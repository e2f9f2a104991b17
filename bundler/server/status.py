"""What a running bundle shows: the release it runs, one row per process (state, pid, uptime,
health, restarts, CPU and memory, interpreter, code), the logs of a service, and supervisorctl
wired to the bundle's supervisord.

Everything is read where it is kept, at once: supervisord over its socket (states, and the starts
it counted), run/health.json (what the monitor's probes last said), /proc (CPU and memory), the
history (the last release installed). No process is started, nothing waits."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bundler.bundle.health import HealthRecord, ProbeState
from bundler.bundle.layout import MONITOR
from bundler.bundle.manifest import Manifest
from bundler.bundle.stopped import Stopped
from bundler.bundle.tree import Bundle
from bundler.errors import BundlerError, DamagedRecord
from bundler.redact import redact
from bundler.server import procfs, stale
from bundler.server.history import last_release
from bundler.server.supervisor import RUNNING, Process, Supervisor, connect, recorded_socket
from bundler.spec.values import log_names

NOT_RUNNING = "not running"  # the state shown for every service when supervisord is down
# A process's health: what the monitor's last probe said of it, "none" without a probe, and
# "unknown" while the monitor has not probed this run of it (or is not running itself).
PASSING, FAILING, NO_PROBE, UNKNOWN = "passing", "failing", "none", "unknown"


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
    health: str = UNKNOWN
    health_since: str = ""    # UTC: since when the probes say so (passing or failing)
    health_reason: str = ""   # why the last probe failed
    restarts: int | None = None       # starts after the first since supervisord started
    cpu_percent: float | None = None  # over the process's life (procfs.py)
    rss: int | None = None            # resident memory, bytes
    stale: str = ""  # why it runs files that are no longer on disk ("" when it does not)
    stopped_by: str = ""  # "USER at TIME" for a service stopped by `stop SERVICE`


@dataclass(frozen=True)
class InstalledRelease:
    """The release a bundle runs: the last one apply installed, else the one it was built as."""

    name: str
    version: str
    at: str                      # UTC: when it was installed (as built: when it was built)
    by: str | None = None        # who installed it (None: as built)
    patch: str | None = None     # the archive it came in (None: as built)
    signed_by: str | None = None

    @property
    def as_built(self) -> bool:
        return self.patch is None


@dataclass(frozen=True)
class Interrupted:
    """An operation killed half-way: its journal is left, and the files may not be what runs
    (the next operation undoes it, or finishes a relocation: transact.recover)."""

    what: str
    journal: str  # relative to the bundle's root

    def line(self) -> str:
        return (f"INTERRUPTED: {self.what} was killed half-way ({self.journal} is left): the "
                "files may not be what runs; bin/start undoes it (and starts what is not "
                "running; the next command that changes the bundle undoes it too)")


def interrupted(bundle: Bundle) -> list[Interrupted]:
    """The operations that were interrupted; none while one is under way (it holds the lock,
    and its journals are its own)."""
    journals = [(bundle.apply_journal, "an apply, its files half moved in"),
                (bundle.transaction, "a change of the services (switch, set, rollback, "
                                     "add-service, remove-service or apply)"),
                (bundle.relocation_journal, "the relocation of the moved bundle")]
    left = [Interrupted(what, str(path.relative_to(bundle.root)))
            for path, what in journals if path.exists()]
    if left and _under_way(bundle):
        return []
    return left


def damaged_records(bundle: Bundle) -> list[str]:
    """What is wrong with the records status reads past when they are damaged (it shows the
    services without their health, their stop by an operator or their changed files)."""
    found = []
    for kind, path in ((HealthRecord, bundle.health_record), (Stopped, bundle.stopped),
                       (stale.FilesChanged, bundle.files_changed)):
        try:
            kind.read(path)
        except DamagedRecord as exc:
            found.append(f"{exc}: status shows the services without it")
        except OSError:
            pass  # none yet, or not this user's to read
    return found


def _under_way(bundle: Bundle) -> bool:
    """Whether an operation holds the bundle's lock now."""
    import fcntl

    try:
        with open(bundle.lock_file, "rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
    except OSError:
        pass  # no lock file (no operation ever ran), or not ours to read
    return False


def installed_release(bundle: Bundle, manifest: Manifest | None = None) -> InstalledRelease:
    manifest = manifest or Manifest.read(bundle.manifest)
    name = manifest.spec.name
    entry = last_release(bundle)
    if entry is None or entry.installed is None:
        return InstalledRelease(name, manifest.spec.version, manifest.build.built_at)
    done = entry.installed
    return InstalledRelease(name, done.version, entry.at, entry.user, done.patch, done.signed_by)


def service_rows(bundle: Bundle, processes: list[Process] | None = None,
                 manifest: Manifest | None = None) -> list[ServiceRow]:
    """One row per process of the running supervisord (or of `processes`, just read from it),
    or per service when it is not running (named as supervisord would name it: group:service in
    a group)."""
    manifest = manifest or Manifest.read(bundle.manifest)
    spec, interpreters = manifest.spec, manifest.build.interpreters
    changed = stale.FilesChanged.load(bundle)
    now = time.time()
    stopped = Stopped.load(bundle.stopped).services

    def row(process: str, service: str, state: str, pid: int = 0, uptime: int = 0,
            autostart: bool = True) -> ServiceRow:
        s = spec.services.get(service)
        if s is None:  # bundler's own monitor, or a program added by hand
            what = "bundler" if process == MONITOR else "?"
            return ServiceRow(process, "", "", state, pid, uptime, what, "", what, autostart,
                              health=NO_PROBE)
        interpreter = interpreters.get(s.python)
        version = interpreter.python_version if interpreter is not None else "?"
        stop = stopped.get(s.name)
        old = stale.stale(changed, s.code, s.python, now - uptime) if pid else ""
        return ServiceRow(process, s.name, s.group or "", state, pid, uptime, s.python, version,
                          s.code, autostart, health=UNKNOWN if s.health else NO_PROBE,
                          stale=old, stopped_by=f"{stop.by} at {stop.at}" if stop else "")

    sup = connect(bundle)
    if processes is None:
        if not sup.alive():
            return [row(f"{s.group}:{name}" if s.group else name, name, NOT_RUNNING)
                    for name, s in spec.services.items()]
        processes = sup.processes()
    rows = [row(p.full_name, p.service(spec.services), p.state, p.pid, p.uptime, p.autostart)
            for p in processes]
    return live_rows(rows, processes, _probes(bundle, processes), _starts(sup))


def live_rows(rows: list[ServiceRow], processes: list[Process],
              probes: dict[str, ProbeState] | None, starts: dict[str, int] | None
              ) -> list[ServiceRow]:
    """The rows (of `processes`, in order) with what each process does now: its health, from
    `probes` (the monitor's record; None when the monitor is not running), its restarts, from
    `starts` (supervisord's count; None when it keeps none), and its CPU and memory."""
    found = []
    for r, p in zip(rows, processes):  # as many (no strict=: servers run Python 3.9)
        probe = (probes or {}).get(r.process)
        health = r.health
        if probe is None or probe.pid != p.pid or p.state != RUNNING or health == NO_PROBE:
            probe = None  # not probed in this run (yet): unknown
        else:
            health = PASSING if probe.passing else FAILING
        used = procfs.usage(p.pid) if p.pid else None
        found.append(dataclasses.replace(
            r, health=health, health_since=probe.since if probe else "",
            health_reason=redact(probe.reason) if probe else "",
            restarts=max(starts.get(r.process, 0) - 1, 0) if starts is not None else None,
            cpu_percent=used.cpu_percent if used else None, rss=used.rss if used else None))
    return found


def _probes(bundle: Bundle, processes: list[Process]) -> dict[str, ProbeState] | None:
    """The monitor's health record, while the monitor runs (else it may be out of date)."""
    if not any(p.full_name == MONITOR and p.state == RUNNING for p in processes):
        return None
    try:
        return dict(HealthRecord.read(bundle.health_record).processes)
    except (OSError, ValueError):  # none yet (nothing probed), or not this user's to read
        return {}


def _starts(sup: Supervisor) -> dict[str, int] | None:
    try:
        return sup.starts()
    except OSError:  # supervisord went away since
        return None


def supervisorctl(bundle: Bundle, args: list[str]) -> int:
    from bundler.runner import interactive  # status and logs start no process: not on their path

    env = dict(os.environ, BUNDLER_SOCKET=recorded_socket(bundle))
    return interactive([str(bundle.python), "-I", "-m", "supervisor.supervisorctl",
                        "-c", str(bundle.conf), *args], what="supervisorctl", env=env)


def log_files(bundle: Bundle, stems: list[str]) -> list[Path]:
    """The log files of processes named `stems` (values.log_names: one per process; .err.log
    when stderr is kept apart)."""
    return [path for suffix in (".log", ".err.log") for stem in stems
            if (path := bundle.log_dir / f"{stem}{suffix}").is_file()]


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
    def stems(name: str) -> list[str]:
        if name == MONITOR:
            return [MONITOR]
        service = spec.services[name]
        return log_names(name, service.numprocs, service.options.get("numprocs_start", 0))

    found = {s: log_files(bundle, stems(s)) for s in dict.fromkeys(services)}
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
