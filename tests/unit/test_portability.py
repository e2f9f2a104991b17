"""ELF facts, the portability report and binary relocation, on small files built here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from bundler.build import relocatable, standalone
from bundler.bundle import cstrings, elf
from bundler.bundle.layout import load_layout
from bundler.bundle.relocation import relocate
from bundler.bundle.tree import Bundle
from bundler.errors import BundlerError
from bundler.server import portability


def _tree(root: Path) -> Bundle:
    return Bundle(root, load_layout())

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


def _gcc(*args: str) -> None:
    subprocess.run(["gcc", *args], check=True, capture_output=True)


def _bundle(tmp_path: Path, runpath: str = "$ORIGIN/../lib") -> Path:
    """root/bin/tool, which needs root/lib/libfoo.so.1."""
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "lib").mkdir()
    (root / ".bundler").mkdir()
    src = tmp_path / "foo.c"
    src.write_text("int foo(void) { return 42; }\n")
    _gcc("-shared", "-fPIC", "-Wl,-soname,libfoo.so.1", "-o", str(root / "lib" / "libfoo.so.1"),
         str(src))
    main = tmp_path / "main.c"
    main.write_text("int foo(void);\nint main(void) { return foo() == 42 ? 0 : 1; }\n")
    _gcc("-o", str(root / "bin" / "tool"), str(main), f"-L{root / 'lib'}", "-l:libfoo.so.1",
         f"-Wl,-rpath,{runpath}", "-Wl,--enable-new-dtags")
    (root / ".bundler" / "relocate.json").write_text(json.dumps({"prefix": "/build/x", "files": []}))
    (root / ".bundler" / "origin.json").write_text(json.dumps(
        {"staging": "/build/x", "project": "/home/dev/proj", "sources": {"base": "/opt/py"}}))
    return root


@needs_gcc
def test_elf_facts(tmp_path: Path) -> None:
    root = _bundle(tmp_path)
    info = elf.read(root / "bin" / "tool")
    assert info is not None
    assert "libfoo.so.1" in info.needed and "libc.so.6" in info.needed
    assert info.runpath == ("$ORIGIN/../lib",)
    assert info.search_dirs(root / "bin" / "tool") == [root / "bin" / ".." / "lib"]
    assert info.glibc >= (2, 2)
    lib = elf.read(root / "lib" / "libfoo.so.1")
    assert lib is not None and lib.soname == "libfoo.so.1"
    assert elf.read(root / ".bundler" / "origin.json") is None
    assert [p.name for p in elf.elf_files(root)] == ["tool", "libfoo.so.1"]


@needs_gcc
def test_a_carried_library_is_not_missing_and_a_removed_one_is(tmp_path: Path) -> None:
    root = _bundle(tmp_path)
    report = portability.check(_tree(root))
    assert report.clean and report.carried == 1 and report.elf_files == 2
    (root / "lib" / "libfoo.so.1").unlink()
    report = portability.check(_tree(root))
    assert report.missing == {"libfoo.so.1": ["bin/tool"]}
    assert not report.clean
    assert "missing   libfoo.so.1, needed by bin/tool" in report.lines()


@needs_gcc
def test_a_runpath_out_of_the_bundle_is_reported(tmp_path: Path) -> None:
    root = _bundle(tmp_path, runpath="/opt/elsewhere/lib")
    report = portability.check(_tree(root))
    assert report.outside == {"bin/tool": ["/opt/elsewhere/lib"]}
    assert report.missing == {"libfoo.so.1": ["bin/tool"]}


@needs_gcc
def test_build_paths_are_leaks_but_a_source_prefix_in_a_binary_is_a_note(tmp_path: Path) -> None:
    root = _bundle(tmp_path)
    (root / "app.cfg").write_text("data = /home/dev/proj/data\n")
    (root / "site.py").write_text("PREFIX = '/opt/py'\n")
    (root / "lib" / "blob.bin").write_bytes(b"\0/opt/py/lib\0")
    (root / "relocated.cfg").write_text("home = /build/x/bin\n")
    record = {"prefix": "/build/x", "files": ["relocated.cfg"]}
    (root / ".bundler" / "relocate.json").write_text(json.dumps(record))
    report = portability.check(_tree(root))
    assert report.leaks == {"app.cfg": ["/home/dev/proj"], "site.py": ["/opt/py"]}
    assert report.notes == {"lib/blob.bin": ["/opt/py"]}


def test_padded_replacement_keeps_every_offset() -> None:
    data = b"A\0/long/placeholder/share/x\0\0B:/long/placeholder/a:/long/placeholder/b\0C"
    short = cstrings.replace_padded(data, b"/long/placeholder", b"/q")
    assert len(short) == len(data)
    assert short.split(b"\0")[0] == b"A" and short.endswith(b"\0C")
    assert b"/q/share/x\0" in short and b"B:/q/a:/q/b\0" in short
    # and back out to a longer path, as long as the original slot allows
    longer = cstrings.replace_padded(short, b"/q", b"/a/bit/longer")
    assert len(longer) == len(data) and b"/a/bit/longer/share/x\0" in longer
    with pytest.raises(BundlerError, match="no room"):
        cstrings.replace_padded(short, b"/q", b"/" + b"x" * 40)
    canon = [cstrings.canonical_binary(d, p, b"@") for d, p in ((short, b"/q"), (longer, b"/a/bit/longer"))]
    assert canon[0] == canon[1]


def test_relocating_a_binary_past_its_capacity_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "r"
    (root / ".bundler").mkdir(parents=True)
    blob = root / "tool.bin"
    blob.write_bytes(b"\x7f" + os.fsencode(root) + b"/share\0" + b"\0" * 8 + b"end")
    (root / "notes.txt").write_text(f"{root}/share\n")
    stuck = relocatable.record(_tree(root), {"tool.bin": len(os.fsencode(root)) + 8})
    assert stuck == []
    far = tmp_path / ("x" * 30) / "r"
    far.parent.mkdir()
    shutil.move(str(root), str(far))
    before = (far / "tool.bin").read_bytes()
    with pytest.raises(BundlerError, match="at most"):
        relocate(_tree(far))
    assert (far / "tool.bin").read_bytes() == before
    assert (far / "notes.txt").read_text() == f"{root}/share\n"
    near = tmp_path / "q" / "r"
    near.parent.mkdir()
    shutil.move(str(far), str(near))
    assert relocate(_tree(near))
    moved = (near / "tool.bin").read_bytes()
    assert len(moved) == len(before) and os.fsencode(near) + b"/share\0" in moved
    assert moved.endswith(b"end")


def test_standalone_archives_unpack_once_and_refuse_escapes(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    tree = tmp_path / "python"
    (tree / "bin").mkdir(parents=True)
    (tree / "bin" / "python3.12").write_text("#!/bin/sh\n")
    (tree / "bin" / "python3").symlink_to("python3.12")
    good = tmp_path / "cpython-install_only.tar.gz"
    with tarfile.open(good, "w:gz") as tar:
        tar.add(tree, arcname="python")
    assert standalone.is_archive(str(good)) and not standalone.is_archive("/opt/py")
    prefix = standalone.unpack(good)
    assert prefix.name == "python" and (prefix / "bin" / "python3").is_symlink()
    assert standalone.unpack(good) == prefix
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        evil = tarfile.TarInfo("python/bin/evil")
        evil.type, evil.linkname = tarfile.SYMTYPE, "../../../etc/passwd"
        tar.addfile(evil)
    with pytest.raises(BundlerError, match="leads out of the tree"):
        standalone.unpack(bad)
    assert not [p for p in (tmp_path / "cache" / "bundler" / "pythons").iterdir()
                if p.name.startswith(".unpacking")]
