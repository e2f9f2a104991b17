"""Applying a patch on the server (build/patch.py makes them).

`bin/bundler apply PATCH` checks every member and path before it writes a byte, then moves the
files in under a journal (filemoves.py), so that a failure at any point (or a kill) leaves the
bundle as it was.

A patch never touches bundle.toml wholesale, etc/ (generated configuration and the site's
etc/app/), log/, run/ or bundler's records: the manifest is merged (new code versions and
interpreters), and services keep the code they run until `bin/bundler switch` moves them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomlkit

from bundler.bundle import integrity
from bundler.bundle.archive import read_tar
from bundler.bundle.cstrings import replace_padded
from bundler.bundle.records import PATCH_FILE, Checksums, Entry, Manifest, PatchRecord, Relocation
from bundler.bundle.tree import CHECKSUMS_RECORD, MANIFEST, Bundle
from bundler.errors import BundlerError
from bundler.server import filemoves, history
from bundler.server.transact import recover


@dataclass(frozen=True)
class Applied:
    files: int
    removed: int
    version: str
    hints: list[str]


def apply(bundle: Bundle, source: Path) -> Applied:
    with bundle.locked():
        recover(bundle)
        incoming = bundle.apply_incoming
        shutil.rmtree(incoming, ignore_errors=True)
        incoming.mkdir()
        try:
            patch = _unpack(source, incoming / "files")
            ops, manifest_text, hints = _prepare(bundle, patch, incoming)
            filemoves.commit(bundle, ops, incoming / "files")
        finally:
            shutil.rmtree(incoming, ignore_errors=True)
        version = str(tomlkit.parse(manifest_text)["bundle"]["version"])
        history.stamp(bundle, "apply", [{"to": version, "patch": source.name}], "ok")
        return Applied(len(patch.files) + len(patch.links), len(patch.remove), version, hints)


def safe_rel(rel: str) -> bool:
    parts = rel.split("/")
    return bool(rel) and not rel.startswith("/") and all(p not in ("", ".", "..") for p in parts) \
        and "\0" not in rel


def _unpack(source: Path, files_dir: Path) -> PatchRecord:
    """Read the patch archive: every member checked for its type and path; nothing outside
    `files_dir` is written, and no link is created."""
    raw: bytes | None = None
    seen_files: dict[str, str] = {}
    seen_links: dict[str, str] = {}
    top = None
    with read_tar(source) as tar:
        for member in tar:
            head, _, rel = member.name.rstrip("/").partition("/")
            top = top or head
            if head != top:
                raise _refuse(source, member.name, "is outside the patch's one top-level folder")
            if member.isdir() and rel in ("", "files"):
                continue
            if rel == PATCH_FILE and member.isfile():
                f = tar.extractfile(member)
                assert f is not None
                raw = f.read()
                continue
            path = rel.removeprefix("files/")
            if not rel.startswith("files/") or not safe_rel(path):
                raise _refuse(source, member.name, "is not a plain relative path inside the bundle")
            if member.isdir():
                continue
            if member.issym():
                seen_links[path] = member.linkname
            elif member.isfile():
                target = files_dir / path
                target.parent.mkdir(parents=True, exist_ok=True)
                data = tar.extractfile(member)
                assert data is not None
                digest = hashlib.sha256()
                with open(target, "xb") as out:
                    while block := data.read(1 << 20):
                        digest.update(block)
                        out.write(block)
                os.chmod(target, 0o755 if member.mode & 0o100 else 0o644)
                seen_files[path] = digest.hexdigest()
            else:
                raise _refuse(source, member.name, "is neither a file nor a symlink")
    try:
        patch = PatchRecord.parse(raw if raw is not None else b"{}")
    except ValueError as exc:
        raise BundlerError(f"{source} is not a bundler patch (no {PATCH_FILE} of format "
                           f"{PatchRecord.FORMAT})") from exc
    expected = {rel: f.sha256 for rel, f in patch.files.items()}
    for rel in sorted(set(expected) | set(seen_files)):
        if seen_files.get(rel) != expected.get(rel):
            what = "is missing" if rel not in seen_files else "is not listed" \
                if rel not in expected else "does not match its checksum"
            raise BundlerError(f"refusing {source}: {rel} {what}; nothing was changed")
    if seen_links != patch.links:
        raise BundlerError(f"refusing {source}: its links do not match {PATCH_FILE}; "
                           "nothing was changed")
    return patch


def _refuse(source: Path, name: str, why: str) -> BundlerError:
    return BundlerError(f"refusing {source}: member {name!r} {why}; nothing was changed")


def _prepare(bundle: Bundle, patch: PatchRecord, incoming: Path) -> tuple[list[dict[str, Any]],
                                                                          str, list[str]]:
    """Check every path against the bundle and plan the moves; raise before anything changes."""
    root = bundle.root
    real_root = root.resolve()
    reloc = Relocation.read(bundle.relocation)
    touched = [*patch.files, *patch.links, *patch.remove]
    for rel in touched:
        if not safe_rel(rel) or not bundle.patchable(rel):
            raise BundlerError(f"refusing the patch: it would write {rel!r}, which a patch may not "
                               "touch (site configuration, logs, records); nothing was changed")
        parent = (root / rel).parent
        while not parent.exists() and not parent.is_symlink():
            parent = parent.parent
        if not parent.resolve().is_relative_to(real_root):
            raise BundlerError(f"refusing the patch: {rel} would be written through a link out of "
                               "the bundle; nothing was changed")
    for rel, target in patch.links.items():
        resolved = os.path.normpath(os.path.join(os.path.dirname(rel), target))
        if os.path.isabs(target) or resolved == ".." or resolved.startswith("../"):
            raise BundlerError(f"refusing the patch: link {rel} -> {target} points out of the "
                               "bundle; nothing was changed")
    conflicts = []
    for rel in touched:
        path = root / rel
        current = integrity.entry(path, rel, reloc) \
            if path.is_symlink() or path.exists() else None
        if rel in patch.files:
            new: Entry | None = patch.files[rel].checksum
        else:
            new = Entry(link=patch.links[rel]) if rel in patch.links else None
        if current not in (patch.base.get(rel), new):
            conflicts.append(rel)
    if conflicts:
        listed = ", ".join(conflicts[:5]) + (" ..." if len(conflicts) > 5 else "")
        raise BundlerError(f"refusing the patch: {len(conflicts)} file(s) are not what it was built "
                           f"against (changed here, or the patch is for another build): {listed}; "
                           "nothing was changed")

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
    manifest_text, hints = merge_manifest(bundle.manifest.read_text(encoding="utf-8"),
                                          patch.manifest)
    Manifest.read(bundle.manifest, manifest_text)  # still a valid manifest
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
    return ops, manifest_text, hints


def merge_manifest(current: str, incoming: str) -> tuple[str, list[str]]:
    """The bundle's manifest with the patch's code versions and interpreters; services stay."""
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
    hints = []
    services = doc.get("services", {})
    for name, service in new.get("services", {}).items():
        if name not in services:
            hints.append(f"service {name} is new in the patch: add it with "
                         f"bin/bundler add-service {name} --code {service['code']} ...")
        elif service["code"] != services[name]["code"]:
            hints.append(f"the patch's spec runs {name} on {service['code']}: "
                         f"bin/bundler switch {name} {service['code']}")
    return tomlkit.dumps(doc), hints
