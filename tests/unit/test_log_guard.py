"""supervisord must outlive a log it cannot rotate: supervisor's own RotatingFileHandler, with and
without bundler's guard (installed when supervisord loads bundler.supervisor_rpc)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from supervisor import loggers

from bundler import supervisor_rpc


@pytest.fixture
def unguarded() -> Iterator[None]:
    original = loggers.RotatingFileHandler.doRollover
    yield
    loggers.RotatingFileHandler.doRollover = original
    loggers.RotatingFileHandler._bundler_guarded = False


def _blocked_handler(tmp_path: Path) -> loggers.RotatingFileHandler:
    """A handler whose rotation fails: its first backup's name is taken by a folder."""
    log = tmp_path / "web.log"
    (tmp_path / "web.log.1").mkdir()
    (tmp_path / "web.log.1" / "x").write_text("in the way")
    return loggers.RotatingFileHandler(str(log), "ab", maxBytes=100, backupCount=2)


def _record(n: int) -> loggers.LogRecord:
    return loggers.LogRecord(loggers.LevelsByName.INFO, b"x" * 60 + str(n).encode() + b"\n")


def test_supervisor_alone_lets_the_error_out(tmp_path: Path, unguarded: None) -> None:
    handler = _blocked_handler(tmp_path)
    with pytest.raises(OSError):
        for n in range(5):
            handler.emit(_record(n))


def test_the_guard_keeps_writing_and_records_the_fault_once(tmp_path: Path, unguarded: None,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    faults = tmp_path / "log-faults.jsonl"
    supervisor_rpc._guard_log_rotation(faults)
    handler = _blocked_handler(tmp_path)
    for n in range(50):
        handler.emit(_record(n))
    assert b"x" * 60 + b"49" in (tmp_path / "web.log").read_bytes()  # still written
    lines = [json.loads(line) for line in faults.read_text().splitlines()]
    assert [line["state"] for line in lines] == ["failing"]
    assert lines[0]["file"] == str(tmp_path / "web.log") and "Is a directory" in lines[0]["what"]
    # the way clears: after RETRY seconds the next write rotates again and says so
    for folder in tmp_path.glob("web.log.*"):
        if folder.is_dir():
            shutil.rmtree(folder)
    monkeypatch.setattr(supervisor_rpc, "RETRY", 0.0)
    handler._bundler_pause = 0.0
    handler.emit(_record(99))
    assert (tmp_path / "web.log.1").is_file()
    assert json.loads(faults.read_text().splitlines()[-1])["state"] == "recovered"
