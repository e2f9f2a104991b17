"""Production hardening on a real running bundle: health and memory restarts, alerts received by
a local webhook, metrics, the socket's mode, supervisor's web server, a per-service user and the
systemd unit. One copy of the session bundle runs for the whole module (see conftest's spec)."""

from __future__ import annotations

import base64
import json
import os
import pwd
import shutil
import stat
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.request
import xmlrpc.client
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.integration.conftest import HOOK_SECRET, Ports
from tests.integration.harness import EXAMPLE, Bundle, bundler

pytestmark = pytest.mark.integration

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Hooks:
    """A local webhook receiver: the alerts the bundle POSTs."""

    def __init__(self, port: int):
        received = self.received = []  # type: list[dict]

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, event: str, process: str, timeout: float = 40) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for alert in self.received:
                if alert["event"] == event and alert["process"] == process:
                    return alert
            time.sleep(0.2)
        raise AssertionError(f"no {event} alert for {process}; received {self.received}")


@pytest.fixture(scope="module")
def hooks(ports: Ports) -> Iterator[Hooks]:
    hooks = Hooks(ports.hook)
    yield hooks
    hooks.server.shutdown()
    hooks.server.server_close()


@pytest.fixture(scope="module")
def running(archive: Path, hooks: Hooks) -> Iterator[Bundle]:
    """The bundle, unpacked where any user may traverse (a service runs as nobody) and started."""
    folder = Path(tempfile.mkdtemp(prefix="bx", dir="/tmp"))
    folder.chmod(0o755)
    subprocess.run(["tar", "xf", str(archive), "-C", str(folder)], check=True)
    bundle = Bundle(folder / "smartbox")
    bundle.start()
    yield bundle
    bundle.finish()
    shutil.rmtree(folder)


def _pid(bundle: Bundle, name: str) -> int:
    state, pid = bundle.states()[name]
    assert state == "RUNNING", (name, state)
    return pid


def _ask(bundle: Bundle, program: str, what: str, pid: int) -> None:
    (bundle.root / "etc" / "app" / f"{program}.{what}").write_text(str(pid))


def _replaced(bundle: Bundle, name: str, old: int, timeout: float = 40) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state, pid = bundle.states().get(name, ("?", 0))
        if state == "RUNNING" and pid not in (0, old):
            return pid
        time.sleep(0.3)
    raise AssertionError(f"{name} (pid {old}) was not replaced: {bundle.states()}\n"
                         + (bundle.root / "log" / "_monitor.log").read_text()[-2000:])


def test_a_service_failing_its_health_check_is_restarted(running: Bundle, hooks: Hooks) -> None:
    old = _pid(running, "web")
    healthy = NO_PROXY.open(f"http://127.0.0.1:{_port(running, 'web')}/health", timeout=5)
    assert healthy.status == 200
    _ask(running, "web", "unhealthy", old)
    new = _replaced(running, "web", old)
    alert = hooks.wait("health", "web")
    assert alert["pid"] == old and "2 failed health probes" in alert["message"]
    assert "HTTP 500" in alert["message"] and alert["bundle"] == "smartbox"
    assert alert["root"] == str(running.root)
    log = (running.root / "log" / "_monitor.log").read_text()
    assert "health probe 1/2 failed" in log
    assert _pid(running, "web") == new


def _status(bundle: Bundle) -> dict[str, dict]:
    proc = bundle.cli("status", "--json")
    assert proc.returncode in (0, 3), proc.stderr
    return {p["name"]: p for p in json.loads(proc.stdout)["processes"]}


