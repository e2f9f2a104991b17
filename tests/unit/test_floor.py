"""The glibc floor: the spec key, the prediction and refusal before copying, pip kept to the
floor's wheels (real pip, a real wheel), bin/ launchers refusing an older server, and verify."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bundler.build import floor
from bundler.build.interpreters import BuildContext, probe
from bundler.build.pip import pip_install
from bundler.bundle import elf
from bundler.bundle.records import Platform
from bundler.cli import cli
from bundler.errors import BundlerError
from bundler.server.portability import Report
from bundler.spec.checker import SpecError
from bundler.spec.load import parse_spec
from tests.wheels import wheel as _wheel

SPEC = '''\
[bundle]
name = "box"
version = "1"
glibc = {glibc}

[code.v1]
path = "src"
'''
CURRENT = Path(sys.executable).resolve()


def test_the_floor_is_read_and_a_bad_one_names_the_key_and_line() -> None:
    assert parse_spec(SPEC.format(glibc='"2.17"'), Path("/p/bundle.toml")).glibc == (2, 17)
    assert parse_spec(SPEC.replace('glibc = {glibc}\n', ''), Path("/p/bundle.toml")).glibc is None
    for bad in ('"2.x"', '"3.1"', '"2.17\\n"', '"2.4"', '"2"'):
        with pytest.raises(SpecError) as info:
            parse_spec(SPEC.format(glibc=bad), Path("/p/bundle.toml"))
        assert str(info.value).startswith("/p/bundle.toml:4: [bundle] glibc ")
    with pytest.raises(SpecError, match=r"bundle.toml:4: .*glibc"):
        parse_spec(SPEC.format(glibc="2.17"), Path("/p/bundle.toml"))


def test_offending_files_are_grouped_with_what_to_do() -> None:
    root = Path("/b")
    found = {root / "bin/python3.11": (2, 34), root / "lib/libpython3.11.so.1.0": (2, 35),
             root / "lib/python3.11/lib-dynload/_ssl.so": (2, 33),
             root / "envs/x/lib/python3.11/site-packages/numpy/core/a.so": (2, 28),
             root / "envs/x/lib/python3.11/site-packages/numpy/b.so": (2, 17),
             root / "lib/ok.so": (2, 17)}
    lines = floor.offenders(root, found, (2, 17))
    assert lines[:4] == [
        "bin/: python3.11 needs 2.34",
        "envs/x/lib/python3.11/site-packages/numpy: core/a.so needs 2.28",
        "lib/: libpython3.11.so.1.0 needs 2.35",
        "lib/python3.11/lib-dynload/: _ssl.so needs 2.33"]
    assert len(lines) == 6 and 'python = "3.12"' in lines[4] and "manylinux_2_17" in lines[5]
    assert floor.offenders(root, found, (2, 35)) == []


def _init(tmp_path: Path, python: str, glibc: str) -> Path:
    assert CliRunner().invoke(cli, ["-C", str(tmp_path), "init", "box"]).exit_code == 0
    spec = tmp_path / "box" / "bundle.toml"
    spec.write_text(spec.read_text().replace('python = "current"', f'python = "{python}"')
                    .replace('# glibc = "2.17"', f'glibc = "{glibc}"' if glibc else ""))
    return tmp_path / "box"


def test_a_copied_interpreter_above_the_floor_is_refused_before_copying(tmp_path: Path) -> None:
    need = floor.highest(floor.needs([CURRENT]))[0]
    if need <= (2, 31):
        pytest.skip(f"{CURRENT} runs on glibc 2.31")
    project = _init(tmp_path, "current", "2.31")
    for command in (["check"], ["build"]):
        result = CliRunner().invoke(cli, ["-C", str(project), *command])
        assert result.exit_code == 1, result.output
        assert "above [bundle] glibc = 2.31" in result.output
        assert f"bin/: {CURRENT.name} needs" in result.output
        if any(p.name.startswith("libpython") for p in probe(CURRENT).libraries()):
            assert "lib/: libpython" in result.output
        assert 'python = "3.12"' in result.output
    assert not (project / "dist").exists() or not any((project / "dist").iterdir())


def test_check_says_which_floor_the_bundle_will_have_without_one(tmp_path: Path) -> None:
    project = _init(tmp_path, "current", "")
    result = CliRunner().invoke(cli, ["-C", str(project), "check"])
    need = floor.text(floor.highest(floor.needs(probe(CURRENT).elf_files()))[0])
    assert result.exit_code == 0, result.output
    assert f"glibc the bundle will need {need} or newer" in result.output


def test_an_unreachable_mirror_is_known_at_check_with_the_offline_ways_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUNDLER_PYTHON_MIRROR", "http://127.0.0.1:9/")  # nothing listens
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    project = _init(tmp_path, "3.12", "2.17")
    spec = project / "bundle.toml"
    line = next(n for n, text in enumerate(spec.read_text().splitlines(), 1)
                if text.startswith('python = "3.12"'))
    for command in ("check", "build"):
        result = CliRunner().invoke(cli, ["-C", str(project), command])
        assert result.exit_code == 1, result.output
        first = result.output.splitlines()[0]
        assert first.startswith(f"Error: {spec}:{line}: [base] python = '3.12': "), first
        assert "http://127.0.0.1:9/" in first and "Connection refused" in first
        assert "Ways out that need no download:" in result.output
        for way in ('python = "current"', 'python = "/path/prefix"', "install_only.tar.gz",
                    "BUNDLER_PYTHON_MIRROR=DIR"):
            assert way in result.output
        here = floor.text(elf.host_glibc())
        assert f"needs this machine's glibc ({here}) at most" in result.output
    assert not (project / "dist").exists() or not any((project / "dist").iterdir())


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    return folder / "bin" / "python"


def test_pip_takes_no_wheel_newer_than_the_floor(tmp_path: Path, venv: Path) -> None:
    if elf.host_glibc() < (2, 28):
        pytest.skip("this machine's glibc is older than 2.28")
    cp = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    _wheel(tmp_path, "newlib", f"{cp}-{cp}-manylinux_2_28_x86_64")
    _wheel(tmp_path, "oldlib", f"{cp}-{cp}-manylinux2014_x86_64")
    _wheel(tmp_path, "futurelib", f"{cp}-{cp}-manylinux_2_99_x86_64")  # newer than any machine
    if os.uname().machine != "x86_64":
        pytest.skip("the test wheels are for x86_64")
    ctx = BuildContext(spec_folder=tmp_path, pip_options=("--no-index", "--find-links", str(tmp_path)),
                       glibc=(2, 17))
    pip_install(ctx, venv, ("oldlib",), None, "env t")
    for name, needs in (("newlib", "2.28"), ("futurelib", "2.99")):
        with pytest.raises(BundlerError) as info:
            pip_install(ctx, venv, (name,), None, "env t")
        said = str(info.value)
        pip_says = ("pip install for env t failed: Could not find a version that satisfies the "
                    f"requirement {name}")
        assert said.startswith(pip_says), said  # pip's reason first, then the floor's part
        assert f"{name}-1.0-{cp}-{cp}-manylinux_2_{needs[2:]}_x86_64.whl needs glibc {needs}" in said
        assert f"no wheel of {name} runs on glibc 2.17" in said and "--find-links" in said \
            and f"raise [bundle] glibc to {needs}" in said and "\n" not in said
    (tmp_path / "srconly-1.0.tar.gz").write_bytes(b"")  # pip lists it by its name alone
    with pytest.raises(BundlerError) as info:
        pip_install(ctx, venv, ("srconly",), None, "env t")
    assert "No matching distribution found for srconly; the glibc floor is why: srconly has " \
        "sdists only (1.0), and with [bundle] glibc = 2.17" in str(info.value)
    for missing in ("newlib==2.0", "nosuchlib-zz", "srconly>1"):  # pip's words alone
        with pytest.raises(BundlerError) as info:
            pip_install(ctx, venv, (missing,), None, "env t")
        said = str(info.value)
        assert said.startswith(f"pip install for env t failed: Could not find a version that satisfies the "
                               f"requirement {missing} (from versions: "), said
        assert f"No matching distribution found for {missing}" in said and "glibc" not in said
    pip_install(BuildContext(spec_folder=tmp_path, pip_options=ctx.pip_options, glibc=(2, 28)),
                venv, ("newlib",), None, "env t")
    listed = subprocess.run([str(venv), "-m", "pip", "list"], capture_output=True, text=True).stdout
    assert "newlib" in listed and "oldlib" in listed


def _launcher_tree(tmp_path: Path, platform_line: str | None) -> Path:
    from bundler.bundle.layout import load_layout
    from bundler.bundle.render import Renderer

    spec = parse_spec(SPEC.replace('glibc = {glibc}\n', ''), tmp_path / "bundle.toml")
    Renderer(spec, load_layout(), {"base": "bin/python3"}).write_launchers(tmp_path / "bin")
    (tmp_path / "bin" / "python3").write_text("#!/bin/sh\necho started \"$@\"\n")
    (tmp_path / "bin" / "python3").chmod(0o755)
    if platform_line is not None:
        (tmp_path / ".bundler").mkdir()
        (tmp_path / ".bundler" / "platform").write_text(platform_line)
    return tmp_path / "bin" / "start"


@pytest.mark.parametrize("line, said", [
    (f"{os.uname().machine} 2.99 2.99\n", "this bundle needs glibc 2.99 or newer, but this server has glibc"),
    ("s390x 2.17 -\n", f"this bundle was built for s390x, but this server is {os.uname().machine}"),
])
def test_a_launcher_refuses_a_server_it_cannot_run_on_in_one_line(tmp_path: Path, line: str,
                                                                  said: str) -> None:
    done = subprocess.run([str(_launcher_tree(tmp_path, line))], capture_output=True, text=True)
    assert done.returncode == 1 and done.stdout == ""
    assert said in done.stderr and len(done.stderr.splitlines()) == 1


@pytest.mark.parametrize("line", [f"{os.uname().machine} 2.17 2.17\n", None,
                                  f"{os.uname().machine} 0 -\n"])
def test_a_launcher_starts_where_the_bundle_runs(tmp_path: Path, line: str | None) -> None:
    done = subprocess.run([str(_launcher_tree(tmp_path, line))], capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (0, "started -I -m bundler start\n"), done.stderr


def test_verify_states_floor_and_target_and_fails_above_the_floor() -> None:
    here = (os.uname().machine, elf.host_glibc())
    report = Report(glibc=(2, 34), glibc_file="bin/python3.11",
                    platform=Platform(here[0], "2.34", "2.31"), here=here)
    lines = report.lines()
    assert lines[0] == "glibc     needs 2.34 or newer (for bin/python3.11); floor 2.31 ([bundle] " \
                       "glibc): ABOVE THE FLOOR"
    assert lines[1].startswith(f"target    {here[0]}; this machine {here[0]}, glibc ")
    assert not report.clean
    fine = Report(glibc=(2, 17), platform=Platform(here[0], "2.17", "2.17"), here=here)
    assert fine.clean and fine.lines()[1].endswith(": it can run here")
    other = Report(glibc=(2, 17), platform=Platform("s390x", "2.17", ""), here=here)
    assert other.lines()[0].endswith("; no floor declared") and \
        other.lines()[1].endswith(": it cannot run here")


def test_a_conda_environment_declares_its_floor(tmp_path: Path) -> None:
    meta = tmp_path / "conda-meta"
    meta.mkdir()
    (meta / "python-3.11.json").write_text('{"depends": ["__glibc >=2.17,<3.0.a0", "libzlib"]}')
    (meta / "numpy-2.json").write_text('{"depends": ["__glibc >=2.28", "python"]}')
    (meta / "tzdata.json").write_text('{"depends": []}')
    assert floor.conda_floor(tmp_path) == (2, 28)
    assert floor.conda_floor(tmp_path / "none") == ()


def test_a_host_library_above_the_floor_stops_the_build_unless_every_server_has_it() -> None:
    """Build and verify keep one rule (elf.is_expected): what a server of the floor may lack
    is vendored, or the build stops naming the library, who loads it, its glibc and the ways out;
    zlib, on every server, is left to the server's own."""
    from bundler.build.hostlibs import Needed, within_floor

    here = Path("/usr/lib/x86_64-linux-gnu")
    libs = {n: here / n for n in ("libssl.so.3", "libsqlite3.so.0", "libz.so.1")
            if (here / n).exists()}
    if "libz.so.1" not in libs or len(libs) < 2:
        pytest.skip("the test's host libraries are not here")
    user = Path("/python/lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so")
    needed = Needed(host=libs, users={n: user for n in libs})
    said: list[str] = []
    with pytest.raises(BundlerError) as refused:
        within_floor(needed, (2, 5), said.append)
    message = str(refused.value)
    name = sorted(n for n in libs if n != "libz.so.1")[0]
    assert message.startswith(f"{name} ({libs[name]}), loaded by _ssl.cpython-311-x86_64-linux-gnu"
                              ".so, needs glibc 2.") and "\n" not in message
    assert 'above [bundle] glibc = 2.5' in message and "raise [bundle] glibc to 2." in message
    assert 'python = "3.12"' in message and "built without the module that loads it" in message
    zlib_only = Needed(host={"libz.so.1": libs["libz.so.1"]})
    assert within_floor(zlib_only, (2, 5), said.append) == {}
    assert said == [f"  not vendored: libz.so.1 from {libs['libz.so.1']} needs glibc "
                    f"{floor.text(floor.needs([libs['libz.so.1']])[libs['libz.so.1']])}, above the "
                    "floor 2.5; every server of glibc 2.5 has its own"]
    top = max(floor.needs(libs.values()).values())
    assert within_floor(needed, top, said.append) == libs
    assert within_floor(needed, None, said.append) == libs


