"""Pack a staged bundle as tar.gz, tar.zst or a plain folder, atomically and reproducibly.

An archive is written in pieces, each compressed on its own (a zstd frame, a gzip member; both
formats read such a sequence as one stream): first the bundle's own files and links (its
records, so a reader finds them early), then for each of the `groups` (the interpreters'
folders) the files it shares by hard link with the build cache, then every folder and the end
of the tar. Folders come last so that tar gives them their modes (a read-only one too) once
what they hold is written. A shared file is never written in place, so a group's piece is
named by its members' names, modes, times and inodes, and a `FrameStore` can hand back the
piece an earlier build compressed.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import stat
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from bundler import progress, runner
from bundler.bundle.pgzip import ParallelGzip
from bundler.errors import BundlerError

SUFFIXES = {"tar.gz": ".tar.gz", "tar.zst": ".tar.zst", "dir": ""}
PARTIAL = ".partial"  # .<artifact>.<pid>-<random>.partial while it is written
ZERO_BLOCK = b"\0" * 512
END = ZERO_BLOCK * 2  # a tar ends with two zero blocks
ZSTD_LEVEL = 3


class FrameStore(Protocol):
    """Compressed pieces of earlier archives, by key."""

    def find(self, key: str) -> IO[bytes] | None: ...

    def keep(self, key: str) -> AbstractContextManager[IO[bytes]]: ...


def artifact_path(output: Path, basename: str, fmt: str) -> Path:
    return output / f"{basename}{SUFFIXES[fmt]}"


def pack(root: Path, output: Path, basename: str, fmt: str, groups: Sequence[str] = (),
         frames: FrameStore | None = None) -> Path:
    """Write `root` (staged as <staging>/<name>) to output/<basename>.<fmt>; replace atomically.
    `groups` are folders relative to `root` ("." for root itself) whose shared files are pieces
    of their own, taken from `frames` when it holds them."""
    final = artifact_path(output, basename, fmt)
    if fmt == "dir":
        _replace_dir(root, final)
        return final
    if fmt not in SUFFIXES:
        raise BundlerError(f"unknown archive format {fmt!r}")
    fd, tmp_name = tempfile.mkstemp(dir=output, prefix=f".{final.name}.{os.getpid()}-",
                                    suffix=PARTIAL)
    progress.watch(Path(tmp_name))  # its size, on the status line
    try:
        with os.fdopen(fd, "wb") as raw:
            _write_pieces(root, raw, fmt, groups, frames)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, final)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    finally:
        progress.watch(None)
    return final


@dataclass
class Piece:
    names: list[str] = field(default_factory=list)  # archive member names, in order
    key: Any = None  # a sha256 of what decides its bytes, when it can be kept


def pieces(root: Path, groups: Sequence[str], keyed: bool) -> list[Piece]:
    """The bundle's members (each folder's entries sorted by name), in pieces: its own files
    and links, a piece per group with its shared files, then the folders."""
    tops = {os.path.normpath(g): i for i, g in enumerate(groups)}
    own, shared, folders = Piece(), [Piece() for _ in groups], Piece([root.name])
    if keyed:
        for piece in shared:
            piece.key = hashlib.sha256(f"{_writer()}\0{_epoch()}\n".encode())

    def walk(folder: str, name: str, group: int | None) -> None:
        with os.scandir(folder) as listing:
            items = sorted(listing, key=lambda e: os.fsencode(e.name))
        for item in items:
            member = f"{name}/{item.name}"
            st = item.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                folders.names.append(member)
                walk(item.path, member, tops.get(member.split("/", 1)[1], group))
            elif group is not None and st.st_nlink > 1 and stat.S_ISREG(st.st_mode):
                piece = shared[group]
                piece.names.append(member)
                if piece.key is not None:
                    piece.key.update(f"{member}\0{st.st_mode}:{st.st_size}:{st.st_mtime_ns}:"
                                     f"{st.st_dev}:{st.st_ino}\n".encode(errors="surrogateescape"))
            else:
                own.names.append(member)

    walk(os.fspath(root), root.name, tops.get("."))
    return [p for p in (own, *shared, folders) if p.names]


def _write_pieces(root: Path, raw: IO[bytes], fmt: str, groups: Sequence[str],
                  frames: FrameStore | None) -> None:
    for piece in pieces(root, groups, keyed=frames is not None):
        key = f"{piece.key.hexdigest()}-{_codec(fmt)}" if piece.key is not None else None
        kept = frames.find(key) if frames is not None and key is not None else None
        if kept is not None:
            with kept:
                shutil.copyfileobj(kept, raw, 1 << 20)
            continue
        with frames.keep(key) if frames is not None and key is not None else nullcontext() as copy, \
                _compressor(_Tee(raw, copy) if copy is not None else raw, fmt) as stream:
            _write_tar(root.parent, piece.names, stream)
    with _compressor(raw, fmt) as stream:
        stream.write(END)


class _Tee:
    def __init__(self, *targets: IO[bytes]) -> None:
        self.targets = targets

    def write(self, data: bytes) -> int:
        for target in self.targets:
            target.write(data)
        return len(data)


@contextmanager
def _compressor(raw: IO[bytes] | _Tee, fmt: str) -> Iterator[IO[bytes]]:
    if fmt == "tar.zst":
        import zstandard

        with zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=-1).stream_writer(
                raw, closefd=False) as z:  # type: ignore[arg-type]
            yield z
    else:
        gz = ParallelGzip(raw)  # type: ignore[arg-type]
        try:
            yield gz  # type: ignore[misc]
            gz.close()
        finally:
            gz.pool.shutdown(cancel_futures=True)


@functools.cache
def _codec(fmt: str) -> str:
    """What decides a piece's compressed bytes besides its tar bytes."""
    if fmt == "tar.zst":
        import zstandard

        return f"zst{ZSTD_LEVEL}-{zstandard.__version__}"
    return f"gz{ParallelGzip.LEVEL}-{ParallelGzip.codec_name()}-{ParallelGzip.BLOCK}"


