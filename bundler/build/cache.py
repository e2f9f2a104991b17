"""The build cache: each interpreter a bundle takes (a copied CPython or a virtualenv, with what
pip installed into it and its bytecode) is materialized once per set of inputs, then copied into
later builds.

An entry is a folder named by the SHA-256 of everything that decides its bytes (the pipeline's
cache key), holding the interpreter's tree as built and entry.json. Files that name the staging
root the entry was built under are listed, and get the new build's root when the entry is copied,
as the relocation does where a bundle is unpacked; an interpreter whose binaries name its root is
not cached. An entry is published with one rename, so a killed build leaves at most a .partial
folder, which the next store removes. Builds hold a shared lock while they use the cache; `bundler
cache prune`, and the shrinking to LIMIT after a build, an exclusive one. Entries are copied
into a tree that outlives the build (format dir, --keep-staging); into a staging tree that is
packed and removed they are hard-linked, and every writer of the build replaces a file (rename)
rather than writing into it, so an entry never changes. Facts about entries' files are kept by
inode: memos (a file's digest, the glibc it needs) and frames/, the compressed archive pieces of
their files; both go when an entry goes, whose inodes new files may take.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from bundler.errors import BundlerError
from bundler.fsutil import write_atomic
from bundler.runner import run

ENV = "BUNDLER_CACHE_DIR"
META = "entry.json"
TREE = "tree"
PARTIAL = ".partial-"
FORMAT = 2
LIMIT = 20 << 30  # bytes; the least recently used entries go beyond this (archive pieces: 1/4)


@dataclass(frozen=True)
class Entry:
    key: str
    what: str                    # for people: "interpreter base: copy of ... (3.11.7)"
    root: str                    # the staging root it was built under
    names_root: tuple[str, ...]  # files (relative to the tree) that contain `root`
    links_root: tuple[str, ...]  # absolute symlinks into `root` (virtualenv's)
    versions: Mapping[str, str]  # what pip reports installed
    size: int
    created: float

    @property
    def path(self) -> Path:
        return cache_dir() / self.key


def cache_dir() -> Path:
    """$BUNDLER_CACHE_DIR, else $XDG_CACHE_HOME/bundler/builds (~/.cache/bundler/builds)."""
    named = os.environ.get(ENV)
    if named:
        return Path(named)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "bundler" / "builds"


def key_of(parts: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@contextmanager
def locked(exclusive: bool = False) -> Iterator[None]:
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def shrink(limit: int = LIMIT) -> list[Entry]:
    """Drop the least recently used entries beyond `limit` bytes, when no build is using the
    cache (else next time)."""
    folder = cache_dir()
    if not folder.is_dir():
        return []
    removed = []
    with open(folder / "lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return []
        total = 0
        for entry in entries():
            total += entry.size
            if total > limit:
                shutil.rmtree(entry.path, ignore_errors=True)
                removed.append(entry)
        if removed:
            _forget_memos()
        _remove_abandoned(frames_dir())
        total = 0
        for path, st in _by_use(frames_dir()):
            total += st.st_size
            if total > limit // 4:
                path.unlink(missing_ok=True)
    return removed


MEMO_LIMIT = 500_000  # facts kept per memo; beyond, it starts afresh


@contextmanager
def memo(name: str, enabled: bool = True) -> Iterator[dict[str, Any] | None]:
    """Facts about the entries' files as they reach staging trees as hard links (a digest, the
    glibc an ELF file needs), by fsutil.shared_file_key: read once, not at every build. Saved
    when the block ends; a lost race between two builds only loses facts."""
    if not enabled:
        yield None
        return
    path = cache_dir() / f"memo-{name}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict) or len(data) > MEMO_LIMIT:
        data = {}
    known = len(data)
    yield data
    if len(data) != known:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(data, separators=(",", ":")))


def _forget_memos() -> None:
    """Facts by inode may name a removed entry's inodes, which new files can take."""
    for path in cache_dir().glob("memo-*.json"):
        path.unlink(missing_ok=True)
    shutil.rmtree(frames_dir(), ignore_errors=True)


