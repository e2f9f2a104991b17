"""Building: offline installs recorded in the manifest, failures that leave nothing behind."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
import tomlkit

from tests.integration.harness import EXAMPLE, PY37, REPO, bundler

pytestmark = pytest.mark.integration


def test_the_manifest_records_what_the_offline_build_resolved(archive: Path) -> None:
    with tarfile.open(archive) as tar:
        manifest = tomlkit.parse(tar.extractfile("smartbox/bundle.toml").read().decode())
        names = tar.getnames()
    interps = manifest["build"]["interpreters"]
    assert "pillow" in interps["pyocr"]["packages"]
    assert "tomlkit" in interps["tools"]["packages"]
    assert "supervisor" in interps["base"]["packages"]
    assert manifest["services"]["svc3"]["python"] == "envs/pyocr"  # the spec as written
    assert manifest["build"]["code"]["v3"]["folder"] == "your_project_v3"
    assert all(n.split("/")[0] == "smartbox" for n in names)
    assert not any("/site-packages/" in n and "/test/" in n for n in names if "/lib/python" in n)
    assert not any(n.endswith(".a") or "/lib/python3.11/test/" in n for n in names)


def test_bundles_carry_no_installers_nor_a_second_zstandard_backend(archive: Path) -> None:
    """The server installs nothing: pip and setuptools go; zstandard keeps the backend CPython
    imports."""
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        manifest = tomlkit.parse(tar.extractfile("smartbox/bundle.toml").read().decode())
    interps = manifest["build"]["interpreters"]
    for folder, name in (("", "base"), ("envs/pyocr/", "pyocr"), ("envs/tools/", "tools")):
        site = f"smartbox/{folder}lib/python3.11/site-packages/"
        assert not any(n.startswith((f"{site}pip", f"{site}setuptools", f"{site}pkg_resources"))
                       for n in names), name
        assert f"smartbox/{folder}bin/pip" not in names
        assert not {"pip", "setuptools"} & set(interps[name]["packages"])
    zstd = [n for n in names if n.startswith("smartbox/lib/python3.11/site-packages/zstandard/")]
    assert any("/backend_c." in n for n in zstd) and not any("cffi" in n for n in zstd)


def test_a_server_bundle_carries_no_tk_nor_debug_sections(archive: Path) -> None:
    """tkinter, IDLE, the turtle demos, ensurepip's wheels and the Tcl/Tk/X11 libraries stay
    out; the ELF files copied in keep their symbols but not their DWARF (the relocation tests
    start this bundle moved, in a namespace where the source interpreters are hidden)."""
    from elftools.elf.elffile import ELFFile

    with tarfile.open(archive) as tar:
        names = tar.getnames()
        unwanted = re.compile(r"/(tkinter|idlelib|turtledemo)/|/turtle\.py$|/_tkinter\.|"
                              r"/ensurepip/_bundled/.*\.whl$|/lib(tk|tcl|X11|Xft|fontconfig)[^/]*$")
        assert [n for n in names if unwanted.search(n)] == []
        assert "smartbox/lib/python3.11/ensurepip/__init__.py" in names  # the module itself stays
        for name in ("smartbox/lib/libpython3.11.so.1.0", "smartbox/lib/python3.11/site-packages/"
                     "zstandard/backend_c.cpython-311-x86_64-linux-gnu.so"):
            member = next(m for m in tar if m.name.startswith(name.rsplit("-", 1)[0]))
            f = tar.extractfile(member)
            elf = ELFFile(io.BytesIO(f.read()))
            sections = [s.name for s in elf.iter_sections()]
            assert not [n for n in sections if n.startswith(".debug")], member.name
            assert ".symtab" in sections and elf.get_section_by_name(".symtab").num_symbols() > 100


def test_a_library_the_floor_leaves_out_stops_the_build(tmp_path: Path, wheelhouse: Path) -> None:
    """Built for a floor as high as the copied CPython itself needs, a bundle either builds and
    passes verify, or the build stops on the one library it would have left out; with tkinter
    kept, the Tk stack brings one that needs this machine's newer glibc (libexpat, for
    fontconfig, on Debian 12)."""
    from bundler.build import floor, hostlibs, trim
    from bundler.build.interpreters import find_python, probe
    from bundler.bundle import elf

    info = probe(find_python("current", tmp_path))
    need = floor.highest(floor.needs(info.elf_files()))[0]
    bundler("-C", str(tmp_path), "init", "box")
    project = tmp_path / "box"
    spec = project / "bundle.toml"
    text = spec.read_text()
    spec.write_text(text.replace("[bundle]\n", f'[bundle]\nglibc = "{floor.text(need)}"\n', 1))
    offline = ("--no-index", "--find-links", str(wheelhouse))
    built = bundler("-C", str(project), "build", "--format", "tar.zst", *offline, check=False)
    if built.returncode == 0:
        verified = bundler("verify", built.stdout.strip(), check=False)
        assert verified.returncode == 0 and "missing" not in verified.stdout, verified.stdout
    else:
        assert re.search(r"Error: \S+ \(/\S+\), loaded by .* needs glibc [\d.]+, above \[bundle\] "
                         rf"glibc = {floor.text(need)}, and servers", built.stderr), built.stderr

    tk = [p for p in info.elf_files(("tkinter",)) if trim.is_left_out(p, trim.left_out(()))]
    libs = hostlibs.needed(tk, info.prefix)
    above = sorted(soname for soname, path in libs.host.items()
                   if floor.needs([path]).get(path, ()) > need and not elf.is_expected(soname, need))
    if not above:
        pytest.skip(f"no library of this machine's tkinter needs more than glibc {floor.text(need)}")
    spec.write_text(spec.read_text().replace('python = "current"',
                                             'python = "current"\nkeep = ["tkinter"]', 1))
    before = sorted((project / "dist").glob("*")) if (project / "dist").is_dir() else []
    refused = bundler("-C", str(project), "build", "--format", "tar.zst", "--overwrite", *offline,
                      check=False)
    errors = [line for line in refused.stderr.splitlines() if line.startswith("Error:")]
    assert refused.returncode == 1 and len(errors) == 1, refused.stderr
    assert re.match(rf"Error: ({'|'.join(map(re.escape, above))}) \(", errors[0]), errors
    assert "raise [bundle] glibc to " in errors[0] and 'python = "3.12"' in errors[0]
    assert (sorted((project / "dist").glob("*")) if (project / "dist").is_dir() else []) == before


def test_only_recorded_files_name_the_build_path(archive: Path) -> None:
    """What relocation does not rewrite must not depend on where the bundle was built."""
    with tarfile.open(archive) as tar:
        record = json.loads(tar.extractfile("smartbox/.bundler/relocate.json").read())
        needle = record["prefix"].encode()
        naming = {m.name.removeprefix("smartbox/") for m in tar if m.isfile()
                  and needle in tar.extractfile(m).read()}
    assert ".bundler-staging-" in record["prefix"]
    assert naming == {".bundler/relocate.json", ".bundler/origin.json", *record["files"]}
    venvs = {"envs/pyocr/pyvenv.cfg", "envs/pyocr/bin/activate",
             "envs/tools/pyvenv.cfg", "envs/tools/bin/activate"}
    assert set(record["files"]) >= venvs
    # the copied interpreters' build configuration, which named their source prefix
    config = re.compile(r"(envs/py37/)?lib/python3\.\d+/(_sysconfigdata_.*\.py|"
                        r"config-[^/]+/(Makefile|python-config\.py))")
    others = set(record["files"]) - venvs
    assert others and all(config.fullmatch(f) for f in others), others


def test_a_failed_build_leaves_the_output_as_it_was(tmp_path: Path, wheelhouse: Path) -> None:
    project = tmp_path / "proj"
    shutil.copytree(EXAMPLE, project)
    spec = project / "bundle.toml"
    (project / "base.txt").write_text("no-such-package-bundler-test\n")  # fails early: the base
    spec.write_text(spec.read_text().replace('python = "current"',
                                             'python = "current"\nrequirements_file = "base.txt"', 1))
    dist = project / "dist"
    dist.mkdir()
    (dist / "smartbox-2026.11.1.tar.gz").write_text("the previous build")
    result = bundler("-C", str(project), "build", "--no-index", "--find-links", str(wheelhouse),
                     "--overwrite", check=False)  # it may replace the file, once it is built
    assert result.returncode == 1
    assert "pip install for interpreter base failed" in result.stderr
    assert "no-such-package-bundler-test" in result.stderr
    assert [p.name for p in dist.iterdir()] == ["smartbox-2026.11.1.tar.gz"]
    assert (dist / "smartbox-2026.11.1.tar.gz").read_text() == "the previous build"


@pytest.mark.parametrize(("plant", "says"), [
    (lambda p: (p / "sam_v1" / "deploy").mkdir() or (p / "sam_v1" / "deploy" / "id_rsa.bak")
     .write_text("x"), "would ship what looks like a secret: deploy/id_rsa.bak (an SSH private key)"),
    (lambda p: (p / "sam_v1" / "settings.cfg").write_text(
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAE\n"),
     "settings.cfg (holds a private key)"),
    (lambda p: (p / "sam_v1" / "relssh").symlink_to("../../../home/.ssh"),
     "would ship a link that leads out of the code folder: relssh -> ../../../home/.ssh"),
    (lambda p: shutil.rmtree(p / "sam_v1") or (p / "sam_v1").symlink_to("/etc"),
     "is a link to /etc: name the folder itself"),
])
def test_secrets_and_links_out_stop_check_and_build_in_one_line(tmp_path: Path, plant: Any,
                                                                says: str) -> None:
    project = tmp_path / "proj"
    shutil.copytree(EXAMPLE, project)
    plant(project)
    for command in ("check", "build"):
        result = bundler("-C", str(project), command, check=False)
        assert result.returncode == 1, result.stdout
        assert result.stderr.startswith("Error: code v1: ") and says in result.stderr
        assert len(result.stderr.splitlines()) == 1, result.stderr
    assert not (project / "dist").exists()


@pytest.mark.skipif(PY37 is None, reason="pyenv's CPython 3.7.16 is not installed")
def test_bytecode_for_two_python_versions_is_refused_before_building(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    shutil.copytree(EXAMPLE, project)
    c = ["-C", str(project)]
    bundler(*c, "add-code", "compiled", "--path", "sam_v1", "--bytecode")
    bundler(*c, "add-env", "py37", "--python", str(PY37))
    bundler(*c, "add-service", "a", "--code", "compiled", "--command", "python -m x")
    bundler(*c, "add-service", "b", "--python", "py37", "--code", "compiled",
            "--command", "python -m x")
    result = bundler(*c, "build", check=False)
    assert result.returncode == 1
    base = "{}.{}".format(*sys.version_info[:2])
    assert f"different Python versions: a on base ({base}), b on py37 (3.7)" in result.stderr
    assert not (project / "dist").exists()


def test_the_wheel_ships_every_module_templates_and_layouts(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w",
                    str(tmp_path), str(REPO)], check=True, timeout=600)
    wheel = next(tmp_path.glob("offline_bundler-*.whl"))  # its name on PyPI; the package is bundler
    names = set(zipfile.ZipFile(wheel).namelist())
    for template in (REPO / "bundler" / "templates").iterdir():
        assert f"bundler/templates/{template.name}" in names
    assert "bundler/layouts/miniconda.toml" in names
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "bundler").rglob("*.py")}
    assert "bundler/server/monitor/listener.py" in modules and modules <= names
