"""The server's typed records of its manifest and its changes: the live manifest (spec/live.py),
the history's entries (and the ids rollback --to takes), the journals of apply and of a
transaction; and that an apply reads each manifest once."""

from __future__ import annotations

import json
import xmlrpc.client
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import tomlkit
from supervisor.xmlrpc import Faults

from bundler.bundle.tree import Bundle
from bundler.errors import BundlerError, DamagedRecord, UsageError
from bundler.server import apply, converge, history, services
from bundler.server.filemoves import Move, MoveJournal
from bundler.server.history import HistoryEntry, Installed, ServiceChange
from bundler.server.transact import TransactionJournal
from bundler.spec import merge
from bundler.spec.live import Definition, LiveManifest
from tests.unit.test_patch import RELEASE_2, _patch
from tests.unit.tiny import MANIFEST, files_of

SPEC = '''# the operator's notes
[bundle]
name = "x"
version = "1"
[code.v1]
path = "a"
[code.v2]
path = "b"
[envs.pyocr]
virtualenv = "base"
[services.web]  # the public one
command = "python -m web"
code = "v1"
python = "envs/pyocr/"
environment = { MODE = "prod" }
[services.job]
command = "python -m job"
code = "v1"
[groups.all]
programs = ["web", "job"]
[build.interpreters.base]
folder = "."
'''


def _live(text: str = SPEC) -> LiveManifest:
    return LiveManifest.parse(text, Path("bundle.toml"))


def test_a_live_manifest_reads_services_as_definitions_and_edits_keep_comments() -> None:
    live = _live()
    assert live.version == "1" and live.code_versions() == ["v1", "v2"]
    assert live.interpreters() == ["base", "pyocr"]
    web = live.service("web")
    assert isinstance(web, Definition) and web["code"] == "v1"
    assert web == {"command": "python -m web", "code": "v1", "python": "envs/pyocr/",
                   "environment": {"MODE": "prod"}}
    assert live.definitions().services["web"]["python"] == "envs/pyocr"  # as the merge sees it
    assert live.definitions().services["job"]["python"] == "base"
    assert live.group_of("job") == "all" and live.group_members("all") == ["web", "job"]
    live.switch("web", "v2", "base")
    live.set_keys("job", {"environment.LEVEL": "debug", "startsecs": 3}, [])
    text = live.text()
    assert "# the operator's notes" in text and "# the public one" in text
    again = tomlkit.parse(text).unwrap()["services"]
    assert again["web"]["code"] == "v2" and again["web"]["python"] == "base"
    assert again["job"]["environment"] == {"LEVEL": "debug"} and again["job"]["startsecs"] == 3
    with pytest.raises(UsageError, match="no code version 'v9' in this bundle"):
        live.switch("web", "v9", None)
    with pytest.raises(UsageError, match="no interpreter 'nope'"):
        live.switch("web", None, "nope")


def test_a_service_put_back_and_removed_through_its_definition() -> None:
    live = _live()
    web = live.service("web")
    live.remove_service("web")
    assert live.service("web") is None and live.group_members("all") == ["job"]
    live.put_service("web", web, "all")
    assert live.service("web") == web and live.group_of("web") == "all"
    live.put_group("all", Definition({"programs": ["job"]}))
    assert live.group_of("web") is None


def test_a_release_is_taken_without_its_services_and_a_broken_one_is_a_value_error() -> None:
    live = _live()
    release = _live(SPEC.replace('version = "1"', 'version = "2"').replace(
        '[code.v2]', '[code.v3]\npath = "c"\n[code.v2]').replace('code = "v1"', 'code = "v3"'))
    live.take_release(release)
    assert live.version == "2" and "v3" in live.code_versions()
    assert live.service("web") is not None and live.service("web")["code"] == "v1"  # type: ignore[index]
    assert live.differing(release, ("supervisor", "metrics")) == []
    assert live.differing(_live(SPEC + "[metrics]\nport = 9\n"), ("supervisor", "metrics")) \
        == ["metrics"]
    with pytest.raises(ValueError):
        live.take_release(_live("[bundle]\nversion = '3'\n"))  # no [build]


