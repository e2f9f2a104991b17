"""The operator's commands on one service, their pure parts: the record of stopped services and
how supervisord's extension applies it, and how `run` makes a service's process
(tests/integration/test_live.py runs them on a real supervisord)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from bundler import supervisor_rpc
from bundler.bundle.stopped import STOPPED_RECORD, Stop, Stopped
from bundler.bundle.tree import META, Bundle
from bundler.errors import UsageError
from bundler.server import history, oneoff


def test_the_stopped_services_are_a_record_and_name_their_processes(tiny: Bundle) -> None:
    assert STOPPED_RECORD.startswith(META + "/")
    assert Stopped.load(tiny.stopped) == Stopped()  # none yet
    stopped = Stopped({"web": Stop("ops", "2026-05-01T10:00:00Z")})
    stopped.write(tiny.stopped)
    assert Stopped.load(tiny.stopped) == stopped
    assert stopped.services["web"].describe() == "by ops at 2026-05-01T10:00:00Z"
    assert [stopped.holds(p) for p in ("web", "web_00", "web_12", "webx", "web_x", "job")] == \
        [True, True, True, False, False, False]
    # services named like another's processes are their own (a group of their own name)
    assert not stopped.holds("web_2") and not stopped.holds("web_01", "web_01")
    assert stopped.holds("web_01", "web")
    tiny.stopped.write_text("{not json")
    assert Stopped.load(tiny.stopped) == Stopped()  # unreadable: nothing held, nothing breaks


def test_supervisords_extension_turns_autostart_off_for_stopped_services_only(
        tmp_path: Path) -> None:
    (tmp_path / META).mkdir()
    configs = [SimpleNamespace(name=n, autostart=a)
               for n, a in (("web_00", True), ("web_01", True), ("job", False), ("api", True))]
    group = SimpleNamespace(config=SimpleNamespace(process_configs=configs, name="web"))
    supervisord = SimpleNamespace(options=SimpleNamespace(directory=str(tmp_path)),
                                  process_groups={"g": group})
    namespace = supervisor_rpc.BundlerNamespace(supervisord)
    Stopped({"web": Stop("ops", "t"), "job": Stop("ops", "t")}).write(tmp_path / STOPPED_RECORD)
    namespace.hold()
    assert [c.autostart for c in configs] == [False, False, False, True]
    (tmp_path / STOPPED_RECORD).unlink()
    namespace.hold()  # started again: each as its file says (job has autostart = false)
    assert [c.autostart for c in configs] == [True, True, False, True]


def _runnable(bundle: Bundle) -> None:
    (bundle.root / "bin").mkdir()
    (bundle.root / "bin" / "python3").touch()
    (bundle.root / "bin" / "flask").touch()


def test_run_makes_the_services_process_on_this_terminal(tiny: Bundle,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _runnable(tiny)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("SECRET_OF_THE_CALLER", "x")
    root, here = tiny.root, f"{tiny.root}/etc/conf.d/../.."  # as supervisor has it for services
    one = oneoff.prepare(tiny, "web", ["python", "-m", "flask", "db", "upgrade"])
    assert one.argv == [f"{here}/bin/python3", "-m", "flask", "db", "upgrade"]
    assert one.cwd == Path(f"{here}/app_v1")
    assert (one.env["PYTHONPATH"], one.env["PYTHON_APP_CONF"]) == \
        (f"{here}/app_v1", f"{here}/etc/app")
    assert one.env["BUNDLE_ROOT"] == str(root) and one.env["TERM"] == "xterm"
    assert one.env["PATH"].startswith(f"{root}/bin:")
    assert "BUNDLER_TOKEN" not in one.env and "SECRET_OF_THE_CALLER" not in one.env
    assert one.umask == oneoff.SUPERVISORD_UMASK
    assert oneoff.prepare(tiny, "web", ["flask", "run"]).argv[0] == f"{here}/bin/flask"
    assert oneoff.prepare(tiny, "web", ["bash"]).argv == ["bash"]
    with pytest.raises(UsageError, match="^no service 'wbe' in this bundle .did you mean 'web'.."
                                         "; its services: web$"):
        oneoff.prepare(tiny, "wbe", ["bash"])


def test_run_passes_the_commands_exit_code_through(tiny: Bundle) -> None:
    one = oneoff.OneOff([sys.executable, "-c", "import os, sys; sys.exit(len(os.getcwd()) and 3)"],
                        tiny.root, dict(os.environ), None, -1)
    assert oneoff.run(one, "web") == 3
    killed = oneoff.OneOff(["sh", "-c", "kill -9 $$"], tiny.root, dict(os.environ), None, -1)
    assert oneoff.run(killed, "web") == 128 + 9
    assert oneoff.record(tiny, "web", ["python", "-c", "print('hi there')"]) is None
    (entry,) = history.history(tiny)
    assert (entry.op, entry.target, entry.detail, entry.result) == \
        ("run", "web", "python -c 'print('\"'\"'hi there'\"'\"')'", "started")


def test_a_removed_service_is_forgotten_by_the_stopped_services(tiny: Bundle) -> None:
    from bundler.server import control

    Stopped({"web": Stop("ops", "t"), "job": Stop("ops", "t")}).write(tiny.stopped)
    control.forget(tiny, "web")
    assert list(Stopped.load(tiny.stopped).services) == ["job"]
