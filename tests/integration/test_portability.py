"""A bundle built here must run on a server that is not this machine: the host libraries its
interpreters load travel inside it, and `bundler verify` tells what would still be missing."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.integration.harness import Bundle, bundler, run_hidden

HOST_LIBS = ("libssl.so.3", "libcrypto.so.3", "libsqlite3.so.0", "libffi.so.8")
MAPS = "import ssl, sqlite3, ctypes; print(open('/proc/self/maps').read())"


def _host_copies() -> tuple[str, ...]:
    """This machine's own copies of HOST_LIBS, masked while the bundle runs."""
    found = []
    for folder in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64",
                   "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu"):
        found += [os.path.realpath(Path(folder, n)) for n in HOST_LIBS if Path(folder, n).exists()]
    return tuple(sorted(set(found)))


def test_vendored_ssl_and_sqlite_load_from_inside_the_bundle(unpacked: Bundle) -> None:
    masked = _host_copies()
    assert masked, "this machine has none of the libraries the test masks"
    for python in ("bin/python3", "envs/py37/bin/python3"):  # virtualenvs load these
        if not (unpacked.root / python).exists():
            continue
        proc = run_hidden([str(unpacked.root / python), "-c", MAPS], masked=masked)
        assert proc.returncode == 0, f"{python}: {proc.stderr}"
        loaded = {line.split(maxsplit=5)[-1] for line in proc.stdout.splitlines()
                  if any(n in line for n in ("libssl", "libcrypto", "libsqlite3", "libffi"))}
        assert {Path(p).name for p in loaded} >= {"libssl.so.3", "libsqlite3.so.0"}, loaded
        assert all(p.startswith(str(unpacked.root) + "/") for p in loaded), (python, loaded)


def test_verify_an_archive_reports_what_it_needs(archive: Path) -> None:
    proc = bundler("verify", str(archive))
    out = proc.stdout
    assert "integrity" in out and "files as built" in out
    assert "glibc     needs 2." in out
    assert "non-system libraries, all inside the bundle" in out
    assert "leaks     no file names a path of the build machine" in out
    assert out.rstrip().endswith("as built, and carries what it needs")


def test_verify_names_a_leaked_build_path_and_a_missing_library(unpacked: Bundle) -> None:
    origin = json.loads((unpacked.root / ".bundler" / "origin.json").read_text())
    leak = unpacked.root / "your_project_v1" / "settings.cfg"
    leak.write_text(f"data_dir = {origin['staging']}/data\n")
    (unpacked.root / "lib" / "libssl.so.3").unlink()

    proc = unpacked.cli("verify")
    assert proc.returncode == 1, proc.stdout
    assert f"leak      your_project_v1/settings.cfg contains {origin['staging']}" in proc.stdout
    assert "missing   libssl.so.3, needed by lib/" in proc.stdout
    assert "added    your_project_v1/settings.cfg" in proc.stdout
    assert "library(ies) missing" in proc.stderr and "name build paths" in proc.stderr