SWITCH_LINE = ('{"at": "2026-12-03T10:00:00Z", "user": "ops", "op": "switch", "service": "web", '
               '"from": "v1", "to": "v2", "change": "code: v1 -> v2", '
               '"before": {"code": "v1"}, "after": {"code": "v2"}, "group": "all", '
               '"result": "ok"}\n')
APPLY_LINE = ('{"at": "2026-12-03T10:00:00Z", "user": "ops", "op": "apply", "to": "2", '
              '"patch": "x-2.patch.tar.gz", "signed_by": "SHA256:abc", "result": "ok"}\n')


def test_history_entries_are_written_as_format_1_and_read_back() -> None:
    change = ServiceChange.of("web", Definition({"code": "v1"}), Definition({"code": "v2"}),
                              "all")
    switched = HistoryEntry("switch", "ok", change=change, at="2026-12-03T10:00:00Z",
                            user="ops")
    assert switched.text() == SWITCH_LINE and HistoryEntry.parse(SWITCH_LINE) == switched
    installed = HistoryEntry("apply", "ok", installed=Installed("2", "x-2.patch.tar.gz",
                                                                 "SHA256:abc"),
                             at="2026-12-03T10:00:00Z", user="ops")
    assert installed.text() == APPLY_LINE and HistoryEntry.parse(APPLY_LINE) == installed
    added = ServiceChange.of("new", None, Definition({"command": "x"}), None)
    assert added.change == "added" and '"from"' not in HistoryEntry("add-service", "ok",
                                                                     change=added).text()
    for damaged in ('{"at": "x"}', "[1, 2]", '{"op": "switch", "service": "web"'):
        with pytest.raises(ValueError):
            HistoryEntry.parse(damaged)


def test_the_history_skips_a_line_cut_short_and_keeps_no_unchanged_entry(tiny: Bundle) -> None:
    tiny.history.write_text(SWITCH_LINE + SWITCH_LINE[:40] + "\n" + APPLY_LINE)
    assert [e.op for e in history.history(tiny)] == ["switch", "apply"]
    change = ServiceChange.of("web", None, None, None)
    written = history.stamp(tiny, [HistoryEntry("set", "unchanged", change=change)])
    assert written[0].at and len(history.history(tiny)) == 2
    assert history.last_change(tiny, "web").after == {"code": "v2"}


def test_operations_are_history_entries_naming_their_service_beside_old_ones() -> None:
    restart = HistoryEntry("restart", "ok", service="web", detail="web:web_00 pid 1 -> 2",
                           at="2026-12-03T10:00:00Z", user="ops")
    line = restart.text()
    assert '"service": "web"' in line and '"before"' not in line
    assert HistoryEntry.parse(line) == restart and restart.target == "web"
    old = HistoryEntry.parse(SWITCH_LINE)  # written before entries had these fields
    assert old.change is not None and old.target == "web" and old.service == old.detail == ""


def _entry(op: str, service: str, code: str | None, result: str = "ok") -> str:
    if code is None:
        return HistoryEntry(op, result, service=service, at="t", user="u").text()
    change = ServiceChange.of(service, Definition({"code": "v0"}), Definition({"code": code}),
                              None)
    return HistoryEntry(op, result, change=change, at="t", user="u").text()


def test_rollback_to_takes_the_id_of_a_change_of_that_service(tiny: Bundle) -> None:
    tiny.history.write_text(_entry("switch", "web", "v1") + _entry("restart", "web", None)
                            + _entry("switch", "job", "v2") + _entry("switch", "web", "v3",
                                                                     "rolled back")
                            + _entry("set", "web", "v4"))
    assert [i for i, _ in history.numbered(tiny)] == [1, 2, 3, 4, 5]
    assert history.change_of(tiny, "web", 1).after == {"code": "v1"}
    assert history.change_of(tiny, "web", 5).after == {"code": "v4"}
    for entry_id, why in ((3, "entry 3 (switch of job) is no change of web"),
                          (2, "entry 2 (restart of web) is no change of web"),
                          (4, "entry 4 (switch of web) did not take effect (rolled back)"),
                          (9, "no entry 9 in this bundle's history (5 entries)")):
        with pytest.raises(BundlerError) as refused:
            history.change_of(tiny, "web", entry_id)
        assert str(refused.value) == f"{why}; the changes of web (bin/bundler history web): 1, 5"


