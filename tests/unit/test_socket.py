from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from bundler.errors import BundlerError
from bundler.server.supervisor import SOCKET_LIMIT, choose_socket


def test_short_roots_use_the_bundles_own_run_folder(tmp_path: Path) -> None:
    assert choose_socket(tmp_path, tmp_path / "run") == str(tmp_path / "run" / "supervisor.sock")


def test_deep_roots_fall_back_to_a_short_stable_per_bundle_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = tmp_path / "rt"
    runtime.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    deep = tmp_path / ("d" * 100)
    other = tmp_path / ("e" * 100)
    chosen = choose_socket(deep, deep / "run")
    assert len(os.fsencode(chosen)) <= SOCKET_LIMIT
    assert chosen.startswith(str(runtime) + "/bundler-")
    assert chosen == choose_socket(deep, deep / "run")
    assert chosen != choose_socket(other, other / "run")


@pytest.fixture
def short_tmp():
    folder = Path(tempfile.mkdtemp(dir="/tmp"))
    yield folder
    shutil.rmtree(folder)


def test_without_a_runtime_dir_the_fallback_is_private(short_tmp: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(short_tmp))
    monkeypatch.setattr(os, "geteuid", lambda: 4242)  # not root: /run is not a choice
    deep = short_tmp / ("d" * 120)
    private = short_tmp / "bundler-4242"
    private.mkdir(mode=0o700)
    with pytest.raises(BundlerError, match="no folder for a unix socket"):
        choose_socket(deep, deep / "run")  # someone else's folder is never used
    if os.getuid() != 0:
        pytest.skip("changing the owner of a folder needs root")
    os.chown(private, 4242, -1)
    chosen = Path(choose_socket(deep, deep / "run"))
    assert chosen.parent == private


def test_the_longest_accepted_path_leaves_room_for_supervisords_temporary_name(short_tmp: Path) -> None:
    """supervisord binds "<socket>.<pid>" first, then renames it to <socket>."""
    import socket

    run = short_tmp / ("r" * (SOCKET_LIMIT - len(str(short_tmp)) - len("/supervisor.sock") - 1))
    chosen = choose_socket(short_tmp, run)
    assert chosen == str(run / "supervisor.sock") and len(os.fsencode(chosen)) == SOCKET_LIMIT
    run.mkdir()
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(chosen + ".4194304")  # the longest pid Linux hands out
    assert choose_socket(short_tmp, Path(str(run) + "x")) != str(run) + "x/supervisor.sock"