def _epoch() -> int | None:
    value = os.environ.get("SOURCE_DATE_EPOCH")
    return int(value) if value and value.isdigit() else None


def _write_tar(top: Path, names: list[str], stream: IO[bytes]) -> None:
    """The members `names` (relative to `top`) without the end-of-archive blocks, owners
    dropped, mtimes clamped to SOURCE_DATE_EPOCH: by GNU tar where there is one (several times
    faster than tarfile on many small files), else by tarfile."""
    if _gnu_tar() is not None:
        _write_with_gnu_tar(top, names, stream)
    else:
        _write_with_tarfile(top, names, stream)


@functools.cache
def _gnu_tar() -> str | None:
    """GNU tar 1.28 or newer, or None."""
    found = shutil.which("tar")
    match = re.match(r"tar \(GNU tar\) (\d+)\.(\d+)", _tar_says(found)) if found else None
    return found if match and (int(match[1]), int(match[2])) >= (1, 28) else None


@functools.cache
def _tar_says(tar: str) -> str:
    try:
        return runner.call([tar, "--version"], what="tar --version", timeout=30, merge=False).output
    except BundlerError:
        return ""


def _writer() -> str:
    """What writes the tar bytes, for the pieces' keys."""
    tar = _gnu_tar()
    return f"{tar} {_tar_says(tar).splitlines()[0]}" if tar else f"tarfile {sys.version}"


def _write_with_gnu_tar(top: Path, names: list[str], stream: IO[bytes]) -> None:
    epoch = _epoch()
    tar = _gnu_tar()
    assert tar is not None
    cmd = [tar, "--create", "--file=-", f"--directory={top}", "--no-recursion", "--null",
           "--verbatim-files-from", "--files-from=-", "--format=gnu", "--owner=0", "--group=0",
           "--numeric-owner", *([f"--mtime=@{epoch}", "--clamp-mtime"] if epoch is not None else [])]
    with tempfile.TemporaryFile() as listing:
        listing.write(b"".join(os.fsencode(n) + b"\0" for n in names))
        listing.seek(0)
        with runner.stream(cmd, what=f"packing {top / names[0]} with {tar}", stdin=listing,
                           env={**os.environ, "LC_ALL": "C"}) as members:
            complete = _pass_members(members, stream)
    if not complete:
        raise BundlerError(f"{tar} ended its archive of {top / names[0]} unexpectedly")


