"""Pack a staged bundle as tar.gz, tar.zst or a plain folder, atomically and reproducibly."""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import os
import re
import shutil
import struct
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from bundler.errors import BundlerError

SUFFIXES = {"tar.gz": ".tar.gz", "tar.zst": ".tar.zst", "dir": ""}
PARTIAL = ".partial"  # .<artifact>.<pid>-<random>.partial while it is written


def artifact_path(output: Path, basename: str, fmt: str) -> Path:
    return output / f"{basename}{SUFFIXES[fmt]}"


def pack(root: Path, output: Path, basename: str, fmt: str) -> Path:
    """Write `root` (staged as <staging>/<name>) to output/<basename>.<fmt>; replace atomically."""
    final = artifact_path(output, basename, fmt)
    if fmt == "dir":
        _replace_dir(root, final)
        return final
    fd, tmp_name = tempfile.mkstemp(dir=output, prefix=f".{final.name}.{os.getpid()}-",
                                    suffix=PARTIAL)
    try:
        with os.fdopen(fd, "wb") as raw, _compressor(raw, fmt) as stream:
            _write_tar(root, stream)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, final)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return final


@contextmanager
def _compressor(raw: IO[bytes], fmt: str) -> Iterator[IO[bytes]]:
    if fmt == "tar.zst":
        import zstandard

        with zstandard.ZstdCompressor(level=3, threads=-1).stream_writer(raw, closefd=False) as z:
            yield z
    elif fmt == "tar.gz":
        gz = ParallelGzip(raw)
        try:
            yield gz  # type: ignore[misc]
            gz.close()
        finally:
            gz.pool.shutdown(cancel_futures=True)
    else:
        raise BundlerError(f"unknown archive format {fmt!r}")


class ParallelGzip:
    """gzip on every core, as pigz does: 1 MiB blocks compressed on their own (each with the 32
    KiB before it as dictionary) and joined in order. The blocks are cut by offset, so the bytes
    do not depend on the number of cores or on how the data arrived."""

    BLOCK = 1 << 20
    WINDOW = 1 << 15

    def __init__(self, raw: IO[bytes], level: int = 6) -> None:
        self.codec: Any
        try:
            from zlib_ng import zlib_ng  # twice as fast as zlib at the same level

            self.codec = zlib_ng
        except ImportError:
            import zlib

            self.codec = zlib
        self.raw, self.level = raw, level
        self.pending = bytearray()
        self.previous = b""
        self.crc = 0
        self.size = 0
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1)
        self.queued: collections.deque[concurrent.futures.Future[bytes]] = collections.deque()
        raw.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")  # no name, mtime 0, unix

    def _deflate(self, block: bytes, dictionary: bytes) -> bytes:
        extra = {"zdict": dictionary} if dictionary else {}
        c = self.codec.compressobj(self.level, self.codec.DEFLATED, -15, 8, **extra)
        return bytes(c.compress(block) + c.flush(self.codec.Z_SYNC_FLUSH))

    def _submit(self, block: bytes) -> None:
        self.crc = self.codec.crc32(block, self.crc)
        self.size += len(block)
        self.queued.append(self.pool.submit(self._deflate, block, self.previous[-self.WINDOW:]))
        self.previous = block
        while len(self.queued) > 2 * (os.cpu_count() or 1):
            self.raw.write(self.queued.popleft().result())

    def write(self, data: bytes) -> int:
        self.pending += data
        while len(self.pending) >= self.BLOCK:
            self._submit(bytes(self.pending[:self.BLOCK]))
            del self.pending[:self.BLOCK]
        return len(data)

    def close(self) -> None:
        if self.pending:
            self._submit(bytes(self.pending))
            self.pending.clear()
        while self.queued:
            self.raw.write(self.queued.popleft().result())
        self.pool.shutdown()
        self.raw.write(b"\x03\x00")  # an empty last block
        self.raw.write(struct.pack("<II", self.crc & 0xFFFFFFFF, self.size & 0xFFFFFFFF))


def _epoch() -> int | None:
    value = os.environ.get("SOURCE_DATE_EPOCH")
    return int(value) if value and value.isdigit() else None


def _write_tar(root: Path, stream: IO[bytes]) -> None:
    """One top-level folder, members sorted, owners dropped, mtimes clamped to SOURCE_DATE_EPOCH:
    by GNU tar where there is one (several times faster than tarfile on many small files), else
    by tarfile."""
    if _gnu_tar() is not None:
        _write_with_gnu_tar(root, stream)
    else:
        _write_with_tarfile(root, stream)


@functools.cache
def _gnu_tar() -> str | None:
    """GNU tar 1.28 or newer (--sort), or None."""
    found = shutil.which("tar")
    if found is None:
        return None
    try:
        said = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.match(r"tar \(GNU tar\) (\d+)\.(\d+)", said)
    return found if match and (int(match[1]), int(match[2])) >= (1, 28) else None


def _write_with_gnu_tar(root: Path, stream: IO[bytes]) -> None:
    epoch = _epoch()
    tar = _gnu_tar()
    assert tar is not None
    cmd = [tar, "--create", "--file=-", f"--directory={root.parent}", "--sort=name",
           "--format=gnu", "--owner=0", "--group=0", "--numeric-owner",
           *([f"--mtime=@{epoch}", "--clamp-mtime"] if epoch is not None else []), "--", root.name]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env={**os.environ, "LC_ALL": "C"}) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        shutil.copyfileobj(proc.stdout, stream, 1 << 20)
        errors = proc.stderr.read().decode(errors="replace").strip()
    if proc.returncode != 0:
        raise BundlerError(f"packing {root} with {tar} failed (exit {proc.returncode}): {errors}")


def _write_with_tarfile(root: Path, stream: IO[bytes]) -> None:
    epoch = _epoch()

    def normalize(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        if epoch is not None:
            info.mtime = min(info.mtime, epoch)
        return info

    with tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        tar.add(root, arcname=root.name, recursive=False, filter=normalize)
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(dirs + files):
                path = Path(folder, name)
                tar.add(path, arcname=str(Path(root.name, path.relative_to(root))),
                        recursive=False, filter=normalize)


def _replace_dir(src: Path, final: Path) -> None:
    """Move the staged tree to `final`, replacing an older one only once the new one is complete."""
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
        os.replace(src, final)
        shutil.rmtree(old)
    else:
        os.replace(src, final)


@contextmanager
def read_tar(path: Path) -> Iterator[tarfile.TarFile]:
    """A streaming reader for a .tar, .tar.gz or .tar.zst (told apart by their first bytes)."""
    import zstandard

    try:
        raw = open(path, "rb")
    except OSError as exc:
        raise BundlerError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        with raw:
            if raw.read(4) == b"\x28\xb5\x2f\xfd":
                raw.seek(0)
                with zstandard.ZstdDecompressor().stream_reader(raw) as z, \
                        tarfile.open(fileobj=z, mode="r|") as tar:
                    yield tar
            else:
                raw.seek(0)
                with tarfile.open(fileobj=raw, mode="r|*") as tar:
                    yield tar
    except (tarfile.TarError, EOFError, zstandard.ZstdError) as exc:
        raise BundlerError(f"{path} is not a readable tar archive: {exc}") from exc
