"""Day-2 releases on one running bundle, as seed 002's FAQ asks for them, each made only by
editing the project's bundle.toml, `bundler build --patch-from ...` and `bin/bundler apply`:

(a) service 3 needs code v3: upload v3 only, point service 3 at it;
(b) service 1 needs another interpreter: create it (a copied CPython and a virtualenv on it),
    point service 1 at it;
(c) a new service 11 on the base with code v4.

An operator changes a service on the server between (a) and (b); the releases keep that change.
(b) is built against what the server says it runs (`bin/bundler state`), (c) against the
original archive, two releases old. Every process the release does not change keeps its pid.
The same bundle then proves the health gate and the rolling switch of a numprocs service.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from bundler.bundle.archive import read_tar
from tests.integration.conftest import _free_port
from tests.integration.harness import BUNDLER, EXAMPLE, Bundle, bundler
from tests.pythons import PY312

pytestmark = pytest.mark.integration

WEB_SRC = Path(__file__).parent / "web_src"
EPOCH = {"SOURCE_DATE_EPOCH": "1764000000"}


def _spec(port: int, api: int) -> str:
    return f"""spec_version = 1

[bundle]
name = "faq"
version = "1"
project = "app"
format = "tar.zst"
site_config = "site"

[base]
python = "current"

[envs.pyocr]
virtualenv = "base"

[code.v1]
path = "sam_v1"
[code.v2]
path = "sam_v2"
[code.web1]
path = "web1"
[code.web2]
path = "web2"
[code.websick]
path = "websick"

[services.svc1]
command = "python -m service.sam.run"
code = "v1"
startsecs = 1

[services.svc2]
command = "python -m service.sam.run"
code = "v2"
startsecs = 1

[services.svc3]
command = "python -m service.sam.run"
python = "envs/pyocr"
code = "v2"
startsecs = 1

[services.web]
command = "python web.py {port}"
code = "web1"
numprocs = 2
startsecs = 1

[services.api]
command = "python web.py {api}"
code = "web1"
startsecs = 1
health = {{ http = "http://127.0.0.1:{api}/health", every = 1, timeout = 1, failures = 3 }}

[groups.sam]
programs = ["svc1", "svc2"]
"""


@dataclass
class Project:
    folder: Path
    away: Path      # where the project waits while the bundle runs: no bundle may lean on it
    wheels: Path
    original: Path  # the first full archive

    @contextmanager
    def present(self) -> Iterator[Path]:
        shutil.move(str(self.away), str(self.folder))
        try:
            yield self.folder
        finally:
            shutil.move(str(self.folder), str(self.away))

    def edit(self, folder: Path, version: str, *edits: tuple[str, ...]) -> None:
        """Make release `version` of the project in `folder` through the CLI."""
        spec = folder / "bundle.toml"
        spec.write_text(re.sub(r'(?m)^version = ".*"$', f'version = "{version}"',
                               spec.read_text(), count=1))
        for args in edits:
            bundler("-C", str(folder), *args)

    def build(self, folder: Path, patch_from: Path) -> subprocess.Popen[str]:
        """Start building the project in `folder` as a patch against `patch_from`."""
        return _build(folder, folder / "patches", "--patch-from", str(patch_from),
                      wheels=self.wheels)

    def keep(self, build: subprocess.Popen[str]) -> Path:
        """The patch a build made, moved beside the project (which may go)."""
        patch = Path(_finished(build))
        return Path(shutil.move(str(patch), str(self.away.parent / patch.name)))


def _build(folder: Path, output: Path, *args: str, wheels: Path) -> subprocess.Popen[str]:
    """`bundler build`, started: two builds share the machine's cores."""
    return subprocess.Popen([*BUNDLER, "-C", str(folder), "build", "--output", str(output),
                             "--no-index", "--find-links", str(wheels), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **EPOCH})


def _finished(build: subprocess.Popen[str]) -> str:
    out, err = build.communicate(timeout=900)
    assert build.returncode == 0, f"{build.args} failed:\n{out}\n{err}"
    return out.strip()


