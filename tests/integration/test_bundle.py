"""The bundle end to end: unpack elsewhere, start with the build tree gone, run, recover, stop, move."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import tomlkit

from bundler.bundle import elf
from bundler.cli.options import BUILD_COMMANDS, build_machine_only
from tests.integration.harness import (
    INLINE_ARGS,
    INLINE_ENV,
    LAUNCH_ARGS,
    LAUNCH_ENV,
    PY37,
    Bundle,
    run_hidden,
)

pytestmark = pytest.mark.integration

EXAMPLE_SERVICES = {"svc1": "v1", "svc2": "v2", "svc3": "v3"}


def _wait_for(predicate, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _mapped_libpython(pid: int) -> set[str]:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {line.split(None, 5)[5] for line in maps.splitlines()
            if "libpython" in line and len(line.split(None, 5)) == 6}


def test_every_service_runs_its_own_interpreter_and_code(unpacked: Bundle) -> None:
    proc = unpacked.start()
    assert "relocated the bundle" in proc.stdout
    states = unpacked.states()
    assert all(state == "RUNNING" for state, _ in states.values()), states
    root = str(unpacked.root)
    manifest = tomlkit.parse((unpacked.root / "bundle.toml").read_text())
    base_version = manifest["build"]["interpreters"]["base"]["python_version"]
    for program, version in EXAMPLE_SERVICES.items():
        report = unpacked.report(program)
        assert report["code"] == version
        assert report["file"].startswith(f"{root}/your_project_{version}/")
        assert report["base_prefix"] == root
        assert report["version"].startswith(base_version + ".")
        for lib in _mapped_libpython(report["pid"]):
            assert lib.startswith(f"{root}/lib/"), lib
    pyocr = unpacked.report("svc3")
    assert pyocr["prefix"] == f"{root}/envs/pyocr"
    assert pyocr["executable"] == f"{root}/envs/pyocr/bin/python"
    assert "pillow" in pyocr
    assert "pillow" not in unpacked.report("svc1")
    for name in ("pool_00", "pool_01"):
        assert unpacked.report(name)["base_prefix"] == root


@pytest.mark.skipif(PY37 is None, reason="pyenv's CPython 3.7.16 is not installed")
def test_a_service_runs_on_a_second_cpython(unpacked: Bundle) -> None:
    unpacked.start()
    report = unpacked.report("svc37")
    root = str(unpacked.root)
    assert report["version"].startswith("3.7.")
    assert os.path.normpath(report["executable"]) == f"{root}/envs/py37/bin/python3"
    assert os.path.normpath(report["prefix"]) == f"{root}/envs/py37"
    assert _mapped_libpython(report["pid"]) == {f"{root}/envs/py37/lib/libpython3.7m.so.1.0"}


def test_commands_and_environment_reach_the_process_unchanged(unpacked: Bundle) -> None:
    unpacked.start()
    inline, launched = unpacked.report("inline"), unpacked.report("launched")
    assert inline["argv"] == INLINE_ARGS
    assert {k: inline["env"][k] for k in INLINE_ENV} == INLINE_ENV
    assert launched["argv"] == LAUNCH_ARGS
    assert {k: launched["env"][k] for k in LAUNCH_ENV} == LAUNCH_ENV
    assert launched["executable"] == f"{unpacked.root}/envs/pyocr/bin/python"
    code = unpacked.root / "your_project_probec"
    assert launched["file"] == f"{code}/probe.pyc"
    assert not list(code.rglob("*.py")), "a bytecode-only code version shipped sources"


def test_git_code_version_ships_the_tagged_commit(unpacked: Bundle) -> None:
    code = unpacked.root / "your_project_probe"
    assert "uncommitted change" not in (code / "probe.py").read_text()
    assert not (code / ".git").exists()


def _svc3(bundle: Bundle) -> dict:
    doc = json.loads(bundle.cli("status", "--json").stdout)
    return next(p for p in doc["processes"] if p["name"] == "svc3")


def test_killed_service_is_restarted_by_supervisor(unpacked: Bundle) -> None:
    unpacked.start()
    _, old_pid = unpacked.states()["svc3"]
    before = _svc3(unpacked)
    assert before["restarts"] == 0 and before["health"] == "none"
    assert before["cpu_percent"] > 0 and before["rss"] > 1 << 20  # of a running python
    os.kill(old_pid, signal.SIGKILL)

    def restarted():
        state, pid = unpacked.states()["svc3"]
        return state == "RUNNING" and pid != old_pid and pid

    new_pid = _wait_for(restarted, what="svc3 to come back")
    assert Path(f"/proc/{new_pid}").exists()
    status = subprocess.run([str(unpacked.root / "bin" / "bundler"), "status"],
                            capture_output=True, text=True, check=True).stdout
    row = next(line.split() for line in status.splitlines() if line.startswith("svc3 "))
    assert row[1:3] == ["RUNNING", str(new_pid)]
    assert row[status.splitlines()[1].split().index("RESTARTS")] == "1"
    assert _svc3(unpacked)["restarts"] == 1  # counted by supervisord, whatever restarted it


def test_the_systemd_unit_of_a_bundle_under_spaces_and_umlauts_is_valid(unpacked: Bundle,
                                                                        tmp_path: Path) -> None:
    unpacked.move(tmp_path / "my apps" / "smärtbox")
    proc = unpacked.cli("install-systemd", "--print")
    assert proc.returncode == 0, proc.stderr  # systemd-analyze verify passed, where it is
    lines = proc.stdout.splitlines()
    assert f'ExecStart="{unpacked.root}/bin/start" --foreground' in lines
    assert f"WorkingDirectory={unpacked.root}" in lines
    assert f"Documentation=file://{tmp_path}/my%%20apps/sm%%C3%%A4rtbox/etc/supervisord.conf" \
        in lines


def test_stop_leaves_no_process(unpacked: Bundle) -> None:
    unpacked.start()
    assert len(unpacked.processes()) >= 8  # supervisord and its services
    proc = unpacked.stop()
    assert proc.returncode == 0, proc.stderr
    assert unpacked.processes() == []
    assert not (unpacked.root / "run" / "supervisord.pid").exists()


def test_moved_again_starts_again_past_the_socket_limit(unpacked: Bundle, tmp_path: Path) -> None:
    unpacked.start()
    assert unpacked.stop().returncode == 0
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "smartbox"
    assert len(os.fsencode(deep / "run" / "supervisor.sock")) > 108
    unpacked.move(deep)
    proc = unpacked.start()
    assert "relocated the bundle" in proc.stdout
    socket_path = (deep / "run" / "socket.path").read_text().strip()
    assert len(os.fsencode(socket_path)) <= 107 and not socket_path.startswith(str(deep))
    assert unpacked.report("svc1")["base_prefix"] == str(deep)
    assert all(state == "RUNNING" for state, _ in unpacked.states().values())
    venv_cfg = (deep / "envs" / "pyocr" / "pyvenv.cfg").read_text()
    assert f"home = {deep}/bin" in venv_cfg


def test_second_start_is_harmless_and_two_starts_can_race(unpacked: Bundle, tmp_path: Path) -> None:
    unpacked.move(tmp_path / "raced" / "smartbox")
    start = [str(unpacked.root / "bin" / "start"), "--timeout", "90"]
    a = subprocess.Popen(start, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    b = subprocess.Popen(start, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    unpacked.started.append(unpacked.root)
    outs = [p.communicate(timeout=120) for p in (a, b)]
    assert a.returncode == 0 and b.returncode == 0, outs
    assert sum("already running" in out for out, _ in outs) == 1
    supervisords = [p for p in unpacked.processes()
                    if b"supervisord" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert len(supervisords) == 1
    assert unpacked.report("svc1")["base_prefix"] == str(unpacked.root)


def test_failed_service_is_reported_and_the_others_keep_running(unpacked: Bundle) -> None:
    (unpacked.root / "etc" / "app" / "crash-inline").write_text("")
    proc = unpacked.start(expect_ok=False)
    assert proc.returncode == 1
    assert "not running: inline" in proc.stderr
    assert "crashing on purpose: inline" in proc.stderr
    states = unpacked.states()
    assert states["inline"][0] == "FATAL"
    assert states["sam:svc1"][0] == "RUNNING"
    # bin/start printed the table status prints, with supervisor's names and states
    table = proc.stdout[proc.stdout.index("PROCESS "):]
    status = unpacked.cli("status")
    assert status.returncode == 3 and table.splitlines()[0] == status.stdout.splitlines()[1]
    shown = {line.split()[0]: line.split()[1] for line in table.splitlines()[1:]}
    assert shown == {name: state for name, (state, _) in states.items()}


def test_start_refuses_to_run_beside_orphans_and_stop_clears_them(unpacked: Bundle) -> None:
    unpacked.start()
    supervisord = int((unpacked.root / "run" / "supervisord.pid").read_text())
    os.kill(supervisord, signal.SIGKILL)
    _wait_for(lambda: not Path(f"/proc/{supervisord}/status").exists()
              or "zombie" in Path(f"/proc/{supervisord}/status").read_text(), what="supervisord")
    orphans = unpacked.processes()
    assert orphans, "the services should have survived their supervisord"
    proc = unpacked.start(expect_ok=False)
    assert proc.returncode == 1
    assert "run bin/stop first" in proc.stderr
    assert unpacked.stop().returncode == 0
    assert unpacked.processes() == []


def test_interpreters_load_libpython_from_inside_the_bundle(unpacked: Bundle) -> None:
    root = unpacked.root
    executables = [root / "bin" / "python3"]
    if PY37 is not None:
        executables.append(root / "envs" / "py37" / "bin" / "python3")
    for exe in executables:
        out = run_hidden(["ldd", str(exe)]).stdout
        lines = [line for line in out.splitlines() if "libpython" in line]
        info = elf.read(exe.resolve())  # a distribution's executable may hold libpython itself
        assert info is not None
        needs = [n for n in info.needed if n.startswith("libpython")]
        assert len(lines) == len(needs), out
        assert all(f"=> {exe.parent.parent}/bin/../lib/" in line for line in lines), out
        assert "not found" not in out
        proc = run_hidden([str(exe), "-c", "import ssl, sqlite3, sys; print(sys.prefix)"])
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == str(exe.parent.parent)


def test_the_bundle_carries_bundlers_server_side_only(unpacked: Bundle) -> None:
    (site,) = unpacked.root.glob("lib/python3*/site-packages")
    assert (site / "bundler" / "server" / "monitor" / "__main__.py").is_file()
    assert not (site / "bundler" / "build").exists()
    assert not (site / "bundler" / "cli" / "project.py").exists()
    (record,) = site.glob("offline_bundler-*.dist-info/RECORD")
    listed = sorted(line.split(",")[0] for line in record.read_text().splitlines())
    there = sorted(p.relative_to(site).as_posix()
                   for folder in (site / "bundler", record.parent) for p in folder.rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts)  # compiled after install
    assert listed == there

    help = unpacked.cli("--help")
    assert help.returncode == 0, help.stderr
    commands = {line.split()[0] for line in help.stdout.split("Bundle commands")[1].splitlines()
                if line.startswith("  ") and line.strip()[0].isalpha()}
    assert {"start", "status", "switch", "apply", "completion"} <= commands
    assert not commands & set(BUILD_COMMANDS) and "Project commands" not in help.stdout
    for command in BUILD_COMMANDS:
        refused = unpacked.cli(command)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert refused.stdout == "" and refused.stderr == f"Error: {build_machine_only(command)}\n"
    assert "pip install offline-bundler" in build_machine_only("build")