def test_what_every_server_of_a_floor_has() -> None:
    assert elf.is_expected("libc.so.6") and elf.is_expected("libstdc++.so.6", (2, 17))
    assert elf.is_expected("libz.so.1") and elf.is_expected("libz.so.1", (2, 35))
    for soname in ("libexpat.so.1", "libssl.so.3", "libtinfo.so.6", "libX11.so.6"):
        assert not elf.is_expected(soname, (2, 35)), soname
    assert not elf.is_expected("libfuture.so.1", (2, 99))


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_verify_asks_for_what_the_floor_does_not_promise(tmp_path: Path) -> None:
    """A bundle file that loads libz from the system passes verify at any floor; one that loads
    libexpat from the system fails it: the rule the build applies before it packs."""
    from bundler.server.portability import _check_libraries

    lib = tmp_path / "lib"
    lib.mkdir()
    source = tmp_path / "m.c"
    source.write_text("int f(void) { return 1; }\n")
    module = lib / "m.so"
    done = subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(module), str(source),
                           "-Wl,--no-as-needed", "-lz", "-lexpat"], capture_output=True)
    if done.returncode != 0:
        pytest.skip("no gcc, or no zlib or expat to link here")
    assert "libexpat.so.1" in elf.read(module).needed and "libz.so.1" in elf.read(module).needed
    report = Report(platform=Platform(os.uname().machine, "2.17", "2.17"))
    _check_libraries(tmp_path, [module], report)
    assert report.missing == {"libexpat.so.1": ["lib/m.so"]}