def _status_until(bundle: Bundle, name: str, health: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = _status(bundle)[name]
        if row["health"] == health:
            return row
        time.sleep(0.3)
    record = bundle.root / "run" / "health.json"
    raise AssertionError(f"{name} is not {health}: {row}; "
                         + (record.read_text() if record.exists() else "no health record"))


def test_status_shows_what_the_health_probes_say(running: Bundle, ports: Ports) -> None:
    passing = _status_until(running, "web", "passing")
    assert passing["health_since"] and passing["health_reason"] is None
    rows = _status(running)
    assert rows["chatty"]["health"] == "none" and rows["_monitor"]["health"] == "none"
    assert rows["chatty"]["cpu_percent"] > 0 and rows["chatty"]["rss"] > 1 << 20
    # a probe that fails stays failing for a while (50 in a row restart it): status says so
    probe = f'http = "http://127.0.0.1:{ports.web}/health?key=probe-s3cret", every = 1, timeout = 1'
    proc = running.cli("set", "web", f"health={{ {probe}, failures = 50 }}")
    assert proc.returncode == 0, proc.stderr
    _ask(running, "web", "unhealthy", _pid(running, "web"))
    try:
        failing = _status_until(running, "web", "failing")
        assert "HTTP 500" in failing["health_reason"] and failing["health_since"]
        text = running.cli("status").stdout.splitlines()
        assert text[0].startswith("smartbox ") and ", as built " in text[0]
        header = text[1].split()
        web = next(line.split() for line in text if line.startswith("web "))
        assert web[header.index("HEALTH")] == "failing"
        assert any(line.startswith("web: failing since ") and "HTTP 500" in line for line in text)
        assert "/health?***: HTTP 500" in failing["health_reason"]  # the probe's key is not shown
        assert "probe-s3cret" not in running.cli("status").stdout
        assert "probe-s3cret" not in (running.root / "log" / "_monitor.log").read_text()
        assert "probe-s3cret" not in running.cli("history", "web").stdout
    finally:
        (running.root / "etc" / "app" / "web.unhealthy").unlink()
    _status_until(running, "web", "passing")
    proc = running.cli("rollback", "web")  # failures = 2 again, for the other tests
    assert proc.returncode == 0, proc.stderr


def test_no_secret_is_in_a_log_or_a_services_environment(running: Bundle, hooks: Hooks) -> None:
    old = _pid(running, "hog")
    _ask(running, "hog", "crash", old)
    hooks.received.remove(hooks.wait("exit", "hog"))  # the crash test waits for its own
    deadline = time.monotonic() + 20
    monitor = running.root / "log" / "_monitor.log"
    while "alert exit hog -> " not in monitor.read_text():  # delivered: the log says where to
        assert time.monotonic() < deadline, monitor.read_text()[-2000:]
        time.sleep(0.2)
    assert "/alert?***" in monitor.read_text()
    for log in (running.root / "log").iterdir():
        assert HOOK_SECRET.encode() not in log.read_bytes(), log
    section = running.root / "run" / "http.ini"  # supervisor's web server, and its password
    assert stat.S_IMODE(section.stat().st_mode) == 0o600 and "{SHA}" in section.read_text()
    digest = section.read_text().split("password=")[1].strip().encode()
    processes = running.processes()
    assert len(processes) > 5
    for pid in processes:  # supervisord, the monitor and every service
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert b"BUNDLER_HTTP_PASSWORD" not in environ and digest not in environ, pid
    _replaced(running, "hog", old)


def test_a_service_above_its_memory_limit_is_restarted(running: Bundle, hooks: Hooks) -> None:
    old = _pid(running, "hog")
    _ask(running, "hog", "grow", old)
    _replaced(running, "hog", old)
    alert = hooks.wait("memory", "hog")
    assert alert["pid"] == old and alert["rss"] > alert["max_rss"] == 120 << 20


def test_a_crash_is_posted_to_the_webhook(running: Bundle, hooks: Hooks) -> None:
    old = _pid(running, "hog")
    _ask(running, "hog", "crash", old)
    alert = hooks.wait("exit", "hog")
    assert alert["pid"] == old and alert["exitstatus"] == 3
    assert "exited unexpectedly (exit status 3)" in alert["message"]
    _replaced(running, "hog", old)  # supervisord's autorestart brought it back


def test_supervisord_outlives_a_log_it_cannot_rotate_and_says_so(running: Bundle,
                                                                   hooks: Hooks) -> None:
    """chatty rotates its 1 KB log twice a second; a folder where its backup goes makes every
    rotation fail (as a full or read-only log/ does), which stops a bare supervisord."""
    before = {name: pid for name, (_, pid) in running.states().items()}
    backup = running.root / "log" / "chatty.log.1"
    deadline = time.monotonic() + 10
    while True:  # supervisord may put a new backup there between our two steps
        backup.unlink(missing_ok=True)
        try:
            backup.mkdir()
            break
        except FileExistsError:
            assert time.monotonic() < deadline
    (backup / "x").write_text("in the way\n")
    try:
        alert = hooks.wait("log", "supervisord")
        assert "chatty.log" in alert["message"] and "cannot rotate" in alert["message"]
        time.sleep(2)
        after = running.states()
        assert {name: pid for name, (_, pid) in after.items()} == before
        assert after["chatty"][0] == "RUNNING"
        size = (running.root / "log" / "chatty.log").stat().st_size
        time.sleep(1)
        assert (running.root / "log" / "chatty.log").stat().st_size > size  # still written
    finally:
        shutil.rmtree(backup)


def _metrics(running: Bundle, port: int) -> dict[tuple[str, str], float]:
    text = NO_PROXY.open(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith("bundler_process_"):
            name_labels, value = line.rsplit(" ", 1)
            values[name_labels.split("{")[0], name_labels] = float(value)
    return values


def _metric(values: dict, name: str, process: str, state: str | None = None) -> float:
    for (metric, line), value in values.items():
        if metric == name and f'process="{process}"' in line \
                and (state is None or f'state="{state}"' in line):
            return value
    raise AssertionError(f"no {name} for {process} in {sorted(values)[:20]}...")


def test_metrics_report_states_restarts_uptime_memory_and_cpu(running: Bundle, ports: Ports) -> None:
    before = _metrics(running, ports.metrics)
    assert _metric(before, "bundler_process_state", "svc3", "RUNNING") == 1
    assert _metric(before, "bundler_process_state", "svc3", "STOPPED") == 0
    assert _metric(before, "bundler_process_up", "sam:svc1") == 1
    assert _metric(before, "bundler_process_state", "pool:pool_01", "RUNNING") == 1
    assert 'process="_monitor",service="_monitor"' in " ".join(line for _, line in before)
    assert _metric(before, "bundler_process_resident_memory_bytes", "svc3") > 5 << 20
    assert _metric(before, "bundler_process_uptime_seconds", "svc3") >= 1
    assert _metric(before, "bundler_process_cpu_seconds_total", "svc3") > 0
    restarts = _metric(before, "bundler_process_restarts_total", "sam:svc2")

    assert running.ctl("stop", "svc3").returncode == 0
    assert running.ctl("restart", "sam:svc2").returncode == 0
    deadline = time.monotonic() + 10  # the monitor hears of the restart from an event
    while True:
        after = _metrics(running, ports.metrics)
        if _metric(after, "bundler_process_restarts_total", "sam:svc2") > restarts \
                or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert _metric(after, "bundler_process_state", "svc3", "STOPPED") == 1
    assert _metric(after, "bundler_process_up", "svc3") == 0
    assert _metric(after, "bundler_process_resident_memory_bytes", "svc3") == 0
    assert _metric(after, "bundler_process_restarts_total", "sam:svc2") == restarts + 1
    assert running.ctl("start", "svc3").returncode == 0


def test_the_socket_is_private_and_the_web_server_needs_the_local_password(
        running: Bundle, archive: Path, ports: Ports) -> None:
    sock = Path((running.root / "run" / "socket.path").read_text().strip())
    mode = os.stat(sock).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o700
    secret = running.root / "run" / "http-password"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    password = secret.read_text().strip()
    assert len(password) >= 24
    with tarfile.open(archive) as tar:  # never shipped, nor any trace of it in the config
        assert not [n for n in tar.getnames() if "password" in n]
    assert password not in (running.root / "etc" / "supervisord.conf").read_text()
    url = f"http://127.0.0.1:{ports.http}/RPC2"
    with pytest.raises(xmlrpc.client.ProtocolError) as refused:
        xmlrpc.client.ServerProxy(url).supervisor.getState()
    assert refused.value.errcode == 401
    auth = base64.b64encode(f"admin:{password}".encode()).decode()
    request = urllib.request.Request(url, data=xmlrpc.client.dumps((), "supervisor.getState")
                                     .encode(), headers={"Authorization": f"Basic {auth}"})
    state = xmlrpc.client.loads(NO_PROXY.open(request, timeout=10).read())[0][0]
    assert state["statename"] == "RUNNING"


def test_what_holds_secrets_is_private_and_another_user_hears_permission_denied(
        running: Bundle) -> None:
    root = running.root
    for path in (root / "bundle.toml", *(root / "etc" / "conf.d").glob("*.ini"),
                 *(root / "log").glob("*.log")):
        assert path.stat().st_mode & 0o007 == 0, oct(path.stat().st_mode)  # nothing for others
    assert stat.S_IMODE((root / "run" / "token").stat().st_mode) == 0o600
    proc = subprocess.run([str(root / "bin" / "bundler"), "status"], user="nobody",
                          capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"})
    assert proc.returncode == 1, proc.stdout
    assert "permission denied" in proc.stderr.lower() and len(proc.stderr.splitlines()) == 1, \
        proc.stderr
    assert "not running" not in proc.stdout


def test_a_service_runs_as_its_own_user(running: Bundle) -> None:
    if os.geteuid() != 0:
        pytest.skip("switching users needs supervisord to run as root")
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' here")
    proc = running.cli("add-service", "guest", "--code", "probe", "--command",
                       "python -m watched", "--set", "user=nobody", "--set", "startsecs=1",
                       "--set", "max_rss=300MB")
    assert proc.returncode == 0, proc.stderr
    pid = _pid(running, "guest")
    watched = json.loads((running.root / "etc/conf.d/_monitor.json").read_text())["services"]
    assert watched["guest"]["max_rss"] == 300 << 20  # the running monitor re-reads it
    uids = Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[:2]
    assert [int(u) for u in uids] == [nobody.pw_uid] * 2
    supervisord = int((running.root / "run" / "supervisord.pid").read_text())
    assert Path(f"/proc/{supervisord}").stat().st_uid == 0


def test_the_systemd_unit_is_valid_and_says_what_production_needs(running: Bundle) -> None:
    proc = running.cli("install-systemd", "--print")
    assert proc.returncode == 0, proc.stderr  # --print runs systemd-analyze verify when present
    unit = proc.stdout
    for line in ("Type=simple", f"ExecStart={running.root}/bin/start --foreground",
                 "Restart=always", "RestartSec=5", "StartLimitIntervalSec=0", "KillMode=mixed",
                 "TimeoutStopSec=40", "LimitNOFILE=65536", "NoNewPrivileges=yes",
                 "WantedBy=multi-user.target"):
        assert line in unit.splitlines(), line
    assert unit.index("StartLimitIntervalSec=0") < unit.index("[Service]")
    assert "User=" not in unit
    if shutil.which("systemd-analyze"):
        path = Path(tempfile.mkdtemp()) / "bundler-smartbox.service"
        path.write_text(unit)
        check = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                               text=True)
        shutil.rmtree(path.parent)
        assert check.returncode == 0 and str(path) not in check.stderr, check.stderr
    if "guest" in running.states():  # it runs as nobody: supervisord must start as root
        as_daemon = running.cli("install-systemd", "--print", "--user", "daemon")
        assert as_daemon.returncode == 1
        assert "--user daemon: some services set their own user" in as_daemon.stderr
    if shutil.which("systemd-analyze"):  # what systemd would refuse, bundler refuses
        as_nobody = running.cli("install-systemd", "--print", "--user", "nobody")
        assert as_nobody.returncode == 1
        assert "systemd-analyze rejects the unit" in as_nobody.stderr
        assert "Special user nobody configured" in as_nobody.stderr
    if not Path("/run/systemd/system").is_dir():
        refused = running.cli("install-systemd")
        assert refused.returncode == 1
        assert "systemd is not running on this machine" in refused.stderr


def test_a_remote_address_without_allow_remote_is_refused(tmp_path: Path) -> None:
    project = tmp_path / "p"
    shutil.copytree(EXAMPLE, project)
    spec = project / "bundle.toml"
    spec.write_text(spec.read_text() + '\n[metrics]\nport = 9464\nhost = "0.0.0.0"\n')
    proc = bundler("-C", str(project), "build", check=False)
    assert proc.returncode == 1
    line = len(spec.read_text().splitlines())
    assert f"bundle.toml:{line}: [metrics] host '0.0.0.0' opens the port to other machines: " \
           "add allow_remote = true" in proc.stderr
    assert not (project / "dist").exists()


def _port(bundle: Bundle, program: str) -> int:
    ini = (bundle.root / "etc" / "conf.d" / f"{program}.ini").read_text()
    return int(ini.split("--port", 1)[1].split()[0])
