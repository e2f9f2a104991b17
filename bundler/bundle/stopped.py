""".bundler/stopped.json: the services an operator stopped (`bin/bundler stop SERVICE`), by whom
and when. They stay stopped until `bin/bundler start SERVICE`: across bin/stop and bin/start of
the bundle and across changes to them (switch, set, apply), because bundler's extension inside
supervisord (supervisor_rpc.py) turns their processes' autostart off whenever it reads the
configuration; `status` shows who stopped them.

Imported by supervisord with supervisor_rpc: standard library and record.py only."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from bundler.bundle.record import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from pathlib import Path

STOPPED_RECORD = ".bundler/stopped.json"  # under the bundle root (tree.META): Bundle.stopped


@dataclass(frozen=True)
class Stop:
    by: str  # the user
    at: str  # UTC, "2026-05-01T12:00:00Z"

    def describe(self) -> str:
        return f"by {self.by} at {self.at}"


@dataclass(frozen=True)
class Stopped(Record):
    services: dict[str, Stop] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Stopped:
        raw = json.loads(text)
        return cls({str(name): Stop(str(s["by"]), str(s["at"]))
                    for name, s in raw["services"].items()})

    def text(self) -> str:
        return json.dumps({"services": {name: {"by": s.by, "at": s.at}
                                        for name, s in sorted(self.services.items())}},
                          indent=1) + "\n"

    @classmethod
    def load(cls, path: Path) -> Stopped:
        """The record at `path`; none (nothing stopped) when it is missing or unreadable."""
        try:
            with open(path, encoding="utf-8") as f:
                return cls.parse(f.read())
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
            return cls()

    def holds(self, process: str, group: str = "") -> bool:
        """Whether supervisor's process `process` (of group `group`) runs a stopped service: the
        service's name, or <service>_NN, a process of a numprocs service (render.py's names);
        a process named as its own group is a service of its own (api_01 is not api's)."""
        if process in self.services:
            return True
        if process == group:
            return False
        service, _, number = process.rpartition("_")
        return len(number) == 2 and number.isdigit() and service in self.services