def test_the_journals_are_records_in_their_format_1() -> None:
    moves = MoveJournal([Move("a/b.py", "file", True), Move("a/l", "link", False, "b.py"),
                         Move("gone.py", None, True)], ["a"])
    text = moves.text()
    assert json.loads(text) == {"ops": [
        {"rel": "a/b.py", "put": "file", "existed": True},
        {"rel": "a/l", "put": "link", "target": "b.py", "existed": False},
        {"rel": "gone.py", "put": None, "existed": True}], "created": ["a"]}
    assert MoveJournal.parse(text) == moves
    journal = TransactionJournal("[bundle]\n", {"web.ini": "[program:web]\n", "new.ini": None},
                                 ["web"])
    assert TransactionJournal.parse(journal.text()) == journal
    assert json.loads(journal.text())["files"] == {"web.ini": "[program:web]\n", "new.ini": None}


@pytest.mark.parametrize("name", ["../../../etc/cron.d/x", "a/b.ini", "..", "", "x\n.ini"])
def test_a_transaction_journal_that_names_a_file_outside_conf_d_is_damaged(
        tiny: Bundle, name: str) -> None:
    tiny.transaction.write_text(json.dumps({"manifest": MANIFEST, "files": {name: "x"},
                                            "groups": []}))
    with pytest.raises(DamagedRecord, match="damaged record"):
        TransactionJournal.read(tiny.transaction)


def test_an_apply_reads_each_manifest_once_merges_once_and_stamps_once(
        tiny: Bundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tiny.root / "bin").mkdir()
    (tiny.root / "bin" / "python3").touch()  # what check_runnable looks for
    base = MANIFEST.replace('version = "1"', 'version = "1" # as built')
    tiny.release_record.write_text(base)
    source = _patch(tmp_path, tiny, {"app_v2/web.py": b"v2\n"}, manifest=RELEASE_2)
    parsed: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    real_parse, real_merge, real_stamp = tomlkit.parse, merge.merge, history.stamp

    def parse(text: str) -> tomlkit.TOMLDocument:
        parsed[text] += 1
        return real_parse(text)

    def counted(name: str, real):  # type: ignore[no-untyped-def]
        def call(*args, **kwargs):  # type: ignore[no-untyped-def]
            calls[name] += 1
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(tomlkit, "parse", parse)
    monkeypatch.setattr(merge, "merge", counted("merge", real_merge))
    monkeypatch.setattr(history, "stamp", counted("stamp", real_stamp))
    done = apply.apply(tiny, source)
    assert done.outcome is not None and [e.change.service for e in done.entries if e.change] \
        == ["api", "web"]
    # read once each: the bundle's manifest, the release's, the last release's (release.toml);
    # and each text written checked once: with the release's files, then with its services
    assert set(parsed.values()) == {1} and {MANIFEST, RELEASE_2, base} < set(parsed)
    assert len(parsed) == 5 and tiny.manifest.read_text() in parsed
    assert calls == {"merge": 1, "stamp": 2}  # the release installed; the services it moved
    ops = [e.op for e in history.history(tiny)]
    assert ops == ["apply", "apply", "apply"]  # the release, then each service it moved
    rolled = services.rollback(tiny, "web", 5)[1]
    assert rolled[0].change is not None and rolled[0].change.change == "code: v2 -> v1"


def test_removing_a_folders_last_file_removes_the_folder_and_undo_brings_both_back(
        tiny: Bundle) -> None:
    from bundler.server import filemoves

    info = tiny.root / "lib" / "pkg-1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Name: pkg\n")
    (tiny.root / "lib" / "keep.py").write_text("")
    gone = "lib/pkg-1.dist-info/METADATA"
    filemoves.commit(tiny, [Move.to(tiny.root, gone, None)], tiny.root / "nothing-staged")
    assert not info.exists() and (tiny.root / "lib" / "keep.py").exists()
    # killed after the folder went: the next operation undoes it from the journal
    (tiny.apply_backup / "lib" / "pkg-1.dist-info").mkdir(parents=True)
    (tiny.apply_backup / gone).write_text("Name: pkg\n")
    MoveJournal([Move(gone, None, True)], []).write(tiny.apply_journal)
    assert filemoves.undo(tiny)
    assert (info / "METADATA").read_text() == "Name: pkg\n" and not tiny.apply_journal.exists()


