"""What a copied CPython leaves out of a server bundle (build/trim.py) and the `keep` key that
ships it all the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from bundler.build import trim
from bundler.build.interpreters import PythonInfo
from bundler.spec.checker import SpecError
from bundler.spec.load import parse_spec

EVERY = frozenset({"tkinter", "idlelib", "turtledemo", "ensurepip"})
STDLIB = ("os.py", "turtle.py", "tkinter/__init__.py", "tkinter/test/test_x.py", "idlelib/idle.py",
          "idlelib/idle_test/t.py", "turtledemo/__main__.py", "test/test_os.py", "json/__init__.py",
          "__pycache__/turtle.cpython-311.pyc", "ensurepip/__init__.py",
          "ensurepip/_bundled/pip-23.2.1-py3-none-any.whl",
          "ensurepip/_bundled/setuptools-65.5.0-py3-none-any.whl",
          "lib-dynload/_tkinter.cpython-311-x86_64-linux-gnu.so",
          "lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so", "site-packages/x/__init__.py")


def _stdlib(root: Path) -> Path:
    src = root / "src" / "lib" / "python3.11"
    for rel in STDLIB:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text("x")
    return src


def _copied(src: Path, dest: Path, keep: tuple[str, ...]) -> set[str]:
    trim.copy_stdlib(src, dest, trim.left_out(keep))
    return {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()}


def test_a_server_copy_leaves_out_tkinter_idle_the_demos_and_tests(tmp_path: Path) -> None:
    src = _stdlib(tmp_path)
    assert _copied(src, tmp_path / "copy", ()) == {
        "os.py", "json/__init__.py", "ensurepip/__init__.py",
        "ensurepip/_bundled/pip-23.2.1-py3-none-any.whl",  # until the build has used them
        "ensurepip/_bundled/setuptools-65.5.0-py3-none-any.whl",
        "lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so"}
    assert trim.drop_bundled_wheels(tmp_path / "none", EVERY) == []
    prefix = tmp_path / "copy-prefix"
    (prefix / "lib").mkdir(parents=True)
    trim.copy_stdlib(src, prefix / "lib" / "python3.11", EVERY)
    assert trim.drop_bundled_wheels(prefix, EVERY) == ["pip-23.2.1-py3-none-any.whl",
                                                       "setuptools-65.5.0-py3-none-any.whl"]
    assert (prefix / "lib/python3.11/ensurepip/__init__.py").is_file()
    assert not list(prefix.glob("lib/python3.11/ensurepip/_bundled/*"))


def test_what_keep_names_is_shipped_and_idle_brings_tkinter(tmp_path: Path) -> None:
    src = _stdlib(tmp_path)
    tk = _copied(src, tmp_path / "tk", ("tkinter",))
    assert {"turtle.py", "tkinter/__init__.py",
            "lib-dynload/_tkinter.cpython-311-x86_64-linux-gnu.so"} <= tk
    assert not any(n.startswith(("idlelib/", "turtledemo/", "tkinter/test/")) for n in tk)
    assert trim.left_out(("idlelib",)) == {"turtledemo", "ensurepip"}
    idle = _copied(src, tmp_path / "idle", ("idlelib",))
    assert {"idlelib/idle.py", "tkinter/__init__.py"} <= idle and "idlelib/idle_test/t.py" not in idle
    assert trim.left_out(("ensurepip",)) == {"tkinter", "idlelib", "turtledemo"}
    prefix = tmp_path / "p"
    (prefix / "lib").mkdir(parents=True)
    trim.copy_stdlib(src, prefix / "lib" / "python3.11", trim.left_out(("ensurepip",)))
    assert trim.drop_bundled_wheels(prefix, trim.left_out(("ensurepip",))) == []
    assert len(list(prefix.glob("lib/python3.11/ensurepip/_bundled/*.whl"))) == 2


def test_the_left_out_extension_neither_counts_for_the_floor_nor_pulls_libraries(
        tmp_path: Path) -> None:
    """PythonInfo.elf_files feeds the vendoring (hostlibs) and the glibc prediction: _tkinter,
    and so libtk, libX11 and the rest, are not in it unless kept."""
    src = _stdlib(tmp_path)
    prefix = src.parent.parent
    (prefix / "bin").mkdir()
    (prefix / "bin" / "python3.11").write_text("x")
    info = PythonInfo(prefix / "bin" / "python3.11", "3.11.7", prefix, prefix, src, None, None,
                      False, "", "cpython")
    names = lambda keep: sorted(p.name for p in info.elf_files(keep))  # noqa: E731
    assert names(()) == ["_ssl.cpython-311-x86_64-linux-gnu.so", "python3.11"]
    assert "_tkinter.cpython-311-x86_64-linux-gnu.so" in names(("tkinter",))
    assert trim.modules(trim.left_out(())) == {"_tkinter"} and trim.modules(frozenset()) == set()


def test_a_kept_tkinter_brings_the_prefix_tcl_and_tk_libraries(tmp_path: Path) -> None:
    """python-build-standalone keeps Tcl's and Tk's scripts in lib/tcl8.6 and lib/tk8.6."""
    prefix = tmp_path / "python"
    for rel in ("lib/tcl8.6/init.tcl", "lib/tk8.6/tk.tcl", "lib/itcl4.2.4/itcl.tcl",
                "lib/pkgconfig/python3.pc", "lib/python3.12/os.py"):
        (prefix / rel).parent.mkdir(parents=True, exist_ok=True)
        (prefix / rel).write_text("x")
    dest = tmp_path / "copy"
    assert trim.copy_tcl_libraries(prefix, dest, trim.left_out(())) == []
    assert trim.copy_tcl_libraries(prefix, dest, trim.left_out(("tkinter",))) == [
        "itcl4.2.4", "tcl8.6", "tk8.6"]
    assert (dest / "lib/tcl8.6/init.tcl").is_file() and not (dest / "lib/pkgconfig").exists()


SPEC = '''\
[bundle]
name = "box"
version = "1"

[base]
python = "current"
{base}

[envs.web]
virtualenv = "base"
{web}

[code.v1]
path = "src"
'''


def _spec(tmp_path: Path, base: str = "", web: str = ""):
    return parse_spec(SPEC.format(base=base, web=web), tmp_path / "bundle.toml")


def test_the_keep_key_is_read_and_checked(tmp_path: Path) -> None:
    assert _spec(tmp_path).interpreters["base"].keep == ()
    spec = _spec(tmp_path, 'keep = ["tkinter", "ensurepip", "tkinter"]')
    assert spec.interpreters["base"].keep == ("ensurepip", "tkinter")
    with pytest.raises(SpecError) as wrong:
        _spec(tmp_path, 'keep = ["tkinterr"]')
    assert str(wrong.value) == (f"{tmp_path / 'bundle.toml'}:7: [base] keep names 'tkinterr', which "
                                "is not one of tkinter, idlelib, turtledemo, ensurepip (did you "
                                "mean 'tkinter'?)")
    with pytest.raises(SpecError, match=r":11: \[envs.web\] keep applies to copied CPythons"):
        _spec(tmp_path, web='keep = ["tkinter"]')
    with pytest.raises(SpecError, match=r":7: \[base\] keep must be a list of strings"):
        _spec(tmp_path, "keep = [1]")
