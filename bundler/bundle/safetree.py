"""The one safe way into a tree: every archive or patch member is checked against the tree *as it
will be* after the members before it, and no write ever goes through a link.

`Overlay` models a tree: what is on disk under its root (read with lstat, never followed) overlaid
with what the members so far add or remove. A member is refused when its name is not a plain
relative path, when a folder on its way is a link or a file, when it would replace a folder, when it
comes twice, when it lands in a forbidden area, or (a link) when the path it names, followed through
every link of the tree as it will be, leaves the root. `extract` writes an archive with it (PEP 706's
"data" filter on top where the Python has it); server/apply.py checks a patch's paths with it.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

from bundler.errors import BundlerError
from bundler.fsutil import check_space

NAME_MAX = 255      # bytes in one path component (Linux)
PATH_MAX = 4000     # bytes in a member's whole path, with room for the root in front
MAX_DEPTH = 128     # path components of a member: deeper trees defeat recursive tools (RecursionError)
MAX_MEMBERS = 2_000_000
LINK_HOPS = 40      # as the kernel's own limit on links followed in one lookup


def shown(name: str) -> str:
    """`name` as a message shows it: quoted, control characters escaped, a long one shortened."""
    text = repr(name)
    return text if len(text) <= 160 else f"{text[:100]}...{text[-40:]} ({len(name)} characters)"


class Refused(BundlerError):
    """A member that may not enter the tree; the whole archive is refused."""


def check_name(rel: str) -> str | None:
    """Why `rel` is not a plain relative path (None when it is one)."""
    if not rel:
        return "has an empty name"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in rel):
        return "has a control character in its name"
    if rel.startswith("/"):
        return "is an absolute path"
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "is not a plain relative path (empty, '.' or '..' parts)"
    if len(os.fsencode(rel)) > PATH_MAX or any(len(os.fsencode(p)) > NAME_MAX for p in parts):
        return "has a name longer than the filesystem allows"
    if len(parts) > MAX_DEPTH:
        return f"has {len(parts)} path components, more than the {MAX_DEPTH} allowed"
    return None


class Overlay:
    """The tree under `root` (None: an empty one) with the members added so far."""

    def __init__(self, root: Path | None = None,
                 forbidden: Callable[[str], str | None] = lambda rel: None):
        self.root = root
        self.forbidden = forbidden  # why a path may not be written (None: it may)
        self.added: dict[str, tuple[str, str]] = {}  # rel -> (kind, link target or "")
        self.implied: set[str] = set()               # folders the members create on the way
        self.on_disk: dict[str, tuple[str | None, str]] = {}  # what lstat said, by path
        self.members = 0

    # --- what is where

    def kind(self, rel: str, folders_checked: bool = False) -> tuple[str | None, str]:
        """("file" | "dir" | "link" | None, link target) of `rel`, links not followed; its
        folders are known to be real folders (resolve() walks them one by one), and with
        `folders_checked` none of them is removed, a file or a link (add() walks them so)."""
        if rel in self.added:
            kind, target = self.added[rel]
            return (None if kind == "gone" else kind), target
        if rel in self.implied:
            return "dir", ""
        if self.root is None or not folders_checked and any(
                self.added.get(a, ("",))[0] in ("gone", "file", "link") for a in _ancestors(rel)):
            return None, ""
        if rel in self.on_disk:
            return self.on_disk[rel]
        self.on_disk[rel] = found = self._lstat(rel)
        return found

    def _lstat(self, rel: str) -> tuple[str | None, str]:
        assert self.root is not None
        try:
            st = os.lstat(self.root / rel)
        except (FileNotFoundError, NotADirectoryError):
            return None, ""
        if stat.S_ISLNK(st.st_mode):
            return "link", os.readlink(self.root / rel)
        return ("dir" if stat.S_ISDIR(st.st_mode) else "file"), ""

    def resolve(self, rel: str) -> str | None:
        """Where `rel` leads once every link on the way is followed, as the kernel would; None when
        that leaves the root (an absolute link, or `..` above it)."""
        todo = [p for p in reversed(rel.split("/")) if p not in ("", ".")]  # next part last
        done: list[str] = []
        dead: list[bool] = []  # by part of `done`: nothing on disk shows under it
        hops = 0
        while todo:
            part = todo.pop()
            if part == "..":
                if not done:
                    return None
                done.pop()
                dead.pop()
                continue
            path = "/".join([*done, part])
            below = bool(dead) and dead[-1]
            kind, target = self._members_only(path) if below else \
                self.kind(path, folders_checked=True)
            if kind != "link":
                done.append(part)
                dead.append(below or kind != "dir")
                continue
            hops += 1
            if hops > LINK_HOPS or target.startswith("/"):
                return None
            todo.extend(p for p in reversed(target.split("/")) if p not in ("", "."))
        return "/".join(done)

    def _members_only(self, rel: str) -> tuple[str | None, str]:
        """kind() of a path whose folders hide the disk (removed, or not there)."""
        if rel in self.added:
            kind, target = self.added[rel]
            return (None if kind == "gone" else kind), target
        return ("dir", "") if rel in self.implied else (None, "")

    # --- members

    def add(self, rel: str, kind: str, target: str = "") -> None:
        """Admit one member ("file", "dir", "link" to `target`, "hardlink" to an earlier file
        member, or "gone": a removal), or raise Refused naming it."""
        self.members += 1
        if self.members > MAX_MEMBERS:
            raise Refused(f"has more than {MAX_MEMBERS} members")
        why = check_name(rel) or self.forbidden(rel)
        if why:
            raise Refused(f"{shown(rel)} {why}")
        gone = False  # a folder on the way is removed: nothing under it is on disk any more
        for folder in _ancestors(rel):
            gone = gone or self.added.get(folder, ("",))[0] == "gone"
            found, _ = (None, "") if gone and folder not in self.added and \
                folder not in self.implied else self.kind(folder, folders_checked=True)
            if found == "link":
                raise Refused(f"{shown(rel)} would be written through the link {shown(folder)}")
            if found == "file":
                raise Refused(f"{shown(rel)} would be written under the file {shown(folder)}")
            if found is None and kind != "gone":
                self.implied.add(folder)
        if rel in self.added:
            raise Refused(f"{shown(rel)} comes twice")
        current, _ = self.kind(rel)
        if current == "dir" and kind != "dir":
            raise Refused(f"{shown(rel)} would replace a folder")
        if current in ("file", "link") and kind == "dir":
            raise Refused(f"{shown(rel)} would turn a file or link into a folder")
        if kind == "hardlink":
            if self.added.get(target, ("",))[0] != "file":
                raise Refused(f"{shown(rel)} is a hard link to {shown(target)}, which is no file "
                              "before it")
            kind = "file"
        elif kind == "link":
            if not target or "\0" in target or any(ord(ch) < 32 for ch in target):
                raise Refused(f"{shown(rel)} is a link with an unusable target")
            if target.startswith("/"):
                raise Refused(f"{shown(rel)} is a link to the absolute path {shown(target)}")
        elif kind not in ("file", "dir", "gone"):
            raise Refused(f"{shown(rel)} is a {kind}, not a file, folder or link")
        self.added[rel] = (kind, target)
        self.implied.discard(rel)
        if kind == "link":
            self._check_link(rel)

    def _check_link(self, rel: str) -> None:
        target = self.added[rel][1]
        parent = rel.rpartition("/")[0]
        if self.resolve(f"{parent}/{target}" if parent else target) is None:
            raise Refused(f"{shown(rel)} is a link to {shown(target)}, which leads out of the tree "
                          "(or round in a loop)")

    def finish(self) -> None:
        """Check every link again against the tree as it ends up (a later member can change
        where an earlier link leads)."""
        for rel, (kind, _) in self.added.items():
            if kind == "link":
                self._check_link(rel)


def _ancestors(rel: str) -> list[str]:
    parts = rel.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _clean(name: str) -> str:
    name = name.rstrip("/")
    while name.startswith("./"):
        name = name[2:]
    return name


def member_kind(member: tarfile.TarInfo) -> str:
    if member.isfile():
        return "file"
    if member.isdir():
        return "dir"
    if member.issym():
        return "link"
    if member.islnk():
        return "hardlink"
    return {tarfile.CHRTYPE: "character device", tarfile.BLKTYPE: "block device",
            tarfile.FIFOTYPE: "fifo"}.get(member.type, "special file")


def extract(archive: Path, dest: Path) -> None:
    """Unpack `archive` into `dest` (a new, empty folder that the caller removes on failure),
    each member checked by a Overlay first; only files, folders, links inside and hard links to earlier
    files are admitted, modes lose setuid/setgid/sticky and owners are not restored."""
    from bundler.bundle.archive import read_tar

    plan = Overlay(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with read_tar(archive) as tar:
            for member in tar:
                rel = _clean(member.name)
                if rel in ("", "."):
                    continue
                kind = member_kind(member)
                target = member.linkname if kind == "link" else \
                    _clean(member.linkname) if kind == "hardlink" else ""
                plan.add(rel, kind, target)
                if hasattr(tarfile, "data_filter"):
                    try:
                        tarfile.data_filter(member, str(dest))
                    except tarfile.FilterError as exc:
                        raise Refused(f"{shown(rel)}: {exc}") from exc
                _write(tar, member, rel, kind, dest)
            plan.finish()
    except Refused as exc:
        raise Refused(f"refusing {archive}: member {exc}; nothing was unpacked") from None
    except OSError as exc:
        raise BundlerError(f"cannot unpack {archive} into {dest}: {exc.strerror}") from exc


def _write(tar: tarfile.TarFile, member: tarfile.TarInfo, rel: str, kind: str, dest: Path) -> None:
    path = dest / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "dir":
        path.mkdir(exist_ok=True)
        os.chmod(path, 0o755 | (member.mode & 0o777 & ~0o022))
    elif kind == "link":
        path.symlink_to(member.linkname)
    elif kind == "hardlink":
        os.link(dest / _clean(member.linkname), path)
    else:
        check_space(dest, member.size, shown(rel))
        data = tar.extractfile(member)
        assert data is not None
        with open(path, "xb") as out:
            shutil.copyfileobj(data, out, 1 << 20)
        os.chmod(path, member.mode & 0o755 | 0o644)
