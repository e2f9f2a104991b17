from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest

from bundler.build.interpreters import (
    PythonInfo,
    Unrelocatable,
    check_relocatable,
    find_python,
    patchelf,
    probe,
)
from bundler.errors import BundlerError

GOOD = PythonInfo(executable=Path("/opt/py/bin/python3.11"), version="3.11.7",
                  prefix=Path("/opt/py"), base_prefix=Path("/opt/py"),
                  stdlib=Path("/opt/py/lib/python3.11"), libdir=Path("/opt/py/lib"),
                  ldlibrary="libpython3.11.so", shared=True, abiflags="", implementation="cpython")


def test_a_self_contained_prefix_is_accepted() -> None:
    check_relocatable(GOOD)


@pytest.mark.parametrize("change, message", [
    ({"base_prefix": Path("/opt/base")}, "is a virtual environment"),
    ({"stdlib": Path("/elsewhere/python3.11")}, "outside its prefix"),
    ({"libdir": Path("/usr/lib/x86_64-linux-gnu")}, "loads libpython from"),
    ({"implementation": "pypy"}, "only CPython"),
])
def test_interpreters_that_cannot_be_relocated_are_refused(change: dict, message: str) -> None:
    with pytest.raises(BundlerError, match=message) as info:
        check_relocatable(replace(GOOD, **change))
    assert isinstance(info.value, Unrelocatable)  # the plan adds the ways out, with the line


def test_a_distribution_python_is_accepted_and_gathered_not_copied_whole() -> None:
    debian = replace(GOOD, executable=Path("/usr/bin/python3.11"), prefix=Path("/usr"),
                     base_prefix=Path("/usr"), stdlib=Path("/usr/lib/python3.11"),
                     libdir=Path("/usr/lib/x86_64-linux-gnu"))
    check_relocatable(debian)
    assert debian.system and debian.origin == Path("/usr/lib/python3.11")
    assert not GOOD.system and GOOD.origin == Path("/opt/py")


def test_find_python(tmp_path: Path) -> None:
    current = find_python("current", tmp_path)
    assert probe(current).prefix == Path(sys.base_prefix)
    with pytest.raises(BundlerError, match="does not exist"):
        find_python("missing", tmp_path)
    with pytest.raises(BundlerError, match="no bin/python3"):
        find_python(".", tmp_path)


def test_an_interpreter_that_cannot_start_shows_what_it_said(tmp_path: Path) -> None:
    """A copy that needs a library nowhere to be found: the error is the loader's message, not
    the probe's program."""
    import shutil
    import subprocess

    (tmp_path / "bin").mkdir()
    copy = tmp_path / "bin" / "python3"
    shutil.copy2(Path(sys.executable).resolve(), copy)
    subprocess.run([patchelf(), "--add-needed", "libgone-by-test.so.1", str(copy)], check=True)
    with pytest.raises(BundlerError) as info:
        probe(copy)
    said = str(info.value)
    assert said.startswith(f"{copy} cannot start as a Python interpreter (exit 127); it said:")
    assert "libgone-by-test.so.1: cannot open shared object file" in said
    assert "json.dumps" not in said  # the probe's program is not the message


def test_lib_dynload_is_where_destshared_says_only_inside_the_prefix(tmp_path: Path) -> None:
    prefix = tmp_path / "python"
    (prefix / "lib" / "python3.9" / "lib-dynload").mkdir(parents=True)
    (tmp_path / "build" / "lib-dynload").mkdir(parents=True)  # the folder a standalone was built in
    unpacked = replace(GOOD, prefix=prefix, base_prefix=prefix, stdlib=prefix / "lib" / "python3.9",
                       dynload=tmp_path / "build" / "lib-dynload")
    assert unpacked.extensions == prefix / "lib" / "python3.9" / "lib-dynload"
    (prefix / "lib64" / "python3.9" / "lib-dynload").mkdir(parents=True)
    fedora = replace(unpacked, dynload=prefix / "lib64" / "python3.9" / "lib-dynload")
    assert fedora.extensions == prefix / "lib64" / "python3.9" / "lib-dynload"
