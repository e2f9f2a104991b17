"""A bundle whose base is the distribution's own Python (/usr/bin/python3 of Debian or Ubuntu),
gathered into the bundle: built offline, unpacked elsewhere with the project gone and the
system's stdlib hidden, it starts, its virtualenv runs, and `verify` finds no path of the
build machine's Python in it."""

from __future__ import annotations

import json
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bundler.build.interpreters import probe
from tests.integration.harness import Bundle, bundler, run_hidden
from tests.pythons import SYSTEM_FOLDERS, SYSTEM_PYTHON, naming

pytestmark = pytest.mark.integration
SYSTEM = SYSTEM_PYTHON


@pytest.fixture(scope="module")
def gathered(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Iterator[Bundle]:
    if not SYSTEM.is_file() or probe(SYSTEM).prefix != Path("/usr"):
        pytest.skip("no distribution's Python at /usr/bin/python3")
    work = tmp_path_factory.mktemp("distro")
    bundler("-C", str(work), "init", "dbox")
    project = work / "dbox"
    spec = project / "bundle.toml"
    spec.write_text(spec.read_text().replace('python = "current"', f'python = "{SYSTEM}"'))
    c = ("-C", str(project))
    bundler(*c, "add-env", "img", "--virtualenv", "base", "-p", "pillow")
    bundler(*c, "add-service", "pic", "--python", "envs/img", "--code", "v1",
            "--command", "python -c 'import PIL, time; time.sleep(3600)'")
    built = bundler(*c, "build", "--no-index", "--find-links", str(wheelhouse))
    assert "the distribution's CPython, gathered from /usr/bin/python3" in built.stderr
    unpacked = tmp_path_factory.mktemp("distro-unpacked")
    with tarfile.open(built.stdout.strip()) as tar:
        tar.extractall(unpacked)
    shutil.rmtree(work)  # the project and the build's staging folder are gone
    bundle = Bundle(unpacked / "dbox")
    try:
        yield bundle
    finally:
        bundle.finish()


def test_it_starts_with_the_system_stdlib_hidden(gathered: Bundle) -> None:
    gathered.start()
    states = gathered.states()
    assert states["hello"][0] == "RUNNING" and states["pic"][0] == "RUNNING", states
    code = ("import json, site, ssl, sqlite3, sys, sysconfig; print(json.dumps({'prefix': "
            "sys.prefix, 'purelib': sysconfig.get_paths()['purelib'], 'site': site.getsitepackages()}))")
    root = gathered.root
    ran = run_hidden([str(root / "bin" / "python3"), "-c", code])
    assert ran.returncode == 0, ran.stderr
    where = json.loads(ran.stdout)
    minor = probe(SYSTEM).minor
    own = str(root / "lib" / f"python{minor}" / "site-packages")
    assert where == {"prefix": str(root), "purelib": own, "site": [own]}
    assert (Path(own) / "supervisor").is_dir()  # pip put the base's packages there
    ran = run_hidden([str(root / "envs" / "img" / "bin" / "python"), "-c",
                      "import PIL, sys; print(PIL.__file__, sys.base_prefix)"])
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == [f"{root}/envs/img/lib/python{minor}/site-packages/PIL/__init__.py",
                                  str(root)]


def test_verify_finds_no_path_of_the_system_python(gathered: Bundle) -> None:
    done = gathered.cli("verify")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "leaks     no file names a path of the build machine" in done.stdout
    origin = json.loads((gathered.root / ".bundler" / "origin.json").read_text())
    assert origin["sources"]["base"] == str(probe(SYSTEM).stdlib)
    needles = (*SYSTEM_FOLDERS, str(probe(SYSTEM).stdlib))
    assert naming(gathered.root, needles, skip=("log", "run", ".bundler")) == []  # .bundler: records
