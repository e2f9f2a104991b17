"""Writing files so that a reader sees the old content or the new one, never half of either;
hashing them."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bundler.errors import BundlerError

SPARE_BYTES = 64 << 20  # free space left on the disk after anything bundler writes there


def write_atomic(path: Path, data: bytes | str, mode: int | None = None) -> None:
    """Write `data` to a temp file beside `path`, then rename it over `path`.

    The file keeps its current permissions and, for root, its owner and group (or gets `mode`,
    default 0644, when it is new).
    """
    current = path.stat() if path.exists() else None
    if mode is None:
        mode = current.st_mode & 0o7777 if current is not None else 0o644
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.chmod(tmp, mode)
        if current is not None and os.geteuid() == 0:
            os.chown(tmp, current.st_uid, current.st_gid)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def shared_file_key(path: str | Path) -> str | None:
    """A regular file with more than one link (a build cache entry's file in a staging tree), by
    device, inode, size and time: what memos of its content are kept by. None for others."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if st.st_nlink < 2 or not stat.S_ISREG(st.st_mode):
        return None
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def stable_file_key(path: str | Path) -> str | None:
    """Any regular file (an interpreter's, outside the build), by device, inode, size, time and
    change time, which every write moves: a memo key for files bundler does not link."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def tree_entries(root: str | Path) -> Iterator[os.DirEntry[str]]:
    """Every file and symlink under `root` (links to folders are not entered), from the folders'
    listings alone: no stat per file, no Path per file."""
    folders = [os.fspath(root)]
    while folders:
        with os.scandir(folders.pop()) as listing:
            for item in listing:
                if item.is_dir(follow_symlinks=False):
                    folders.append(item.path)
                else:
                    yield item


def regular_files(root: str | Path) -> list[str]:
    """The regular files under `root` (not symlinks), sorted."""
    return sorted(e.path for e in tree_entries(root) if e.is_file(follow_symlinks=False))


def walk(top: str | Path) -> Iterator[tuple[str, list[str], list[str]]]:
    """os.walk(top), top-down, `dirs` pruned in place as there, without recursion: os.walk
    recurses before Python 3.12, and a tree deeper than about a thousand folders (a service can
    make one) ended it in RecursionError. Links, to folders too, are in `files` and not entered;
    a folder that cannot be listed is left out, as os.walk does."""
    stack = [os.fspath(top)]
    while stack:
        folder = stack.pop()
        dirs: list[str] = []
        files: list[str] = []
        try:
            with os.scandir(folder) as listing:
                for item in listing:
                    (dirs if item.is_dir(follow_symlinks=False) else files).append(item.name)
        except OSError:
            continue
        yield folder, dirs, files
        stack.extend(os.path.join(folder, d) for d in reversed(dirs))


def check_space(folder: Path, size: int, what: str) -> None:
    """Refuse to write `size` bytes into `folder` (or the folder that will hold it) when the disk
    would keep less than SPARE_BYTES free after: every archive member, patch file and relocated
    file is checked so before it is written."""
    while not folder.exists():
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if size + SPARE_BYTES > free:
        raise BundlerError(f"{what} needs {_amount(size)} and {folder} has {free >> 20} MiB free "
                           f"({SPARE_BYTES >> 20} MiB must stay free); nothing was changed")


def _amount(size: int) -> str:
    return f"{size >> 20} MiB" if size >= 1 << 20 else f"{size} bytes"
