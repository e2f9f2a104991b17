"""Which processes belong to a bundle: those that run as its user and carry its token (run/token,
which only that user can read). An environment variable anyone can set proves nothing."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from bundler.bundle.tree import Bundle
from bundler.errors import BundlerError
from bundler.server import identity, lifecycle
from bundler.server.supervisor import SocketPath, recorded_socket


@contextmanager
def _sleeper(env: dict[str, str], **options: Any) -> Iterator[int]:
    proc = subprocess.Popen(["sleep", "60"],
                            env={**os.environ, **env}, **options)
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_a_process_with_the_bundle_root_but_not_its_token_is_not_the_bundles(tiny: Bundle) -> None:
    token = lifecycle._token(tiny, os.geteuid())
    assert oct(tiny.run_token.stat().st_mode & 0o777) == "0o600"
    with _sleeper({lifecycle.ROOT_VAR: str(tiny.root)}) as forged, \
            _sleeper({lifecycle.TOKEN_VAR: token}) as ours:
        found = lifecycle.bundle_processes(tiny)
    assert ours in found and forged not in found


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a process as another user")
def test_another_users_process_is_never_the_bundles_even_with_its_token(tiny: Bundle) -> None:
    token = lifecycle._token(tiny, os.geteuid())
    with _sleeper({lifecycle.TOKEN_VAR: token}, user=65534) as other:
        assert other not in lifecycle.bundle_processes(tiny)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_token_says_permission_denied(tiny: Bundle) -> None:
    lifecycle._token(tiny, os.geteuid())
    tiny.run_token.chmod(0)
    with pytest.raises(BundlerError, match="permission denied"):
        lifecycle.bundle_processes(tiny)


def test_a_bundle_started_by_an_older_bundler_is_found_by_its_root_and_owner(tiny: Bundle) -> None:
    tiny.run_dir.mkdir(exist_ok=True)
    tiny.pidfile.write_text("1\n")
    with _sleeper({lifecycle.ROOT_VAR: str(tiny.root)}) as old:
        assert old in lifecycle.bundle_processes(tiny)


def test_no_run_folder_no_processes(tiny: Bundle, tmp_path: Path) -> None:
    assert lifecycle.bundle_processes(tiny) == []


def _copy(bundle: Bundle, to: Path) -> Bundle:
    """`cp -a` of the bundle, run/ and all."""
    subprocess.run(["cp", "-a", str(bundle.root), str(to)], check=True)
    return Bundle(to, bundle.layout)


def test_a_copy_of_a_started_bundle_shares_none_of_its_run(tiny: Bundle, tmp_path: Path) -> None:
    identity.claim(tiny)  # bin/start: run/ is this root's, then its token and socket
    token = lifecycle._token(tiny, os.geteuid())
    SocketPath("/tmp/original.sock").write(tiny.socket_record)
    tiny.pidfile.write_text(f"{os.getpid()}\n")
    with _sleeper({lifecycle.TOKEN_VAR: token}) as original:
        copy = _copy(tiny, tmp_path / "copy")
        assert copy.run_token.read_text() == tiny.run_token.read_text()  # as cp -a left it
        assert original in lifecycle.bundle_processes(tiny)
        assert lifecycle.bundle_processes(copy) == []  # its bin/stop kills none of them
        assert lifecycle.running_pid(copy) is None
        assert recorded_socket(tiny) == "/tmp/original.sock"
        assert recorded_socket(copy) == str(copy.run_dir / "supervisor.sock")
        assert identity.claim(copy)  # its bin/start: a run of its own
        assert not copy.run_token.exists() and not copy.socket_record.exists()
        assert lifecycle._token(copy, os.geteuid()) != token
        assert not identity.claim(copy) and identity.ours(copy)
        assert original in lifecycle.bundle_processes(tiny)  # the original's run is untouched
        assert tiny.run_token.read_text().strip() == token


def test_a_moved_bundle_keeps_its_run(tiny: Bundle, tmp_path: Path) -> None:
    identity.claim(tiny)
    token = lifecycle._token(tiny, os.geteuid())
    moved = Bundle(tmp_path / "moved", tiny.layout)
    tiny.root.rename(moved.root)
    assert identity.ours(moved)
    with _sleeper({lifecycle.TOKEN_VAR: token}) as left:
        assert left in lifecycle.bundle_processes(moved)  # bin/stop still finds what it left


@pytest.mark.parametrize("record", ["", "garbage\n", "1 2\n"])
def test_a_damaged_run_root_trusts_nothing_of_run(tiny: Bundle, record: str) -> None:
    token = lifecycle._token(tiny, os.geteuid())
    tiny.run_root.write_text(record)
    with _sleeper({lifecycle.TOKEN_VAR: token}) as pid:
        assert pid not in lifecycle.bundle_processes(tiny)
    assert identity.claim(tiny) and identity.ours(tiny)


def test_without_a_run_root_the_pid_files_supervisord_tells(tiny: Bundle, tmp_path: Path) -> None:
    """run/ of a bundler that kept no run/root: the supervisord of its pid file reads a config,
    which is this bundle's or another's."""
    token = lifecycle._token(tiny, os.geteuid())
    copy = _copy(tiny, tmp_path / "copy")
    fake = ["sh", "-c", "sleep 60; :", "supervisor.supervisord", "-c", str(tiny.conf)]
    with _sleeper({lifecycle.TOKEN_VAR: token}) as ours, \
            subprocess.Popen(fake) as supervisord:
        try:
            deadline = time.monotonic() + 10
            while identity.config_of(supervisord.pid) is None:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            for bundle in (tiny, copy):
                bundle.pidfile.write_text(f"{supervisord.pid}\n")
            assert identity.pid_serves(supervisord.pid, tiny)
            assert identity.pid_serves(supervisord.pid, copy) is False
            assert identity.ours(tiny) and not identity.ours(copy)
            assert ours in lifecycle.bundle_processes(tiny)
            assert lifecycle.bundle_processes(copy) == []
        finally:
            supervisord.kill()
