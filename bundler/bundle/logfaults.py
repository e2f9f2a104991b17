"""run/log-faults.jsonl: the log files supervisord could not rotate or write, and when they could
be written again (bundler/supervisor_rpc.py appends a line each, inside supervisord; the monitor
reads the lines as they come and alerts).

Imported by supervisord with supervisor_rpc: standard library and record.py only."""

from __future__ import annotations

import json
from dataclasses import dataclass

from bundler.bundle.record import Journal

LOG_FAULTS = "log-faults.jsonl"  # in run/, beside supervisord's pid file: Bundle.log_faults


@dataclass(frozen=True)
class LogFault:
    at: str     # UTC, "2024-05-01T12:00:00Z"
    file: str   # the log file
    state: str  # "failing", or "recovered"
    what: str   # what happened, as the alert says it


@dataclass(frozen=True)
class LogFaults(Journal):
    faults: tuple[LogFault, ...] = ()

    @classmethod
    def parse(cls, text: str) -> LogFaults:
        return cls(tuple(cls.lines(text, _fault)))

    def text(self) -> str:
        return "".join(json.dumps({"at": f.at, "file": f.file, "state": f.state, "what": f.what})
                       + "\n" for f in self.faults)


def _fault(line: str) -> LogFault:
    raw = json.loads(line)
    return LogFault(str(raw["at"]), str(raw["file"]), str(raw["state"]), str(raw["what"]))
