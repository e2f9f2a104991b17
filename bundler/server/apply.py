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
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.toml_document import TOMLDocument

from bundler.bundle import elf, integrity, signing
from bundler.bundle.archive import read_tar
from bundler.bundle.cstrings import replace_padded
from bundler.bundle.records import (
    PATCH_FILE,
    PATCH_SIGNATURE,
    PATCH_SITE,
    Checksums,
    Entry,
    Manifest,
    PatchRecord,
    Platform,
    Relocation,
)
from bundler.bundle.render import PRIVATE
from bundler.bundle.safetree import Plan, Refused, check_name, check_space, member_kind
from bundler.bundle.tree import CHECKSUMS_RECORD, MANIFEST, Bundle
from bundler.errors import BundlerError
from bundler.fsutil import write_atomic
from bundler.server import filemoves, history, site
from bundler.server.services import changed
from bundler.server.site import SiteChange
from bundler.server.transact import Outcome, recover, transact
from bundler.spec import edit, merge

Definitions = dict[str, dict[str, dict[str, Any]]]


@dataclass(frozen=True)
class Applied:
    files: int
    removed: int
    version: str
    plan: list[merge.Merged]        # each service and group, merged
    site: list[SiteChange]          # each default file of etc/app/
    notes: list[str]                # what the release changes that a patch cannot
    outcome: Outcome | None = None  # the services' change (None: none was made)
    entries: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def apply(bundle: Bundle, source: Path, dry_run: bool = False, prefer: str | None = None,
          files_only: bool = False, timeout: float = 90.0) -> Applied:
    """Install the patch's files, then converge the services to the release (merge.py), as one
    transaction; with `dry_run` only say what would be done. Conflicts refuse the whole patch
    unless `prefer` settles them."""
    with bundle.locked():
        recover(bundle)
        incoming = bundle.apply_incoming
        shutil.rmtree(incoming, ignore_errors=True)
        incoming.mkdir()
        try:
            patch, signer = _unpack(bundle, source, incoming / "files")
            runs = _runs_here(bundle, patch, source.name)
            ops, manifest_text = _prepare(bundle, patch, incoming)
            release = _definitions(patch.manifest, "the patch's spec")
            base = _release_base(bundle, patch)
            merged = tomlkit.parse(manifest_text)
            plan = merge.merge(base, merge.definitions(merged), release, prefer)
            version = str(merged["bundle"]["version"])
            site_changes = site.plan(bundle, patch.site)
            applied = Applied(len(patch.files) + len(patch.links), len(patch.remove), version, plan,
                              site_changes, _not_applied(merged, patch.manifest))
            if dry_run:
                return applied
            conflicts = [m.describe() for m in plan if m.conflicts]
            if conflicts and not files_only:
                raise BundlerError(f"refusing {source.name}: {len(conflicts)} conflict(s) between "
                                   "this server's changes and the release: " + "; ".join(conflicts)
                                   + "; nothing was changed (--prefer release|server settles "
                                   "them, --files-only installs the files alone)")
            filemoves.commit(bundle, ops, incoming / "files")
            if runs is not None:
                runs.write(bundle.platform)
            site.install(bundle, site_changes, incoming / PATCH_SITE, patch.site)
        finally:
            shutil.rmtree(incoming, ignore_errors=True)
        entry = {"to": version, "patch": source.name}
        history.stamp(bundle, "apply", [{**entry, "signed_by": signer} if signer else entry], "ok")
    if files_only:
        return applied
    try:
        outcome, entries = converge(bundle, base, release, prefer, timeout)
    except BundlerError as exc:
        raise BundlerError(f"{source.name}: its files are installed, but no service was changed: "
                           f"{exc}") from exc
    if not outcome.failed:
        write_atomic(bundle.release_record, patch.manifest, PRIVATE)  # environments: private
    return dataclasses.replace(applied, outcome=outcome, entries=entries)


def _runs_here(bundle: Bundle, patch: PatchRecord, name: str) -> Platform | None:
    """Refuse a release this server cannot run (another architecture, an older glibc than its
    files need); else what .bundler/platform says once it is installed."""
    release = Platform.parse(patch.platform)
    if release is None:
        return None
    need, have = elf.parse_version(release.glibc), elf.host_glibc()
    if release.machine != platform.machine() or (have and need > have):
        raise BundlerError(f"refusing {name}: the release needs {release.machine} with glibc "
                           f"{release.glibc} or newer, and this server is {platform.machine()} with "
                           f"glibc {'.'.join(map(str, have)) or 'unknown'}; nothing was changed")
    current = Platform.read(bundle.platform)
    if current is not None and elf.parse_version(current.glibc) > need:
        release = dataclasses.replace(release, glibc=current.glibc)  # files the patch kept
    return release


