"""The monitor's parts: its rendered config as supervisor reads it, the listener protocol, event
handling, probes, alerts (to a real local HTTP server) and the systemd unit's text."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import socket
import stat
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from supervisor.options import ServerOptions

from bundler.bundle.health import HealthRecord, ProbeState
from bundler.bundle.layout import load_layout
from bundler.bundle.records import MonitorConfig as Config
from bundler.bundle.render import Renderer
from bundler.bundle.tree import Bundle
from bundler.errors import BundlerError, printable
from bundler.server import lifecycle, systemd
from bundler.server.monitor import probes
from bundler.server.monitor.alerts import Alerter, webhook
from bundler.server.monitor.listener import Monitor, listen
from bundler.server.supervisor import Process, Supervisor
from bundler.spec.model import Alerts, Health
from tests.unit.test_render import PYTHONS, spec_with

WATCHED = '''
[services.api]
command = "python -m api"
code = "v1"
health = { tcp = "127.0.0.1:9", every = 2 }
max_rss = "64MB"
[services.plain]
command = "python -m plain"
code = "v1"
[supervisor]
socket_group = "root"
[supervisor.http]
port = 9001
[alerts]
command = "logger"
on = ["fatal"]
'''


def _options(root: Path, monkeypatch: pytest.MonkeyPatch) -> ServerOptions:
    monkeypatch.setenv("BUNDLER_SOCKET", str(root / "run" / "s.sock"))
    monkeypatch.setenv("BUNDLER_SOCKET_OWNER", "0")
    options = ServerOptions()
    options.configfile = str(root / "etc" / "supervisord.conf")
    options.process_config(do_usage=False)
    return options


def test_the_monitor_listener_and_the_servers_as_supervisor_reads_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "box"
    spec = spec_with(WATCHED, tmp_path)
    Renderer(spec, load_layout(), PYTHONS).write(root)
    assert spec.supervisor.http is not None
    bundle = Bundle(root, load_layout())
    lifecycle.write_http_section(bundle, spec.supervisor.http, "{SHA}abc", os.geteuid())
    assert stat.S_IMODE(bundle.http_section.stat().st_mode) == 0o600
    assert "{SHA}" not in (root / "etc" / "supervisord.conf").read_text()
    options = _options(root, monkeypatch)
    groups = {g.name: g for g in options.process_group_configs}
    monitor = groups["_monitor"]
    assert type(monitor).__name__ == "EventListenerPoolConfig"
    assert [e.__name__ for e in monitor.pool_events] == ["ProcessStateEvent"]
    process = monitor.process_configs[0]
    assert process.command.split()[1:4] == ["-I", "-m", "bundler.server.monitor"]
    assert process.command.endswith(f' "{root}/etc/conf.d/_monitor.json"')
    config = Config.read(root / "etc" / "conf.d" / "_monitor.json")
    assert list(config.services) == ["api"] and config.names == ("api", "plain")
    assert config.services["api"].health == Health("tcp", "127.0.0.1:9", every=2.0)
    assert config.services["api"].max_rss == 64 << 20
    assert config.alerts == Alerts(command="logger", on=("fatal",))
    unix, inet = sorted(options.configroot.supervisord.server_configs, key=lambda c: c["family"])
    assert unix["chmod"] == 0o770 and unix["chown"][0] == 0
    assert (inet["host"], inet["port"], inet["username"]) == ("127.0.0.1", 9001, "admin")
    assert inet["password"] == "{SHA}abc"


def test_a_plain_bundle_has_no_monitor_and_a_private_socket(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "box"
    Renderer(spec_with('[services.a]\ncommand = "python -m a"\ncode = "v1"\n', tmp_path),
             load_layout(), PYTHONS).write(root)
    options = _options(root, monkeypatch)
    assert [g.name for g in options.process_group_configs] == ["a"]
    assert [c["family"] for c in options.configroot.supervisord.server_configs] == [socket.AF_UNIX]
    assert options.configroot.supervisord.server_configs[0]["chmod"] == 0o700
    assert not list((root / "etc" / "conf.d").glob("_monitor*"))


def test_listen_speaks_the_event_listener_protocol() -> None:
    payload = "processname:api groupname:api from_state:RUNNING expected:0 pid:42"
    stdin = io.StringIO(f"ver:3.0 server:s serial:1 pool:_monitor poolserial:1 "
                        f"eventname:PROCESS_STATE_EXITED len:{len(payload)}\n{payload}")
    stdout = io.StringIO()
    seen = []
    listen(stdin, stdout, lambda name, body: seen.append((name, body)))
    assert seen == [("PROCESS_STATE_EXITED", payload)]
    assert stdout.getvalue() == "READY\nRESULT 2\nOKREADY\n"


def test_events_become_alerts_and_restart_counts(tmp_path: Path) -> None:
    path = tmp_path / "_monitor.json"
    path.write_text(json.dumps({"bundle": "b", "version": "1", "services": {}, "names": ["api"],
                                "supervisord_log": "supervisord.log", "alerts": None,
                                "metrics": None}))
    log = tmp_path / "supervisord.log"
    log.write_text("INFO exited: api (exit status 1; not expected)\n")  # before: not news
    monitor = Monitor(path, tmp_path, Supervisor(str(tmp_path / "none.sock")), Config.read(path))
    sent = []
    monitor.alert = lambda *args, **extra: sent.append((args, extra))  # type: ignore[method-assign]
    for _ in range(3):
        monitor.on_event("PROCESS_STATE_STARTING", "processname:w groupname:sam pid:0")
    with open(log, "a") as f:
        f.write("INFO exited: api (exit status 3; not expected)\nINFO exited: b (terminated by "
                "SIGKILL; not expected)\nINFO exited: api (exit status 0; expected)\n")
    monitor.on_event("PROCESS_STATE_EXITED", "processname:api groupname:api expected:0 pid:7")
    monitor.on_event("PROCESS_STATE_EXITED", "processname:b groupname:g expected:0 pid:9")
    monitor.on_event("PROCESS_STATE_EXITED", "processname:api groupname:api expected:1 pid:8")
    monitor.on_event("PROCESS_STATE_FATAL", "processname:api groupname:api")
    monitor.on_event("PROCESS_STATE_FATAL", "processname:_monitor groupname:_monitor")
    assert monitor.restarts == {"sam:w": 2}
    assert sent == [(("exit", "api", "exited unexpectedly (exit status 3)"),
                     {"pid": 7, "exitstatus": 3}),
                    (("exit", "g:b", "exited unexpectedly (terminated by SIGKILL)"),
                     {"pid": 9, "exitstatus": None}),
                    (("fatal", "api", "could not be started: it is FATAL and stays stopped"), {})]


class Receiver:
    def __init__(self, fail_first: int = 0):
        self.bodies: list[dict[str, Any]] = []
        self.calls = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls += 1
                if receiver.calls <= fail_first:
                    self.send_response(503)
                else:
                    receiver.bodies.append(json.loads(body))
                    self.send_response(200)
                self.end_headers()

            def do_GET(self) -> None:
                self.send_response(200 if self.path == "/ok" else 500)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail_first=2)
    yield r
    r.server.shutdown()
    r.server.server_close()


def _wait(predicate: Any) -> None:
    deadline = time.monotonic() + 10
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_alerts_are_retried_then_delivered_and_never_block(receiver: Receiver,
                                                           tmp_path: Path) -> None:
    logged: list[str] = []
    alerter = Alerter(Alerts(webhook=receiver.url + "/hook?token=s3cret", retries=2, on=("exit",)),
                      {"bundle": "b"}, tmp_path, logged.append, pause=0.01)
    assert alerter.send("exit", "api", "boom", pid=3)
    assert not alerter.send("fatal", "api", "not asked for")
    _wait(lambda: receiver.bodies and logged)  # the log line follows the POST
    assert receiver.calls == 3
    body = receiver.bodies[0]
    assert (body["event"], body["process"], body["message"], body["pid"], body["bundle"]) == \
        ("exit", "api", "boom", 3, "b")
    assert logged == [f"alert exit api -> {receiver.url}/hook?***"]  # its token is not logged


def test_an_alert_command_gets_the_alert_and_gives_up_after_its_retries(tmp_path: Path) -> None:
    out = tmp_path / "got.json"
    logged: list[str] = []
    ok = Alerter(Alerts(command=f"sh -c 'cat > {out}; echo $BUNDLER_ALERT_EVENT >> {out}.event'"),
                 {}, tmp_path, logged.append, pause=0.01)
    ok.send("memory", "hog", "too big")
    _wait(lambda: Path(f"{out}.event").exists())
    assert json.loads(out.read_text())["message"] == "too big"
    assert Path(f"{out}.event").read_text() == "memory\n"
    bad = Alerter(Alerts(command="sh -c 'echo nope >&2; exit 4'", retries=1), {}, tmp_path,
                  logged.append, pause=0.01)
    bad.send("fatal", "x", "y")
    _wait(lambda: len(logged) == 2)
    assert "not delivered" in logged[1] and "after 2 attempts: exit 4: nope" in logged[1]


def test_probes(receiver: Receiver, tmp_path: Path) -> None:
    def run(probe: str, target: str) -> str | None:
        return probes.run(Health(probe, target, timeout=2), tmp_path, "python3", ".")

    assert run("http", receiver.url + "/ok") is None
    assert run("http", receiver.url + "/bad") == f"GET {receiver.url}/bad: HTTP 500"
    port = receiver.server.server_address[1]
    assert run("http", f"http://127.0.0.1:{port}/bad?key=k1") == \
        f"GET http://127.0.0.1:{port}/bad?***: HTTP 500"  # what logs and status show
    assert run("command", "sh -c 'echo fetch https://u:p@h/x?token=t1 failed >&2; exit 2'") == \
        "sh -c 'echo fetch https://***@h/x?*** failed >&2; exit 2': exit 2: fetch " \
        "https://***@h/x?*** failed"
    assert run("tcp", f"127.0.0.1:{port}") is None
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed = unused.getsockname()[1]
    assert "Connection refused" in (run("tcp", f"127.0.0.1:{closed}") or "")
    assert run("command", "true") is None
    assert run("command", "sh -c 'echo why >&2; exit 2'") == \
        "sh -c 'echo why >&2; exit 2': exit 2: why"
    assert run("command", "sleep 5") == "sleep 5: no answer in 2 s"
    assert run("command", "no-such-probe-here --now") == \
        "no-such-probe-here --now: cannot run no-such-probe-here: no such program"


def test_the_systemd_unit_names_the_bundle_and_quotes_its_path(tmp_path: Path) -> None:
    root = tmp_path / "my bundle"
    spec = spec_with('[services.a]\ncommand = "python -m a"\ncode = "v1"\nstopwaitsecs = 50\n',
                     tmp_path)
    unit = systemd.render(Bundle(root, load_layout()), spec)
    assert unit.name == "bundler-box.service"
    lines = unit.text.splitlines()
    assert f'ExecStart="{root}/bin/start" --foreground' in lines
    assert "TimeoutStopSec=80" in lines and "ProtectHome=read-only" in lines
    as_root_user = systemd.render(Bundle(root, load_layout()), spec, name="edge", user="root")
    assert as_root_user.name == "edge.service" and "User=root" in as_root_user.text.splitlines()
    with pytest.raises(Exception, match="no user 'no-such-user-here'"):
        systemd.render(Bundle(root, load_layout()), spec, user="no-such-user-here")
    with pytest.raises(Exception, match="unit name 'a b' is invalid"):
        systemd.render(Bundle(root, load_layout()), spec, name="a b")
    for user in ("root\nExecStartPre=/bin/sh", "a\x1bb", "a b", "-root", "%h"):  # one line, escaped
        with pytest.raises(BundlerError, match="is not an account name") as caught:
            systemd.render(Bundle(root, load_layout()), spec, user=user)
        assert printable(str(caught.value), lines=True).count("\n") == 0


class _Processes(Supervisor):
    """supervisord as the watcher sees it: the processes a test says."""

    def __init__(self, processes: list[Process]):
        super().__init__("/nonexistent.sock")
        self.running = processes

    def processes(self) -> list[Process]:
        return self.running


def test_the_monitor_records_what_its_probes_say_for_status(tmp_path: Path) -> None:
    probe = {"probe": "command", "every": 1.0, "timeout": 5.0, "failures": 9}
    path = tmp_path / "_monitor.json"
    path.write_text(json.dumps({
        "bundle": "b", "version": "1", "names": ["ok", "sick"], "supervisord_log": "s.log",
        "alerts": None, "metrics": None, "services": {
            name: {"health": {**probe, "target": target}, "max_rss": None,
                   "python": "bin/python3", "directory": "."}
            for name, target in [("ok", "true"), ("sick", "sh -c 'echo down >&2; exit 4'")]}}))
    sup = _Processes([Process("ok", "ok", "RUNNING", 10, "", True, True),
                      Process("sick", "sick", "RUNNING", 11, "", True, True)])
    record = tmp_path / "run" / "health.json"
    record.parent.mkdir()
    monitor = Monitor(path, tmp_path, sup, Config.read(path), health_path=record)

    def settle(now: float) -> dict[str, ProbeState]:
        monitor.check(now)  # start the probes that are due
        for state in monitor.probing.values():
            if state.running is not None:
                state.running.result(timeout=10)
        monitor.check(now)  # take their results
        return dict(HealthRecord.read(record).processes) if record.exists() else {}

    assert settle(0.0) == {}  # a new run has one period to come up
    seen = settle(1.0)
    assert seen["ok"].passing and (seen["ok"].pid, seen["ok"].failures) == (10, 0)
    sick = seen["sick"]
    assert not sick.passing and (sick.pid, sick.failures) == (11, 1)
    assert sick.reason == "sh -c 'echo down >&2; exit 4': exit 4: down"
    again = settle(2.0)
    assert again["sick"].failures == 2 and again["sick"].since == sick.since  # failing since
    sup.running = [Process("ok", "ok", "RUNNING", 12, "", True, True),  # restarted: new pid
                   Process("sick", "sick", "STOPPED", 0, "", True, True)]
    after = settle(3.0)
    assert set(after) == {"ok"} and after["ok"].pid == 10  # stopped: forgotten; ok: not probed yet
    restarted = Monitor(path, tmp_path, sup, Config.read(path), health_path=record)
    assert restarted.health == after  # a monitor started again goes on from its record


@pytest.mark.parametrize("folder", ["my apps/smärtbox", "ünï cödé/box 100%$HOME", "plain"])
def test_the_systemd_unit_carries_any_path_systemd_can_run(tmp_path: Path, folder: str) -> None:
    root = tmp_path / folder
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "start").write_text("#!/bin/sh\n")
    (root / "bin" / "start").chmod(0o755)
    spec = spec_with('[services.a]\ncommand = "python -m a"\ncode = "v1"\n', tmp_path)
    unit = systemd.render(Bundle(root, load_layout()), spec)
    lines = unit.text.splitlines()
    escaped = str(root).replace("%", "%%")
    start = f"{escaped}/bin/start"
    assert (f'ExecStart="{start}" --foreground' if " " in folder
            else f"ExecStart={start} --foreground") in lines
    assert f"WorkingDirectory={escaped}" in lines  # the rest of the line: never quoted
    documentation = next(line for line in lines if line.startswith("Documentation="))
    assert documentation.isascii() and " " not in documentation
    assert lines[0].endswith(f" at {root}.")  # what install() recognises its unit by
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    assert systemd.validate(unit) is None
    quoted = unit.text.replace(f"WorkingDirectory={escaped}\n", f'WorkingDirectory="{escaped}"\n')
    if " " in folder:  # what systemd makes of a quoted path: the check has teeth
        assert "path is not absolute" in (systemd.validate(systemd.Unit(unit.name, quoted)) or "")


@pytest.mark.parametrize("folder, said", [("it's/box", repr("'")), ("a\\b/box", repr("\\")),
                                          ("new\nline/box", repr("\n")),
                                          ("box ", "a space at its end")])
def test_a_path_systemd_cannot_run_is_refused_with_what_is_wrong(tmp_path: Path, folder: str,
                                                                  said: str) -> None:
    spec = spec_with('[services.a]\ncommand = "python -m a"\ncode = "v1"\n', tmp_path)
    with pytest.raises(BundlerError, match=re.escape(f"its path holds {said}; move the bundle")):
        systemd.render(Bundle(tmp_path / folder, load_layout()), spec)
    with pytest.raises(BundlerError, match="too long for systemd"):
        systemd.render(Bundle(tmp_path / "box", load_layout()), spec, name="u" * 250)


def test_a_url_with_userinfo_goes_as_basic_authentication(tmp_path: Path) -> None:
    """urllib takes `user:password@` for part of the host's name: a probe that named it failed
    for ever (the monitor restarted a healthy service again and again), an alert never left."""
    seen: list[tuple[str, str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(("GET", self.path, self.headers["Authorization"]))
            self.send_response(200 if self.headers["Authorization"] else 401)
            self.end_headers()

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(("POST", self.path, self.headers["Authorization"]))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://pr%40be:p%3Aw@127.0.0.1:{server.server_address[1]}"
        assert probes.run(Health("http", f"{url}/health?key=k", timeout=2), tmp_path, "python3",
                          ".") is None
        webhook(f"{url}/alert?token=t", b"{}", timeout=2)
        basic = "Basic " + base64.b64encode(b"pr@be:p:w").decode()
        assert seen == [("GET", "/health?key=k", basic), ("POST", "/alert?token=t", basic)]
        assert probes.request_for("http://h/x").get_header("Authorization") is None
    finally:
        server.shutdown()
        server.server_close()
