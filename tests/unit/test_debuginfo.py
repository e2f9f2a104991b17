"""Debug sections out of ELF files (build/debuginfo.py): the sections `strip --strip-debug`
drops, and nothing else; the file still loads, keeps its symbols and its RUNPATH, and patchelf
still edits it. A layout it cannot rewrite without moving what the loader maps is left alone."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from bundler.build import debuginfo
from bundler.build.interpreters import patchelf

SOURCE = """
static int helper(int x) { return x * 3; }
int tripled(int x) { return helper(x) + 0; }
const char where[] = "/opt/build/prefix/lib";
"""


def _library(tmp_path: Path, name: str = "libt.so", *flags: str) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("no gcc here")
    source = tmp_path / "t.c"
    source.write_text(SOURCE)
    out = tmp_path / name
    subprocess.run(["gcc", "-g", "-O0", "-shared", "-fPIC", "-o", str(out), str(source), *flags],
                   check=True, capture_output=True)
    return out


def _sections(path: Path) -> list[str]:
    with open(path, "rb") as f:
        return [s.name for s in ELFFile(f).iter_sections()]


def _symbols(path: Path) -> set[str]:
    with open(path, "rb") as f:
        table = ELFFile(f).get_section_by_name(".symtab")
        return {s.name for s in table.iter_symbols()} if table else set()


def _mapped(path: Path) -> list[bytes]:
    """What the loader maps of `path`, but the ELF header's section table fields."""
    data = path.read_bytes()
    with open(path, "rb") as f:
        segments = [(s["p_offset"], s["p_filesz"]) for s in ELFFile(f).iter_segments()
                    if s["p_type"] == "PT_LOAD"]
    return [data[max(offset, 64):offset + size] for offset, size in segments]


def test_debug_sections_go_symbols_and_the_loaded_image_stay(tmp_path: Path) -> None:
    lib = _library(tmp_path, "libt.so", "-Wl,-rpath,$ORIGIN/../lib")
    before, symbols, size = _sections(lib), _symbols(lib), lib.stat().st_size
    assert ".debug_info" in before and {"tripled", "helper"} <= symbols
    loaded = _mapped(lib)
    linked = tmp_path / "linked.so"
    os.link(lib, linked)  # a cache entry's hard link: replaced, never written into
    saved = debuginfo.strip_debug(lib)
    assert saved > 0 and lib.stat().st_size == size - saved and linked.stat().st_size == size
    after = _sections(lib)
    assert not any(n.startswith(".debug") for n in after)
    assert after == [n for n in before if not n.startswith(".debug")]
    assert _symbols(lib) == symbols  # backtraces still name functions
    assert _mapped(lib) == loaded
    data = lib.read_bytes()
    assert b"/opt/build/prefix/lib\0" in data  # strings the relocation rewrites stay in place
    if shutil.which("strip"):
        reference = tmp_path / "reference.so"
        subprocess.run(["strip", "--strip-debug", "-o", str(reference), str(linked)], check=True)
        # the same sections; it also drops the source files' names (STT_FILE), kept here
        assert after == _sections(reference) and _symbols(reference) <= symbols
    assert ctypes.CDLL(str(lib)).tripled(14) == 42
    assert debuginfo.strip_debug(lib) == 0  # nothing left to drop: the file is not rewritten


def test_patchelf_edits_a_stripped_file(tmp_path: Path) -> None:
    lib = _library(tmp_path)
    assert debuginfo.strip_debug(lib) > 0
    tool = patchelf()
    subprocess.run([tool, "--set-rpath", "$ORIGIN/" + "long/" * 40, str(lib)], check=True)
    assert subprocess.run([tool, "--print-rpath", str(lib)], check=True, capture_output=True,
                          text=True).stdout.strip() == "$ORIGIN/" + "long/" * 40
    assert ctypes.CDLL(str(lib)).tripled(2) == 6


def test_a_file_patchelf_laid_out_anew_is_left_alone(tmp_path: Path) -> None:
    """patchelf (auditwheel's wheels) may add a segment after the debug sections: dropping them
    would move what the loader maps, so the file stays as it is, and still loads."""
    lib = _library(tmp_path)
    subprocess.run([patchelf(), "--set-rpath", "$ORIGIN/" + "x" * 3000, str(lib)], check=True)
    with open(lib, "rb") as f:
        elf = ELFFile(f)
        debug = min(s["sh_offset"] for s in elf.iter_sections() if s.name.startswith(".debug"))
        last = max(s["p_offset"] + s["p_filesz"] for s in elf.iter_segments())
    if last <= debug:
        pytest.skip("this patchelf kept its segments before the debug sections")
    data = lib.read_bytes()
    assert debuginfo.strip_debug(lib) == 0 and lib.read_bytes() == data
    assert ctypes.CDLL(str(lib)).tripled(1) == 3


def test_files_without_debug_sections_or_not_elf_are_untouched(tmp_path: Path) -> None:
    lib = _library(tmp_path)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(lib), str(tmp_path / "t.c")], check=True)
    text = tmp_path / "script.py"
    text.write_text("print(1)\n")
    obj = tmp_path / "t.o"  # an object file: its sections are not ours to renumber
    subprocess.run(["gcc", "-g", "-c", "-o", str(obj), str(tmp_path / "t.c")], check=True)
    for path in (lib, text, obj):
        data = path.read_bytes()
        assert debuginfo.strip_debug(path) == 0 and path.read_bytes() == data, path.name
    assert debuginfo.strip_tree([lib, text, obj]) == (0, 0)


def test_an_interpreters_elf_files_are_found_under_bin_and_lib(tmp_path: Path) -> None:
    lib = _library(tmp_path)
    root = tmp_path / "root"
    for rel in ("bin/python3.11", "lib/libpython3.11.so.1.0", "lib/python3.11/lib-dynload/_x.so",
                "envs/other/lib/liby.so"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(lib, root / rel)
    (root / "lib" / "README").write_text("not elf")
    (root / "lib64").symlink_to("lib")
    found = sorted(p.relative_to(root).as_posix() for p in debuginfo.interpreter_elf_files(root))
    assert found == ["bin/python3.11", "lib/libpython3.11.so.1.0", "lib/python3.11/lib-dynload/_x.so"]
    assert debuginfo.strip_tree(debuginfo.interpreter_elf_files(root))[0] == 3


def test_a_malformed_elf_file_is_left_as_it_is(tmp_path: Path) -> None:
    bad = tmp_path / "bad.so"
    bad.write_bytes(b"\x7fELF\x02\x01\x01" + b"\xff" * 57 + b"\x00" * 8)
    assert debuginfo.strip_debug(bad) == 0
    assert bad.read_bytes()[:4] == b"\x7fELF"
