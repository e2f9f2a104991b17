"""The distribution's own Python (Debian's /usr/bin/python3.X, split across /usr) gathered into
a prefix of its own: it runs from there, installs there, carries a virtualenv, and names no
folder of the system's Python, also with that Python's stdlib hidden."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from bundler.build.interpreters import BuildContext, CopiedCPython, probe
from bundler.build.pip import ensure_pip
from tests.pythons import SYSTEM_FOLDERS, SYSTEM_PYTHON, naming

SYSTEM = SYSTEM_PYTHON


def _system() -> Path:
    if not SYSTEM.is_file() or probe(SYSTEM).prefix != Path("/usr"):
        pytest.skip("no distribution's Python at /usr/bin/python3")
    return SYSTEM


@pytest.fixture(scope="module")
def gathered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("gathered") / "py"
    info = probe(_system())
    CopiedCPython(info).materialize(BuildContext(spec_folder=dest.parent), dest)
    return dest


def _ask(python: Path, code: str, **env: str) -> dict:
    done = subprocess.run([str(python), "-I", "-c", code], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", **env}, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


WHERE = ("import json, site, sys, sysconfig; print(json.dumps({'prefix': sys.prefix, "
         "'base': sys.base_prefix, 'purelib': sysconfig.get_paths()['purelib'], "
         "'scripts': sysconfig.get_paths()['scripts'], 'site': site.getsitepackages(), "
         "'path': [p for p in sys.path if p]}))")


def test_the_copy_is_its_own_prefix_and_installs_into_its_site_packages(gathered: Path) -> None:
    minor = probe(gathered / "bin" / "python3").minor
    where = _ask(gathered / "bin" / "python3", WHERE)
    own = str(gathered / "lib" / f"python{minor}" / "site-packages")
    assert where["prefix"] == where["base"] == str(gathered)
    assert where["purelib"] == own and where["site"] == [own]
    assert where["scripts"] == str(gathered / "bin")
    assert all(p.startswith(str(gathered) + "/") for p in where["path"]), where["path"]
    assert own in where["path"]
    assert not (gathered / "lib" / f"python{minor}" / "EXTERNALLY-MANAGED").exists()
    assert not (gathered / "lib" / f"python{minor}" / "dist-packages").exists()


def _wheel(folder: Path) -> Path:
    path = folder / "tinypkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr("tinypkg.py", "VALUE = 1\n")
        whl.writestr("tinypkg-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n")
        whl.writestr("tinypkg-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\n"
                     "Root-Is-Purelib: true\nTag: py3-none-any\n")
        whl.writestr("tinypkg-1.0.dist-info/RECORD", "")
    return path


def test_pip_and_a_virtualenv_on_the_copy_use_their_own_site_packages(
        gathered: Path, tmp_path: Path) -> None:
    copy = tmp_path / "py"
    shutil.copytree(gathered, copy, symlinks=True)  # the module's copy stays without pip
    python = copy / "bin" / "python3"
    minor = probe(python).minor
    ensure_pip(BuildContext(spec_folder=tmp_path), python)  # Debian's ensurepip refuses its Python
    subprocess.run([str(python), "-I", "-m", "pip", "install", "--no-index", "--quiet",
                    "--disable-pip-version-check", str(_wheel(tmp_path))], check=True, timeout=300)
    site = copy / "lib" / f"python{minor}" / "site-packages"
    assert (site / "tinypkg.py").is_file() and (site / "pip").is_dir()
    assert not (copy / "local").exists()
    env = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "virtualenv", "--quiet", "--no-periodic-update",
                    "-p", str(python), str(env)], check=True, timeout=300)
    subprocess.run([str(env / "bin" / "python"), "-m", "pip", "install", "--no-index", "--quiet",
                    "--disable-pip-version-check", str(_wheel(tmp_path))], check=True, timeout=300)
    where = _ask(env / "bin" / "python", WHERE)
    env_site = str(env / "lib" / f"python{minor}" / "site-packages")
    assert where["prefix"] == str(env) and where["base"] == str(copy)
    assert where["purelib"] == env_site and (Path(env_site) / "tinypkg.py").is_file()
    assert str(site) not in where["path"]  # no system site-packages, as virtualenv's default


def test_the_copy_leaves_out_what_a_server_does_not_use(gathered: Path) -> None:
    """Debian packages tkinter and IDLE apart (python3-tk, idle-python3.X) but keeps turtle.py,
    which imports tkinter, in the stdlib: it goes too."""
    info = probe(_system())
    stdlib = gathered / info.stdlib.relative_to(info.prefix)
    assert (info.stdlib / "turtle.py").is_file() and (stdlib / "os.py").is_file()
    assert not [p.name for p in stdlib.iterdir()
                if p.name in ("turtle.py", "tkinter", "idlelib", "turtledemo")]
    assert not list(stdlib.glob("lib-dynload/_tkinter*"))


def test_no_file_of_the_copy_names_the_system_python(gathered: Path) -> None:
    assert naming(gathered, (*SYSTEM_FOLDERS, str(probe(_system()).stdlib))) == []


def test_the_copy_runs_with_the_system_stdlib_hidden(gathered: Path) -> None:
    stdlib = probe(_system()).stdlib
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("hiding the system's stdlib needs `unshare -m` (root)")
    code = ("import json, ssl, sqlite3, ctypes, sys; print(json.dumps("
            "{'prefix': sys.prefix, 'ssl': ssl.__file__}))")
    done = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs none {stdlib} && "
                           f'exec "$@"', "sh", str(gathered / "bin" / "python3"), "-I", "-c", code],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["prefix"] == str(gathered) and found["ssl"].startswith(str(gathered) + "/")
