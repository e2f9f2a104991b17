"""An XML-RPC namespace that runs inside the bundle's supervisord: update one group in place,
count starts.

Supervisor's own update (`reloadConfig`, then `removeProcessGroup` + `addProcessGroup`) rebuilds a
whole group when any member changes, so switching one member of `[group:sam]` restarts all of them.
`bundler.update(group)` replaces only the processes whose configuration changed, and leaves their
siblings running; `bundler.replace(group, process)` replaces one, so that the processes of a
numprocs service change one at a time. The caller stops the changed processes first
(`bundler.diff` names them). A process that replaces one stopped after it ran (by hand, or by
`bin/bundler stop`) stays stopped: supervisord autostarts a process that never started.

Services an operator stopped (bundle/stopped.py) have autostart off in every configuration read
here, at supervisord's start and in each update, so that neither supervisord's start nor a change
to them starts them again; `bundler.hold()` applies that record anew once it changed.

`bundler.root()` names the bundle this supervisord serves (server/identity.py: a copy of a
started bundle must not stop the original's).

`bundler.starts()` counts each process's starts since supervisord started (`status` shows all
but the first as restarts): supervisord itself sees every start, whoever asked for it (its
autorestart after a crash, the monitor after failed health probes or above a memory limit, a
switch or a restart), in bundles with a monitor or without, and across the monitor's own restarts.

It also keeps supervisord alive when it cannot write its logs. Supervisor's RotatingFileHandler
lets an OSError out of its rollover (log/ read-only, full or removed), and the exception stops
supervisord and orphans every service (supervisor issues #136, #240, #629). Here a failed rollover
keeps the file it had, or drops the output until the file can be opened again (retried every
RETRY seconds), and records the fault in run/log-faults.jsonl (bundle/logfaults.py), from which
the monitor alerts.

Imported by supervisord (see [rpcinterface:bundler] in supervisord.conf): standard library,
supervisor, bundle/logfaults.py and bundle/stopped.py (with record.py) only.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from supervisor import events, loggers
from supervisor.states import STOPPED_STATES, ProcessStates
from supervisor.xmlrpc import Faults, RPCError

from bundler.bundle.logfaults import LOG_FAULTS, LogFault, LogFaults
from bundler.bundle.stopped import STOPPED_RECORD, Stopped

RETRY = 10.0  # seconds between two attempts to reopen a log file that failed


class BundlerNamespace:
    def __init__(self, supervisord: Any):
        self.supervisord = supervisord
        self.counted: Counter[str] = _count_starts(supervisord)

    def starts(self) -> dict[str, int]:
        """How many times each process started since supervisord did, by full name (group:name,
        or name alone when its group has its name)."""
        return dict(self.counted)

    def root(self) -> dict[str, str]:
        """The bundle this supervisord serves: its root (the config's directory=), by path,
        device and inode (as strings: XML-RPC integers stop at 2**31), so that a copy of the
        bundle, whose run/ may name this socket, can tell that it is not its own."""
        options = self.supervisord.options
        root = os.path.realpath(getattr(options, "directory", None) or os.getcwd())
        st = os.stat(root)
        return {"root": root, "dev": str(st.st_dev), "ino": str(st.st_ino),
                "config": str(getattr(options, "configfile", "") or "")}

    def _read(self, name: str) -> tuple[Any, Any, dict[str, list[str]]]:
        options = self.supervisord.options
        try:
            options.process_config(do_usage=False)
        except ValueError as exc:
            raise RPCError(Faults.CANT_REREAD, str(exc)) from exc
        new = next((g for g in options.process_group_configs if g.name == name), None)
        group = self.supervisord.process_groups.get(name)
        if new is None and group is None:
            raise RPCError(Faults.BAD_NAME, name)
        if new is not None:
            _hold(new.process_configs, self._stopped(), new.name)
        old = {c.name: c for c in group.config.process_configs} if group is not None else {}
        fresh = {c.name: c for c in new.process_configs} if new is not None else {}
        diff = {"added": [n for n in fresh if n not in old],
                "changed": [n for n in fresh if n in old and fresh[n] != old[n]],
                "removed": [n for n in old if n not in fresh]}
        return new, group, diff

    def diff(self, name: str) -> dict[str, list[str]]:
        """Re-read the configuration; name the processes of group `name` that an update would
        add, change (replace) or remove."""
        return self._read(name)[2]

    def update(self, name: str) -> dict[str, list[str]]:
        """Make group `name` match the configuration. Changed and removed processes must be
        stopped; new ones start on supervisord's next tick when autostart is on."""
        new, group, diff = self._read(name)
        if group is None:
            self.supervisord.add_process_group(new)
            return diff
        busy = [n for n in diff["changed"] + diff["removed"]
                if group.processes[n].get_state() not in STOPPED_STATES]
        if busy:
            raise RPCError(Faults.STILL_RUNNING, ", ".join(f"{name}:{n}" for n in busy))
        if new is None:
            self.supervisord.remove_process_group(name)
            return diff
        for process_name in diff["removed"]:
            del group.processes[process_name]
        for config in new.process_configs:
            if config.name in diff["added"] or config.name in diff["changed"]:
                config.create_autochildlogs()
                group.processes[config.name] = _successor(config, group,
                                                          group.processes.get(config.name))
        group.config = new
        return diff


    def replace(self, name: str, process_name: str) -> bool:
        """Make one process of group `name` match the configuration (add, replace or drop it),
        leaving the group's other processes as they are: a rolling change of a numprocs
        service. The process must be stopped."""
        new, group, _ = self._read(name)
        if group is None or new is None:
            raise RPCError(Faults.BAD_NAME, f"{name} (add or remove whole groups with update)")
        process = group.processes.get(process_name)
        if process is not None and process.get_state() not in STOPPED_STATES:
            raise RPCError(Faults.STILL_RUNNING, f"{name}:{process_name}")
        configs = {c.name: c for c in group.config.process_configs}
        fresh = next((c for c in new.process_configs if c.name == process_name), None)
        if fresh is None:
            configs.pop(process_name, None)
            group.processes.pop(process_name, None)
        else:
            fresh.create_autochildlogs()
            configs[process_name] = fresh
            group.processes[process_name] = _successor(fresh, group, process)
        group.config.process_configs = sorted(configs.values())
        return True

    def hold(self) -> bool:
        """Apply the record of stopped services (.bundler/stopped.json) to every process:
        autostart off for theirs, as configured for the others."""
        stopped = self._stopped()
        for group in self.supervisord.process_groups.values():
            _hold(group.config.process_configs, stopped, group.config.name)
        return True

    def _stopped(self) -> Stopped:
        root = getattr(self.supervisord.options, "directory", None)  # the bundle's root
        return Stopped.load(Path(root) / STOPPED_RECORD) if root else Stopped()


def _successor(config: Any, group: Any, old: Any) -> Any:
    """The process that replaces `old` (None: a new one). One that replaces a process stopped
    after it ran stays stopped: supervisord autostarts a process only if it never started."""
    process = config.make_process(group)
    if old is not None and old.get_state() == ProcessStates.STOPPED:
        process.laststart = old.laststart
    return process


def _hold(configs: list[Any], stopped: Stopped, group: str) -> None:
    for config in configs:
        if not hasattr(config, "_bundler_autostart"):
            config._bundler_autostart = config.autostart  # as its file says
        config.autostart = config._bundler_autostart and not stopped.holds(config.name, group)


def _count_starts(supervisord: Any) -> Counter[str]:
    """The one counter of starts of this supervisord (made once: supervisord makes this
    namespace for each of its servers, the unix socket and the web server)."""
    counted: Counter[str] | None = getattr(supervisord, "_bundler_starts", None)
    if counted is not None:
        return counted
    counted = supervisord._bundler_starts = Counter()

    def started(event: Any) -> None:
        name = event.process.config.name
        group = event.process.group.config.name if event.process.group is not None else name
        counted[name if group == name else f"{group}:{name}"] += 1

    events.subscribe(events.ProcessStateStartingEvent, started)
    return counted


def make_interface(supervisord: Any, **config: Any) -> BundlerNamespace:
    pidfile = getattr(supervisord.options, "pidfile", None)
    if pidfile:
        _guard_log_rotation(Path(pidfile).parent / LOG_FAULTS)
    namespace = BundlerNamespace(supervisord)
    namespace.hold()  # supervisord starts its processes after this, in its main loop
    return namespace


def _guard_log_rotation(faults: Path) -> None:
    """Make every RotatingFileHandler survive its file's write errors (see the module's text)."""
    handler_class = loggers.RotatingFileHandler
    if getattr(handler_class, "_bundler_guarded", False):
        return
    rollover = handler_class.doRollover

    def guarded(self: Any) -> None:
        now = time.monotonic()
        if now < getattr(self, "_bundler_pause", 0.0):
            return
        if getattr(self, "_bundler_dropping", False):
            try:
                stream = open(self.baseFilename, "ab")
            except OSError:
                self._bundler_pause = now + RETRY
                return
            self.stream.close()
            self.stream, self._bundler_dropping = stream, False
        try:
            rollover(self)
        except (OSError, ValueError) as exc:
            self._bundler_pause = now + RETRY
            if self.stream.closed:
                try:
                    self.stream = open(self.baseFilename, "ab")
                except OSError:
                    self.stream, self._bundler_dropping = open(os.devnull, "ab"), True
            if not getattr(self, "_bundler_failing", False):
                self._bundler_failing = True
                _record(faults, self.baseFilename, "failing", f"cannot rotate or write it ({exc}); "
                        + ("its output is dropped" if getattr(self, "_bundler_dropping", False) else
                           "it grows past its size limit") + " until it can be written")
            return
        if getattr(self, "_bundler_failing", False) and not getattr(self, "_bundler_dropping", False):
            self._bundler_failing = False
            _record(faults, self.baseFilename, "recovered", "can be written again")

    handler_class.doRollover = guarded
    handler_class._bundler_guarded = True


def _record(faults: Path, path: str, state: str, what: str) -> None:
    fault = LogFault(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), path, state, what)
    try:
        LogFaults((fault,)).append(faults)
    except OSError:
        pass  # run/ unwritable too: nothing left to tell