def frames_dir() -> Path:
    """Compressed pieces of archives (bundle/archive.py), by what decides their bytes."""
    return cache_dir() / "frames"


class Frames:
    """The archive pieces of entries' files, kept for the next build that packs them."""

    def find(self, key: str) -> IO[bytes] | None:
        try:
            found = open(frames_dir() / key, "rb")
        except OSError:
            return None
        os.utime(found.fileno())
        return found

    @contextmanager
    def keep(self, key: str) -> Iterator[IO[bytes]]:
        """A file to write the piece into, published under `key` if the block succeeds."""
        top = frames_dir()
        top.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=top, prefix=f"{PARTIAL}{os.getpid()}-")
        try:
            with os.fdopen(fd, "wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())  # a piece cut short by a crash would make broken archives
            os.replace(tmp, top / key)
        finally:
            Path(tmp).unlink(missing_ok=True)


def _by_use(folder: Path) -> list[tuple[Path, os.stat_result]]:
    """The files of `folder`, the most recently used first."""
    found = []
    for path in folder.iterdir() if folder.is_dir() else ():
        try:
            found.append((path, path.stat()))
        except OSError:  # removed meanwhile
            continue
    return sorted(found, key=lambda f: f[1].st_mtime, reverse=True)


def _read(folder: Path) -> Entry | None:
    try:
        raw = json.loads((folder / META).read_text(encoding="utf-8"))
        if raw.pop("format", None) != FORMAT:
            return None
        raw["names_root"] = tuple(raw["names_root"])
        raw["links_root"] = tuple(raw["links_root"])
        return Entry(**raw)
    except (OSError, ValueError, TypeError):
        return None


def lookup(key: str) -> Entry | None:
    """The entry of `key`, marked as used now; None when there is none."""
    entry = _read(cache_dir() / key)
    if entry is not None:
        os.utime(entry.path / META)
    return entry


def restore(entry: Entry, dest: Path, root: Path, link: bool = False) -> None:
    """Copy the entry's tree into `dest`, giving the files that named its root `root`. With
    `link`, files are hard links to the entry's: only for a staging tree that is packed and
    removed, whose writers replace files rather than write into them."""
    dest.mkdir(parents=True, exist_ok=True)
    if link:
        _link_tree(str(entry.path / TREE), str(dest))
    else:
        _copy_tree(entry.path / TREE, dest)
    old, new = os.fsencode(entry.root), os.fsencode(root)
    for rel in entry.names_root:
        path = dest / rel
        write_atomic(path, path.read_bytes().replace(old, new))
    for rel in entry.links_root:
        path = dest / rel
        target = os.readlink(path)
        path.unlink()
        path.symlink_to(str(root) + target[len(entry.root):])


def store(key: str, source: Path, root: Path, what: str, versions: Mapping[str, str],
          leave_out: tuple[str, ...] = ()) -> bool:
    """Publish `source` (an interpreter's folder in the staging tree under `root`) as the entry
    of `key`. False when it cannot be cached (a binary names the root) or another build
    published it first."""
    needle = os.fsencode(root)
    names_root = []
    links_root = []
    stale = []  # bytecode naming the root: the build drops it at the end, so the entry does now
    size = 0
    for folder, dirs, files in os.walk(source):
        here = Path(folder)
        if here == source:
            dirs[:] = [d for d in dirs if d not in leave_out]
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            path = here / name
            if path.is_symlink():
                target = os.readlink(path)
                if target == str(root) or target.startswith(f"{root}/"):
                    links_root.append(path.relative_to(source).as_posix())
                continue
            data = path.read_bytes()
            size += len(data)
            if needle in data:
                rel = path.relative_to(source).as_posix()
                if path.suffix == ".pyc":
                    stale.append(rel)
                elif b"\x00" in data:
                    return False
                else:
                    names_root.append(rel)
    top = cache_dir()
    top.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(top)
    staging = Path(tempfile.mkdtemp(prefix=f"{PARTIAL}{os.getpid()}-", dir=top))
    try:
        (staging / TREE).mkdir()
        _copy_tree(source, staging / TREE, leave_out)
        for rel in stale:
            (staging / TREE / rel).unlink()
        entry = Entry(key, what, str(root), tuple(sorted(names_root)), tuple(sorted(links_root)),
                      dict(versions), size, time.time())
        (staging / META).write_text(json.dumps({"format": FORMAT, **asdict(entry)}, indent=1))
        try:
            os.rename(staging, top / key)
        except OSError:  # another build published the same entry first
            return False
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return True


def _copy_tree(source: Path, dest: Path, leave_out: tuple[str, ...] = ()) -> None:
    """cp -a (reflinks where the filesystem has them): several times faster than shutil here."""
    names = [n for n in os.listdir(source) if n not in leave_out]
    if not names:
        return
    run(["cp", "-a", "--reflink=auto", *[source / n for n in names], dest],
        what=f"copying {source} to {dest}", merge=False)


def _link_tree(source: str, dest: str) -> None:
    """`source`'s folders made anew in `dest`, its files hard-linked, its symlinks copied (a
    third faster than cp -al, which preserves what a link shares anyway)."""
    try:
        with os.scandir(source) as listing:
            for item in listing:
                target = os.path.join(dest, item.name)
                if item.is_dir(follow_symlinks=False):
                    os.mkdir(target)
                    _link_tree(item.path, target)
                    os.chmod(target, item.stat(follow_symlinks=False).st_mode & 0o7777)
                elif item.is_symlink():
                    os.symlink(os.readlink(item.path), target)
                else:
                    os.link(item.path, target)
    except OSError as exc:
        raise BundlerError(f"linking {source} into {dest}: {exc.strerror} ({exc.filename})") from None


def _remove_abandoned(top: Path) -> None:
    """.partial folders and files of builds that were killed (their pid no longer runs)."""
    for path in top.glob(f"{PARTIAL}*"):
        pid = path.name[len(PARTIAL):].split("-")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def entries() -> list[Entry]:
    """Every entry, the most recently used first."""
    top = cache_dir()
    found = [e for e in (_read(p) for p in top.iterdir() if p.is_dir()) if e] if top.is_dir() else []
    return sorted(found, key=lambda e: _used(e.path), reverse=True)


def _used(folder: Path) -> float:
    try:
        return (folder / META).stat().st_mtime
    except OSError:
        return 0.0


def bytecode_dir() -> Path:
    """Bytecode of code versions' files (build/code.py), by source, place and Python version."""
    return cache_dir() / "bytecode"


def kept() -> dict[str, tuple[int, int]]:
    """What the cache keeps besides entries: kind -> (files, bytes)."""
    found = {}
    for kind, folder in (("archive pieces", frames_dir()), ("code bytecode files", bytecode_dir())):
        files = _by_use(folder)
        found[kind] = (len(files), sum(st.st_size for _, st in files))
    return found


def prune(older_than: float | None = None, everything: bool = False) -> list[Entry]:
    """Remove entries unused for `older_than` seconds (or all of them), and abandoned partial
    ones, and kept bytecode and archive pieces unused as long; return the entries removed."""
    removed = []
    with locked(exclusive=True):
        _remove_abandoned(cache_dir())
        _remove_abandoned(frames_dir())
        now = time.time()
        for path, st in _by_use(bytecode_dir()) + _by_use(frames_dir()):
            if everything or (older_than is not None and now - st.st_mtime > older_than):
                path.unlink(missing_ok=True)
        for entry in entries():
            if everything or (older_than is not None and now - _used(entry.path) > older_than):
                shutil.rmtree(entry.path, ignore_errors=True)
                removed.append(entry)
        if removed:
            _forget_memos()
    return removed
