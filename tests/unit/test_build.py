from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bundler.build.pipeline import STAGING_PREFIX, _publish, _remove_abandoned_staging
from bundler.errors import BundlerError


def test_staging_of_killed_builds_is_removed_and_running_ones_are_kept(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    abandoned = tmp_path / f"{STAGING_PREFIX}{dead}-abc"
    running = tmp_path / f"{STAGING_PREFIX}{os.getpid()}-def"
    for folder in (abandoned, running):
        (folder / "box" / "bin").mkdir(parents=True)
    (tmp_path / "box-1.tar.gz").write_text("an artifact")
    _remove_abandoned_staging(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["box-1.tar.gz", running.name])


def test_an_artifact_replaces_no_other_content_of_its_name(tmp_path: Path) -> None:
    staging, dist = tmp_path / "staging", tmp_path / "dist"
    staging.mkdir()
    dist.mkdir()
    logged: list[str] = []

    def made(data: bytes) -> Path:
        path = staging / "box-1.tar.gz"
        path.write_bytes(data)
        return path

    final = dist / "box-1.tar.gz"
    assert _publish(made(b"first"), final, "1", False, logged.append) == final
    assert final.read_bytes() == b"first"
    assert _publish(made(b"first"), final, "1", False, logged.append) == final  # the same again
    assert logged == [f"{final} is there already, byte for byte this build: kept"]
    with pytest.raises(BundlerError) as info:
        _publish(made(b"second"), final, "1", False, logged.append)
    said = str(info.value)
    assert said.startswith(f"{final} exists already with other content (sha256 ")
    assert "`bundler version --bump major`" in said and "`bundler build --overwrite`" in said
    assert final.read_bytes() == b"first"
    _publish(made(b"second"), final, "1", True, logged.append)
    assert final.read_bytes() == b"second" and not (staging / "box-1.tar.gz").exists()
