"""An XML-RPC namespace that runs inside the bundle's supervisord: update one group in place.

Supervisor's own update (`reloadConfig`, then `removeProcessGroup` + `addProcessGroup`) rebuilds a
whole group when any member changes, so switching one member of `[group:sam]` restarts all of them.
`bundler.update(group)` replaces only the processes whose configuration changed, and leaves their
siblings running. The caller stops the changed processes first (`bundler.diff` names them).

Imported by supervisord (see [rpcinterface:bundler] in supervisord.conf): standard library and
supervisor only.
"""

from __future__ import annotations

from typing import Any

from supervisor.states import STOPPED_STATES
from supervisor.xmlrpc import Faults, RPCError


class BundlerNamespace:
    def __init__(self, supervisord: Any):
        self.supervisord = supervisord

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
                group.processes[config.name] = config.make_process(group)
        group.config = new
        return diff


def make_interface(supervisord: Any, **config: Any) -> BundlerNamespace:
    return BundlerNamespace(supervisord)
