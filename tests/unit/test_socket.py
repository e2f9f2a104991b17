from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from bundler.server.supervisor import SOCKET_LIMIT, choose_socket, release_socket_folder


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


def _user(monkeypatch: pytest.MonkeyPatch, short_tmp: Path) -> int:
    """This user, as bundler sees it; root plays user 4242 (for root, /run would be the choice)."""
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(short_tmp))
    if os.getuid() == 0:
        monkeypatch.setattr(os, "geteuid", lambda: 4242)
    return os.geteuid()


def _owned(path: Path, uid: int) -> Path:
    if os.getuid() == 0:
        os.lchown(path, uid, -1)
    return path


def test_without_a_runtime_dir_the_fallback_is_private(short_tmp: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    uid = _user(monkeypatch, short_tmp)
    private = short_tmp / f"bundler-{uid}"
    if uid != os.getuid():  # root playing 4242: the folder 4242 would have made
        private.mkdir(mode=0o700)
        _owned(private, uid)
    deep = short_tmp / ("d" * 120)
    chosen = Path(choose_socket(deep, deep / "run"))
    assert chosen.parent == private and stat.S_IMODE(private.lstat().st_mode) == 0o700
    assert choose_socket(deep, deep / "run", make=False) == str(chosen)


@pytest.mark.parametrize("how", ["open to all", "a link", "a file", "another user's"])
def test_an_unsafe_shared_folder_is_never_used_a_private_one_is_made(
        short_tmp: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """/tmp/bundler-UID as another user may have made it first."""
    uid = _user(monkeypatch, short_tmp)
    shared = short_tmp / f"bundler-{uid}"
    if how == "open to all":
        shared.mkdir()
        _owned(shared, uid).chmod(0o777)
    elif how == "a link":
        (short_tmp / "elsewhere").mkdir(mode=0o700)
        _owned(short_tmp / "elsewhere", uid)
        shared.symlink_to(short_tmp / "elsewhere")
        _owned(shared, uid)
    elif how == "a file":
        shared.write_text("")
        _owned(shared, uid)
    else:
        shared.mkdir(mode=0o700)
        _owned(shared, uid + 1)
    deep = short_tmp / ("d" * 120)
    assert not Path(choose_socket(deep, deep / "run", make=False)).is_relative_to(shared)
    assert sorted(p.name for p in short_tmp.iterdir() if p.name.startswith("bundler-")) == \
        [shared.name]  # asking where the socket is makes no folder
    chosen = Path(choose_socket(deep, deep / "run"))
    folder = chosen.parent
    assert folder != shared and folder.parent == short_tmp and not folder.is_symlink()
    assert folder.name.startswith(f"bundler-{uid}-")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and folder.stat().st_uid == os.getuid()
    assert len(os.fsencode(chosen)) <= SOCKET_LIMIT
    release_socket_folder(str(chosen))  # bin/stop, once supervisord took its socket away
    assert not folder.exists() and (shared.exists() or shared.is_symlink())


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


def test_an_answer_with_control_characters_is_read_with_them_escaped() -> None:
    """supervisord puts what a process printed (colours: ESC) raw into its XML answer, which
    Python's parser refuses (ExpatError): such bytes are read escaped, the rest unchanged."""
    import io
    import xmlrpc.client

    from bundler.server.supervisor import _UnixTransport

    log = "\x1b[31mred\x1b[0m\tand\x00 \x07bell\nnext line é \x7f"
    answer = xmlrpc.client.dumps(([log, {"name": "web"}],), methodresponse=True).encode()
    with pytest.raises(Exception, match="not well-formed"):
        xmlrpc.client.loads(answer)
    (read,) = _UnixTransport("/nonexistent", 1.0).parse_response(io.BytesIO(answer))
    assert read == [log.replace("\x1b", "\\x1b").replace("\x00", "\\x00").replace("\x07", "\\x07"),
                    {"name": "web"}]


@pytest.mark.parametrize("text", ["", "/tmp/x.sock\ngarbage{{[", '{"files": []}', "[]",
                                  "relative.sock", "/tmp/\x1b.sock"])
def test_a_damaged_socket_record_is_no_socket_path(text: str) -> None:
    """recorded_socket then tries the default: status said a running bundle was not running."""
    from bundler.server.supervisor import SocketPath

    with pytest.raises(ValueError):
        SocketPath.parse(text)
    assert SocketPath.parse(" /run/b/supervisor.sock\n").path == "/run/b/supervisor.sock"
