"""Helpers for the integration tests: the CLI, a bundle under test, hidden source prefixes.

The project tree (and so the build's staging folder) is deleted before any test runs the bundle,
and `start` runs in a private mount namespace where the source interpreters' prefixes and the
test's own virtualenv are hidden under empty tmpfs mounts: a bundle that still leans on them fails.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.pythons import PY37, PY312

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "smartbox"
PROBE_SRC = Path(__file__).parent / "probe_src"
BROKEN_SRC = Path(__file__).parent / "broken_src"
BUNDLER = [sys.executable, "-m", "bundler"]

# Values supervisor's ini syntax carries when escaped, and values it cannot carry at all.
INLINE_ARGS = ["100%", "a b", "it's", "x,y", "", "%(program_name)s", 'say "hi"', "#x"]
INLINE_ENV = {"PCT": "100% sure %(program_name)s", "COMMA": "a,b=c", "SQ": "it's", "EMPTY": "",
              "SPACES": "  two  spaces "}
LAUNCH_ARGS = ["a ;b", "%(here)s", "tab\t#x"]
LAUNCH_ENV = {"HASH": "abc #def", "DQ": 'say "hi"', "NL": "l1\nl2", "EDGE": "'q'",
              "HERE": "%(here)s/x"}




def bundler(*args: str, cwd: Path | None = None, check: bool = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*BUNDLER, *args], cwd=cwd, capture_output=True, text=True, timeout=900,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"bundler {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def _hidden_prefixes() -> list[str]:
    """Folders a relocated bundle must not need: source interpreters, this test's venv, and
    the distribution's Python (its stdlib and packages; its prefix /usr is everyone's)."""
    candidates = {Path(sys.base_prefix), Path(sys.prefix)} | {p for p in (PY37, PY312) if p}
    system = {Path("/"), Path("/usr"), Path("/usr/local")}
    candidates |= {p for pattern in ("usr/lib/python3*", "usr/lib64/python3*", "usr/local/lib/python3*")
                   for p in Path("/").glob(pattern) if p.is_dir()}
    return sorted(str(p) for p in candidates if p not in system)


def _unshare_works() -> bool:
    try:
        return subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs none /mnt"],
                              capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


UNSHARE = _unshare_works()


def run_hidden(cmd: list[str], timeout: float = 180,
               masked: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """Run `cmd` with the source prefixes hidden (see the module docstring), and the files in
    `masked` (host libraries, say) replaced by an empty one."""
    if not UNSHARE:
        pytest.skip("proving relocation needs `unshare -m` and tmpfs mounts (root)")
    mounts = "".join(f"mount -t tmpfs none {shlex.quote(p)} || exit 97; "
                     for p in _hidden_prefixes())
    mounts += "".join(f"mount --bind /dev/null {shlex.quote(p)} || exit 97; " for p in masked)
    return subprocess.run(["unshare", "-m", "sh", "-c", mounts + 'exec "$@"', "sh", *cmd],
                          capture_output=True, text=True, timeout=timeout)


@dataclass
class Bundle:
    """An unpacked bundle under test."""

    root: Path
    started: list[Path] = field(default_factory=list)

    def start(self, *, expect_ok: bool = True) -> subprocess.CompletedProcess[str]:
        self.started.append(self.root)
        proc = run_hidden([str(self.root / "bin" / "start"), "--timeout", "90"])
        if expect_ok:
            assert proc.returncode == 0, f"bin/start failed:\n{proc.stdout}\n{proc.stderr}"
        return proc

    def cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """bin/bundler of the bundle, with the source prefixes hidden."""
        return run_hidden([str(self.root / "bin" / "bundler"), *args], timeout=timeout)

    def stop(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.root / "bin" / "stop")], capture_output=True, text=True,
                              timeout=120)

    def finish(self) -> None:
        """Stop it and kill whatever of it is left (a fixture's teardown)."""
        self.stop()
        for pid in self.processes():
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.root / "bin" / "supervisorctl"), *args],
                              capture_output=True, text=True, timeout=60)

    def states(self) -> dict[str, tuple[str, int]]:
        out = self.ctl("status").stdout
        result = {}
        for line in out.splitlines():
            parts = line.split()
            pid = int(parts[3].rstrip(",")) if len(parts) > 3 and parts[2] == "pid" else 0
            result[parts[0]] = (parts[1], pid)
        return result

    def report(self, program: str, timeout: float = 30) -> dict:
        """What a probe or example service recorded about itself (waits for a fresh one)."""
        path = self.root / "log" / f"{program}.json"
        deadline = time.monotonic() + timeout
        while not path.exists():
            assert time.monotonic() < deadline, f"{program} never wrote {path}"
            time.sleep(0.2)
        return json.loads(path.read_text())

    def processes(self) -> list[int]:
        marker = f"BUNDLE_ROOT={self.root}\0".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if marker in (entry / "environ").read_bytes():
                        found.append(int(entry.name))
                except OSError:
                    pass
        return found

    def move(self, new_root: Path) -> None:
        new_root.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(self.root), str(new_root))
        self.root = new_root
        for stale in (new_root / "log").glob("*.json"):
            stale.unlink()  # reports of the run before the move
