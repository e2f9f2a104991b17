"""RUNPATHs of native files in code versions (build/native.py), with real gcc, patchelf and ldd."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from bundler.build.interpreters import patchelf
from bundler.build.native import fix_runpaths, outside_runpaths
from bundler.bundle import elf

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("ldd") is None,
                                reason="needs gcc and ldd")


def _cc(out: Path, source: str, *flags: str) -> Path:
    c = out.with_suffix(".c")
    c.write_text(source)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(out), str(c), *flags], check=True)
    c.unlink()
    return out


def test_runpaths_out_of_the_code_are_pointed_into_the_bundle_or_dropped(tmp_path: Path) -> None:
    machine = tmp_path / "machine" / "lib"  # a library folder of the build machine
    machine.mkdir(parents=True)
    _cc(machine / "libfoo.so", "int foo(void) { return 1; }")
    _cc(machine / "libbar.so", "int bar(void) { return 2; }")
    root = tmp_path / "bundle"
    (root / "lib").mkdir(parents=True)
    shutil.copy(machine / "libfoo.so", root / "lib")  # the bundle carries foo, not bar
    code = root / "app_v1" / "pkg"
    code.mkdir(parents=True)
    rpath = f"-Wl,-rpath,{machine}"
    _cc(code / "plain.so", "int plain(void) { return 0; }", rpath)
    _cc(code / "uses_foo.so", "int foo(void); int f(void) { return foo(); }", f"-L{machine}",
        "-lfoo", rpath)
    _cc(code / "uses_bar.so", "int bar(void); int b(void) { return bar(); }", f"-L{machine}",
        "-lbar", rpath)
    _cc(code / "own.so", "int own(void) { return 3; }", "-Wl,-rpath,$ORIGIN")
    assert set(outside_runpaths(root / "app_v1")) == {code / n for n in
                                                      ("plain.so", "uses_foo.so", "uses_bar.so")}

    warnings = fix_runpaths(root / "app_v1", root, [root / "lib"], patchelf())

    def runpath(name: str) -> tuple[str, ...]:
        info = elf.read(code / name)
        assert info is not None
        return info.runpath

    assert runpath("plain.so") == ()
    assert runpath("uses_foo.so") == ("$ORIGIN/../../lib",)
    assert runpath("own.so") == ("$ORIGIN",)
    assert runpath("uses_bar.so") == ()
    assert warnings == [f"app_v1/pkg/uses_bar.so needs libbar.so, which the bundle does not carry "
                        f"and no system folder holds (this machine has it in {machine})"]
    assert outside_runpaths(root / "app_v1", root) == {}


def test_check_says_what_the_build_will_rewrite_and_what_it_cannot(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from bundler.cli import cli

    machine = tmp_path / "machine"
    machine.mkdir()
    _cc(machine / "libbar.so", "int bar(void) { return 2; }")
    assert CliRunner().invoke(cli, ["-C", str(tmp_path), "init", "box"]).exit_code == 0
    src = tmp_path / "box" / "src"
    _cc(src / "ext.so", "int bar(void); int b(void) { return bar(); }", f"-L{machine}", "-lbar",
        f"-Wl,-rpath,{machine}")
    result = CliRunner().invoke(cli, ["-C", str(tmp_path / "box"), "check"])
    assert result.exit_code == 0, result.output
    assert f"code v1: src/ext.so looks for libraries in {machine}: the build points it at " \
           "the bundle's copies or the system's" in result.output
    assert "warning: src/ext.so needs libbar.so, which the bundle will not carry" in result.output