DOTTED = MANIFEST.replace('[code.v1]\npath = "src"\n', '').replace(
    'spec_version = 1\n', 'spec_version = 1\ncode.v1.path = "src"\n'
    'envs = { e = { python = "3.11" } }\n')


def test_what_a_change_would_write_is_what_is_checked(tiny: Bundle, tmp_path: Path) -> None:
    """tomlkit writes some edits of dotted keys as TOML that reads back otherwise: the text to be
    written is the one checked, and refused before anything changes."""
    from bundler.bundle.manifest import Manifest
    from bundler.errors import BundlerError

    tiny.manifest.write_text(DOTTED)
    from bundler.bundle import integrity
    integrity.write(tiny)
    live = LiveManifest.parse(tiny.manifest.read_text(), tiny.manifest)
    Manifest.of(live, tiny.manifest.read_text())  # valid as read
    before = files_of(tiny.root)
    with pytest.raises(BundlerError, match="unknown key"):
        apply.apply(tiny, _patch(tmp_path, tiny, {"app_v2/web.py": b"v2\n"}))
    assert files_of(tiny.root) == before


def test_an_apply_stopped_while_the_services_converge_is_undone_whole(
        tiny: Bundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bundler.server import transact

    (tiny.root / "bin").mkdir()
    (tiny.root / "bin" / "python3").touch()
    tiny.release_record.write_text(MANIFEST)
    tiny.manifest.chmod(0o640)
    before = files_of(tiny.root)

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # as if stopped while the services converge

    monkeypatch.setattr(transact, "connect", killed)
    with pytest.raises(KeyboardInterrupt):
        apply.apply(tiny, _patch(tmp_path, tiny, {"app_v2/web.py": b"v2\n"}, manifest=RELEASE_2))
    assert files_of(tiny.root) == before and (tiny.manifest.stat().st_mode & 0o777) == 0o640
    assert not tiny.apply_journal.exists() and history.history(tiny) == []


def test_a_journal_left_past_the_commit_point_keeps_the_apply(
        tiny: Bundle, tmp_path: Path) -> None:
    """Killed after the release's files were kept but before its transaction journal went: the
    next command keeps the release (its files, manifest and release record), not the journal's
    manifest of before."""
    from bundler.server import transact

    (tiny.root / "bin").mkdir()
    (tiny.root / "bin" / "python3").touch()
    tiny.release_record.write_text(MANIFEST)
    apply.apply(tiny, _patch(tmp_path, tiny, {"app_v2/web.py": b"v2\n"}, manifest=RELEASE_2))
    after = files_of(tiny.root)
    transact.TransactionJournal(MANIFEST, {}, [], [], apply=True).write(tiny.transaction)
    with tiny.locked():
        assert not transact.recover(tiny)
    assert files_of(tiny.root) == after and not tiny.transaction.exists()
    assert tiny.release_record.read_text() == RELEASE_2


class _Starter:
    """supervisor.startProcess answering with one fault, and what it was asked to start."""

    def __init__(self, code: int):
        self.code, self.started = code, []

    def startProcess(self, name: str, wait: bool) -> None:  # noqa: N802 (supervisor's name)
        self.started.append(name)
        raise xmlrpc.client.Fault(self.code, f"{name}: a fault")


@pytest.mark.parametrize("code", [Faults.SPAWN_ERROR, Faults.ALREADY_STARTED])
def test_a_process_that_cannot_spawn_is_left_to_the_gate(code: int) -> None:
    """SPAWN_ERROR (a log that cannot be opened): wait_ready then reports the process failed
    and the change rolls back; the fault used to escape the transaction, leaving it half-done."""
    starter = _Starter(code)
    converge.start_process(SimpleNamespace(proxy=SimpleNamespace(supervisor=starter)), "svc3:svc3")
    assert starter.started == ["svc3:svc3"]


def test_other_faults_of_a_start_are_one_error_line() -> None:
    starter = _Starter(Faults.BAD_NAME)
    with pytest.raises(BundlerError, match=r"^supervisord refused: svc3:svc3: a fault$"):
        converge.start_process(SimpleNamespace(proxy=SimpleNamespace(supervisor=starter)),
                               "svc3:svc3")
