"""Which processes belong to a bundle: those that run as its user and carry its token (run/token,
which only that user can read). An environment variable anyone can set proves nothing."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from bundler.bundle.tree import Bundle
from bundler.errors import BundlerError
from bundler.server import lifecycle


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
