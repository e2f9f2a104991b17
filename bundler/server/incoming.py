"""Reading a patch archive on the server: every member checked before it is written (safetree's
Overlay: name, type, duplicates, a file under a file), its files and etc/app/ defaults staged in a
new folder of ours and hashed as they are written, its links only read; then checked against its
patch.json, the bundle it is for and the keys the bundle trusts. apply.py plans and installs
what it holds."""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bundler.bundle import signing
from bundler.bundle.archive import read_tar
from bundler.bundle.record import printable
from bundler.bundle.records import PATCH_FILE, PATCH_SIGNATURE, PATCH_SITE, PatchRecord
from bundler.bundle.safetree import Overlay, Refused, check_name, member_kind, shown
from bundler.bundle.tree import Bundle
from bundler.errors import BundlerError
from bundler.fsutil import check_space


@dataclass(frozen=True)
class Staged:
    """A file of the patch, written to the incoming folder as it was read."""

    sha256: str
    head: bytes       # its first 16 bytes (hash-based bytecode names its source there)
    executable: bool


@dataclass(frozen=True)
class Incoming:
    """A patch archive, read once: every member checked, its files staged."""

    source: Path
    patch: PatchRecord
    signer: str | None             # the fingerprint of the key that signed it
    folder: Path                   # the incoming folder: files/ and site/ staged
    staged: Mapping[str, Staged]   # the files under files/, by path in the bundle

    @property
    def files(self) -> Path:
        return self.folder / "files"


PATCH_FILE_LIMIT = 256 << 20  # patch.json carries the manifest and one line a file
SIGNATURE_LIMIT = 64 << 10    # patch.sig: one signing.Signature, a few hundred bytes


