"""README's first command on a fresh Debian 12 whose only Python is the distribution's (a
debootstrap minbase root with python3, python3-venv and git from apt, made by
tests/firstrun/make.sh and cached): the tool installs from this checkout, and the example, whose
base is `python = "current"`, builds through a standalone CPython of the same version taken from a
local mirror. The packages come from PyPI, so this needs the network; it runs in .ci/run, not in
the default suite (marker `firstrun`)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bundler.build.interpreters import patchelf
from tests.integration.chroot import folder_in, inside, made_root
from tests.integration.harness import REPO
from tests.pythons import pyenv_prefix

pytestmark = pytest.mark.firstrun
MAKE = REPO / "tests" / "firstrun" / "make.sh"


def readme_first_command() -> str:
    """The first command of README's first sh block (the install-and-build one)."""
    block = re.search(r"```sh\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert block, "README.md has no sh block"
    commands = [line for line in block[1].splitlines() if line.strip() and not line.startswith("#")]
    return commands[0]


@pytest.fixture(scope="module")
def debian() -> Path:
    """The root of the fresh Debian 12."""
    return made_root(MAKE) / "root"


def system_minor(root: Path) -> str:
    found = sorted(p.name for p in (root / "usr" / "bin").glob("python3.*")
                   if re.fullmatch(r"python3\.\d+", p.name))
    assert found, "the root has no python3"
    return found[-1][len("python"):]


@pytest.fixture
def work(debian: Path) -> Iterator[tuple[Path, str]]:
    """A folder under the root's /opt: (its path here, its path there)."""
    with folder_in(debian, "firstrun") as folder:
        yield folder


def ssl_cafile() -> str:
    import ssl

    paths = ssl.get_default_verify_paths()
    return os.environ.get("PIP_CERT") or paths.cafile or "/etc/ssl/certs/ca-certificates.crt"


def standalone_mirror(folder: Path, minor: str) -> None:
    """A mirror folder with one install_only archive of CPython `minor`, packed from pyenv's copy
    of it (the layout python-build-standalone publishes: python/bin, python/lib ...)."""
    versions = subprocess.run(["pyenv", "versions", "--bare"], capture_output=True,
                              text=True).stdout.split() if shutil.which("pyenv") else []
    version = next((v for v in sorted(versions, reverse=True) if v.startswith(minor + ".")), None)
    prefix = pyenv_prefix(version) if version else None
    if prefix is None:
        pytest.skip(f"no CPython {minor} from pyenv here to serve as the standalone one")
    name = f"cpython-{version}+20260101-x86_64-unknown-linux-gnu-install_only.tar.gz"
    stage = folder.parent / "stage" / "python"
    shutil.copytree(prefix, stage, symlinks=True, ignore=shutil.ignore_patterns(
        "site-packages", "test", "__pycache__", "idlelib", "tkinter", "*.a"))
    executable = stage / "bin" / f"python{minor}"  # as upstream's: libpython found by $ORIGIN
    subprocess.run([patchelf(), "--set-rpath", "$ORIGIN/../lib", str(executable)], check=True)
    folder.mkdir()
    with tarfile.open(folder / name, "w:gz", compresslevel=1) as tar:
        tar.add(stage, "python")
    shutil.rmtree(stage.parent)
    subprocess.run(f"sha256sum {name} > SHA256SUMS", shell=True, cwd=folder, check=True)


def test_readme_first_command_builds_the_example_on_a_fresh_debian(
        debian: Path, work: tuple[Path, str]) -> None:
    here, there = work
    minor = system_minor(debian)
    assert not list((debian / "opt").glob("python*")) and not (debian / "root" / ".pyenv").exists()
    standalone_mirror(here / "mirror", minor)
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, files):
        if (REPO / name).is_file() and not name.startswith(("tests/", "bench/")):
            (here / "bundler" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, here / "bundler" / name)
    command = readme_first_command()
    # this machine's CA bundle, for a network whose TLS goes through a proxy this root
    # does not know (pip reads PIP_CERT, the build's pip runs inherit it)
    shutil.copy2(ssl_cafile(), here / "ca.pem")
    done = inside(debian, f"cd {there}/bundler && {command}", 1800, HOME=f"{there}/home",
                  BUNDLER_PYTHON_MIRROR=f"{there}/mirror", PIP_CERT=f"{there}/ca.pem",
                  PIP_DISABLE_PIP_VERSION_CHECK="1", LC_ALL="C.UTF-8")
    said = done.stdout + done.stderr
    assert done.returncode == 0, said[-6000:]
    assert "the running Python is the system's, so: standalone CPython" in said, said[-4000:]
    artifact = here / "bundler" / "examples" / "smartbox" / "dist" / "smartbox-2026.11.1.tar.gz"
    assert done.stdout.strip().endswith("dist/smartbox-2026.11.1.tar.gz"), done.stdout
    with tarfile.open(artifact) as tar:
        names = tar.getnames()
        tar.extractall(here / "unpacked", filter="tar" if sys.version_info >= (3, 12) else None)
    assert "smartbox/bin/start" in names and "smartbox/envs/pyocr/bin/python" in names
    shutil.rmtree(here / "bundler")  # the build tree is gone
    shutil.rmtree(here / "home")     # with the standalone CPython unpacked in its cache
    ran = inside(debian, f"{there}/unpacked/smartbox/bin/python3 -c 'import ssl, sqlite3, "
                 "supervisor, sys; print(sys.version_info[:2], sys.prefix)'")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split(") ")[1].strip() == f"{there}/unpacked/smartbox", ran.stdout
