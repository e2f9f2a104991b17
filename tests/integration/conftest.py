"""One real bundle per session, built through the CLI; each test unpacks its own copy elsewhere."""

from __future__ import annotations

import shlex
import shutil
import socket
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.harness import (
    BROKEN_SRC,
    EXAMPLE,
    INLINE_ARGS,
    INLINE_ENV,
    LAUNCH_ARGS,
    LAUNCH_ENV,
    PROBE_SRC,
    PY37,
    Bundle,
    bundler,
)


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Wheels for offline builds (the one download this suite makes)."""
    folder = tmp_path_factory.mktemp("wheels")
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary", ":all:",
                    "-d", str(folder), "supervisor>=4.3.0", "click", "jinja2", "tomlkit", "zstandard",
                    "pyelftools", "pillow", "psutil", "prometheus-client", "cryptography"],
                   check=True, timeout=600)
    return folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Ports:
    web: int      # the `web` service's own HTTP server, probed by its health check
    metrics: int  # the bundle's Prometheus endpoint
    http: int     # supervisor's web server
    hook: int     # where the bundle's alerts are POSTed (a test server listens there)


@pytest.fixture(scope="session")
def ports() -> Ports:
    return Ports(*(_free_port() for _ in range(4)))


HOOK_SECRET = "hook-s3cret"  # in the webhook's URL: no log may show it

# A service that logs 2 KB a second into a 1 KB log: it rotates all the time.
CHATTY = ("import itertools, time; "
          "[print(chr(120) * 100, flush=True) or time.sleep(0.05) for _ in itertools.count()]")


def _production(project: Path, ports: Ports) -> None:
    """Services under health and memory watch, metrics, alerts and supervisor's web server,
    written into bundle.toml as a user would."""
    with open(project / "bundle.toml", "a", encoding="utf-8") as f:
        f.write(f"""
[services.web]
command = "python -m watched --port {ports.web}"
code = "probe"
startsecs = 1
health = {{ http = "http://127.0.0.1:{ports.web}/health", every = 1, timeout = 1, failures = 2 }}

[services.hog]
command = "python -m watched"
code = "probe"
startsecs = 1
max_rss = "120MB"

[services.chatty]
command = 'python -c "{CHATTY}"'
code = "probe"
stdout_logfile_maxbytes = "1KB"
stdout_logfile_backups = 1

[supervisor.http]
port = {ports.http}

[metrics]
port = {ports.metrics}

