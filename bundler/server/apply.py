"""Applying a patch on the server (build/patch.py makes them).

`bin/bundler apply PATCH` reads the archive (incoming.py) and checks every path against the bundle
before it writes a byte, then moves the files in under a journal (filemoves.py), so that a
failure at any point (or a kill) leaves the bundle as it was. The site's default files for
etc/app/ go in as site.py says.

A patch never touches bundle.toml wholesale, etc/ (generated configuration), log/, run/ or
bundler's records: the manifest takes the release's code versions and interpreters, then the
services and groups move to the three-way merge (spec/merge.py) of the last release installed
here (.bundler/release.toml), this server's manifest and the release, in one transaction
(transact.py), and the release is recorded as the last one installed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from bundler.bundle import integrity
from bundler.bundle.cstrings import replace_padded
from bundler.bundle.manifest import Manifest
from bundler.bundle.records import (
    PATCH_FILE,
    PATCH_SITE,
    Checksums,
    Entry,
    PatchRecord,
    Release,
    Relocation,
)
from bundler.bundle.relocation import check_growth
from bundler.bundle.render import PRIVATE
from bundler.bundle.safetree import Overlay, Refused
from bundler.bundle.tree import CHECKSUMS_RECORD, MANIFEST, Bundle
from bundler.errors import BundlerError
from bundler.fsutil import write_atomic
from bundler.server import admission, filemoves, history, site, stale
from bundler.server.filemoves import Move
from bundler.server.history import HistoryEntry, Installed, ServiceChange
from bundler.server.incoming import Incoming, unpack
from bundler.server.services import changed
from bundler.server.site import SiteChange
from bundler.server.supervisor import Process
from bundler.server.transact import ROLLBACK_FAILED, NewFiles, Outcome, read_manifest, recover, transact
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
    restarts: dict[str, str] = dataclasses.field(default_factory=dict)  # for their files: why
    outcome: Outcome | None = None  # the services' change (None: none was made)
    entries: list[HistoryEntry] = dataclasses.field(default_factory=list)


@dataclass(frozen=True)
class ApplyPlan:
    """What applying a patch does, all of it known before anything changes."""

    moves: list[Move]                # the files: added, replaced, removed
    merged: list[merge.Merged]       # the services and groups: the three-way merge
    site: list[SiteChange]           # the default files of etc/app/
    notes: list[str]
    live: LiveManifest               # the bundle's manifest once the files are in
    manifest: Manifest               # it, checked
    before: str                      # the manifest before the patch (a rollback's)
    touched: stale.Touched           # whose files the patch changes

    @property
    def conflicts(self) -> list[str]:
        return [m.describe() for m in self.merged if m.conflicts]


def apply(bundle: Bundle, source: Path, dry_run: bool = False, prefer: str | None = None,
          files_only: bool = False, timeout: float = 90.0, allow_downgrade: bool = False
          ) -> Applied:
    """Install the patch's files, then converge the services to the release (merge.py) and
    restart those whose files it changed, as one operation under the bundle's lock: a failure
    undoes it all, files included. With `dry_run` only say what would be done. Conflicts refuse
    the whole patch unless `prefer` settles them; a release older than the installed one, or
    of its version with other content, unless `allow_downgrade`."""
    with bundle.locked():
        recover(bundle)
        live, here = read_manifest(bundle)
        with _incoming_folder(bundle) as folder:
            incoming = unpack(bundle, source, folder, here.spec.name)
            plan = _plan(bundle, incoming, live, here, prefer, allow_downgrade, files_only)
            patch = incoming.patch
            applied = Applied(len(patch.files) + len(patch.links), len(patch.remove),
                              plan.live.version, plan.merged, plan.site, plan.notes)
            if dry_run:
                return applied if files_only else \
                    dataclasses.replace(applied, restarts=_restarts(plan))
            if plan.conflicts and not files_only:
                raise BundlerError(f"refusing {source.name}: {len(plan.conflicts)} conflict(s) "
                                   "between this server's changes and the release: "
                                   + "; ".join(plan.conflicts) + "; nothing was changed "
                                   "(--prefer release|server settles them, --files-only installs "
                                   "the files alone)")
            since = float(int(time.time()))  # supervisor tells a process's start in seconds
            _install(bundle, incoming, plan)
        installed = Installed(plan.live.version, source.name, incoming.signer)
        if files_only:
            filemoves.finish(bundle)
            stale.record(bundle, plan.touched, since)
            history.stamp(bundle, [HistoryEntry("apply", "files only", installed=installed)])
            return applied
        restarts: dict[str, str] = {}
        try:
            outcome, entries = _converge(bundle, plan, timeout, restarts)
        except BundlerError as exc:
            _undo(bundle)
            raise BundlerError(f"{source.name}: nothing was changed (its files were taken out "
                               f"again): {exc}") from exc
        except BaseException:  # a full disk, a lost supervisord, Ctrl-C: undone all the same
            _undo(bundle)
            raise
        if outcome.failed:
            result = ROLLBACK_FAILED if outcome.unrestored else "rolled back"
            history.stamp(bundle, [HistoryEntry("apply", result, installed=installed)])
        else:
            filemoves.finish(bundle)
            stale.record(bundle, plan.touched, since)
            history.stamp(bundle, [HistoryEntry("apply", "ok", installed=installed)])
    moved = {e.change.service for e in entries if e.change is not None}
    return dataclasses.replace(applied, outcome=outcome, entries=entries, restarts={
        name: why for name, why in restarts.items() if name not in moved})


def _undo(bundle: Bundle) -> None:
    """Take an apply back whose services could not be changed (transact may have undone it)."""
    try:
        recover(bundle)
    except BundlerError as exc:
        raise BundlerError(f"the apply could not be undone ({exc}); the next bin/bundler "
                           "command or bin/start undoes it") from exc


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
    """The files, etc/app/'s defaults and the records that go with them, all or nothing
    (filemoves.py: kept to be undone until the services run the release)."""
    filemoves.commit(bundle, plan.moves, incoming.files, keep=True)


def _merge(plan: ApplyPlan, live: LiveManifest) -> list[ServiceChange]:
    """Edit `live` to the merge's services and groups; what it did to each service."""
    changes = [changed(live, m.name, partial(live.put_service, m.name, m.result))
               for m in plan.merged if m.kind == "services" and m.changes]
    for m in plan.merged:
        if m.kind == "groups" and m.changes:
            live.put_group(m.name, m.result)
    return changes


