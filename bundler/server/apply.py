"""Applying a patch on the server (build/patch.py makes them).

`bin/bundler apply PATCH` checks every member and path before it writes a byte, then moves the
files in under a journal (filemoves.py), so that a failure at any point (or a kill) leaves the
bundle as it was. The site's default files for etc/app/ go in as site.py says.

A patch never touches bundle.toml wholesale, etc/ (generated configuration), log/, run/ or
bundler's records: the manifest takes the release's code versions and interpreters, then
converge() moves the services and groups to the three-way merge (spec/merge.py) of the last
release installed here (.bundler/release.toml), this server's manifest and the release, in one
transaction (transact.py), and records the release as the last one installed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import platform
import shutil
import tarfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from bundler.bundle import elf, integrity, signing
from bundler.bundle.archive import read_tar
from bundler.bundle.cstrings import replace_padded
from bundler.bundle.manifest import Manifest
from bundler.bundle.records import (
    PATCH_FILE,
    PATCH_SIGNATURE,
    PATCH_SITE,
    Checksums,
    Entry,
    PatchRecord,
    Platform,
    Release,
    Relocation,
)
from bundler.bundle.render import PRIVATE
from bundler.bundle.safetree import Overlay, Refused, check_name, check_space, member_kind
from bundler.bundle.tree import CHECKSUMS_RECORD, MANIFEST, Bundle
from bundler.errors import BundlerError
from bundler.fsutil import write_atomic
from bundler.server import filemoves, history, site
from bundler.server.filemoves import Move
from bundler.server.history import HistoryEntry, Installed, ServiceChange
from bundler.server.services import changed
from bundler.server.site import SiteChange
from bundler.server.transact import Outcome, recover, transact
from bundler.spec import merge
from bundler.spec.live import Definitions, LiveManifest


@dataclass(frozen=True)
class Applied:
    files: int
    removed: int
    version: str
    merged: list[merge.Merged]      # each service and group, merged
    site: list[SiteChange]          # each default file of etc/app/
    notes: list[str]                # what the release changes that a patch cannot
    outcome: Outcome | None = None  # the services' change (None: none was made)
    entries: list[HistoryEntry] = dataclasses.field(default_factory=list)


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


@dataclass(frozen=True)
class ApplyPlan:
    """What applying a patch does, all of it known before anything changes."""

    moves: list[Move]                # the files: added, replaced, removed
    merged: list[merge.Merged]       # the services and groups: the three-way merge
    site: list[SiteChange]           # the default files of etc/app/
    notes: list[str]
    live: LiveManifest               # the bundle's manifest once the files are in
    manifest: Manifest               # it, checked
    platform: Platform | None        # .bundler/platform once the files are in (None: as is)

    @property
    def conflicts(self) -> list[str]:
        return [m.describe() for m in self.merged if m.conflicts]


def apply(bundle: Bundle, source: Path, dry_run: bool = False, prefer: str | None = None,
          files_only: bool = False, timeout: float = 90.0) -> Applied:
    """Install the patch's files, then converge the services to the release (merge.py), as one
    operation under the bundle's lock; with `dry_run` only say what would be done. Conflicts
    refuse the whole patch unless `prefer` settles them."""
    with bundle.locked():
        recover(bundle)
        live, here = _read_manifest(bundle)
        with _incoming_folder(bundle) as folder:
            incoming = _unpack(bundle, source, folder, here.spec.name)
            plan = _plan(bundle, incoming, live, here, prefer)
            patch = incoming.patch
            applied = Applied(len(patch.files) + len(patch.links), len(patch.remove),
                              plan.live.version, plan.merged, plan.site, plan.notes)
            if dry_run:
                return applied
            if plan.conflicts and not files_only:
                raise BundlerError(f"refusing {source.name}: {len(plan.conflicts)} conflict(s) "
                                   "between this server's changes and the release: "
                                   + "; ".join(plan.conflicts) + "; nothing was changed "
                                   "(--prefer release|server settles them, --files-only installs "
                                   "the files alone)")
            _install(bundle, incoming, plan)
        # stamped now: a kill while the services converge keeps who installed which release
        history.stamp(bundle, [HistoryEntry("apply", "ok", installed=Installed(
            plan.live.version, source.name, incoming.signer))])
        if files_only:
            return applied
        try:
            outcome, entries = _converge(bundle, plan, timeout)
        except BundlerError as exc:
            raise BundlerError(f"{source.name}: its files are installed, but no service was "
                               f"changed: {exc}") from exc
        if not outcome.failed:
            Release(patch.manifest).write(bundle.release_record, PRIVATE)  # environments: private
    return dataclasses.replace(applied, outcome=outcome, entries=entries)


def _read_manifest(bundle: Bundle) -> tuple[LiveManifest, Manifest]:
    try:
        text = bundle.manifest.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise BundlerError(f"{bundle.manifest} is missing: this bundle has no manifest") from exc
    live = LiveManifest.parse(text, bundle.manifest)
    return live, Manifest.of(live, text)


@contextmanager
def _incoming_folder(bundle: Bundle) -> Iterator[Path]:
    """A new folder to stage the patch in, gone afterwards (recover() drops a killed apply's)."""
    folder = bundle.apply_incoming
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _install(bundle: Bundle, incoming: Incoming, plan: ApplyPlan) -> None:
    """The files, all or nothing (filemoves.py); then the platform record and etc/app/."""
    filemoves.commit(bundle, plan.moves, incoming.files)
    if plan.platform is not None:
        plan.platform.write(bundle.platform)
    site.install(bundle, plan.site, incoming.folder / PATCH_SITE, incoming.patch.site)


def _converge(bundle: Bundle, plan: ApplyPlan, timeout: float
              ) -> tuple[Outcome, list[HistoryEntry]]:
    """Move every service and group the merge changes, in one transaction (gated, rolled back
    as a whole)."""
    def change(live: LiveManifest) -> list[ServiceChange]:
        changes = [changed(live, m.name, partial(live.put_service, m.name, m.result))
                   for m in plan.merged if m.kind == "services" and m.changes]
        for m in plan.merged:
            if m.kind == "groups" and m.changes:
                live.put_group(m.name, m.result)
        return changes
    return transact(bundle, "apply", change, timeout, current=(plan.live, plan.manifest))


def _runs_here(bundle: Bundle, patch: PatchRecord, name: str) -> Platform | None:
    """Refuse a release this server cannot run (another architecture, an older glibc than its
    files need); else what .bundler/platform says once it is installed."""
    if not patch.platform:
        return None  # the build that made the patch could not read its own
    try:
        release = Platform.parse(patch.platform)
    except ValueError as exc:
        raise BundlerError(f"refusing {name}: its platform record is damaged ({exc}); nothing "
                           "was changed") from None
    need, have = elf.parse_version(release.glibc), elf.host_glibc()
    if release.machine != platform.machine() or (have and need > have):
        raise BundlerError(f"refusing {name}: the release needs {release.machine} with glibc "
                           f"{release.glibc} or newer, and this server is {platform.machine()} with "
                           f"glibc {'.'.join(map(str, have)) or 'unknown'}; nothing was changed")
    current = Platform.read(bundle.platform)
    if current is not None and elf.parse_version(current.glibc) > need:
        release = dataclasses.replace(release, glibc=current.glibc)  # files the patch kept
    return release


# Tables a patch leaves as they are: they configure supervisord and the monitor as started.
NOT_PATCHED = ("supervisor", "metrics", "alerts")


def _release_base(bundle: Bundle, patch: PatchRecord, release: LiveManifest) -> Definitions:
    """The services and groups of the last release installed here: the bundle's record, else
    what the patch was built against; a patch that says neither changes no service."""
    path = bundle.release_record
    recorded = Release.read(path)
    if recorded is not None:
        return _definitions(_parse(recorded.manifest, path, str(path)), str(path))
    if not patch.release_base:
        return _definitions(release, "the patch's base spec")
    what = "the patch's base spec"
    return _definitions(_parse(patch.release_base, Path(PATCH_FILE), what), what)


def _parse(text: str, path: Path, what: str) -> LiveManifest:
    try:
        return LiveManifest.parse(text, path)
    except BundlerError as exc:
        raise BundlerError(f"refusing the patch: {what} is not a bundle spec ({_cause(exc)!s:.80}); "
                           "nothing was changed") from None


def _cause(exc: BaseException) -> BaseException:
    """The TOML parser's own error, without the file and line a BundlerError puts before it."""
    return exc.__cause__ or exc


def _definitions(manifest: LiveManifest, what: str) -> Definitions:
    try:
        return manifest.definitions()
    except ValueError as exc:
        raise BundlerError(f"refusing the patch: {what} is not a bundle spec ({exc!s:.80}); "
                           "nothing was changed") from None


PATCH_FILE_LIMIT = 256 << 20  # patch.json carries the manifest and one line a file


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
        if head != self.top or check_name(head):
            raise _refuse(source, member.name, "is outside the patch's one top-level folder")
        if member.isdir() and rel in ("", "files"):
            return
        if rel == PATCH_FILE and member.isfile() and self.raw is None:
            if member.size > PATCH_FILE_LIMIT:
                raise _refuse(source, member.name, "is too large to be a patch.json")
            self.raw = _read_member(tar, member)
        elif rel == PATCH_SIGNATURE and member.isfile() and self.signature is None \
                and member.size < 1 << 16:
            self.signature = _read_member(tar, member)
        elif rel.startswith(PATCH_SITE + "/") or rel == PATCH_SITE:
            self._site_member(tar, member, rel.removeprefix(PATCH_SITE).lstrip("/"))
        elif not rel.startswith("files/"):
            raise _refuse(source, member.name, "is not a plain relative path inside the bundle")
        else:
            self._file_member(tar, member, rel.removeprefix("files/"))

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


def _unpack(bundle: Bundle, source: Path, folder: Path, name: str) -> Incoming:
    """Read the patch archive into `folder`, every member checked and nothing else written;
    check that it is a patch for bundle `name`, signed as the bundle asks, and that its members
    are what its patch.json lists."""
    members = _Members(source, folder)
    with read_tar(source) as tar:
        for member in tar:
            members.take(tar, member)
    try:
        patch = PatchRecord.parse(members.raw.decode() if members.raw is not None else "{}")
    except ValueError as exc:
        raise BundlerError(f"refusing {source}: it is not a bundler patch (no readable "
                           f"{PATCH_FILE} of format {PatchRecord.FORMAT}); nothing was changed") from exc
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
    return BundlerError(f"refusing {source}: member {name!r} {why}; nothing was changed")


def _plan(bundle: Bundle, incoming: Incoming, live: LiveManifest, here: Manifest,
          prefer: str | None) -> ApplyPlan:
    """Everything the patch will do, checked against the bundle; raises before anything changes.
    The staged files are made to name this bundle's path, and the records that change with them
    (the manifest, checksums.json, relocate.json) are staged beside them."""
    patch = incoming.patch
    runs = _runs_here(bundle, patch, incoming.source.name)
    reloc = Relocation.read(bundle.relocation)
    _check_paths(bundle, patch, reloc)
    after = _relocation_after(reloc, patch)
    entries = _relocate(incoming, reloc.prefix, after)
    release = _take_release(live, patch)
    manifest = Manifest.of(live)  # still a valid manifest
    try:  # the release's, whose services the merge takes
        Manifest.of(release, patch.manifest)
    except BundlerError as exc:
        raise BundlerError(f"refusing the patch: {exc}; nothing was changed") from None
    for rel, meta in patch.files.items():  # what checksums.json will say of it, checked now
        if entries[rel] != meta.checksum:
            raise BundlerError(f"refusing the patch: the checksum it records for {rel!r} does not "
                               "match the file; nothing was changed")
    generated = _records(bundle, patch, manifest.text, after)
    for rel, text in generated.items():
        _stage_record(incoming.files / rel, text, bundle.root / rel)
    moves = [*(Move.to(bundle.root, rel, "file") for rel in [*patch.files, *generated]),
             *(Move.to(bundle.root, rel, "link", t) for rel, t in patch.links.items()),
             *(Move.to(bundle.root, rel, None) for rel in patch.remove)]
    merged = merge.merge(_release_base(bundle, patch, release), live.definitions(),
                         _definitions(release, "the patch's spec"), prefer)
    notes = [f"the release changes [{key}], which a patch does not: ship a full archive for it"
             for key in live.differing(release, NOT_PATCHED)]
    return ApplyPlan(moves, merged, site.changes(bundle, patch.site), notes, live, manifest,
                     runs)


def _check_paths(bundle: Bundle, patch: PatchRecord, reloc: Relocation) -> None:
    """Every path the patch touches may be written (safetree.Overlay) and is what the patch was
    built against (or already what it brings)."""
    root = bundle.root
    tree = Overlay(root, lambda rel: None if bundle.patchable(rel) else
                   "is a path a patch may not touch (the manifest, etc/, log/, run/, records)")
    try:
        for rel in patch.remove:
            tree.add(rel, "gone")
        for rel in patch.files:
            tree.add(rel, "file")
        for rel, target in patch.links.items():
            tree.add(rel, "link", target)
        tree.finish()
    except Refused as exc:
        raise BundlerError(f"refusing the patch: {exc}; nothing was changed") from None
    conflicts = []
    for rel in [*patch.files, *patch.links, *patch.remove]:
        path = root / rel
        current = integrity.entry(path, rel, reloc) \
            if path.is_symlink() or path.exists() else None
        if rel in patch.files:
            new: Entry | None = patch.files[rel].checksum
        else:
            new = Entry(link=patch.links[rel]) if rel in patch.links else None
        if not any(current == want or (want is not None and want.same_build(current))
                   for want in (patch.base.get(rel), new)):
            conflicts.append(rel)
    if conflicts:
        listed = ", ".join(conflicts[:5]) + (" ..." if len(conflicts) > 5 else "")
        built = hashlib.sha256(bundle.checksums.read_bytes()).hexdigest()
        why = "the patch was made against another build of this bundle" \
            if patch.against and patch.against != built else "changed here since the build"
        raise BundlerError(f"refusing the patch: {len(conflicts)} file(s) are not what it was built "
                           f"against ({why}): {listed}; nothing was changed")


def _stage_record(staged: Path, text: str, replaces: Path) -> None:
    """Stage a record with the mode and owner of the file it replaces: bundle.toml stays
    private, in the group bin/start gave it."""
    staged.parent.mkdir(parents=True, exist_ok=True)
    try:
        st: os.stat_result | None = replaces.stat()
    except FileNotFoundError:
        st = None
    write_atomic(staged, text, st.st_mode & 0o7777 if st is not None else 0o644)
    if st is not None and os.geteuid() == 0:
        os.chown(staged, st.st_uid, st.st_gid)


def _relocation_after(reloc: Relocation, patch: PatchRecord) -> Relocation:
    """The relocation record once the patch's files are in."""
    gone = set(patch.remove) | set(patch.files)
    binaries = {rel: cap for rel, cap in reloc.binaries.items() if rel not in gone}
    binaries.update({rel: f.capacity for rel, f in patch.files.items() if f.capacity is not None})
    return dataclasses.replace(
        reloc, texts=(reloc.texts - gone) | {rel for rel, f in patch.files.items()
                                             if f.relocatable and f.capacity is None},
        binaries=dict(sorted(binaries.items())))


def _relocate(incoming: Incoming, prefix: str, after: Relocation) -> dict[str, Entry]:
    """Make the staged files that name the build's path name this bundle's (`prefix`); the
    entry each staged file will have in checksums.json."""
    here, patch = os.fsencode(prefix), incoming.patch
    entries = {}
    for rel, meta in patch.files.items():
        staged, path = incoming.staged[rel], incoming.files / rel
        if meta.relocatable:
            if meta.capacity is not None and len(here) > meta.capacity:
                raise BundlerError(f"refusing the patch: {rel} can hold a bundle path of at most "
                                   f"{meta.capacity} bytes, and this bundle's is longer; "
                                   "nothing was changed")
            old, data = os.fsencode(patch.prefix), path.read_bytes()
            data = replace_padded(data, old, here) if meta.capacity is not None \
                else data.replace(old, here)
            path.write_bytes(data)
            entries[rel] = integrity.entry_of(rel, data, after, staged.executable)
        elif rel in after:  # said not to name the build's path, yet recorded as if it did
            entries[rel] = integrity.entry(path, rel, after)
        else:
            entries[rel] = integrity.entry_of_digest(rel, staged.sha256, staged.head,
                                                     staged.executable)
    return entries


def _take_release(live: LiveManifest, patch: PatchRecord) -> LiveManifest:
    """The release's manifest, parsed; its code versions and interpreters taken into `live`."""
    try:
        release = LiveManifest.parse(patch.manifest,
                                     Path(f"{PATCH_FILE}: the release's bundle.toml"))
        live.take_release(release)
    except (BundlerError, ValueError) as exc:
        raise BundlerError(f"refusing the patch: its manifest is not a bundle manifest "
                           f"({_cause(exc)!s:.80}); nothing was changed") from None
    return release


def _records(bundle: Bundle, patch: PatchRecord, manifest: str, after: Relocation
             ) -> dict[str, str]:
    """The bundle's records that change with the files, by path: the manifest, checksums.json and
    relocate.json."""
    checksums = integrity.load(bundle.root)
    checksums.update({rel: f.checksum for rel, f in patch.files.items()})
    checksums.update({rel: Entry(link=t) for rel, t in patch.links.items()})
    for rel in patch.remove:
        checksums.pop(rel, None)
    checksums[MANIFEST] = Entry.of_bytes(manifest.encode(), executable=False)
    return {MANIFEST: manifest, CHECKSUMS_RECORD: Checksums(checksums).text(),
            str(bundle.relocation.relative_to(bundle.root)): after.text()}
