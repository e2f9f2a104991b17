"""A bundle built by this bundler takes a patch built by the next one.

Its own bin/bundler (this version) applies the patch, which replaces bundler itself in the
bundle; its monitor keeps running through it; everything afterwards runs on the new code: live
changes, a restart, a move. (Bundles of earlier formats are not upgraded: no release wrote them.)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import bundler as this
from tests.integration.harness import EXAMPLE, REPO, Bundle, bundler

NEXT = f"{this.__version__}.post1"

pytestmark = pytest.mark.integration
# The example's services and code, on the base alone (a virtualenv would only slow the builds).
SPEC = """
[bundle]
name = "smartbox"
version = "2026.11.1"
project = "your_project"

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
def next_bundler(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This bundler as its next release: the package copied, with the next version."""
    folder = tmp_path_factory.mktemp("next-bundler")
    shutil.copytree(REPO / "bundler", folder / "bundler",
                    ignore=shutil.ignore_patterns("__pycache__"))
    init = folder / "bundler" / "__init__.py"
    text, count = re.subn(r'__version__ = "[^"]+"', f'__version__ = "{NEXT}"', init.read_text())
    assert count == 1
    init.write_text(text)
    return folder


@pytest.fixture
def deployed(next_bundler: Path, wheelhouse: Path, tmp_path: Path) -> Iterator[tuple[Bundle, Path]]:
    """The example with a memory-watched service, built by this bundler and started from
    elsewhere by its own bin/start; and a patch for it (code v4) built by the next bundler."""
    project = tmp_path / "project"
    project.mkdir()
    for version in ("v1", "v3"):
        shutil.copytree(EXAMPLE / f"sam_{version}", project / f"sam_{version}")
    (project / "bundle.toml").write_text(SPEC)
    offline = ("--no-index", "--find-links", str(wheelhouse))
    archive = Path(bundler("-C", str(project), "build", "--format", "tar.zst", "--output",
                           str(tmp_path / "dist"), *offline).stdout.strip())
    shutil.copytree(project / "sam_v3", project / "sam_v4")
    (project / "sam_v4/service/sam/__init__.py").write_text('VERSION = "v4"\n')
    bundler("-C", str(project), "add-code", "v4", "--path", "sam_v4")
    bundler("-C", str(project), "version", "--bump", "patch")  # a patch moves the version on
    built = subprocess.run([sys.executable, "-m", "bundler", "-C", str(project), "build",
                            "--output", str(tmp_path / "patches"), *offline,
                            "--patch-from", str(archive)],
                           cwd=next_bundler, env={**os.environ, "PYTHONPATH": str(next_bundler)},
                           capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, built.stderr
    patch = Path(built.stdout.strip())
    shutil.rmtree(project)
    server = tmp_path / "srv"
    server.mkdir()
    subprocess.run(["tar", "--zstd", "-xf", str(archive), "-C", str(server)], check=True)
    bundle = Bundle(server / "smartbox")
    bundle.start()
    yield bundle, patch
    bundle.finish()


def _wait_for(path: Path, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text():
        assert time.monotonic() < deadline, f"{text!r} never appeared in {path}:\n{path.read_text()}"
        time.sleep(0.3)


def test_a_patch_of_the_next_bundler_updates_a_bundle_of_this_one(deployed: tuple[Bundle, Path],
                                                                  tmp_path: Path) -> None:
    bundle, patch = deployed
    assert bundle.cli("--version").stdout.split()[-1] == this.__version__
    old_monitor = bundle.states()["_monitor"][1]
    services = {k: v for k, v in bundle.states().items() if k != "_monitor"}
    applied = bundle.cli("apply", str(patch))  # the bundle's own bin/bundler, of this version
    assert applied.returncode == 0, applied.stderr
    assert "  restarted _monitor: files of the base changed (bundler's monitor runs on it)\n" \
        in applied.stdout
    new_monitor = bundle.states()["_monitor"][1]  # it runs the new bundler, the services stay
    assert new_monitor != old_monitor
    assert {k: v for k, v in bundle.states().items() if k != "_monitor"} == services
    assert bundle.cli("--version").stdout.split()[-1] == NEXT
    site = next(bundle.root.glob("lib/python3*/site-packages"))
    assert [p.name for p in site.glob("offline_bundler-*.dist-info")] == \
        [f"offline_bundler-{NEXT}.dist-info"]

    # the monitor keeps watching memory through the patch, with the config the new code renders
    added = bundle.cli("add-service", "tiny", "--code", "v4", "--command",
                       "python -m service.sam.run", "--set", "max_rss=1MB", "--set", "startsecs=1")
    assert added.returncode == 0, added.stderr
    _wait_for(bundle.root / "log" / "_monitor.log", "tiny: restarted: resident memory")
    assert bundle.states()["_monitor"][1] == new_monitor
    assert "Error" not in (bundle.root / "log" / "_monitor.log").read_text()

    # a live switch through the running supervisord's bundler.supervisor_rpc, of this version
    switched = bundle.cli("switch", "svc3", "v4")
    assert switched.returncode == 0, switched.stderr
    _wait_for(bundle.root / "log" / "svc3.log", "running code v4")

    # stopped, moved and started again by the new code
    assert bundle.stop().returncode == 0
    bundle.move(tmp_path / "moved again" / "smartbox")
    bundle.start()
    states = bundle.states()
    assert states["_monitor"][0] == "RUNNING" and states["_monitor"][1] != new_monitor
    assert {states[s][0] for s in ("sam:svc1", "sam:svc2", "svc3", "web")} == {"RUNNING"}
    _wait_for(bundle.root / "log" / "_monitor.log", "watching 2 service(s)")
    verified = bundle.cli("verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
