"""pip, setuptools and wheel leave an interpreter at the end of its build unless something
installed or asked for needs them: real virtualenvs, real pip, distributions made on disk."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bundler.build.interpreters import BuildContext
from bundler.build.pip import drop_installers
from tests.pythons import PY37


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    folder = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "virtualenv", "-q", "--no-periodic-update",
                    "--setuptools", "bundle", str(folder)], check=True)
    return folder / "bin" / "python"


def _site(python: Path) -> Path:
    return next(python.parent.parent.glob("lib/python*/site-packages"))


def _dist(python: Path, name: str, *requires: str, extras: tuple[str, ...] = ()) -> None:
    """An installed distribution: its dist-info, as pip leaves it."""
    info = _site(python) / f"{name}-1.0.dist-info"
    info.mkdir()
    lines = ["Metadata-Version: 2.1", f"Name: {name}", "Version: 1.0",
             *(f"Provides-Extra: {e}" for e in extras), *(f"Requires-Dist: {r}" for r in requires)]
    (info / "METADATA").write_text("\n".join(lines) + "\n")
    (info / "RECORD").write_text(f"{info.name}/METADATA,,\n{info.name}/RECORD,,\n")


def _installed(python: Path) -> set[str]:
    return {p.name.split("-")[0].lower() for p in _site(python).glob("*.dist-info")}


def test_installers_go_when_only_a_test_extra_names_them(tmp_path: Path, venv: Path) -> None:
    _dist(venv, "app", 'setuptools; extra == "test"', "lib", extras=("test",))
    _dist(venv, "lib")
    dropped = drop_installers(BuildContext(spec_folder=tmp_path), venv, ("app",), None)
    assert dropped == ["setuptools", "pip"]
    assert _installed(venv) == {"app", "lib"}
    assert not list(venv.parent.glob("pip*"))  # its scripts went with it
    done = subprocess.run([str(venv), "-c", "import app"], capture_output=True, text=True)
    assert "No module named 'app'" in done.stderr  # the interpreter still runs


def test_an_extra_asked_for_along_the_way_keeps_what_it_needs(tmp_path: Path, venv: Path) -> None:
    _dist(venv, "app", "lib[fast]")
    _dist(venv, "lib", 'setuptools; extra == "fast"', extras=("fast",))
    assert drop_installers(BuildContext(spec_folder=tmp_path), venv, ("app",), None) == ["pip"]
    assert "setuptools" in _installed(venv) and "pip" not in _installed(venv)


def test_requirements_that_name_an_installer_keep_it(tmp_path: Path, venv: Path) -> None:
    (tmp_path / "more.txt").write_text("# the operators debug with it\nPip>=20\n")
    (tmp_path / "requirements.txt").write_text("--index-url http://example.invalid/\n-r more.txt\n")
    ctx = BuildContext(spec_folder=tmp_path)
    assert drop_installers(ctx, venv, ("setuptools[core] >= 60",), "requirements.txt") == []
    assert {"pip", "setuptools"} <= _installed(venv)


@pytest.mark.skipif(PY37 is None, reason="no CPython 3.7 here")
def test_below_python_3_8_everything_stays(tmp_path: Path) -> None:
    """supervisor imports pkg_resources there without declaring it."""
    assert PY37 is not None
    subprocess.run([str(PY37 / "bin" / "python3.7"), "-m", "venv", str(tmp_path / "v")], check=True)
    python = tmp_path / "v" / "bin" / "python"
    assert drop_installers(BuildContext(spec_folder=tmp_path), python, (), None) == []
    assert {"pip", "setuptools"} <= _installed(python)