def _pass_members(tar: IO[bytes], stream: IO[bytes]) -> bool:
    """Copy a tar stream's members, not its end (a zero block where a header would be, then
    padding to the record size); False if it has no end."""
    header = 0   # where the next member's header starts, from the start of `chunk`
    cut = b""    # the start of a header that the last read ended in
    while block := tar.read(1 << 20):
        chunk = memoryview(cut + block if cut else block)
        while header + 512 <= len(chunk):
            if chunk[header:header + 512] == ZERO_BLOCK:
                stream.write(chunk[:header])
                while tar.read(1 << 20):  # the padding
                    pass
                return True
            header += 512 + -(-_member_size(chunk[header + 124:header + 136]) // 512) * 512
        if header < len(chunk):
            stream.write(chunk[:header])
            cut, header = bytes(chunk[header:]), 0
        else:
            stream.write(chunk)
            cut, header = b"", header - len(chunk)
    return False


def _member_size(field: memoryview) -> int:
    """A tar header's size field: octal digits, or base-256 (GNU) for 8 GiB and more."""
    if field[0] & 0x80:
        return int.from_bytes(field[1:], "big")
    return int(bytes(field).strip(b" \0") or b"0", 8)


class _Counting:
    """A write-only stream with a position, as tarfile wants one."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream, self.offset = stream, 0

    def write(self, data: bytes) -> int:
        self.stream.write(data)
        self.offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self.offset


def _write_with_tarfile(top: Path, names: list[str], stream: IO[bytes]) -> None:
    epoch = _epoch()

    def normalize(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        if epoch is not None:
            info.mtime = min(info.mtime, epoch)
        return info

    # never closed: closing would write the end-of-archive blocks, which only the last piece has
    tar = tarfile.TarFile(fileobj=_Counting(stream), mode="w",  # type: ignore[arg-type]
                          format=tarfile.PAX_FORMAT)
    for name in names:
        tar.add(top / name, arcname=name, recursive=False, filter=normalize)


def _replace_dir(src: Path, final: Path) -> None:
    """Move the staged tree to `final`, replacing an older one only once the new one is complete."""
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
        os.replace(src, final)
        shutil.rmtree(old)
    else:
        os.replace(src, final)


HEADER_LIMIT = 1 << 20  # bytes of a long-name or pax header: tarfile reads one whole into memory


class _Unreadable(Exception):
    """A member header read_tar refuses before tarfile acts on it."""


class _CheckedInfo(tarfile.TarInfo):
    """tarfile's TarInfo, but a long-name or pax header larger than HEADER_LIMIT (tarfile would
    read it all into memory: a tiny compressed archive can declare gigabytes) and sparse members
    (their maps too are read into memory; no bundle or patch has them) are refused."""

    def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE,
                         tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE) and self.size > HEADER_LIMIT:
            raise _Unreadable(f"a member's extended header declares {self.size} bytes, more than "
                              f"the {HEADER_LIMIT >> 20} MiB allowed")
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise _Unreadable(f"member {self.name[:100]!r} is a sparse file")
        found: tarfile.TarInfo = super()._proc_member(tar)  # type: ignore[misc]
        return found

    def _sparse(self, *args: Any) -> None:
        raise _Unreadable(f"member {self.name[:100]!r} is a sparse file")

    _proc_gnusparse_00 = _proc_gnusparse_01 = _proc_gnusparse_10 = _sparse


@contextmanager
def read_tar(path: Path) -> Iterator[tarfile.TarFile]:
    """A streaming reader for a .tar, .tar.gz or .tar.zst (told apart by their first bytes), of
    one compressed piece or several; headers checked (_CheckedInfo)."""
    import gzip
    import zlib

    import zstandard

    try:
        raw = open(path, "rb")
    except OSError as exc:
        raise BundlerError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        with raw:
            magic = raw.read(4)
            raw.seek(0)
            if magic == b"\x28\xb5\x2f\xfd":
                with zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True) as z, \
                        tarfile.open(fileobj=z, mode="r|", tarinfo=_CheckedInfo) as tar:
                    yield tar
            elif magic[:2] == b"\x1f\x8b":
                with gzip.GzipFile(fileobj=raw) as gz, \
                        tarfile.open(fileobj=gz, mode="r|", tarinfo=_CheckedInfo) as tar:
                    yield tar
            else:
                with tarfile.open(fileobj=raw, mode="r|*", tarinfo=_CheckedInfo) as tar:
                    yield tar
    except _Unreadable as exc:
        raise BundlerError(f"refusing {path}: {exc}; nothing was unpacked") from None
    except (tarfile.TarError, EOFError, zstandard.ZstdError, gzip.BadGzipFile,
            zlib.error) as exc:
        raise BundlerError(f"{path} is not a readable tar archive: {exc}") from exc