def _restarts(plan: ApplyPlan) -> dict[str, str]:
    """The services (and the monitor) the release restarts for their files alone: each one's
    definition stays, the files of its code or interpreter change."""
    if not plan.touched:
        return {}
    merged = LiveManifest.parse(plan.live.text(), plan.live.path)
    moved = {c.service for c in _merge(plan, merged) if c.before != c.after}
    return {name: why for name, why in stale.reasons(Manifest.of(merged), plan.touched).items()
            if name not in moved}


def _converge(bundle: Bundle, plan: ApplyPlan, timeout: float, restarts: dict[str, str]
              ) -> tuple[Outcome, list[HistoryEntry]]:
    """Move every service and group the merge changes, and restart those whose files changed
    (`restarts` gets them, with why), in one transaction (gated, rolled back as a whole, the
    files with it)."""
    def restart(new: Manifest, processes: list[Process]) -> dict[str, str]:
        restarts.update(stale.reasons(new, plan.touched))
        restarts.update(stale.running_stale(bundle, new, processes))  # after --files-only
        return restarts
    release = NewFiles(restart, plan.before)
    return transact(bundle, "apply", partial(_merge, plan), timeout,
                    current=(plan.live, plan.manifest), release=release)


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


def _plan(bundle: Bundle, incoming: Incoming, live: LiveManifest, here: Manifest,
          prefer: str | None, allow_downgrade: bool, files_only: bool = False) -> ApplyPlan:
    """Everything the patch will do, checked against the bundle; raises before anything changes.
    The staged files are made to name this bundle's path, and the records that change with them
    (the manifest, checksums.json, relocate.json) are staged beside them."""
    patch = incoming.patch
    runs = admission.runs_here(bundle, patch, incoming.source.name)
    reloc = Relocation.read(bundle.relocation)
    differ, conflicts = _check_paths(bundle, patch, reloc)
    after = _relocation_after(reloc, patch)
    entries = _relocate(incoming, reloc.prefix, after)
    release = _take_release(live, patch)
    manifest = Manifest.of(live)  # still a valid manifest
    try:  # the release's, whose services the merge takes
        Manifest.of(release, patch.manifest)
    except BundlerError as exc:
        raise BundlerError(f"refusing the patch: {exc}; nothing was changed") from None
    if not allow_downgrade:
        admission.moves_forward(bundle, incoming, here.spec.version, release.version, differ)
    _refuse_conflicts(bundle, patch, conflicts)
    for rel, meta in patch.files.items():  # what checksums.json will say of it, checked now
        if entries[rel] != meta.checksum:
            raise BundlerError(f"refusing the patch: the checksum it records for {rel!r} does not "
                               "match the file; nothing was changed")
    generated = _records(bundle, patch, manifest.text, after)
    if runs is not None:
        generated[str(bundle.platform.relative_to(bundle.root))] = runs.text()
    if not files_only:  # the base of the next apply's merge, kept with the files (or undone)
        generated[str(bundle.release_record.relative_to(bundle.root))] = \
            Release(patch.manifest).text()
    for rel, text in generated.items():
        _stage_record(incoming.files / rel, text, bundle.root / rel)
    defaults = site.changes(bundle, patch.site)
    staged_site = site.stage(bundle, defaults, incoming.folder / PATCH_SITE, incoming.files,
                             patch.site)
    moves = [*(Move.to(bundle.root, rel, "file")
               for rel in [*patch.files, *generated, *staged_site]),
             *(Move.to(bundle.root, rel, "link", t) for rel, t in patch.links.items()),
             *(Move.to(bundle.root, rel, None) for rel in patch.remove)]
    merged = merge.merge(_release_base(bundle, patch, release), live.definitions(),
                         _definitions(release, "the patch's spec"), prefer)
    notes = [f"the release changes [{key}], which a patch does not: ship a full archive for it"
             for key in live.differing(release, NOT_PATCHED)]
    touched = stale.touched(bundle, manifest, differ)  # what the server has otherwise
    return ApplyPlan(moves, merged, defaults, notes, live, manifest,
                     here.text, touched)


