"""Debug sections out of the ELF files a build copies in (what `strip --strip-debug` does): the
symbol tables stay, so backtraces still name functions; DWARF, which only a debugger reads, goes.
libpython alone carries 16 MB of it.

Done here rather than with binutils' strip, which the build machine may lack and which, run on
a file patchelf has edited (every copied library's RUNPATH), is known to write one the loader
rejects (NixOS/patchelf#10, #145). Only sections that no segment maps are touched: every byte the
loader reads (headers, the dynamic section with its RUNPATH, the strings the relocation rewrites)
stays where it was. The sections after the first debug one are laid out again, their headers
renumbered, and the section header table written at the end. A file this cannot handle safely
(an object file, section groups, extended section numbering, a debug section inside a segment) is
left as it is.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bundler.bundle import elf
from bundler.fsutil import write_atomic

RULE = "strip-debug 1"  # in the build cache key: a change here is another interpreter
_DEBUG = (".debug", ".zdebug", ".stab", ".gnu.linkonce.wi.")
_SHF_ALLOC, _SHF_INFO_LINK = 0x2, 0x40
_SHT_SYMTAB, _SHT_NOBITS, _SHT_REL, _SHT_RELA, _SHT_DYNSYM = 2, 8, 9, 4, 11
_SHT_GROUP, _SHT_SYMTAB_SHNDX = 17, 18
_SHN_LORESERVE = 0xFF00
_STT_SECTION = 3
_ET_EXEC, _ET_DYN = 2, 3


@dataclass
class _Section:
    index: int
    name_at: int
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    link: int
    info: int
    addralign: int
    entsize: int
    name: str = ""

    def packed(self, form: str) -> bytes:
        return struct.pack(form, self.name_at, self.type, self.flags, self.addr, self.offset,
                           self.size, self.link, self.info, self.addralign, self.entsize)


def strip_debug(path: Path) -> int:
    """Drop the debug sections of the ELF file `path` (replaced, never written into: it may be
    a cache entry's hard link); return the bytes saved, 0 when there was nothing to drop or it
    could not be done safely."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        stripped = stripped_bytes(data)
    except (struct.error, ValueError, OverflowError, MemoryError, KeyError, IndexError):
        return 0  # a malformed file (a wheel may ship anything): left as it is
    if stripped is None:
        return 0
    write_atomic(path, stripped)
    return len(data) - len(stripped)


def strip_tree(files: Iterable[Path]) -> tuple[int, int]:
    """Strip every ELF file among `files`; return (files stripped, bytes saved)."""
    count = saved = 0
    for path in files:
        if path.is_symlink() or not elf.is_elf(path):
            continue
        gain = strip_debug(path)
        if gain:
            count, saved = count + 1, saved + gain
    return count, saved


def interpreter_elf_files(folder: Path) -> list[Path]:
    """The regular ELF files of the interpreter at `folder`: under its bin/, lib/ and lib64/
    (the base's folder is the bundle's root, which holds the envs, made at the same time)."""
    found = []
    for name in ("bin", "lib", "lib64"):
        top = folder / name
        if top.is_symlink() or not top.is_dir():
            continue
        for here, _, files in os.walk(top):
            found += [p for p in (Path(here, n) for n in files)
                      if not p.is_symlink() and elf.is_elf(p)]
    return found


def stripped_bytes(data: bytes) -> bytes | None:
    """`data` without its debug sections; None when it has none or they cannot be dropped
    without touching what the loader maps."""
    parsed = _parse(data)
    if parsed is None:
        return None
    form, head, sections = parsed
    drop = {s.index for s in sections if s.index and s.name.startswith(_DEBUG)}
    drop |= {s.index for s in sections if s.type in (_SHT_REL, _SHT_RELA) and s.info in drop}
    if not drop or any(sections[i].flags & _SHF_ALLOC for i in drop):
        return None
    cut = min(sections[i].offset for i in drop)
    kept = [s for s in sections if s.index not in drop]
    moved = sorted((s for s in kept if s.index and s.type != _SHT_NOBITS and s.offset >= cut),
                   key=lambda s: s.offset)
    renumber = {s.index: new for new, s in enumerate(kept)}
    if not _movable(data, form, head, kept, moved, cut, renumber):
        return None
    out = bytearray(data[:cut])
    for s in moved:
        body = data[s.offset:s.offset + s.size]
        if s.type == _SHT_SYMTAB:
            renumbered = _renumber_symbols(body, form, renumber)
            if renumbered is None:
                return None
            body, gone = renumbered
            s.size, s.info = len(body), s.info - gone  # section symbols are local: first
        out += b"\0" * (-len(out) % max(s.addralign, 1))
        s.offset = len(out)
        out += body
    out += b"\0" * (-len(out) % (8 if form.wide else 4))
    head[5], head[11], head[12] = len(out), len(kept), renumber[head[12]]
    for s in kept:
        if s.link:
            s.link = renumber[s.link]
        if s.info and (s.type in (_SHT_REL, _SHT_RELA) or s.flags & _SHF_INFO_LINK):
            s.info = renumber[s.info]
        out += s.packed(form.section)
    struct.pack_into(form.head, out, 16, *head)
    return bytes(out)


@dataclass(frozen=True)
class _Form:
    wide: bool  # ELF64
    end: str    # struct's byte order

    @property
    def head(self) -> str:  # the ELF header after e_ident
        return self.end + ("HHIQQQIHHHHHH" if self.wide else "HHIIIIIHHHHHH")

    @property
    def section(self) -> str:
        return self.end + ("IIQQQQIIQQ" if self.wide else "IIIIIIIIII")

    @property
    def segment(self) -> str:
        return self.end + ("IIQQQQQQ" if self.wide else "IIIIIIII")


def _parse(data: bytes) -> tuple[_Form, list[int], list[_Section]] | None:
    """The form, header fields and sections of a shared library or executable."""
    if data[:4] != elf.MAGIC or len(data) < 64 or data[4] not in (1, 2) or data[5] not in (1, 2):
        return None
    form = _Form(data[4] == 2, "<" if data[5] == 1 else ">")
    head = list(struct.unpack_from(form.head, data, 16))
    e_type, shoff, shentsize, shnum, shstrndx = head[0], head[5], head[10], head[11], head[12]
    if e_type not in (_ET_EXEC, _ET_DYN) or not shoff or not shnum or shnum >= _SHN_LORESERVE \
            or shentsize != struct.calcsize(form.section) or shstrndx >= shnum \
            or shoff + shnum * shentsize > len(data):
        return None
    sections = [_Section(i, *struct.unpack_from(form.section, data, shoff + i * shentsize))
                for i in range(shnum)]
    names = sections[shstrndx]
    for s in sections:
        at = names.offset + s.name_at
        stop = data.find(b"\0", at, names.offset + names.size)
        s.name = data[at:stop].decode("latin-1") if stop >= 0 else ""
    if any(s.type in (_SHT_GROUP, _SHT_SYMTAB_SHNDX) for s in sections):
        return None
    return form, head, sections


def _movable(data: bytes, form: _Form, head: list[int], kept: list[_Section],
             moved: list[_Section], cut: int, renumber: dict[int, int]) -> bool:
    """Whether everything from `cut` on can be laid out again and the kept sections renumbered
    without changing a byte the loader reads."""
    if head[5] < cut or _mapped_beyond(data, form, head[4], head[8], head[9], cut) \
            or any(s.flags & _SHF_ALLOC for s in moved) \
            or any(s.type != _SHT_NOBITS and s.offset < cut < s.offset + s.size for s in kept):
        return False
    symtabs = {s.index for s in kept if s.type == _SHT_SYMTAB}
    if any(s.type == _SHT_SYMTAB and s not in moved for s in kept):
        return False
    if any(s.type in (_SHT_REL, _SHT_RELA) and s.link in symtabs for s in kept):
        return False  # a relocation section kept would name symbols by their number
    if any(s.type == _SHT_DYNSYM and _renumber_symbols(data[s.offset:s.offset + s.size], form,
                                                        renumber, check_only=True) is None
           for s in kept):
        return False
    return all(s.link in renumber for s in kept if s.link) and \
        all(s.info in renumber for s in kept
            if s.info and (s.type in (_SHT_REL, _SHT_RELA) or s.flags & _SHF_INFO_LINK))


def _mapped_beyond(data: bytes, form: _Form, phoff: int, phentsize: int, phnum: int,
                   cut: int) -> bool:
    """Whether a segment holds any byte at or after `cut` (those the loader reads stay put)."""
    if phnum and phentsize != struct.calcsize(form.segment):
        return True
    for i in range(phnum):
        fields = struct.unpack_from(form.segment, data, phoff + i * phentsize)
        offset, filesz = (fields[2], fields[5]) if form.wide else (fields[1], fields[4])
        if filesz and offset + filesz > cut:
            return True
    return phoff + phnum * phentsize > cut


def _renumber_symbols(body: bytes, form: _Form, renumber: dict[int, int],
                      check_only: bool = False) -> tuple[bytes, int] | None:
    """A symbol table's entries with the new numbers of their sections, without the section
    symbols of dropped sections; and how many went. None when another symbol names a dropped
    section, or (`check_only`, for the loader's .dynsym, which stays as it is) when any symbol's
    section changes number."""
    size, at_info, at_shndx = (24, 4, 6) if form.wide else (16, 12, 14)
    out, gone = bytearray(), 0
    for at in range(0, len(body) - size + 1, size):
        entry = bytearray(body[at:at + size])
        (shndx,) = struct.unpack_from(form.end + "H", entry, at_shndx)
        if shndx and shndx < _SHN_LORESERVE:
            new = renumber.get(shndx)
            if new is None and entry[at_info] == _STT_SECTION and not check_only:  # local
                gone += 1
                continue
            if new is None or (check_only and new != shndx):
                return None
            struct.pack_into(form.end + "H", entry, at_shndx, new)
        out += entry
    return bytes(out), gone
