"""Proof on an older system, offline: a Debian 11 root (glibc 2.31, made with debootstrap by
tests/oldsys/make.sh and cached), where a CPython compiled from Debian's python3.9 source package
is packed as a standalone archive into a mirror folder. A bundle built here for `glibc = "2.31"`
from that mirror runs there, in a chroot with its own pid namespace (no network, nothing of this
machine visible); a bundle built for this machine's glibc says so in one line there."""

from __future__ import annotations

import shutil
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bundler.build.interpreters import patchelf
from tests.integration.chroot import folder_in, inside, made_root
from tests.integration.harness import REPO, bundler

pytestmark = pytest.mark.oldsys
MAKE = REPO / "tests" / "oldsys" / "make.sh"


@pytest.fixture(scope="module")
def oldsys() -> Path:
    """The cache folder: root/ (Debian 11) and mirror/ (the standalone archive)."""
    return made_root(MAKE, patchelf())


@pytest.fixture
def opt(oldsys: Path) -> Iterator[tuple[Path, str]]:
    """A folder under the root's /opt: (its path here, its path there)."""
    with folder_in(oldsys / "root", "bundle") as folder:
        yield folder


SPEC = '''\
[bundle]
name = "oldbox"
version = "1"
glibc = "2.31"
python_mirror = "{mirror}"

[base]
python = "3.9"

[envs.web]
virtualenv = "base"
requirements = ["pillow"]   # a manylinux wheel from PyPI

[code.v1]
path = "src"

[services.hello]
command = "python -m hello"
code = "v1"

[services.img]
command = "python -m img"
python = "envs/web"
code = "v1"
'''
HELLO = "import time\nwhile True:\n    print('hello', flush=True)\n    time.sleep(5)\n"
IMG = ("import ctypes, sqlite3, ssl, time\nfrom PIL import Image, features\n"
       "assert features.check('freetype2') and features.check('jpg')\n"
       "print(ssl.OPENSSL_VERSION, sqlite3.sqlite_version, flush=True)\n"
       "while True:\n    time.sleep(5)\n")
IMPORTS = "import ctypes, sqlite3, ssl, zlib, lzma, bz2; print('imports', ssl.OPENSSL_VERSION)"


def test_a_bundle_for_glibc_2_31_runs_on_debian_11(oldsys: Path, opt: tuple[Path, str],
                                                   tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "hello.py").write_text(HELLO)
    (project / "src" / "img.py").write_text(IMG)
    (project / "bundle.toml").write_text(SPEC.format(mirror=oldsys / "mirror"))
    cache = tmp_path / "cache"  # the archive is unpacked here, then hidden
    built = bundler("-C", str(project), "build", env={"XDG_CACHE_HOME": str(cache)})
    assert "floor 2.31" in built.stderr and "libssl.so.1.1" in built.stderr, built.stderr
    artifact = project / "dist" / "oldbox-1.tar.gz"
    here, there = opt
    with tarfile.open(artifact) as tar:
        tar.extractall(here, filter="tar" if sys.version_info >= (3, 12) else None)
    project.rename(tmp_path / "moved")  # the build tree and the source interpreter are gone
    shutil.rmtree(cache)
    root = here / "oldbox"
    # this machine has no libssl.so.1.1: the build imported ssl from the copy, which carries it
    assert (root / "lib" / "libssl.so.1.1").is_file()
    assert not Path("/usr/lib/x86_64-linux-gnu/libssl.so.1.1").exists()
    b = f"{there}/oldbox"
    done = inside(oldsys / "root", f"""
        {b}/bin/start --timeout 60 || echo "start failed: $?"
        {b}/bin/bundler status
        {b}/bin/python3 -c "{IMPORTS}"
        {b}/envs/web/bin/python -c "{IMPORTS}; import PIL.Image"
        {b}/bin/bundler verify; echo "verify exit $?"
        ldd --version | head -1
        cat {b}/log/img.log 2>/dev/null || cat {b}/log/img*.log
        {b}/bin/stop
    """)
    said = done.stdout + done.stderr
    assert "start failed" not in said, said
    states = {line.split()[0]: line.split()[1] for line in done.stdout.splitlines()
              if line.split() and line.split()[0] in ("hello", "img")}
    assert states == {"hello": "RUNNING", "img": "RUNNING"}, said
    assert said.count("imports OpenSSL 1.1.1") == 2, said
    assert "floor 2.31 ([bundle] glibc)" in said and "glibc 2.31: it can run here" in said, said
    assert "verify exit 0" in said and "2.31" in said.split("ldd")[-1], said
    assert "OpenSSL 1.1.1" in said.split("ldd")[-1], said  # the img service's own output


def test_a_bundle_built_for_this_machine_says_so_in_one_line_on_debian_11(
        oldsys: Path, opt: tuple[Path, str], archive: Path) -> None:
    here, there = opt
    with tarfile.open(archive) as tar:
        tar.extractall(here, filter="tar" if sys.version_info >= (3, 12) else None)
    (top,) = here.iterdir()
    done = inside(oldsys / "root", f"{there}/{top.name}/bin/start; echo \"exit $?\"")
    assert done.stdout == "exit 1\n", done.stdout + done.stderr
    line, = done.stderr.splitlines()
    assert "this bundle needs glibc 2.3" in line and "but this server has glibc 2.31" in line
    assert 'build it with [bundle] glibc = "2.31"' in line


def test_a_copy_that_lost_a_library_its_source_loads_stops_the_build(oldsys: Path,
                                                                      tmp_path: Path) -> None:
    from bundler.build.interpreters import check_extensions
    from bundler.errors import BundlerError

    (archive,) = (oldsys / "mirror").glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "source", filter="tar" if sys.version_info >= (3, 12) else None)
    shutil.copytree(tmp_path / "source" / "python", tmp_path / "copy", symlinks=True)
    check_extensions(tmp_path / "source/python/bin/python3", tmp_path / "copy/bin/python3")
    (tmp_path / "copy" / "lib" / "libssl.so.1.1").unlink()
    with pytest.raises(BundlerError) as info:
        check_extensions(tmp_path / "source/python/bin/python3", tmp_path / "copy/bin/python3")
    said = str(info.value)
    assert "cannot import 1 stdlib extension(s)" in said and "_ssl: libssl.so.1.1" in said, said