@dataclass
class Faq:
    project: Project
    bundle: Bundle
    rebuilt: Path  # the same project built a second time, as a folder
    port: int  # web's, two processes
    api: int   # api's, one process under a health probe


def _code(folder: Path, name: str, source: Path, version: str) -> None:
    shutil.copytree(source, folder / name)
    if (folder / name / "VERSION").exists():
        (folder / name / "VERSION").write_text(version + "\n")
    else:
        (folder / name / "service" / "sam" / "__init__.py").write_text(f'VERSION = "{version}"\n')


@pytest.fixture(scope="module")
def faq(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Iterator[Faq]:
    if PY312 is None:
        pytest.skip("(b) copies CPython 3.12.1 (pyenv) into the bundle")
    work = tmp_path_factory.mktemp("faq")
    folder = work / "project"
    folder.mkdir()
    for version in ("v1", "v2"):
        shutil.copytree(EXAMPLE / f"sam_{version}", folder / f"sam_{version}")
    for name, version in (("web1", "1"), ("web2", "2"), ("websick", "sick")):
        _code(folder, name, WEB_SRC, version)
    (folder / "site").mkdir()
    (folder / "site" / "settings.toml").write_text("mode = 'default'\n")
    port, api = _free_port(), _free_port()
    (folder / "bundle.toml").write_text(_spec(port, api))
    twin = work / "twin"  # the same project elsewhere, built a second time alongside
    shutil.copytree(folder, twin)
    builds = [_build(folder, work, wheels=wheelhouse),
              _build(twin, work / "again", "--format", "dir", wheels=wheelhouse)]
    for build in builds:
        _finished(build)
    shutil.rmtree(twin)
    away = work / "project.away"
    shutil.move(str(folder), str(away))
    project = Project(folder, away, wheelhouse, work / "faq-1.tar.zst")
    unpack = tmp_path_factory.mktemp("faq server") / "opt"
    unpack.mkdir()
    subprocess.run(["tar", "--zstd", "-xf", str(project.original), "-C", str(unpack)], check=True)
    bundle = Bundle(unpack / "faq")
    bundle.start()
    yield Faq(project, bundle, work / "again" / "faq-1", port, api)
    bundle.finish()


def _pids(bundle: Bundle) -> dict[str, int]:
    return {name: pid for name, (_, pid) in bundle.states().items()}


def _runs(bundle: Bundle, name: str, code: str, python: str) -> dict:
    """What the running process `name` says about itself (its code and interpreter), from the
    report it wrote when it started."""
    pid = _pids(bundle)[name]
    path = bundle.root / "log" / f"{name.split(':')[-1]}.json"
    deadline = time.monotonic() + 30
    while not path.exists() or json.loads(path.read_text())["pid"] != pid:
        assert time.monotonic() < deadline, f"{name} (pid {pid}) wrote no report"
        time.sleep(0.2)
    report = json.loads(path.read_text())
    assert report["code"] == code, report
    assert report["executable"].startswith(f"{bundle.root}/{python}"), report
    return report


def _apply(bundle: Bundle, patch: Path) -> subprocess.CompletedProcess[str]:
    proc = bundle.cli("apply", str(patch))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_the_seed_faq_through_releases_only(faq: Faq) -> None:
    bundle, project = faq.bundle, faq.project
    before = _pids(bundle)

    # (a) service 3 runs code v3
    with project.present() as folder:
        _code(folder, "sam_v3", folder / "sam_v2", "v3")
        project.edit(folder, "2", ("add-code", "v3", "--path", "sam_v3"), ("switch", "svc3", "v3"))
        patch_a = project.keep(project.build(folder, project.original))
    with read_tar(patch_a) as tar:  # the new code, the site defaults and the metadata
        shipped = {m.name.split("/")[2] for m in tar if m.name.startswith("faq-2.patch/files/")}
    assert shipped == {"app_v3"}
    proc = _apply(bundle, patch_a)
    assert "  svc3: code: v2 -> v3\n" in proc.stdout
    _runs(bundle, "svc3", "v3", "envs/pyocr/")
    after_a = _pids(bundle)
    assert after_a["svc3"] != before["svc3"]
    assert {k: v for k, v in after_a.items() if k != "svc3"} == \
        {k: v for k, v in before.items() if k != "svc3"}

    # an operator moves service 2 to v1 on the server, and sets this site's mode
    switched = bundle.cli("switch", "svc2", "v1")
    assert switched.returncode == 0, switched.stderr
    after_operator = _pids(bundle)
    settings = bundle.root / "etc" / "app" / "settings.toml"
    assert settings.read_text() == "mode = 'default'\n"
    settings.write_text("mode = 'this site'\n")

    # (b) service 1 on a new interpreter: CPython 3.12 and a virtualenv on it, built against
    # what the server says it runs
    state = bundle.cli("state")
    assert state.returncode == 0, state.stderr
    state_file = project.away.parent / "server-state.json"
    state_file.write_text(state.stdout)
    assert json.loads(state.stdout)["bundle"] == "faq"
    # ... and (c) a new service 11 on the base with code v4, from the project as (b) leaves it,
    # built against the original archive; both built at once
    with project.present() as folder:
        project.edit(folder, "3", ("add-env", "py312", "--python", str(PY312)),
                     ("add-env", "pytest", "--virtualenv", "py312", "-p", "tomlkit"),
                     ("switch", "svc1", "--python", "pytest"))
        later = folder.parent / "project-c"
        shutil.copytree(folder, later)
        _code(later, "sam_v4", later / "sam_v2", "v4")
        (later / "site" / "settings.toml").write_text("mode = 'v4'\n")
        (later / "site" / "v4.toml").write_text("new = true\n")
        project.edit(later, "4", ("add-code", "v4", "--path", "sam_v4"),
                     ("add-service", "svc11", "--code", "v4", "--command",
                      "python -m service.sam.run", "--set", "startsecs=1"))
        builds = [project.build(folder, state_file), project.build(later, project.original)]
        patch_b, patch_c = (project.keep(build) for build in builds)
        shutil.move(str(later), str(project.away.parent / "release-4"))  # the next releases'
    proc = _apply(bundle, patch_b)
    assert "  svc1: python: base -> envs/pytest\n" in proc.stdout
    assert "service svc2: keeps this server's change" in proc.stdout
    report = _runs(bundle, "sam:svc1", "v1", "envs/pytest/")
    assert report["version"].startswith("3.12.1")
    assert (bundle.root / "envs/pytest/bin/python").is_symlink()
    after_b = _pids(bundle)
    assert {k: v for k, v in after_b.items() if k != "sam:svc1"} == \
        {k: v for k, v in after_operator.items() if k != "sam:svc1"}
    _runs(bundle, "sam:svc2", "v1", "bin/")

    # (c), two releases after the archive it was built against
    proc = _apply(bundle, patch_c)
    assert "  svc11: added\n" in proc.stdout
    assert "etc/app/settings.toml: changed here, kept" in proc.stdout
    assert settings.read_text() == "mode = 'this site'\n"
    assert settings.with_name("settings.toml.new").read_text() == "mode = 'v4'\n"
    assert settings.with_name("v4.toml").read_text() == "new = true\n"
    _runs(bundle, "svc11", "v4", "bin/")
    after_c = _pids(bundle)
    assert {k: v for k, v in after_c.items() if k != "svc11"} == after_b
    history = bundle.cli("history", "svc1").stdout
    assert "python: base -> envs/pytest" in history
    verify = bundle.cli("verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # the manifest says what runs: the operator's change and every release's
    manifest = (bundle.root / "bundle.toml").read_text()
    assert 'code = "v1"' in manifest.split("[services.svc2]")[1].split("[")[0]


def test_a_release_that_edits_code_in_use_restarts_its_services_and_releases_move_forward(
        faq: Faq) -> None:
    """Release 5 changes the files of code web1, which web (two processes) and api run, and
    nothing in their definitions; a second build also called 5 changes them otherwise."""
    bundle, project = faq.bundle, faq.project
    release_4 = project.away.parent / "release-4"
    if not release_4.is_dir():
        pytest.skip("needs the releases of test_the_seed_faq_through_releases_only")
    state = project.away.parent / "server-state-4.json"
    state.write_text(bundle.cli("state").stdout)
    folders = [project.away.parent / "release-5", project.away.parent / "release-5b"]
    for folder, answer in zip(folders, ("5", "5b")):
        shutil.copytree(release_4, folder)
        project.edit(folder, "5")
        (folder / "web1" / "VERSION").write_text(answer + "\n")
    builds = [project.build(folder, state) for folder in folders]
    patch_5, patch_5b = (Path(shutil.move(_finished(build), folder.with_suffix(".patch.tar.zst")))
                         for build, folder in zip(builds, folders))
    for folder in folders:
        shutil.rmtree(folder)
    before = _pids(bundle)
    dry = bundle.cli("apply", "--dry-run", str(patch_5))
    assert dry.returncode == 0, dry.stderr
    assert "  restart web: files of code web1 changed\n" in dry.stdout
    assert "  restart api: files of code web1 changed\n" in dry.stdout
    doc = json.loads(bundle.cli("apply", "--dry-run", "--json", str(patch_5)).stdout)
    assert {r["service"] for r in doc["restarts"]} == {"web", "api"}

    # installed with --files-only: no restart, and status says who runs stale files
    files_only = bundle.cli("apply", "--files-only", str(patch_5))
    assert files_only.returncode == 0, files_only.stderr
    assert _pids(bundle) == before and _get(faq.api, "/").split()[0] == "1"
    status = bundle.cli("status")
    assert "* api: files of code web1 changed since it started" in status.stdout, status.stdout
    rows = {p["name"]: p for p in json.loads(bundle.cli("status", "--json").stdout)["processes"]}
    assert rows["api"]["stale"] and rows["web:web_00"]["stale"] and not rows["sam:svc1"]["stale"]

    # the apply itself restarts them, one at a time and gated, and the mark goes
    proc = _apply(bundle, patch_5)
    assert "  restarted web: files of code web1 changed since it started\n" in proc.stdout
    after = _pids(bundle)
    moved = {name for name in before if after[name] != before[name]}
    assert moved == {"web:web_00", "web:web_01", "api"}
    assert {_get(faq.port, "/").split()[0] for _ in range(10)} == {"5"}
    assert _get(faq.api, "/").split()[0] == "5"
    assert "*" not in bundle.cli("status").stdout

    # the other build of 5, and any older release, are refused; nothing changes
    refused = bundle.cli("apply", str(patch_5b))
    assert refused.returncode == 1
    assert "it is release 5, as installed, but with other content" in refused.stderr
    forced = bundle.cli("apply", "--allow-downgrade", str(patch_5b))  # the files still guard
    assert forced.returncode == 1 and "not what it was built against" in forced.stderr
    older = next(project.away.parent.glob("faq-2.patch.tar.*"))
    refused = bundle.cli("apply", str(older))
    assert refused.returncode == 1
    assert "it is release 2, older than the installed 5" in refused.stderr
    assert _pids(bundle) == after


def test_set_changes_one_key_live_and_rollback_undoes_it(faq: Faq) -> None:
    bundle = faq.bundle
    before = _pids(bundle)
    proc = bundle.cli("set", "svc3", "environment.PYTHON_APP_DEBUG=true", "startsecs=2")
    assert proc.returncode == 0, proc.stderr
    assert "svc3: environment: - -> " in proc.stdout and "startsecs: 1 -> 2" in proc.stdout
    after = _pids(bundle)
    assert after["svc3"] != before["svc3"]
    assert {k: v for k, v in after.items() if k != "svc3"} == \
        {k: v for k, v in before.items() if k != "svc3"}
    environ = Path(f"/proc/{after['svc3']}/environ").read_bytes().split(b"\0")
    assert b"PYTHON_APP_DEBUG=true" in environ
    rolled = bundle.cli("rollback", "svc3")
    assert rolled.returncode == 0, rolled.stderr
    environ = Path(f"/proc/{_pids(bundle)['svc3']}/environ").read_bytes().split(b"\0")
    assert not any(v.startswith(b"PYTHON_APP_DEBUG=") for v in environ)
    assert "[services.svc3]" in (manifest := (bundle.root / "bundle.toml").read_text())
    assert "PYTHON_APP_DEBUG" not in manifest.split("[services.svc3]")[1].split("\n[")[0]


def test_two_builds_of_one_project_are_identical(faq: Faq) -> None:
    with read_tar(faq.project.original) as tar:
        first = next(tar.extractfile(m).read() for m in tar  # type: ignore[union-attr]
                     if m.name == "faq/.bundler/checksums.json")
    assert (faq.rebuilt / ".bundler" / "checksums.json").read_bytes() == first


def test_a_switch_that_fails_its_health_probe_is_rolled_back(faq: Faq) -> None:
    bundle = faq.bundle
    answer = _get(faq.api, "/").split()[0]
    proc = bundle.cli("switch", "api", "websick")  # fails within every x failures: 3 s
    assert proc.returncode == 1
    assert "health probe failed" in proc.stderr and "HTTP 500" in proc.stderr
    assert _get(faq.api, "/").split()[0] == answer
    assert bundle.states()["api"][0] == "RUNNING"
    assert 'code = "web1"' in (bundle.root / "bundle.toml").read_text().split("[services.api]")[1]
    assert bundle.cli("history", "api").stdout.splitlines()[-1].split()[-2:] == ["rolled", "back"]


def test_a_new_health_probe_that_fails_is_rolled_back(faq: Faq) -> None:
    bundle = faq.bundle
    pid = _pids(bundle)["api"]
    nobody = _free_port()  # a probe of a port nothing listens on
    proc = bundle.cli("set", "api", f'health={{ http = "http://127.0.0.1:{nobody}/health", '
                      'every = 1, timeout = 1, failures = 2 }')
    assert proc.returncode == 1, proc.stdout
    assert "its new health probe failed" in proc.stderr, proc.stderr
    section = (bundle.root / "bundle.toml").read_text().split("[services.api]")[1].split("\n[")[0]
    assert f":{faq.api}/health" in section and str(nobody) not in section
    assert str(nobody) not in (bundle.root / "etc" / "conf.d" / "_monitor.json").read_text()
    assert _pids(bundle)["api"] == pid  # a probe is the monitor's: the process runs on
    assert bundle.cli("history", "api").stdout.splitlines()[-1].split()[-2:] == ["rolled", "back"]
    good = bundle.cli("set", "api", f'health={{ http = "http://127.0.0.1:{faq.api}/health", '
                      'every = 2, timeout = 1, failures = 3 }')
    assert good.returncode == 0, good.stderr
    assert _pids(bundle)["api"] == pid


def _get(port: int, path: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def test_a_numprocs_service_switches_one_process_at_a_time(faq: Faq) -> None:
    bundle = faq.bundle
    refused: list[float] = []
    other: list[str] = []
    seen: set[str] = set()
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            try:
                seen.add(_get(faq.port, "/").split()[0])
            except ConnectionRefusedError:
                refused.append(time.monotonic())
            except (OSError, http.client.HTTPException) as exc:
                other.append(repr(exc))
            time.sleep(0.01)

    answer = _get(faq.port, "/").split()[0]
    poller = threading.Thread(target=poll)
    poller.start()
    try:
        time.sleep(0.5)
        proc = bundle.cli("switch", "web", "web2")
    finally:
        stop.set()
        poller.join()
    assert proc.returncode == 0, proc.stderr
    assert refused == [], f"{len(refused)} refused connections during the switch"
    assert seen == {answer, "2"}
    assert {_get(faq.port, "/").split()[0] for _ in range(20)} == {"2"}
    print(f"other client errors during the switch: {other}")
