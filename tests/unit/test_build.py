from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bundler.build.pipeline import STAGING_PREFIX, _remove_abandoned_staging


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
