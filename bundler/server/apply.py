"""Patches: ship only what changed since an earlier build, and apply it on the server.

`bundler build --patch-from OLD` builds the whole tree as usual, then packs only the files whose
checksums differ from OLD's, with patch.json: each member's SHA-256, what the patch expects to
find in place of each path it touches, the files to remove, and the new manifest.
`bin/bundler apply PATCH` checks all of that before it writes a byte, then moves the files in
under a journal, so that a failure at any point (or a kill) leaves the bundle as it was.

A patch never touches bundle.toml wholesale, etc/ (generated configuration and the site's
etc/app/), log/, run/ or bundler's records: the manifest is merged (new code versions and
interpreters), and services keep the code they run until `bin/bundler switch` moves them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomlkit

from bundler import filemoves, integrity, live
from bundler.archive import read_tar
from bundler.bundle import MANIFEST, Bundle
from bundler.errors import BundlerError
from bundler.fsutil import sha256_file
from bundler.integrity import CHECKSUMS, Entry
from bundler.layout import META, Layout
from bundler.relocate import RECORD, locked, record_text, replace_padded

PATCH_FILE = "patch.json"
FORMAT = 1
INCOMING = "apply-incoming"


def old_checksums(source: Path) -> dict[str, Entry]:
    """The checksums of an earlier build: its archive, its unpacked tree or its checksums.json."""
    if source.is_dir():
        return integrity.load(source)
    if source.suffix == ".json":
        return integrity.parse(source.read_text())
    wanted = f"{META}/{CHECKSUMS}"
    with read_tar(source) as tar:
        for member in tar:
            if member.isfile() and member.name.split("/", 1)[-1] == wanted:
                f = tar.extractfile(member)
                assert f is not None
                return integrity.parse(f.read())
    raise BundlerError(f"{source} holds no {wanted}: is it a bundle built by bundler?")


def shippable(rel: str, layout: Layout) -> bool:
    """Paths a patch may carry: not the manifest, configuration, runtime state or records."""
    return rel != MANIFEST and not rel.startswith(layout.etc + "/") \
        and not integrity.skipped(rel, layout)


def _unit(rel: str, layout: Layout, project: str) -> str:
    """What a path belongs to: a code version's folder, an env's folder, or the base."""
    code_prefix = layout.code_dir(project, "\0").split("\0")[0]
    depth = code_prefix.count("/") + 1
    if rel.startswith(code_prefix):
        return "/".join(rel.split("/")[:depth])
    if rel.startswith(layout.envs + "/"):
        return "/".join(rel.split("/")[:2])
    return "base"


def make(root: Path, layout: Layout, project: str, old: dict[str, Entry], dest: Path) -> dict[str, int]:
    """Stage the patch from the built tree `root` against `old` in `dest`; return counts."""
    new = integrity.load(root)
    reloc = integrity.relocation(root)
    present = {_unit(rel, layout, project) for rel in new}
    files: dict[str, Any] = {}
    links: dict[str, str] = {}
    base: dict[str, Entry | None] = {}
    for rel, entry in new.items():
        if not shippable(rel, layout) or _same(old.get(rel), entry):
            continue
        base[rel] = old.get(rel)
        if "link" in entry:
            links[rel] = entry["link"]
            continue
        target = dest / "files" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)
        files[rel] = {"sha256": sha256_file(target), "relocatable": rel in reloc,
                      "checksum": entry}
        if rel in reloc.binaries:
            files[rel]["capacity"] = reloc.binaries[rel]
    remove = sorted(rel for rel in old if rel not in new and shippable(rel, layout)
                    and _unit(rel, layout, project) in present)
    base.update({rel: old[rel] for rel in remove})
    patch = {"format": FORMAT, "prefix": reloc.prefix, "files": files, "links": links, "remove": remove,
             "base": base, "manifest": (root / MANIFEST).read_text(encoding="utf-8")}
    (dest / PATCH_FILE).write_text(json.dumps(patch, indent=1) + "\n")
    return {"files": len(files), "links": len(links), "remove": len(remove)}


def _same(old: Entry | None, new: Entry) -> bool:
    """The same file, or bytecode of the same source (valid whichever build compiled it)."""
    return old == new or (old is not None and "source" in new and old.get("source") == new["source"])


# --- applying, on the server ---------------------------------------------------------------

@dataclass(frozen=True)
class Applied:
    files: int
    removed: int
    version: str
    hints: list[str]


def apply(bundle: Bundle, source: Path) -> Applied:
    with locked(bundle.meta):
        live.recover(bundle)
        incoming = bundle.meta / INCOMING
        shutil.rmtree(incoming, ignore_errors=True)
        incoming.mkdir()
        try:
            patch = _unpack(source, incoming / "files")
            ops, manifest_text, hints = _prepare(bundle, patch, incoming)
            filemoves.commit(bundle.root, bundle.meta, ops, incoming / "files")
        finally:
            shutil.rmtree(incoming, ignore_errors=True)
        version = str(tomlkit.parse(manifest_text)["bundle"]["version"])
        live.stamp(bundle, "apply", [{"to": version, "patch": source.name}], "ok")
        return Applied(len(patch["files"]) + len(patch["links"]), len(patch["remove"]), version,
                       hints)


def safe_rel(rel: str) -> bool:
    parts = rel.split("/")
    return bool(rel) and not rel.startswith("/") and all(p not in ("", ".", "..") for p in parts) \
        and "\0" not in rel


def _unpack(source: Path, files_dir: Path) -> dict[str, Any]:
    """Read the patch archive: every member checked for its type and path; nothing outside
    `files_dir` is written, and no link is created."""
    patch: dict[str, Any] | None = None
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
                patch = json.loads(f.read())
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
    if patch is None or patch.get("format") != FORMAT:
        raise BundlerError(f"{source} is not a bundler patch (no {PATCH_FILE} of format {FORMAT})")
    expected = {rel: f["sha256"] for rel, f in patch["files"].items()}
    for rel in sorted(set(expected) | set(seen_files)):
        if seen_files.get(rel) != expected.get(rel):
            what = "is missing" if rel not in seen_files else "is not listed" \
                if rel not in expected else "does not match its checksum"
            raise BundlerError(f"refusing {source}: {rel} {what}; nothing was changed")
    if seen_links != patch["links"]:
        raise BundlerError(f"refusing {source}: its links do not match {PATCH_FILE}; "
                           "nothing was changed")
    return patch


def _refuse(source: Path, name: str, why: str) -> BundlerError:
    return BundlerError(f"refusing {source}: member {name!r} {why}; nothing was changed")


def _prepare(bundle: Bundle, patch: dict[str, Any], incoming: Path) -> tuple[list[dict[str, Any]],
                                                                            str, list[str]]:
    """Check every path against the bundle and plan the moves; raise before anything changes."""
    root, layout = bundle.root, bundle.layout
    real_root = root.resolve()
    reloc = integrity.relocation(root)
    touched = [*patch["files"], *patch["links"], *patch["remove"]]
    for rel in touched:
        if not safe_rel(rel) or not shippable(rel, layout):
            raise BundlerError(f"refusing the patch: it would write {rel!r}, which a patch may not "
                               "touch (site configuration, logs, records); nothing was changed")
        parent = (root / rel).parent
        while not parent.exists() and not parent.is_symlink():
            parent = parent.parent
        if not parent.resolve().is_relative_to(real_root):
            raise BundlerError(f"refusing the patch: {rel} would be written through a link out of "
                               "the bundle; nothing was changed")
    for rel, target in patch["links"].items():
        resolved = os.path.normpath(os.path.join(os.path.dirname(rel), target))
        if os.path.isabs(target) or resolved == ".." or resolved.startswith("../"):
            raise BundlerError(f"refusing the patch: link {rel} -> {target} points out of the "
                               "bundle; nothing was changed")
    conflicts = []
    for rel in touched:
        path = root / rel
        current = integrity.entry(path, rel, reloc) \
            if path.is_symlink() or path.exists() else None
        if rel in patch["files"]:
            new: Entry | None = patch["files"][rel]["checksum"]
        else:
            new = {"link": patch["links"][rel]} if rel in patch["links"] else None
        if current not in (patch["base"].get(rel), new):
            conflicts.append(rel)
    if conflicts:
        listed = ", ".join(conflicts[:5]) + (" ..." if len(conflicts) > 5 else "")
        raise BundlerError(f"refusing the patch: {len(conflicts)} file(s) are not what it was built "
                           f"against (changed here, or the patch is for another build): {listed}; "
                           "nothing was changed")

    here = os.fsencode(reloc.prefix)
    for rel, meta in patch["files"].items():
        if meta["relocatable"]:  # it names the build's path: make it name this bundle's
            staged = incoming / "files" / rel
            if "capacity" in meta and len(here) > meta["capacity"]:
                raise BundlerError(f"refusing the patch: {rel} can hold a bundle path of at most "
                                   f"{meta['capacity']} bytes, and this bundle's is longer; "
                                   "nothing was changed")
            old, data = os.fsencode(patch["prefix"]), staged.read_bytes()
            staged.write_bytes(replace_padded(data, old, here) if "capacity" in meta
                               else data.replace(old, here))
    manifest_text, hints = merge_manifest(bundle.manifest.read_text(encoding="utf-8"),
                                          patch["manifest"])
    live.read_manifest(bundle, manifest_text)  # still a valid manifest
    checksums = integrity.load(root)
    checksums.update({rel: f["checksum"] for rel, f in patch["files"].items()})
    checksums.update({rel: {"link": t} for rel, t in patch["links"].items()})
    for rel in patch["remove"]:
        checksums.pop(rel, None)
    checksums[MANIFEST] = integrity.entry_of_bytes(manifest_text.encode(), executable=False)
    record = json.loads((bundle.meta / RECORD).read_text())
    gone = set(patch["remove"]) | set(patch["files"])
    record["files"] = sorted((set(record["files"]) - gone)
                             | {rel for rel, f in patch["files"].items()
                                if f["relocatable"] and "capacity" not in f})
    binaries = {rel: cap for rel, cap in record.get("binaries", {}).items() if rel not in gone}
    binaries.update({rel: f["capacity"] for rel, f in patch["files"].items() if "capacity" in f})
    record.pop("binaries", None)
    if binaries:
        record["binaries"] = dict(sorted(binaries.items()))
    generated = {MANIFEST: manifest_text,
                 f"{META}/{CHECKSUMS}": integrity.dumps(checksums),
                 f"{META}/{RECORD}": record_text(record)}
    for rel, text in generated.items():
        staged = incoming / "files" / rel
        staged.parent.mkdir(parents=True, exist_ok=True)
        staged.write_text(text, encoding="utf-8")

    ops: list[dict[str, Any]] = []
    for rel in [*patch["files"], *generated]:
        ops.append({"rel": rel, "put": "file"})
    for rel, target in patch["links"].items():
        ops.append({"rel": rel, "put": "link", "target": target})
    ops += [{"rel": rel, "put": None} for rel in patch["remove"]]
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
    doc["base"] = new["base"]
    for key in ("interpreters", "code"):
        for name, table in new["build"][key].items():
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
