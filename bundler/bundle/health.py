"""run/health.json: what the monitor's health probes last said of each process it probes
(passing or failing, since when, why), written by the monitor whenever that changes and read by
`bin/bundler status`. A record names the pid it was probed in: a process started since is not
probed yet."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from bundler.bundle.record import Record


@dataclass(frozen=True)
class ProbeState:
    pid: int              # the process the probes ran against
    passing: bool         # what the last probe said
    since: str            # UTC, "2024-05-01T12:00:00Z": when the probes began to say so
    failures: int = 0     # failed probes in a row (0 when passing)
    reason: str = ""      # why the last probe failed ("" when passing)


@dataclass(frozen=True)
class HealthRecord(Record):
    processes: Mapping[str, ProbeState] = field(default_factory=dict)  # by full process name

    @classmethod
    def parse(cls, text: str) -> HealthRecord:
        try:
            raw = json.loads(text)
            return cls({str(name): ProbeState(int(p["pid"]), bool(p["passing"]), str(p["since"]),
                                              int(p.get("failures", 0)), str(p.get("reason", "")))
                        for name, p in raw["processes"].items()})
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a health record: {exc!r}") from None

    def text(self) -> str:
        return json.dumps({"processes": {
            name: {"pid": p.pid, "passing": p.passing, "since": p.since, "failures": p.failures,
                   "reason": p.reason} for name, p in sorted(self.processes.items())}},
            indent=1) + "\n"