def _check_paths(bundle: Bundle, patch: PatchRecord, reloc: Relocation
                 ) -> tuple[list[str], list[str]]:
    """Every path the patch touches may be written (safetree.Overlay); the paths it changes,
    and those that are neither what it was built against nor already what it brings."""
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
    conflicts, differ = [], []
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
        if current != new and not (new is not None and new.same_build(current)):
            differ.append(rel)
    return differ, conflicts


def _refuse_conflicts(bundle: Bundle, patch: PatchRecord, conflicts: list[str]) -> None:
    if conflicts:
        listed = ", ".join(conflicts[:5]) + (" ..." if len(conflicts) > 5 else "")
        built = hashlib.sha256(bundle.checksums.read_bytes()).hexdigest()
        why = "the patch was made against another build of this bundle" \
            if patch.against and patch.against != built else "changed here since the build"
        raise BundlerError(f"refusing the patch: {len(conflicts)} file(s) are not what it was built "
                           f"against ({why}): {listed}; nothing was changed")


def _stage_record(staged: Path, text: str, replaces: Path) -> None:
    """Stage a record with the mode and owner of the file it replaces (a new one private: the
    release's manifest holds environments): bundle.toml stays private, in the group bin/start
    gave it."""
    staged.parent.mkdir(parents=True, exist_ok=True)
    try:
        st: os.stat_result | None = replaces.stat()
    except FileNotFoundError:
        st = None
    write_atomic(staged, text, st.st_mode & 0o7777 if st is not None else PRIVATE)
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
            if meta.capacity is not None:
                data = replace_padded(data, old, here)
            else:
                check_growth(rel, data, old, here, path.parent)
                data = data.replace(old, here)
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
