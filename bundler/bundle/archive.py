"""Pack a staged bundle as tar.gz, tar.zst or a plain folder, atomically and reproducibly."""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

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
        try:  # zlib-ng compresses blocks on every core; its output does not depend on how many
            from zlib_ng import gzip_ng_threaded
        except ImportError:  # a build machine without it: one thread, as gzip does
            import gzip

            with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=_epoch() or 0) as g:
                yield g  # type: ignore[misc]
            return
        with gzip_ng_threaded.open(raw, "wb", compresslevel=6, threads=-1) as g:  # type: ignore[no-untyped-call]
            yield g
    else:
        raise BundlerError(f"unknown archive format {fmt!r}")


def _epoch() -> int | None:
    value = os.environ.get("SOURCE_DATE_EPOCH")
    return int(value) if value and value.isdigit() else None


def _write_tar(root: Path, stream: IO[bytes]) -> None:
    """One top-level folder, members sorted, owners dropped, mtimes clamped to SOURCE_DATE_EPOCH."""
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