class _Members:
    """What the members of a patch archive bring, taken one by one: every member checked
    (safetree.Overlay: name, type, duplicates, a file under a file); its files staged under
    files/ and site/ of a new folder of ours, its links only read."""

    def __init__(self, source: Path, folder: Path):
        self.source, self.folder = source, folder
        self.raw: bytes | None = None        # patch.json
        self.signature: bytes | None = None  # patch.sig
        self.files: dict[str, Staged] = {}
        self.links: dict[str, str] = {}
        self.site: dict[str, str] = {}       # path in etc/app/ -> SHA-256
        self.top: str | None = None
        self.tree, self.site_tree = Overlay(), Overlay()

    def take(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        source = self.source
        head, _, rel = member.name.rstrip("/").partition("/")
        self.top = self.top or head
        if head != self.top:
            raise _refuse(source, member.name, "is outside the patch's one top-level folder")
        why = check_name(head)
        if why:
            raise _refuse(source, member.name, why)
        if rel in ("", "files"):
            if not member.isdir():
                raise _refuse(source, member.name, f"is a {member_kind(member)}, where the patch "
                              "has a folder")
            return
        if rel in (PATCH_FILE, PATCH_SIGNATURE):
            self._record(tar, member, rel)
        elif rel.startswith(PATCH_SITE + "/") or rel == PATCH_SITE:
            self._site_member(tar, member, rel.removeprefix(PATCH_SITE).lstrip("/"))
        elif not rel.startswith("files/"):
            raise _refuse(source, member.name, "is not a plain relative path inside the bundle")
        else:
            self._file_member(tar, member, rel.removeprefix("files/"))

    def _record(self, tar: tarfile.TarFile, member: tarfile.TarInfo, rel: str) -> None:
        """patch.json or patch.sig, read into memory (each of a bounded size)."""
        limit = PATCH_FILE_LIMIT if rel == PATCH_FILE else SIGNATURE_LIMIT
        if not member.isfile():
            raise _refuse(self.source, member.name, f"is a {member_kind(member)}, not a file")
        if (self.raw if rel == PATCH_FILE else self.signature) is not None:
            raise _refuse(self.source, member.name, "comes twice")
        if member.size > limit:
            raise _refuse(self.source, member.name, f"is too large to be a {rel} ({member.size} "
                          f"bytes, at most {limit})")
        if rel == PATCH_FILE:
            self.raw = _read_member(tar, member)
        else:
            self.signature = _read_member(tar, member)

    def _file_member(self, tar: tarfile.TarFile, member: tarfile.TarInfo, path: str) -> None:
        kind = member_kind(member)
        if kind not in ("file", "dir", "link"):
            raise _refuse(self.source, member.name, f"is a {kind}, not a file or a symlink")
        self._add(self.tree, path, kind, member.linkname if kind == "link" else "")
        if kind == "link":
            self.links[path] = member.linkname
        elif kind == "file":
            self.files[path] = _stage(tar, member, self.folder / "files" / path, self.source)

    def _site_member(self, tar: tarfile.TarFile, member: tarfile.TarInfo, rel: str) -> None:
        """A default file for etc/app/: staged (and its SHA-256 noted) like the patch's files."""
        if not rel and member.isdir():
            return
        kind = member_kind(member)
        if kind not in ("file", "dir"):
            raise _refuse(self.source, member.name,
                          f"is a {kind}; site configuration is plain files")
        self._add(self.site_tree, rel, kind)
        if kind == "file":
            target = self.folder / PATCH_SITE / rel
            self.site[rel] = _stage(tar, member, target, self.source).sha256

    def _add(self, tree: Overlay, rel: str, kind: str, target: str = "") -> None:
        try:
            tree.add(rel, kind, target)
        except Refused as exc:
            raise BundlerError(f"refusing {self.source}: member {exc}; nothing was changed") \
                from None


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    f = tar.extractfile(member)
    assert f is not None
    return f.read()


def unpack(bundle: Bundle, source: Path, folder: Path, name: str) -> Incoming:
    """Read the patch archive into `folder`, every member checked and nothing else written;
    check that it is a patch for bundle `name`, signed as the bundle asks, and that its members
    are what its patch.json lists."""
    members = _Members(source, folder)
    with read_tar(source) as tar:
        for member in tar:
            members.take(tar, member)
    try:
        patch = PatchRecord.parse(members.raw.decode() if members.raw is not None else "{}")
    except (ValueError, RecursionError) as exc:
        why = printable(str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__)
        raise BundlerError(f"refusing {source}: it is not a bundler patch (no readable "
                           f"{PATCH_FILE} of format {PatchRecord.FORMAT}: {why[:200]}); "
                           "nothing was changed") from exc
    signer = _check_origin(bundle, patch, members.raw or b"", members.signature, source, name)
    expected = {rel: f.sha256 for rel, f in patch.files.items()}
    seen = {rel: f.sha256 for rel, f in members.files.items()}
    for rel in sorted(set(expected) | set(seen)):
        if seen.get(rel) != expected.get(rel):
            what = "is missing" if rel not in seen else "is not listed" \
                if rel not in expected else "does not match its checksum"
            raise BundlerError(f"refusing {source}: {rel!r} {what}; nothing was changed")
    if members.links != patch.links:
        raise BundlerError(f"refusing {source}: its links do not match {PATCH_FILE}; "
                           "nothing was changed")
    if members.site != patch.site:
        raise BundlerError(f"refusing {source}: its site configuration does not match "
                           f"{PATCH_FILE}; nothing was changed")
    return Incoming(source, patch, signer, folder, members.files)


def _check_origin(bundle: Bundle, patch: PatchRecord, raw: bytes, signature: bytes | None,
                  source: Path, name: str) -> str | None:
    """Is the patch for this bundle (`name`), and signed by a key it trusts (when it trusts
    any)? Who signed it."""
    if patch.bundle != name:
        made_for = f"bundle {patch.bundle!r}" if patch.bundle else "no named bundle"
        raise BundlerError(f"refusing {source}: it is a patch for {made_for}, and this is bundle "
                           f"{name!r}; nothing was changed")
    trusted = signing.trusted_keys(bundle.trusted_keys)
    if signature is None or not (trusted or signing.available()):
        if trusted:
            raise BundlerError(f"refusing {source}: it is not signed, and this bundle accepts only "
                               "patches signed by a key it trusts (etc/trusted_keys); "
                               "nothing was changed")
        return None  # a bundle that trusts no key takes unsigned patches
    try:
        sig = signing.Signature.parse(signature.decode())
        signing.check(sig, "patch", raw, trusted)
    except (BundlerError, ValueError) as exc:
        raise BundlerError(f"refusing {source}: {exc}; nothing was changed") from None
    return sig.fingerprint


def _stage(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path, source: Path) -> Staged:
    """Write one file member to `target`, hashing it on the way."""
    check_space(target.parent, member.size, f"applying {source.name}")
    target.parent.mkdir(parents=True, exist_ok=True)
    data = tar.extractfile(member)
    assert data is not None
    digest = hashlib.sha256()
    head = b""
    with open(target, "xb") as out:
        while block := data.read(1 << 20):
            head = head or block[:16]
            digest.update(block)
            out.write(block)
    executable = bool(member.mode & 0o100)
    os.chmod(target, 0o755 if executable else 0o644)
    return Staged(digest.hexdigest(), head, executable)


def _refuse(source: Path, name: str, why: str) -> BundlerError:
    return BundlerError(f"refusing {source}: member {shown(name)} {why}; nothing was changed")
