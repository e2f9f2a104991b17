"""Operations on a deployed, running bundle: switch, rollback, add and remove services, history."""

from __future__ import annotations

import fcntl
import json
import os
import select
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomlkit

from tests.integration.harness import LAUNCH_ENV, Bundle

pytestmark = pytest.mark.integration


def _code(bundle: Bundle, service: str) -> str:
    return str(tomlkit.parse((bundle.root / "bundle.toml").read_text())["services"][service]["code"])


def _fresh_report(bundle: Bundle, program: str) -> None:
    (bundle.root / "log" / f"{program}.json").unlink(missing_ok=True)


def _pids(bundle: Bundle) -> dict[str, int]:
    return {name: pid for name, (state, pid) in bundle.states().items()}


def _history(bundle: Bundle) -> list[dict]:
    lines = (bundle.root / ".bundler" / "history.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture
def running(unpacked: Bundle) -> Bundle:
    unpacked.start()
    return unpacked


def test_switch_one_group_member_and_back_leaves_the_others_running(running: Bundle) -> None:
    before = _pids(running)
    _fresh_report(running, "svc1")
    proc = running.cli("switch", "svc1", "v2")
    assert proc.returncode == 0, proc.stderr
    assert "svc1: code: v1 -> v2" in proc.stdout
    assert running.report("svc1")["code"] == "v2"
    after = _pids(running)
    assert after["sam:svc1"] != before["sam:svc1"]
    others = {k: v for k, v in before.items() if k != "sam:svc1"}
    assert {k: after[k] for k in others} == others  # svc2 and worker share svc1's group
    assert _code(running, "svc1") == "v2"
    status = running.cli("status")
    assert status.returncode == 0, status.stderr
    svc1_row = next(line.split() for line in status.stdout.splitlines() if line.startswith("sam:svc1"))
    assert svc1_row[1] == "RUNNING" and svc1_row[-1] == "v2" and svc1_row[-3] == "base"

    _fresh_report(running, "svc1")
    assert running.cli("switch", "svc1", "v1").returncode == 0
    assert running.report("svc1")["code"] == "v1"
    assert {k: _pids(running)[k] for k in others} == others
    assert [(e["op"], e["from"], e["to"], e["result"]) for e in _history(running)] == [
        ("switch", "v1", "v2", "ok"), ("switch", "v2", "v1", "ok")]


def test_status_and_history_as_json_name_processes_as_the_table_does(running: Bundle) -> None:
    table = running.cli("status")
    doc = json.loads(running.cli("status", "--json").stdout)
    assert doc["supervisord"] == "running" and doc["root"] == str(running.root)
    rows = [line.split() for line in table.stdout.splitlines()[2:]  # the release, the header
            if ": failing since " not in line]
    assert [p["name"] for p in doc["processes"]] == [r[0] for r in rows]
    states = running.states()
    for p in doc["processes"]:
        assert (p["state"], p["pid"]) == (states[p["name"]][0], states[p["name"]][1] or None)
    svc1 = next(p for p in doc["processes"] if p["service"] == "svc1")
    assert svc1["name"] == "sam:svc1" and svc1["group"] == "sam" and svc1["python"] == "base"
    assert svc1["python_version"] == f"{sys.version_info[0]}.{sys.version_info[1]}"
    history = json.loads(running.cli("history", "--json").stdout)
    recorded = running.root / ".bundler" / "history.jsonl"
    lines = _history(running) if recorded.exists() else []
    assert history["entries"] == [{"id": i, **line} for i, line in enumerate(lines, 1)]


def test_a_version_that_crashes_is_rolled_back(running: Bundle) -> None:
    ini = (running.root / "etc/conf.d/worker.ini").read_bytes()
    manifest = (running.root / "bundle.toml").read_bytes()
    before = _pids(running)
    _fresh_report(running, "worker")
    proc = running.cli("switch", "worker", "broken")
    assert proc.returncode == 1
    assert "broken version: cannot start" in proc.stderr  # the failing version's log
    assert "nothing changed" in proc.stderr and "Traceback" not in proc.stderr
    assert running.states()["sam:worker"][0] == "RUNNING"
    assert running.report("worker")["code"] == "v1"  # the old version serves again
    assert (running.root / "etc/conf.d/worker.ini").read_bytes() == ini
    assert (running.root / "bundle.toml").read_bytes() == manifest
    after = _pids(running)
    assert {k: after[k] for k in before if k != "sam:worker"} == \
        {k: v for k, v in before.items() if k != "sam:worker"}
    assert _history(running)[-1]["result"] == "rolled back"
    assert not (running.root / ".bundler" / "transaction.json").exists()


def test_rollback_returns_to_the_previous_version(running: Bundle) -> None:
    assert running.cli("switch", "svc3", "v1").returncode == 0
    _fresh_report(running, "svc3")
    proc = running.cli("rollback", "svc3")
    assert proc.returncode == 0, proc.stderr
    assert "svc3: code: v1 -> v3" in proc.stdout
    assert running.report("svc3")["code"] == "v3"
    history = running.cli("history", "svc3")
    assert [line.split()[3] for line in history.stdout.splitlines()[1:]] == ["switch", "rollback"]


def test_group_switch_moves_every_member(running: Bundle) -> None:
    svc3 = _pids(running)["svc3"]
    for program in ("svc1", "svc2", "worker"):
        _fresh_report(running, program)
    proc = running.cli("switch", "--group", "sam", "v3")
    assert proc.returncode == 0, proc.stderr
    for program in ("svc1", "svc2", "worker"):
        assert running.report(program)["code"] == "v3"
        assert _code(running, program) == "v3"
    assert _pids(running)["svc3"] == svc3


def test_switch_refuses_what_cannot_run(running: Bundle) -> None:
    manifest = (running.root / "bundle.toml").read_bytes()
    missing = running.cli("switch", "svc1", "v7")
    assert missing.returncode == 2 and "no code version 'v7'" in missing.stderr
    typo = running.cli("switch", "svc33", "v1")
    assert typo.returncode == 2 and "did you mean 'svc3'" in typo.stderr
    # bytecode compiled for the base's Python cannot move to another minor version
    if (running.root / "envs" / "py37").is_dir():
        wrong = running.cli("switch", "svc37", "probec")
        assert wrong.returncode == 1 and "bytecode for Python" in wrong.stderr
    # a code folder that is declared but not shipped
    os.rename(running.root / "your_project_v2", running.root / "elsewhere")
    gone = running.cli("switch", "svc1", "v2")
    assert gone.returncode == 1 and "your_project_v2/ is missing" in gone.stderr
    assert (running.root / "bundle.toml").read_bytes() == manifest


def test_add_and_remove_a_service_live(running: Bundle) -> None:
    before = _pids(running)
    proc = running.cli("add-service", "svc11", "--code", "v3", "--command",
                       "python -m service.sam.run", "--group", "sam")
    assert proc.returncode == 0, proc.stderr
    assert running.report("svc11")["code"] == "v3"
    after = _pids(running)
    assert after["sam:svc11"] > 0
    assert {k: after[k] for k in before} == before
    pid = after["sam:svc11"]

    proc = running.cli("remove-service", "svc11")
    assert proc.returncode == 0, proc.stderr
    assert "sam:svc11" not in running.states()
    assert not os.path.exists(f"/proc/{pid}")
    assert not (running.root / "etc/conf.d/svc11.ini").exists()
    assert "svc11" not in (running.root / "bundle.toml").read_text()
    assert _pids(running) == before


def test_a_new_service_that_cannot_start_is_removed_again(running: Bundle) -> None:
    before = _pids(running)
    proc = running.cli("add-service", "bad", "--code", "broken", "--command",
                       "python -m service.sam.run", "--set", "startretries=0")
    assert proc.returncode == 1 and "bad was removed again" in proc.stderr
    assert "bad" not in running.states()
    assert not (running.root / "etc/conf.d/bad.ini").exists()
    assert "[services.bad]" not in (running.root / "bundle.toml").read_text()
    assert _pids(running) == before


def test_control_characters_never_reach_supervisord_and_status_keeps_working(
        running: Bundle) -> None:
    """Issue 28: an ESC in a command once landed in conf.d and broke supervisord's XML-RPC
    answers. Now it is refused in one line, shown escaped; a tab in an argument is carried to
    the process by bundler.launch and supervisord keeps answering."""
    manifest = (running.root / "bundle.toml").read_bytes()
    for args in (["add-service", "svc12", "--code", "v3", "--command",
                  "python -m service.sam.run \x1b[2J"],
                 ["set", "svc1", "command=python -m service.sam.run \x9b2J"],
                 ["set", "svc1", "environment.X=\x07"],
                 ["add-service", "supervisord", "--code", "v3", "--command", "python -m x"]):
        proc = running.cli(*args)
        assert proc.returncode == 1, (args, proc.stderr)
        assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("Error: ")
        assert not any(c in proc.stderr for c in "\x1b\x9b\x07"), proc.stderr
    assert (running.root / "bundle.toml").read_bytes() == manifest
    proc = running.cli("add-service", "svc12", "--code", "v3", "--command",
                       "python -m service.sam.run --interval '\t5'")  # float() takes it
    assert proc.returncode == 0, proc.stderr
    ini = (running.root / "etc" / "conf.d" / "svc12.ini").read_bytes()
    assert b"bundler.launch" in ini and b"\t" not in ini and b"\x1b" not in ini
    assert running.states()["svc12"][0] == "RUNNING"
    assert running.cli("status").returncode == 0
    assert running.cli("remove-service", "svc12").returncode == 0


def test_switch_while_stopped_changes_only_the_config(unpacked: Bundle) -> None:
    proc = unpacked.cli("switch", "svc3", "v2")
    assert proc.returncode == 0, proc.stderr
    assert "takes effect at the next bin/start" in proc.stdout
    assert unpacked.cli("status").returncode == 3
    unpacked.start()
    assert unpacked.report("svc3")["code"] == "v2"


def test_concurrent_switches_are_serialised(running: Bundle) -> None:
    lock = open(running.root / ".bundler" / "lock", "a")
    fcntl.flock(lock, fcntl.LOCK_EX)  # another operation is under way
    first = subprocess.Popen([str(running.root / "bin" / "bundler"), "switch", "svc1", "v2"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen([str(running.root / "bin" / "bundler"), "switch", "svc3", "v1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2)
    assert first.poll() is None and second.poll() is None  # both wait for the lock
    assert _code(running, "svc1") == "v1"
    fcntl.flock(lock, fcntl.LOCK_UN)
    lock.close()
    assert first.wait(120) == 0, first.communicate()
    assert second.wait(120) == 0, second.communicate()
    assert (_code(running, "svc1"), _code(running, "svc3")) == ("v2", "v1")  # no lost update
    assert {(e["service"], e["result"]) for e in _history(running)} == {("svc1", "ok"), ("svc3", "ok")}


def test_a_killed_switch_is_undone_by_the_next_operation(running: Bundle) -> None:
    ini = (running.root / "etc/conf.d/worker.ini").read_bytes()
    journal = running.root / ".bundler" / "transaction.json"
    switch = subprocess.Popen([str(running.root / "bin" / "bundler"), "switch", "worker", "broken"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = running.root / "log" / "worker.log"
    deadline = time.monotonic() + 60
    while b"broken version" not in log.read_bytes():  # supervisord runs the new config
        assert time.monotonic() < deadline and switch.poll() is None
        time.sleep(0.02)
    assert journal.exists()
    switch.send_signal(signal.SIGKILL)
    switch.wait()
    assert (running.root / "etc/conf.d/worker.ini").read_bytes() != ini
    status = running.cli("status")  # the broken worker shows; reading repairs nothing
    assert status.returncode == 4, status.stdout + status.stderr
    assert "INTERRUPTED: a change of the services (switch" in status.stderr
    assert "(.bundler/transaction.json is left)" in status.stderr
    assert "bin/start undoes it" in status.stderr
    assert json.loads(running.cli("status", "--json").stdout)["interrupted"][0]["journal"] == \
        ".bundler/transaction.json"
    assert journal.exists()
    _fresh_report(running, "worker")
    proc = running.cli("switch", "svc3", "v1")
    assert proc.returncode == 0, proc.stderr
    assert not journal.exists()
    assert (running.root / "etc/conf.d/worker.ini").read_bytes() == ini
    assert _code(running, "worker") == "v1"
    assert running.report("worker")["code"] == "v1"
    assert running.states()["sam:worker"][0] == "RUNNING"


def test_a_copy_of_a_started_bundle_never_reaches_the_original(running: Bundle,
                                                               tmp_path: Path) -> None:
    before = running.states()
    token = (running.root / "run" / "token").read_bytes()
    copy = Bundle(tmp_path / "cp")
    subprocess.run(["cp", "-a", str(running.root), str(copy.root)], check=True)
    try:
        status = copy.cli("status")
        assert status.returncode == 3 and "supervisord is not running" in status.stderr, \
            status.stdout + status.stderr
        stopped = copy.stop()
        assert stopped.returncode == 0, stopped.stderr
        assert running.states() == before  # the same pids, all still running
        # the copy's run/ said to be its own, its record naming the original's socket still: the
        # supervisord that answers there says it serves another root, and is left alone
        root = os.stat(copy.root)
        (copy.root / "run" / "root").write_text(f"{root.st_dev} {root.st_ino} {copy.root}\n")
        (copy.root / "run" / "token").unlink()
        assert (copy.root / "run" / "socket.path").read_text() == \
            (running.root / "run" / "socket.path").read_text()
        assert copy.cli("status").returncode == 3
        assert copy.stop().returncode == 0
        assert running.states() == before
        assert (running.root / "run" / "token").read_bytes() == token
        status = running.cli("status")
        assert status.returncode == 0, status.stdout + status.stderr
    finally:
        copy.finish()


def test_a_rollback_that_does_not_bring_the_old_definition_back_says_so(running: Bundle) -> None:
    before = _pids(running)
    manifest = (running.root / "bundle.toml").read_bytes()
    os.rename(running.root / "your_project_v3", running.root / "v3_elsewhere")  # svc3's code
    proc = running.cli("switch", "svc3", "broken")
    assert proc.returncode == 1
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: svc3 did not reach RUNNING"), proc.stderr
    assert "the rollback failed" in error and "svc3 is FATAL" in error, error
    assert "runs again" not in proc.stderr and "Traceback" not in proc.stderr
    assert running.states()["svc3"][0] == "FATAL"
    assert (running.root / "bundle.toml").read_bytes() == manifest  # the old files are back
    last = _history(running)[-1]
    assert (last["op"], last["result"]) == ("switch", "rollback failed")
    assert "svc3 is FATAL" in last["detail"]
    assert {k: v for k, v in _pids(running).items() if k != "svc3"} == \
        {k: v for k, v in before.items() if k != "svc3"}
    os.rename(running.root / "v3_elsewhere", running.root / "your_project_v3")
    _fresh_report(running, "svc3")
    again = running.cli("restart", "svc3")  # what the error says to do once it is fixed
    assert again.returncode == 0, again.stderr
    assert running.report("svc3")["code"] == "v3"


def test_a_process_that_cannot_spawn_is_a_failed_start_and_rolled_back(running: Bundle) -> None:
    """supervisord's SPAWN_ERROR (it cannot open the log) escaped the switch as 'supervisord
    refused', leaving the transaction half-done and the new definition in BACKOFF."""
    log = running.root / "log" / "svc3.log"
    os.rename(log, log.with_name("svc3.log.kept"))
    log.mkdir()
    try:
        proc = running.cli("switch", "svc3", "v2", "--timeout", "30")
        error = proc.stderr.strip().splitlines()[-1]
        assert proc.returncode == 1 and "the rollback failed" in error, proc.stderr
        assert "svc3 is FATAL" in error and "supervisord refused" not in proc.stderr, error
        assert not (running.root / ".bundler" / "transaction.json").exists()
        assert (_history(running)[-1]["op"], _history(running)[-1]["result"]) == \
            ("switch", "rollback failed")
    finally:
        log.rmdir()
        os.rename(log.with_name("svc3.log.kept"), log)
    _fresh_report(running, "svc3")
    assert running.cli("restart", "svc3").returncode == 0
    assert running.report("svc3")["code"] == "v3"


def test_logs_of_every_process(running: Bundle) -> None:
    proc = running.cli("logs", "pool", "-n", "1")
    assert proc.returncode == 0, proc.stderr
    assert sorted(line.split(" | ")[0].strip() for line in proc.stdout.splitlines()) == \
        ["pool_00", "pool_01"]
    missing = running.cli("logs", "nope")
    assert missing.returncode == 1 and "no log of nope" in missing.stderr
    follow = subprocess.Popen([str(running.root / "bin" / "bundler"), "logs", "svc2", "-n", "0",
                               "-f"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1)
        assert running.ctl("restart", "sam:svc2").returncode == 0
        ready, _, _ = select.select([follow.stdout], [], [], 30)
        assert ready, "logs -f printed nothing"
        assert "svc2 stopped" in follow.stdout.readline()
    finally:
        follow.kill()
        follow.wait()


def _pool_running(bundle: Bundle) -> list[str]:
    return [n for n, (state, _) in bundle.states().items()
            if n.startswith("pool:") and state == "RUNNING"]


def test_restart_goes_one_process_at_a_time_and_stops_at_one_that_fails(running: Bundle) -> None:
    before = _pids(running)
    restart = subprocess.Popen([str(running.root / "bin" / "bundler"), "restart", "pool"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    while restart.poll() is None:
        seen.append(len(_pool_running(running)))
    out, err = restart.communicate()
    assert restart.returncode == 0, err
    assert seen and min(seen) >= 1  # a numprocs service always keeps one running
    after = _pids(running)
    assert after["pool:pool_00"] != before["pool:pool_00"] and \
        after["pool:pool_01"] != before["pool:pool_01"]
    assert f"pool:pool_00 pid {before['pool:pool_00']} -> {after['pool:pool_00']}" in out
    assert {k: v for k, v in after.items() if not k.startswith("pool:")} == \
        {k: v for k, v in before.items() if not k.startswith("pool:")}

    group = running.cli("restart", "--group", "sam")
    assert group.returncode == 0, group.stderr
    again = _pids(running)
    assert all(again[p] != after[p] for p in ("sam:svc1", "sam:svc2", "sam:worker"))
    assert again["svc3"] == before["svc3"]

    crash = running.root / "etc" / "app" / "crash-pool_01"
    crash.touch()
    try:
        failed = running.cli("restart", "pool", "--timeout", "3")
        assert failed.returncode == 1
        assert "crashing on purpose: pool_01" in failed.stderr  # the end of its log
        assert "pool:pool_01 did not reach RUNNING" in failed.stderr
    finally:
        crash.unlink()
    assert running.cli("restart", "pool").returncode == 0
    assert len(_pool_running(running)) == 2
    ops = [(e["op"], e["service"], e["result"]) for e in _history(running)]
    assert ops == [("restart", "pool", "ok"), ("restart", "svc1", "ok"), ("restart", "svc2", "ok"),
                   ("restart", "worker", "ok"), ("restart", "pool", "failed"),
                   ("restart", "pool", "ok")]


def test_a_service_stopped_by_name_stays_stopped_until_started_by_name(running: Bundle) -> None:
    before = _pids(running)
    stop = running.cli("stop", "svc3")
    assert stop.returncode == 0, stop.stderr
    assert running.states()["svc3"][0] == "STOPPED"
    assert {k: v for k, v in _pids(running).items() if k != "svc3"} == \
        {k: v for k, v in before.items() if k != "svc3"}
    status = running.cli("status")
    assert status.returncode == 0, status.stdout  # stopped on purpose: not a service down
    row = next(line for line in status.stdout.splitlines() if line.startswith("svc3 "))
    assert "STOPPED (by root at " in row
    assert running.cli("restart", "svc3").stderr.strip().endswith(
        "bin/bundler start svc3 starts it")

    switched = running.cli("switch", "svc3", "v1")  # a change to it leaves it stopped
    assert switched.returncode == 0, switched.stderr
    assert running.stop().returncode == 0
    running.start()  # and so does bin/start
    assert running.states()["svc3"][0] == "STOPPED"

    _fresh_report(running, "svc3")
    start = running.cli("start", "svc3")
    assert start.returncode == 0, start.stderr
    assert running.states()["svc3"][0] == "RUNNING" and running.report("svc3")["code"] == "v1"
    history = running.cli("history", "svc3").stdout.splitlines()
    assert [line.split()[3] for line in history[1:]] == ["stop", "switch", "start"]

    ids = {e["op"]: e["id"] for e in json.loads(running.cli("history", "--json").stdout)["entries"]}
    wrong = running.cli("rollback", "svc3", "--to", str(ids["stop"]))
    assert wrong.returncode == 1 and wrong.stderr.strip().endswith(
        f"the changes of svc3 (bin/bundler history svc3): {ids['switch']}")
    assert running.cli("switch", "svc3", "v2").returncode == 0
    _fresh_report(running, "svc3")
    back = running.cli("rollback", "svc3", "--to", str(ids["switch"]))
    assert back.returncode == 0, back.stderr
    assert "svc3: code: v2 -> v1" in back.stdout and running.report("svc3")["code"] == "v1"

    assert running.ctl("stop", "svc3").returncode == 0  # by hand: a switch leaves it stopped too
    assert running.cli("switch", "svc3", "v3").returncode == 0
    time.sleep(1.5)  # supervisord's next tick would autostart a process that never ran
    assert running.states()["svc3"][0] == "STOPPED"
    assert running.ctl("start", "svc3").returncode == 0


def test_run_is_a_one_off_process_of_the_service(running: Bundle) -> None:
    show = ("import json, os, sys; print(json.dumps({'cwd': os.getcwd(), 'env': dict(os.environ),"
            " 'prefix': sys.prefix})); sys.exit(3)")
    proc = running.cli("run", "launched", "--", "python", "-c", show)
    assert proc.returncode == 3, proc.stderr
    ran = json.loads(proc.stdout)
    service = running.report("launched")  # what the service's own process got
    assert ran["prefix"] == service["prefix"]
    assert ran["cwd"] == str(running.root / "your_project_probec")
    for key in [*LAUNCH_ENV, "PYTHONPATH", "PYTHON_APP_CONF", "BUNDLE_ROOT", "PATH"]:
        assert ran["env"][key] == service["env"][key], key
    assert "BUNDLER_TOKEN" not in ran["env"]  # no process of the bundle bin/stop must kill
    typed = subprocess.run([str(running.root / "bin" / "bundler"), "run", "svc1", "sh", "-c",
                            "read line; echo got $line; exit 4"], input="typed\n",
                           capture_output=True, text=True, timeout=60)
    assert (typed.returncode, typed.stdout) == (4, "got typed\n")
    assert running.cli("run", "svc1").returncode == 2
    unknown = running.cli("run", "nope", "--", "true")
    assert unknown.returncode == 2 and "its services: svc1, svc2, svc3" in unknown.stderr
    assert [(e["op"], e["service"], e["detail"]) for e in _history(running)][-2:] == [
        ("run", "launched", f"python -c {shlex.quote(show)}"),
        ("run", "svc1", "sh -c 'read line; echo got $line; exit 4'")]
