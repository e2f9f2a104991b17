"""CPythons that pyenv installed on this machine; tests that need one skip when it is missing."""

from __future__ import annotations

import subprocess
from pathlib import Path


def pyenv_prefix(version: str) -> Path | None:
    try:
        out = subprocess.run(["pyenv", "prefix", version], capture_output=True, text=True,
                             check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return Path(out) if out and Path(out, "bin").is_dir() else None


PY37 = pyenv_prefix("3.7.16")
PY312 = pyenv_prefix("3.12.1")
