"""A bundle deployed before bundler's package layout changed takes a patch built by today's bundler.

Its configs name bundler.launch and bundler.supervisor_rpc, which stay at those paths, and the
monitor's old name, bundler.monitor, which is gone (as is bundler.metrics, which the old monitor
imports to check memory): the first live change renders the monitor's config anew and
bundler.server.monitor takes over. Its old bin/bundler applies the patch; everything afterwards
runs on the new code: live changes, a restart, a move.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import EXAMPLE, REPO, Bundle, bundler

FLAT_LAYOUT = "a8437cc7129edff48cdf228e936c38a0179636c0"  # the last bundler with one flat package

pytestmark = pytest.mark.integration
# The example's services and code, on the base alone (a virtualenv would only slow the builds).
SPEC = """
[bundle]
name = "smartbox"
version = "2026.11.1"
project = "your_project"

[base]  # the flat layout's apply needs the table (fixed since)
python = "current"

[code.v1]
path = "sam_v1"
[code.v3]
path = "sam_v3"

[services.svc1]
command = "python -m service.sam.run"
code = "v1"
[services.svc2]
command = "python -m service.sam.run --interval 2"
code = "v1"
[services.svc3]
command = "python -m service.sam.run"
code = "v3"
[services.web]
command = "python -m service.sam.run"
code = "v1"
max_rss = "500MB"

[groups.sam]
programs = ["svc1", "svc2"]

[alerts]
command = "true"
"""


@pytest.fixture(scope="module")
def old_bundler(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bundler as it was at FLAT_LAYOUT, unpacked from this repository's history."""
    folder = tmp_path_factory.mktemp("old-bundler")
    archive = subprocess.run(["git", "-C", str(REPO), "archive", FLAT_LAYOUT, "bundler"],
                             capture_output=True)
    if archive.returncode != 0:
        pytest.skip(f"commit {FLAT_LAYOUT[:7]} is not in this clone (shallow?)")
    subprocess.run(["tar", "x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


@pytest.fixture
def deployed(old_bundler: Path, wheelhouse: Path, tmp_path: Path) -> Iterator[tuple[Bundle, Path]]:
    """The example with a memory-watched service, built by the old bundler and started from
    elsewhere by its own bin/start; and a patch for it (code v4) built by today's bundler."""
    project = tmp_path / "project"
    project.mkdir()
    for version in ("v1", "v3"):
        shutil.copytree(EXAMPLE / f"sam_{version}", project / f"sam_{version}")
    (project / "bundle.toml").write_text(SPEC)
    offline = ("--no-index", "--find-links", str(wheelhouse))
    old = subprocess.run([sys.executable, "-m", "bundler", "-C", str(project), "build",
                          "--format", "tar.zst", "--output", str(tmp_path / "dist"), *offline],
                         cwd=old_bundler, env={**os.environ, "PYTHONPATH": str(old_bundler)},
                         capture_output=True, text=True, timeout=900)
    assert old.returncode == 0, old.stderr
    archive = Path(old.stdout.strip())
    shutil.copytree(project / "sam_v3", project / "sam_v4")
    (project / "sam_v4/service/sam/__init__.py").write_text('VERSION = "v4"\n')
    bundler("-C", str(project), "add-code", "v4", "--path", "sam_v4")
    patch = Path(bundler("-C", str(project), "build", "--output", str(tmp_path / "patches"),
                         *offline, "--patch-from", str(archive)).stdout.strip())
    shutil.rmtree(project)
    server = tmp_path / "srv"
    server.mkdir()
    subprocess.run(["tar", "--zstd", "-xf", str(archive), "-C", str(server)], check=True)
    bundle = Bundle(server / "smartbox")
    assert next(bundle.root.glob("lib/python3*/site-packages/bundler/cli.py")).is_file()  # flat
    bundle.start()
    yield bundle, patch
    bundle.finish()


def _wait_for(path: Path, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text():
        assert time.monotonic() < deadline, f"{text!r} never appeared in {path}:\n{path.read_text()}"
        time.sleep(0.3)


def test_a_patch_from_today_updates_a_bundle_of_the_flat_layout(deployed: tuple[Bundle, Path],
                                                               tmp_path: Path) -> None:
    bundle, patch = deployed
    old_monitor = bundle.states()["_monitor"][1]
    applied = bundle.cli("apply", str(patch))  # the bundle's own, old bin/bundler
    assert applied.returncode == 0, applied.stderr
    site = next(bundle.root.glob("lib/python3*/site-packages/bundler"))
    assert (site / "cli" / "bundle.py").is_file() and not (site / "cli.py").exists()

    # the first live change renders the monitor's config anew: today's monitor watches memory
    added = bundle.cli("add-service", "tiny", "--code", "v4", "--command",
                       "python -m service.sam.run", "--set", "max_rss=1MB", "--set", "startsecs=1")
    assert added.returncode == 0, added.stderr
    monitor_ini = (bundle.root / "etc" / "conf.d" / "_monitor.ini").read_text()
    assert ' -I -m bundler.server.monitor "%(here)s/_monitor.json"' in monitor_ini
    assert bundle.states()["_monitor"][1] != old_monitor
    _wait_for(bundle.root / "log" / "_monitor.log", "tiny: restarted: resident memory")
    # (until then the old monitor's memory checks failed: bundler.metrics, which it imports, is gone)
    assert "Error" not in (bundle.root / "log" / "_monitor.log").read_text().rsplit(" watching ", 1)[1]

    # a live switch through the running (old) supervisord's bundler.supervisor_rpc
    switched = bundle.cli("switch", "svc3", "v4")
    assert switched.returncode == 0, switched.stderr
    _wait_for(bundle.root / "log" / "svc3.log", "running code v4")

    # stopped, moved and started again by the new code: the monitor runs `python -m bundler.server.monitor`
    assert bundle.stop().returncode == 0
    bundle.move(tmp_path / "moved again" / "smartbox")
    bundle.start()
    states = bundle.states()
    assert states["_monitor"][0] == "RUNNING" and states["_monitor"][1] != old_monitor
    assert {states[s][0] for s in ("sam:svc1", "sam:svc2", "svc3", "web")} == {"RUNNING"}
    _wait_for(bundle.root / "log" / "_monitor.log", "watching 2 service(s)")
    verified = bundle.cli("verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