def converge(bundle: Bundle, base: Definitions, release: Definitions, prefer: str | None,
             timeout: float) -> tuple[Outcome, list[dict[str, Any]]]:
    """Move every service and group the merge changes, in one transaction (gated, rolled back
    as a whole)."""
    def change(doc: TOMLDocument) -> list[dict[str, Any]]:
        plan = merge.merge(base, merge.definitions(doc), release, prefer)
        conflicts = [m.describe() for m in plan if m.conflicts]
        if conflicts:  # the server changed between the check and now
            raise BundlerError("conflicts with this server's changes: " + "; ".join(conflicts))
        entries = [changed(doc, m.name, partial(edit.put_service, doc, m.name, m.result))
                   for m in plan if m.kind == "services" and m.changes]
        for m in plan:
            if m.kind == "groups" and m.changes:
                edit.put_group(doc, m.name, m.result)
        return entries
    return transact(bundle, "apply", change, timeout)


# Tables a patch leaves as they are: they configure supervisord and the monitor as started.
NOT_PATCHED = ("supervisor", "metrics", "alerts")


def _not_applied(here: TOMLDocument, release: str) -> list[str]:
    there = tomlkit.parse(release)
    return [f"the release changes [{key}], which a patch does not: ship a full archive for it"
            for key in NOT_PATCHED if here.get(key) != there.get(key)]


def _release_base(bundle: Bundle, patch: PatchRecord) -> Definitions:
    """The services and groups of the last release installed here: the bundle's record, else
    what the patch was built against; a patch that says neither changes no service."""
    path = bundle.release_record
    if path.is_file():
        return _definitions(path.read_text(encoding="utf-8"), str(path))
    return _definitions(patch.release_base or patch.manifest, "the patch's base spec")


def _definitions(text: str, what: str) -> Definitions:
    try:
        return merge.definitions(tomlkit.parse(text))
    except (TOMLKitError, ValueError) as exc:
        raise BundlerError(f"refusing the patch: {what} is not a bundle spec ({exc!s:.80}); "
                           "nothing was changed") from None


PATCH_FILE_LIMIT = 256 << 20  # patch.json carries the manifest and one line a file


def _unpack(bundle: Bundle, source: Path, files_dir: Path) -> tuple[PatchRecord, str | None]:
    """Read the patch archive: every member checked (safetree.Plan: name, type, duplicates, a
    file under a file); its files go to `files_dir` (a new folder of ours), its links are only
    read, and nothing else is written. Returns the patch and who signed it."""
    raw: bytes | None = None
    signature: bytes | None = None
    seen_files: dict[str, str] = {}
    seen_links: dict[str, str] = {}
    seen_site: dict[str, str] = {}
    top = None
    plan, site_plan = Plan(), Plan()
    with read_tar(source) as tar:
        for member in tar:
            head, _, rel = member.name.rstrip("/").partition("/")
            top = top or head
            if head != top or check_name(head):
                raise _refuse(source, member.name, "is outside the patch's one top-level folder")
            if member.isdir() and rel in ("", "files"):
                continue
            if rel == PATCH_FILE and member.isfile() and raw is None:
                if member.size > PATCH_FILE_LIMIT:
                    raise _refuse(source, member.name, "is too large to be a patch.json")
                f = tar.extractfile(member)
                assert f is not None
                raw = f.read()
                continue
            if rel == PATCH_SIGNATURE and member.isfile() and signature is None \
                    and member.size < 1 << 16:
                f = tar.extractfile(member)
                assert f is not None
                signature = f.read()
                continue
            if rel.startswith(PATCH_SITE + "/") or rel == PATCH_SITE:
                _site_member(tar, member, rel.removeprefix(PATCH_SITE).lstrip("/"), site_plan,
                             seen_site, files_dir.parent / PATCH_SITE, source)
                continue
            path = rel.removeprefix("files/")
            if not rel.startswith("files/"):
                raise _refuse(source, member.name, "is not a plain relative path inside the bundle")
            kind = member_kind(member)
            if kind not in ("file", "dir", "link"):
                raise _refuse(source, member.name, f"is a {kind}, not a file or a symlink")
            try:
                plan.add(path, kind, member.linkname if kind == "link" else "")
            except Refused as exc:
                raise BundlerError(f"refusing {source}: member {exc}; nothing was changed") from None
            if kind == "link":
                seen_links[path] = member.linkname
            elif kind == "file":
                seen_files[path] = _stage(tar, member, files_dir / path, source)
    try:
        patch = PatchRecord.parse(raw if raw is not None else b"{}")
    except ValueError as exc:
        raise BundlerError(f"refusing {source}: it is not a bundler patch (no readable "
                           f"{PATCH_FILE} of format {PatchRecord.FORMAT}); nothing was changed") from exc
    signer = _check_origin(bundle, patch, raw or b"", signature, source)
    expected = {rel: f.sha256 for rel, f in patch.files.items()}
    for rel in sorted(set(expected) | set(seen_files)):
        if seen_files.get(rel) != expected.get(rel):
            what = "is missing" if rel not in seen_files else "is not listed" \
                if rel not in expected else "does not match its checksum"
            raise BundlerError(f"refusing {source}: {rel!r} {what}; nothing was changed")
    if seen_links != patch.links:
        raise BundlerError(f"refusing {source}: its links do not match {PATCH_FILE}; "
                           "nothing was changed")
    if seen_site != patch.site:
        raise BundlerError(f"refusing {source}: its site configuration does not match "
                           f"{PATCH_FILE}; nothing was changed")
    return patch, signer


