"""The bundle's monitor: a supervisor event listener that restarts unhealthy services, restarts
services above their memory limit, sends alerts and serves metrics (see etc/conf.d/_monitor.ini).

Its stdin and stdout speak supervisor's event listener protocol (READY, then one RESULT per
event) and nothing else; it logs to stderr. State changes arrive as events; probes and memory
checks run in a watcher thread on their own clock, each probe in a worker with its timeout, so
a hung service never delays the listener. Restarts go through supervisord's XML-RPC socket.

    python -m bundler.server.monitor etc/conf.d/_monitor.json     (__main__.py runs main here)
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
import traceback
from collections import Counter, defaultdict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bundler.bundle.health import HealthRecord, ProbeState
from bundler.bundle.layout import MONITOR
from bundler.bundle.logfaults import LogFaults
from bundler.bundle.records import MonitorConfig, Watched
from bundler.bundle.tree import open_bundle
from bundler.redact import redact
from bundler.server.monitor import probes
from bundler.server.monitor.alerts import Alerter
from bundler.server.supervisor import RUNNING, Process, Supervisor
from bundler.spec.model import Health

MEMORY_EVERY = 5.0  # seconds between memory checks
TICK = 1.0  # seconds between two looks at the processes


def log(message: str) -> None:
    """A line of the monitor's log (log/_monitor.log), URLs without their secrets."""
    print(time.strftime("%Y-%m-%d %H:%M:%S ") + redact(message), file=sys.stderr, flush=True)


