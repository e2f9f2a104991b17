"""CPythons that pyenv installed on this machine (tests that need one skip when it is missing),
and the distribution's own Python."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

# The distribution's Python and the folders of it no copy may name (its stdlib is added by
# those who probe it). site.py is frozen into it and its docstring describes Debian's layout.
SYSTEM_PYTHON = Path("/usr/bin/python3")
SYSTEM_FOLDERS = ("/usr/local/lib/python3", "/usr/lib/python3/dist-packages")


def naming(root: Path, needles: tuple[str, ...], skip: tuple[str, ...] = ()) -> list[str]:
    """The text files under `root` (but folders named in `skip`, and site.py) that name one
    of `needles`, as `path: needle`."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in skip]
        for name in files:
            path = Path(folder, name)
            if path.is_symlink() or path.suffix == ".pyc" or name == "site.py":
                continue
            data = path.read_bytes()
            if b"\0" not in data:
                found += [f"{path.relative_to(root)}: {n}" for n in needles if n.encode() in data]
    return found


def pyenv_prefix(version: str) -> Path | None:
    try:
        out = subprocess.run(["pyenv", "prefix", version], capture_output=True, text=True,
                             check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return Path(out) if out and Path(out, "bin").is_dir() else None


PY37 = pyenv_prefix("3.7.16")
PY312 = pyenv_prefix("3.12.1")