def _site_member(tar: tarfile.TarFile, member: tarfile.TarInfo, rel: str, plan: Plan,
                 seen: dict[str, str], staged: Path, source: Path) -> None:
    """A default file for etc/app/: staged (and its SHA-256 noted) like the patch's files."""
    if not rel and member.isdir():
        return
    kind = member_kind(member)
    if kind not in ("file", "dir"):
        raise _refuse(source, member.name, f"is a {kind}; site configuration is plain files")
    try:
        plan.add(rel, kind)
    except Refused as exc:
        raise BundlerError(f"refusing {source}: member {exc}; nothing was changed") from None
    if kind == "file":
        seen[rel] = _stage(tar, member, staged / rel, source)


def _check_origin(bundle: Bundle, patch: PatchRecord, raw: bytes, signature: bytes | None,
                  source: Path) -> str | None:
    """Is the patch for this bundle, and signed by a key it trusts (when it trusts any)? Who
    signed it."""
    name = Manifest.read(bundle.manifest).spec.name
    if patch.bundle != name:
        made_for = f"bundle {patch.bundle!r}" if patch.bundle else \
            "no named bundle (an older bundler made it)"
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
        sig = signing.Signature.parse(signature)
        signing.check(sig, "patch", raw, trusted)
    except BundlerError as exc:
        raise BundlerError(f"refusing {source}: {exc}; nothing was changed") from None
    return sig.fingerprint


def _stage(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path, source: Path) -> str:
    """Write one file member to `target`; its SHA-256."""
    check_space(target.parent, member.size, f"applying {source.name}")
    target.parent.mkdir(parents=True, exist_ok=True)
    data = tar.extractfile(member)
    assert data is not None
    digest = hashlib.sha256()
    with open(target, "xb") as out:
        while block := data.read(1 << 20):
            digest.update(block)
            out.write(block)
    os.chmod(target, 0o755 if member.mode & 0o100 else 0o644)
    return digest.hexdigest()


def _refuse(source: Path, name: str, why: str) -> BundlerError:
    return BundlerError(f"refusing {source}: member {name!r} {why}; nothing was changed")


