from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bundler.bundle.layout import load_layout
from bundler.bundle.tree import Bundle
from bundler.errors import BundlerError
from bundler.server.lifecycle import _launch, start, supervisord_env


@pytest.mark.parametrize("name", ["100%", "a:b", 'say"', "back\\slash"])
def test_start_refuses_paths_supervisor_cannot_carry(tmp_path: Path, name: str) -> None:
    bundle = Bundle(root=tmp_path / name / "box", layout=load_layout())
    with pytest.raises(BundlerError, match="move the bundle to another path"):
        start(bundle)


def test_supervisord_gets_a_clean_known_environment(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    for leak in ("PYTHONPATH", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "PYTHONHOME"):
        monkeypatch.setenv(leak, "/somewhere")
    monkeypatch.setenv("LANG", "C.UTF-8")
    env = supervisord_env(Bundle(root=tmp_path, layout=load_layout()), "/run/x.sock")
    assert not {"PYTHONPATH", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "PYTHONHOME"} & set(env)
    assert env["LANG"] == "C.UTF-8"
    assert env["BUNDLE_ROOT"] == str(tmp_path) and env["BUNDLER_SOCKET"] == "/run/x.sock"
    assert env["PATH"].startswith(f"{tmp_path}/bin:")


def test_a_supervisord_that_does_not_start_is_one_error_line(tmp_path: Path) -> None:
    """Its message, without the "For help, use ..." line supervisord prints after it."""
    said = ("print('Error: Another program is already listening on a port.  Shut it down.'); "
            "print('For help, use /x/supervisord.py -h'); raise SystemExit(2)")
    with pytest.raises(BundlerError) as caught:
        _launch(Bundle(tmp_path, load_layout()), [sys.executable, "-c", said], {})
    assert str(caught.value) == ("supervisord did not start (exit 2): Another program is already "
                                 "listening on a port.  Shut it down.")
