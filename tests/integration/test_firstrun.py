"""README's two commands on a fresh Debian 12 whose only Python is the distribution's (a
debootstrap minbase root with README's Prerequisites from apt, made by tests/firstrun/make.sh and
cached), with no mirror prepared and nothing from GitHub: the tool installs from this checkout,
the example, whose base is `python = "current"`, builds from that very Python (gathered into the
bundle), the unit tests pass there, and the bundle starts in a second root that has no Python at
all. The packages come from PyPI, so this needs the network; it runs in .ci/run, not in the
default suite (marker `firstrun`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.chroot import folder_in, inside, made_root
from tests.integration.harness import REPO

pytestmark = pytest.mark.firstrun
MAKE = REPO / "tests" / "firstrun" / "make.sh"


def readme_commands() -> list[str]:
    """README's two set-up commands: the install-and-build one, the one that runs the tests."""
    block = re.search(r"```sh\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert block, "README.md has no sh block"
    return [line for line in block[1].splitlines() if line.strip() and not line.startswith("#")][:2]


@pytest.fixture(scope="module")
def roots() -> tuple[Path, Path]:
    """The fresh Debian 12 with README's Prerequisites, and the bare one with no Python."""
    cache = made_root(MAKE)
    return cache / "root", cache / "bare"


def ssl_cafile() -> str:
    import ssl

    paths = ssl.get_default_verify_paths()
    return os.environ.get("PIP_CERT") or paths.cafile or "/etc/ssl/certs/ca-certificates.crt"


def _checkout(folder: Path) -> None:
    """This checkout's files (as git knows them), tests included, without the benchmarks."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, files):
        if (REPO / name).is_file() and not name.startswith("bench/"):
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, folder / name)


def test_readme_on_a_fresh_debian_and_the_bundle_on_a_bare_one(roots: tuple[Path, Path]) -> None:
    debian, bare = roots
    assert not (debian / "root" / ".pyenv").exists() and not shutil.which("gcc", path=str(debian / "usr/bin"))
    assert not list((bare / "usr" / "bin").glob("python*"))
    with folder_in(debian, "firstrun") as (here, there), folder_in(bare, "server") as (server, on_server):
        _checkout(here / "bundler")
        # this machine's CA bundle, for a network whose TLS goes through a proxy this root
        # does not know (pip reads PIP_CERT, the build's pip runs inherit it)
        shutil.copy2(ssl_cafile(), here / "ca.pem")
        env = dict(HOME=f"{there}/home", PIP_CERT=f"{there}/ca.pem",
                   PIP_DISABLE_PIP_VERSION_CHECK="1", LC_ALL="C.UTF-8")
        done = inside(debian, f"cd {there}/bundler && {readme_commands()[0]}", 1800, **env)
        said = done.stdout + done.stderr
        assert done.returncode == 0, said[-6000:]
        assert "the distribution's CPython, gathered from /usr/bin/python3" in said, said[-4000:]
        assert "standalone" not in said and "mirror" not in said, said[-4000:]
        assert done.stdout.strip().endswith("dist/smartbox-2026.11.1.tar.gz"), done.stdout
        archive = here / "bundler" / "examples" / "smartbox" / "dist" / "smartbox-2026.11.1.tar.gz"

        # a new user's first project, as `bundler init` writes it, checks and builds as well
        tool = f"{there}/bundler/.venv/bin/bundler"
        done = inside(debian, f"cd {there} && {tool} init newbox && {tool} -C newbox check && "
                      f"{tool} -C newbox build", 1800, **env)
        assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
        assert done.stdout.strip().endswith("dist/newbox-0.1.0.tar.gz"), done.stdout[-2000:]

        # README's test command, its unit part (the whole suite is .ci/run's job)
        unit = readme_commands()[1].replace("python -m pytest", "python -m pytest tests/unit -q")
        assert unit != readme_commands()[1]
        done = inside(debian, f"cd {there}/bundler && {unit}", 1800, **env)
        assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
        assert re.search(r"\d+ passed", done.stdout) and " failed" not in done.stdout, done.stdout[-3000:]

        shutil.copy2(archive, server / archive.name)
        shutil.rmtree(here)  # the build machine's checkout, venv and caches are gone
        started = inside(bare, f"cd {on_server} && tar xzf {archive.name} && "
                         "smartbox/bin/start --timeout 90 >&2 && "
                         "smartbox/bin/python3 -c 'import ssl, sqlite3, sys; print(sys.prefix)' && "
                         "smartbox/bin/bundler status --json; "
                         "rc=$?; smartbox/bin/stop >&2; exit $rc", 600, LC_ALL="C.UTF-8")
        assert started.returncode == 0, started.stdout + started.stderr
        prefix, _, document = started.stdout.partition("\n")
        assert prefix == f"{on_server}/smartbox", started.stdout
        status = json.loads(document)
        states = {p["name"]: p["state"] for p in status["processes"]}
        assert states == {"sam:svc1": "RUNNING", "sam:svc2": "RUNNING", "svc3": "RUNNING"}, status