def _prepare(bundle: Bundle, patch: PatchRecord, incoming: Path) -> tuple[list[dict[str, Any]],
                                                                          str]:
    """Check every path against the bundle and plan the moves; raise before anything changes."""
    root = bundle.root
    reloc = Relocation.read(bundle.relocation)
    touched = [*patch.files, *patch.links, *patch.remove]
    plan = Plan(root, lambda rel: None if bundle.patchable(rel) else
                "is a path a patch may not touch (the manifest, etc/, log/, run/, records)")
    try:
        for rel in patch.remove:
            plan.add(rel, "gone")
        for rel in patch.files:
            plan.add(rel, "file")
        for rel, target in patch.links.items():
            plan.add(rel, "link", target)
        plan.finish()
    except Refused as exc:
        raise BundlerError(f"refusing the patch: {exc}; nothing was changed") from None
    conflicts = []
    for rel in touched:
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

    here = os.fsencode(reloc.prefix)
    for rel, meta in patch.files.items():
        if meta.relocatable:  # it names the build's path: make it name this bundle's
            staged = incoming / "files" / rel
            if meta.capacity is not None and len(here) > meta.capacity:
                raise BundlerError(f"refusing the patch: {rel} can hold a bundle path of at most "
                                   f"{meta.capacity} bytes, and this bundle's is longer; "
                                   "nothing was changed")
            old, data = os.fsencode(patch.prefix), staged.read_bytes()
            staged.write_bytes(replace_padded(data, old, here) if meta.capacity is not None
                               else data.replace(old, here))
    try:
        manifest_text = merge_manifest(bundle.manifest.read_text(encoding="utf-8"), patch.manifest)
    except (TOMLKitError, KeyError, TypeError, AttributeError) as exc:
        raise BundlerError(f"refusing the patch: its manifest is not a bundle manifest ({exc!s:.80}); "
                           "nothing was changed") from None
    Manifest.read(bundle.manifest, manifest_text)  # still a valid manifest
    try:  # the release's, whose services converge() takes
        Manifest.read(Path(f"{PATCH_FILE}: the release's bundle.toml"), patch.manifest)
    except BundlerError as exc:
        raise BundlerError(f"refusing the patch: {exc}; nothing was changed") from None
    checksums = integrity.load(root)
    checksums.update({rel: f.checksum for rel, f in patch.files.items()})
    checksums.update({rel: Entry(link=t) for rel, t in patch.links.items()})
    for rel in patch.remove:
        checksums.pop(rel, None)
    checksums[MANIFEST] = Entry.of_bytes(manifest_text.encode(), executable=False)
    gone = set(patch.remove) | set(patch.files)
    binaries = {rel: cap for rel, cap in reloc.binaries.items() if rel not in gone}
    binaries.update({rel: f.capacity for rel, f in patch.files.items() if f.capacity is not None})
    record = dataclasses.replace(
        reloc, texts=(reloc.texts - gone) | {rel for rel, f in patch.files.items()
                                             if f.relocatable and f.capacity is None},
        binaries=dict(sorted(binaries.items())))
    for rel, meta in patch.files.items():  # what checksums.json will say of it, checked now
        if integrity.entry(incoming / "files" / rel, rel, record) != meta.checksum:
            raise BundlerError(f"refusing the patch: the checksum it records for {rel!r} does not "
                               "match the file; nothing was changed")
    generated = {MANIFEST: manifest_text,
                 CHECKSUMS_RECORD: Checksums(checksums).text(),
                 str(bundle.relocation.relative_to(root)): record.text()}
    for rel, text in generated.items():
        staged = incoming / "files" / rel
        staged.parent.mkdir(parents=True, exist_ok=True)
        staged.write_text(text, encoding="utf-8")

    ops: list[dict[str, Any]] = []
    for rel in [*patch.files, *generated]:
        ops.append({"rel": rel, "put": "file"})
    for rel, target in patch.links.items():
        ops.append({"rel": rel, "put": "link", "target": target})
    ops += [{"rel": rel, "put": None} for rel in patch.remove]
    for op in ops:
        path = root / op["rel"]
        op["existed"] = path.is_symlink() or path.exists()
    return ops, manifest_text


def merge_manifest(current: str, incoming: str) -> str:
    """The bundle's manifest with the patch's version, code versions and interpreters; its
    services and groups stay as they are (converge() moves them)."""
    doc, new = tomlkit.parse(current), tomlkit.parse(incoming)
    for key in ("code", "envs"):
        for name, table in new.get(key, {}).items():
            if key not in doc:
                doc[key] = tomlkit.table(is_super_table=True)
            doc[key][name] = table
    if "base" in new:
        doc["base"] = new["base"]
    else:  # the default base (python = "current")
        doc.pop("base", None)
    for key in ("interpreters", "code"):
        for name, table in new["build"].get(key, {}).items():
            if key not in doc["build"]:
                doc["build"][key] = tomlkit.table(is_super_table=True)
            doc["build"][key][name] = table
    doc["bundle"]["version"] = new["bundle"]["version"]
    return tomlkit.dumps(doc)
