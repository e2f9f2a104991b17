"""The operator's commands on one service, their pure parts: the record of stopped services and
how supervisord's extension applies it (tests/integration/test_live.py runs them on a real
supervisord)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from bundler import supervisor_rpc
from bundler.bundle.stopped import STOPPED_RECORD, Stop, Stopped
from bundler.bundle.tree import META, Bundle


def test_the_stopped_services_are_a_record_and_name_their_processes(tiny: Bundle) -> None:
    assert STOPPED_RECORD.startswith(META + "/")
    assert Stopped.load(tiny.stopped) == Stopped()  # none yet
    stopped = Stopped({"web": Stop("ops", "2026-05-01T10:00:00Z")})
    stopped.write(tiny.stopped)
    assert Stopped.load(tiny.stopped) == stopped
    assert stopped.services["web"].describe() == "by ops at 2026-05-01T10:00:00Z"
    assert [stopped.holds(p) for p in ("web", "web_00", "web_12", "webx", "web_x", "job")] == \
        [True, True, True, False, False, False]
    tiny.stopped.write_text("{not json")
    assert Stopped.load(tiny.stopped) == Stopped()  # unreadable: nothing held, nothing breaks


def test_supervisords_extension_turns_autostart_off_for_stopped_services_only(
        tmp_path: Path) -> None:
    (tmp_path / META).mkdir()
    configs = [SimpleNamespace(name=n, autostart=a)
               for n, a in (("web_00", True), ("web_01", True), ("job", False), ("api", True))]
    group = SimpleNamespace(config=SimpleNamespace(process_configs=configs))
    supervisord = SimpleNamespace(options=SimpleNamespace(directory=str(tmp_path)),
                                  process_groups={"g": group})
    namespace = supervisor_rpc.BundlerNamespace(supervisord)
    Stopped({"web": Stop("ops", "t"), "job": Stop("ops", "t")}).write(tmp_path / STOPPED_RECORD)
    namespace.hold()
    assert [c.autostart for c in configs] == [False, False, False, True]
    (tmp_path / STOPPED_RECORD).unlink()
    namespace.hold()  # started again: each as its file says (job has autostart = false)
    assert [c.autostart for c in configs] == [True, True, False, True]


def test_a_removed_service_is_forgotten_by_the_stopped_services(tiny: Bundle) -> None:
    from bundler.server import control

    Stopped({"web": Stop("ops", "t"), "job": Stop("ops", "t")}).write(tiny.stopped)
    control.forget(tiny, "web")
    assert list(Stopped.load(tiny.stopped).services) == ["job"]
