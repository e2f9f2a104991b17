"""What `bin/bundler status` shows beside the states: the release, health from the monitor's
record, restarts counted inside supervisord, CPU and memory from /proc, and the table's shape."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from supervisor import events

from bundler import supervisor_rpc
from bundler.bundle.health import HealthRecord, ProbeState
from bundler.bundle.tree import Bundle
from bundler.cli import jsondocs, output
from bundler.server import procfs
from bundler.server.history import HistoryEntry, Installed, ServiceChange, last_release
from bundler.server.status import InstalledRelease, ServiceRow, installed_release, live_rows
from bundler.server.supervisor import Process
from bundler.spec.live import Definition
from tests.unit.tiny import make_tiny

TICK = os.sysconf("SC_CLK_TCK")


def _stat_line(comm: str, utime: int, stime: int, start: int) -> str:
    fields = ["S", "1", "1", "1", "0", "-1", "4194560", "100", "0", "0", "0", str(utime),
              str(stime), "7", "8", "20", "0", "1", "0", str(start), "1000", "50"]
    return f"4242 ({comm}) " + " ".join(fields) + "\n"


def test_a_stat_line_is_read_past_a_command_name_with_spaces_and_parentheses() -> None:
    assert procfs.stat_times(_stat_line("a b) (c", 30, 12, 900)) == (42, 900)
    assert procfs.statm_rss("2000 300 100 1 0 50 0\n", 4096) == 300 * 4096
    with pytest.raises(ValueError):
        procfs.stat_times("no parentheses here")


def test_cpu_percent_is_the_average_over_the_process_life(tmp_path: Path) -> None:
    """Started 10 s after boot, 110 s of uptime: 100 s alive; 25 s of CPU time is 25 %."""
    (tmp_path / "77").mkdir()
    (tmp_path / "77" / "stat").write_text(_stat_line("web", 20 * TICK, 5 * TICK, 10 * TICK))
    (tmp_path / "77" / "statm").write_text("5000 1234 10 1 0 100 0\n")
    (tmp_path / "uptime").write_text("110.00 200.00\n")
    used = procfs.usage(77, tmp_path)
    assert used is not None
    assert used.cpu_percent == pytest.approx(25.0)
    assert used.rss == 1234 * os.sysconf("SC_PAGE_SIZE")
    assert procfs.cpu_percent(5, 100, 100 / TICK, TICK) == 0.0  # just started: no division
    assert procfs.usage(78, tmp_path) is None  # gone


def test_this_process_uses_cpu_and_memory() -> None:
    sum(i * i for i in range(200_000))  # some CPU time of its own
    used = procfs.usage(os.getpid())
    assert used is not None and used.rss > 1 << 20 and used.cpu_percent > 0


def test_the_health_record_round_trips_and_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    record = HealthRecord({"web": ProbeState(12, False, "2026-01-02T03:04:05Z", 2, "GET /: HTTP 500"),
                           "sam:svc1": ProbeState(13, True, "2026-01-02T03:00:00Z")})
    path = tmp_path / "health.json"
    record.write(path, 0o640)
    assert HealthRecord.read(path) == record and path.stat().st_mode & 0o777 == 0o640
    for bad in ("", "[]", '{"processes": {"web": {"pid": 1}}}'):
        with pytest.raises(ValueError):
            HealthRecord.parse(bad)


def _row(process: str, health: str = "unknown", **kw: object) -> ServiceRow:
    return ServiceRow(process, process, "", str(kw.get("state", "RUNNING")), int(kw.get("pid", 1)),
                      5, "base", "3.11", "v1", True, health=health)


def _process(name: str, pid: int, state: str = "RUNNING") -> Process:
    return Process(name, name, state, pid, "", True, True, 5)


def test_health_is_what_the_monitor_said_of_this_run_of_the_process() -> None:
    pid = os.getpid()
    rows = [_row("ok", pid=pid), _row("sick", pid=pid), _row("new", pid=pid), _row("plain", "none"),
            _row("down", pid=0, state="BACKOFF")]
    processes = [_process("ok", pid), _process("sick", pid), _process("new", pid),
                 _process("plain", pid), _process("down", 0, "BACKOFF")]
    probes = {"ok": ProbeState(pid, True, "2026-01-02T03:00:00Z"),
              "sick": ProbeState(pid, False, "2026-01-02T03:04:05Z", 2, "HTTP 500"),
              "new": ProbeState(pid + 1, True, "2026-01-01T00:00:00Z"),  # an earlier run's
              "down": ProbeState(0, False, "2026-01-01T00:00:00Z", 1, "refused")}
    starts = {"ok": 1, "sick": 4, "new": 2}
    shown = {r.process: r for r in live_rows(rows, processes, probes, starts)}
    assert {n: r.health for n, r in shown.items()} == {
        "ok": "passing", "sick": "failing", "new": "unknown", "plain": "none", "down": "unknown"}
    assert (shown["sick"].health_since, shown["sick"].health_reason) == \
        ("2026-01-02T03:04:05Z", "HTTP 500")
    assert shown["new"].health_since == "" and shown["new"].health_reason == ""
    assert {n: r.restarts for n, r in shown.items()} == {"ok": 0, "sick": 3, "new": 1, "plain": 0,
                                                          "down": 0}
    assert shown["ok"].rss and shown["ok"].cpu_percent is not None
    assert shown["down"].rss is None and shown["down"].cpu_percent is None
    unmonitored = live_rows(rows, processes, None, None)  # no monitor; an older supervisord
    assert [r.health for r in unmonitored] == ["unknown", "unknown", "unknown", "none", "unknown"]
    assert {r.restarts for r in unmonitored} == {None}


def test_the_release_is_the_last_one_installed_or_the_build(tmp_path: Path) -> None:
    bundle = make_tiny(tmp_path / "tiny")
    with open(bundle.manifest, "a") as f:  # (TOML lets [build] follow its sub-tables)
        f.write('[build]\nbundler_version = "0.1"\nbuilt_at = "2026-01-01T08:00:00Z"\n')
    built = installed_release(bundle)
    assert built == InstalledRelease("tiny", "1", "2026-01-01T08:00:00Z") and built.as_built
    change = ServiceChange("web", Definition({"code": "v1", "environment": {"X": '"patch"'}}),
                           Definition({"code": "v2"}), None, "code: v1 -> v2")
    lines = [HistoryEntry("apply", "ok", installed=Installed("2", "tiny-2.patch.tar.gz"),
                          at="2026-02-01T09:00:00Z", user="ops"),
             HistoryEntry("apply", "ok", installed=Installed("3", "tiny-3.patch.tar.gz", "SHA256:k"),
                          at="2026-03-01T09:00:00Z", user="rel"),
             HistoryEntry("switch", "ok", change=change, at="2026-03-02T09:00:00Z", user="ops")]
    bundle.history.write_text("".join(e.text() for e in lines) + '{"op": "apply", "patch": "cut')
    assert last_release(bundle) == lines[1]
    release = installed_release(bundle)
    assert release == InstalledRelease("tiny", "3", "2026-03-01T09:00:00Z", "rel",
                                       "tiny-3.patch.tar.gz", "SHA256:k")
    assert output.release_line(release) == \
        "tiny 3, installed 2026-03-01 09:00:00 UTC by rel (tiny-3.patch.tar.gz, signed)"
    assert output.release_line(built) == "tiny 1, as built 2026-01-01 08:00:00 UTC"


@pytest.mark.parametrize("size, shown", [(0, "0K"), (812 << 10, "812K"), (int(9.5 * 2**20), "9.5M"),
                                         (148 << 20, "148M"), (int(1.25 * 2**30), "1.2G")])
def test_memory_is_shown_in_binary_units(size: int, shown: str) -> None:
    assert output.memory(size) == shown


def test_the_table_stays_within_100_columns() -> None:
    """The example's longest names and every column at its widest but the pid's."""
    rows = [ServiceRow(name, name, "", state, 4194303, 86400 * 12 + 3599, "pyocr", "3.12", "v1",
                       True, health, "", "", 12345, 812.4, 1536 << 20)
            for name, state, health in [("pool:pool_01", "STARTING", "unknown"),
                                        ("sam:worker", "RUNNING", "passing"),
                                        ("_monitor", "not running", "none")]]
    table = output.status_table(rows)
    assert max(len(line) for line in table.splitlines()) <= 100, table
    header, first = table.splitlines()[:2]
    assert header.split() == ["PROCESS", "STATE", "PID", "UPTIME", "HEALTH", "RESTARTS", "CPU",
                              "MEM", "PYTHON", "CODE"]
    assert first.split()[1:3] == ["STARTING", "4194303"] and first.split()[-1] == "v1"
    assert "812.4%" in first and "1.5G" in first and "12345" in first


def test_status_json_adds_keys_and_keeps_the_old_ones(tmp_path: Path) -> None:
    row = ServiceRow("web", "web", "", "RUNNING", 42, 5, "base", "3.11", "v1", True, "failing",
                     "2026-01-02T03:04:05Z", "HTTP 500", 2, 1.234, 5 << 20)
    release = InstalledRelease("tiny", "3", "2026-03-01T09:00:00Z", "rel", "tiny-3.patch.tar.gz")
    doc = jsondocs.status(tmp_path, True, [row], release)
    process = doc["processes"][0]
    old = {"name", "service", "group", "state", "pid", "uptime", "python", "python_version",
           "code", "autostart"}
    assert set(process) == old | {"health", "health_since", "health_reason", "restarts",
                                  "cpu_percent", "rss", "stale", "stopped_by"}
    assert (process["health"], process["restarts"], process["cpu_percent"], process["rss"]) == \
        ("failing", 2, 1.23, 5 << 20)
    assert doc["version"] == "3" and doc["release"]["by"] == "rel"
    assert doc["release"]["at"] == "2026-03-01T09:00:00Z" and doc["release"]["as_built"] is False
    assert json.loads(json.dumps(doc)) == doc
    assert output.failing_lines([row]) == ["web: failing since 2026-01-02 03:04:05 UTC: HTTP 500"]


def test_supervisord_counts_every_start_once_whatever_serves_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """supervisord makes the namespace for each of its servers (the socket, the web server)."""
    monkeypatch.setattr(events, "callbacks", [])
    supervisord = SimpleNamespace()
    unix, inet = supervisor_rpc.BundlerNamespace(supervisord), \
        supervisor_rpc.BundlerNamespace(supervisord)

    def started(group: str, name: str) -> None:
        process = SimpleNamespace(config=SimpleNamespace(name=name), backoff=0,
                                  group=SimpleNamespace(config=SimpleNamespace(name=group)))
        events.notify(events.ProcessStateStartingEvent(process, 0))

    for group, name in [("web", "web"), ("sam", "svc1"), ("web", "web"), ("web", "web")]:
        started(group, name)
    events.notify(events.ProcessStateRunningEvent(
        SimpleNamespace(config=SimpleNamespace(name="web"), pid=4, group=None), 0))
    assert unix.starts() == inet.starts() == {"web": 3, "sam:svc1": 1}


def test_status_says_an_interrupted_operation_and_how_to_undo_it(tiny: Bundle) -> None:
    from click.testing import CliRunner

    from bundler.cli import cli
    from bundler.server.status import interrupted

    def status() -> Any:
        return CliRunner().invoke(cli, ["status", "--root", str(tiny.root)])

    assert interrupted(tiny) == [] and status().exit_code == 3  # not running, nothing left
    tiny.transaction.write_text("{}")  # a switch killed half-way left its journal
    tiny.apply_journal.write_text("{}")
    left = interrupted(tiny)
    assert [i.journal for i in left] == [".bundler/apply.json", ".bundler/transaction.json"]
    shown = status()
    assert shown.exit_code == 4
    lines = [line for line in shown.output.splitlines() if line.startswith("INTERRUPTED: ")]
    assert len(lines) == 2 and all("bin/start undoes it" in line for line in lines)
    assert "(.bundler/transaction.json is left)" in lines[1]
    doc = json.loads(CliRunner().invoke(cli, ["status", "--json", "--root", str(tiny.root)]).stdout)
    assert [i["journal"] for i in doc["interrupted"]] == [i.journal for i in left]
    with tiny.locked():  # an operation under way: its journals are its own, not news
        assert interrupted(tiny) == []