[alerts]
webhook = "http://127.0.0.1:{ports.hook}/alert?token={HOOK_SECRET}"
retries = 1
timeout = 2
""")


@dataclass(frozen=True)
class Artifacts:
    archive: Path  # the whole bundle, signed
    patch: Path    # what the next release (code v4) adds to it, signed
    key: Path      # the private key both are signed with (the bundle trusts its .pub)


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path, ports: Ports) -> Artifacts:
    """The example, extended through the CLI, built once, and a patch for its next release;
    the project is gone afterwards."""
    work = tmp_path_factory.mktemp("build")
    project = work / "smartbox"
    shutil.copytree(EXAMPLE, project)
    shutil.copytree(PROBE_SRC, project / "probe_src")
    repo = project / "probe_repo"
    shutil.copytree(PROBE_SRC, repo)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "probe"], ["tag", "v9"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    (repo / "probe.py").write_text("raise SystemExit('uncommitted change must not ship')\n")

    keep = tmp_path_factory.mktemp("artifact")
    bundler("keygen", str(keep / "release"), "--comment", "release@test")
    shutil.copy(keep / "release.pub", project / "release.pub")
    spec = project / "bundle.toml"
    spec.write_text(spec.read_text().replace("[bundle]\n", '[bundle]\ntrusted_keys = ["release.pub"]\n',
                                             1))
    sign = ("--sign", str(keep / "release"))
    c = ["-C", str(project)]
    bundler(*c, "add-code", "probe", "--git", "probe_repo", "--ref", "v9")
    bundler(*c, "add-code", "probec", "--path", "probe_src", "--bytecode")
    inline_cmd = "python -m probe " + " ".join(shlex.quote(a) for a in INLINE_ARGS)
    bundler(*c, "add-service", "inline", "--code", "probe", "--command", inline_cmd,
            *[a for k, v in INLINE_ENV.items() for a in ("--env", f"{k}={v}")])
    launch_cmd = "python -m probe " + " ".join(shlex.quote(a) for a in LAUNCH_ARGS)
    bundler(*c, "add-service", "launched", "--python", "envs/pyocr", "--code", "probec",
            "--command", launch_cmd,
            *[a for k, v in LAUNCH_ENV.items() for a in ("--env", f"{k}={v}")])
    bundler(*c, "add-service", "pool", "--code", "probe", "--command", "python -m probe",
            "--numprocs", "2", "--set", "startsecs=1")
    cache = {"XDG_CACHE_HOME": str(work / "cache")}  # standalone archives unpack there
    if PY37 is not None:  # as a standalone CPython archive (python-build-standalone's layout)
        standalone = work / "cpython-3.7.16-install_only.tar.gz"
        with tarfile.open(standalone, "w:gz", compresslevel=1) as tar:
            tar.add(PY37, arcname="python", filter=lambda m: None if "/test/" in m.name + "/"
                    or "/site-packages/" in m.name else m)
        bundler(*c, "add-env", "py37", "--python", str(standalone))
        bundler(*c, "add-service", "svc37", "--python", "py37", "--code", "probe",
                "--command", "python -m probe")
    shutil.copytree(BROKEN_SRC, project / "broken_src")
    bundler(*c, "add-code", "broken", "--path", "broken_src")
    bundler(*c, "add-service", "worker", "--code", "v1", "--command", "python -m service.sam.run",
            "--group", "sam", "--set", "startsecs=1", "--set", "startretries=1")
    _production(project, ports)
    (project / "requirements-tools.txt").write_text("# a real package, from the wheelhouse\ntomlkit\n")
    bundler(*c, "add-env", "tools", "--virtualenv", "base", "-r", "requirements-tools.txt")
    bundler(*c, "check", env=cache)
    result = bundler(*c, "build", "--output", str(project / "dist"), "--no-index",
                     "--find-links", str(wheelhouse), *sign, env=cache)
    built = list((project / "dist").iterdir())
    assert [p.name for p in built] == ["smartbox-2026.11.1.tar.gz"], built
    assert result.stdout == f"{built[0]}\n"
    shutil.move(str(built[0]), keep / built[0].name)

    # the next release adds code v4 only: a patch against the archive above
    shutil.copytree(project / "sam_v3", project / "sam_v4")
    (project / "sam_v4/service/sam/__init__.py").write_text('VERSION = "v4"\n')
    bundler(*c, "add-code", "v4", "--path", "sam_v4")
    assert bundler(*c, "-q", "version", "--bump", "patch").stdout == "2026.11.2\n"
    result = bundler(*c, "build", "--output", str(project / "patches"), "--no-index",
                     "--find-links", str(wheelhouse), "--patch-from", str(keep / built[0].name),
                     *sign, env=cache)
    patch = Path(result.stdout.strip())
    shutil.move(str(patch), keep / patch.name)
    shutil.rmtree(work)  # the build tree and its staging copies are gone from here on
    return Artifacts(keep / built[0].name, keep / patch.name, keep / "release")


@pytest.fixture(scope="session")
def archive(artifacts: Artifacts) -> Path:
    return artifacts.archive


@pytest.fixture
def unpacked(archive: Path, tmp_path: Path):
    """A fresh copy of the bundle, unpacked with tar under a path that holds a space."""
    dest = tmp_path / "un packed"
    dest.mkdir()
    subprocess.run(["tar", "xf", str(archive), "-C", str(dest)], check=True)
    bundle = Bundle(dest / "smartbox")
    yield bundle
    bundle.finish()