class Tail:
    """The lines a file gains, from when the monitor starts (what came before is not news)."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.offset = path.stat().st_size
        except OSError:
            self.offset = 0

    def new_lines(self) -> str:
        try:
            with open(self.path, "rb") as f:
                if f.seek(0, os.SEEK_END) < self.offset:
                    self.offset = 0  # rotated
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return ""
        end = data.rfind(b"\n") + 1  # a line being written is read next time
        self.offset += end
        return data[:end].decode(errors="replace")


class ExitLog(Tail):
    """How processes ended, read from supervisord's log as it grows: per process name, the
    unexpected exits not yet reported."""

    LINE = re.compile(r"exited: (\S+) \((.*?); not expected\)")

    def __init__(self, path: Path):
        super().__init__(path)
        self.pending: defaultdict[str, deque[str]] = defaultdict(deque)

    def read(self) -> None:
        for name, how in self.LINE.findall(self.new_lines()):
            self.pending[name].append(how)


@dataclass
class Probing:
    """The health of one process: its pid, failures in a row, the next probe."""

    pid: int
    due: float
    failures: int = 0
    running: Future[str | None] | None = None


@dataclass
class Monitor:
    path: Path
    root: Path
    sup: Supervisor
    config: MonitorConfig
    alerter: Alerter | None = None
    faults: Path | None = None  # run/log-faults.jsonl: logs supervisord cannot write
    health_path: Path | None = None  # run/health.json: what the probes said, for status
    health: dict[str, ProbeState] = field(default_factory=dict)
    restarts: Counter[str] = field(default_factory=Counter)
    started: set[str] = field(default_factory=set)
    exits: ExitLog = field(init=False)
    log_faults: Tail | None = None
    probing: dict[str, Probing] = field(default_factory=dict)
    restarting: set[str] = field(default_factory=set)
    mtime: float = 0.0
    next_memory: float = 0.0
    pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(4, "probe"))

    def __post_init__(self) -> None:
        self.mtime = self.path.stat().st_mtime
        self.exits = ExitLog(self.root / self.config.supervisord_log)
        self.log_faults = Tail(self.faults) if self.faults is not None else None
        if self.health_path is not None:  # a restarted monitor goes on from what it wrote
            try:
                self.health = dict(HealthRecord.read(self.health_path).processes)
            except (OSError, ValueError):
                self.health = {}
        self._alerter()

    def _alerter(self) -> None:
        about = {"bundle": self.config.bundle, "version": self.config.version,
                 "root": str(self.root)}
        self.alerter = Alerter(self.config.alerts, about, self.root, log) \
            if self.config.alerts else None

    def alert(self, event: str, process: str, message: str, **extra: object) -> None:
        log(f"{process}: {message}")
        if self.alerter is not None:
            self.alerter.send(event, process, message, **extra)

    # events, from supervisord

    def on_event(self, name: str, payload: str) -> None:
        if not name.startswith("PROCESS_STATE_"):
            return
        headers = dict(word.split(":", 1) for word in payload.split("\n", 1)[0].split())
        group, process = headers.get("groupname", ""), headers.get("processname", "")
        if group == MONITOR:
            return
        full = process if group == process else f"{group}:{process}"
        state = name.removeprefix("PROCESS_STATE_")
        if state == "STARTING":
            if full in self.started:
                self.restarts[full] += 1
            self.started.add(full)
        elif state == "EXITED" and headers.get("expected") == "0" and full not in self.restarting:
            how = self._how_it_ended(process)
            status = int(how.rsplit(" ", 1)[1]) if how.startswith("exit status ") else None
            self.alert("exit", full, f"exited unexpectedly ({how})",
                       pid=int(headers.get("pid", 0)), exitstatus=status)
        elif state == "FATAL":
            self.alert("fatal", full, "could not be started: it is FATAL and stays stopped")

    def _how_it_ended(self, process: str) -> str:
        """'exit status 3' or 'terminated by SIGKILL', as supervisord logged it (it may have
        started the process again already, so getProcessInfo cannot tell)."""
        for _ in range(20):  # supervisord logs the line just after it sends the event
            self.exits.read()
            if self.exits.pending[process]:
                return self.exits.pending[process].popleft()
            time.sleep(0.05)
        return "exit status unknown"

    # the watcher thread: probes and memory

    def watch(self) -> None:
        while True:
            try:
                self.reload()
                self.check_logs()
                self.check(time.monotonic())
            except Exception:
                log("watcher: " + traceback.format_exc())
            time.sleep(TICK)

    def reload(self) -> None:
        mtime = self.path.stat().st_mtime
        if mtime == self.mtime:
            return
        config = MonitorConfig.read(self.path)
        self.mtime = mtime
        if config.metrics != self.config.metrics:
            log("metrics settings changed: restarting the monitor to apply them")
            os._exit(0)  # supervisord starts it again (autorestart)
        alerts_changed = config.alerts != self.config.alerts
        self.config = config
        if alerts_changed:  # a new sender (the old one's thread finishes its queue)
            self._alerter()
        log(f"configuration reloaded from {self.path}")

    def check_logs(self) -> None:
        """Alert when supervisord cannot write a log file (supervisor_rpc records it)."""
        for fault in LogFaults.parse(self.log_faults.new_lines()).faults if self.log_faults else ():
            self.alert("log", "supervisord", f"log file {fault.file}: {fault.what}",
                       state=fault.state)

    def check(self, now: float) -> None:
        watched = self.config.services
        if not any(w.health or w.max_rss for w in watched.values()):
            self._forget(set())
            return
        memory_due = now >= self.next_memory
        if memory_due:
            self.next_memory = now + MEMORY_EVERY
        seen = set()
        for p in self.sup.processes():
            w = watched.get(p.service(watched))
            if w is None or p.state != RUNNING or p.full_name in self.restarting:
                continue
            seen.add(p.full_name)
            if w.health is not None:
                self._probe(p, w, w.health, now)
            if w.max_rss is not None and memory_due:
                self._memory(p, w.max_rss)
        for name in set(self.probing) - seen:
            del self.probing[name]  # stopped, restarting or no longer watched
        self._forget(set(self.probing))

    def _forget(self, probed: set[str]) -> None:
        """Drop from the health record the processes no longer probed."""
        if set(self.health) - probed:
            self.health = {name: h for name, h in self.health.items() if name in probed}
            self._save_health()

    def _noted(self, p: Process, reason: str | None, failures: int) -> None:
        """Record what a probe said of `p`, when it changes what status shows."""
        old = self.health.get(p.full_name)
        passing = reason is None
        since = old.since if old is not None and (old.pid, old.passing) == (p.pid, passing) \
            else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        new = ProbeState(p.pid, passing, since, failures, reason or "")
        if new != old:
            self.health[p.full_name] = new
            self._save_health()

    def _save_health(self) -> None:
        if self.health_path is None:
            return
        try:  # readable by the bundle's group, as the logs are: a reason may quote a URL
            HealthRecord(dict(self.health)).write(self.health_path, 0o640)
        except OSError as exc:
            log(f"cannot write {self.health_path}: {exc}")

    def _probe(self, p: Process, w: Watched, health: Health, now: float) -> None:
        state = self.probing.get(p.full_name)
        if state is None or state.pid != p.pid:  # a new run: give it one period to come up
            self.probing[p.full_name] = Probing(pid=p.pid, due=now + health.every)
            return
        if state.running is not None:
            if not state.running.done():
                return
            reason = state.running.result()
            state.running = None
            state.failures = 0 if reason is None else state.failures + 1
            self._noted(p, reason, state.failures)
            if reason is not None:
                log(f"{p.full_name}: health probe {state.failures}/{health.failures} failed: "
                    f"{reason}")
                if state.failures >= health.failures:
                    self.restart(p, "health", f"restarted after {state.failures} failed health "
                                 f"probes in a row; last: {reason}")
                    return
        if now >= state.due:
            state.due = now + health.every
            state.running = self.pool.submit(probes.run, health, self.root, w.python, w.directory)

    def _memory(self, p: Process, limit: int) -> None:
        from bundler.server.monitor.memory import rss  # psutil: only where memory is watched

        used = rss(p.pid)
        if used > limit:
            self.restart(p, "memory", f"restarted: resident memory {used >> 20} MiB is above its "
                         f"limit of {limit >> 20} MiB", rss=used, max_rss=limit)

    def restart(self, p: Process, event: str, message: str, **extra: object) -> None:
        self.restarting.add(p.full_name)
        self.probing.pop(p.full_name, None)
        self.alert(event, p.full_name, message, pid=p.pid, **extra)
        threading.Thread(target=self._restart, args=(p.full_name,), daemon=True).start()

    def _restart(self, full: str) -> None:
        try:
            try:
                self.sup.proxy.supervisor.stopProcess(full, True)
            except Exception as exc:
                log(f"{full}: stop: {exc}")
            self.sup.proxy.supervisor.startProcess(full, False)
        except Exception as exc:
            log(f"{full}: start after restart: {exc}")
        finally:
            self.restarting.discard(full)

    def failures(self) -> dict[str, int]:
        return {name: s.failures for name, s in list(self.probing.items())}


def listen(stdin: IO[str], stdout: IO[str], handle: Any) -> None:
    """supervisor's event listener protocol: READY, an event, RESULT; until stdin closes."""
    while True:
        stdout.write("READY\n")
        stdout.flush()
        line = stdin.readline()
        if not line:
            return
        headers = dict(word.split(":", 1) for word in line.split())
        payload = stdin.read(int(headers["len"]))
        try:
            handle(headers["eventname"], payload)
        except Exception:
            log("event: " + traceback.format_exc())
        stdout.write("RESULT 2\nOK")
        stdout.flush()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m bundler.server.monitor MONITOR_JSON", file=sys.stderr)
        return 2
    path = Path(argv[0]).resolve()
    root = Path(os.environ.get("BUNDLE_ROOT") or path.parents[2])
    sup = Supervisor(os.environ["BUNDLER_SOCKET"], timeout=30.0)
    bundle = open_bundle(root)
    monitor = Monitor(path, root, sup, MonitorConfig.read(path), faults=bundle.log_faults,
                      health_path=bundle.health_record)
    config = monitor.config
    log(f"watching {len(config.services)} service(s); alerts "
        f"{'on' if config.alerts else 'off'}; metrics "
        + (f"on http://{config.metrics.host}:{config.metrics.port}/metrics" if config.metrics
           else "off"))
    if config.metrics is not None:
        from bundler.server.monitor import metrics

        metrics.serve(config.metrics, metrics.BundleCollector(
            sup, config.bundle, monitor.restarts, monitor.failures,
            lambda: monitor.config.names))
    threading.Thread(target=monitor.watch, name="watch", daemon=True).start()
    listen(sys.stdin, sys.stdout, monitor.on_event)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
