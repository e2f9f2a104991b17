"""Making a patch: only what changed since an earlier build (server/apply.py applies it).

`bundler build --patch-from OLD` builds the whole tree as usual, then stages only the files whose
checksums differ from OLD's, with patch.json (records.PatchRecord): each member's SHA-256, what
the patch expects to find in place of each path it touches, the files to remove, and the new
manifest. Paths a patch may not touch (the manifest, etc/, log/, run/, records) are never shipped.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import tomlkit
from tomlkit.exceptions import TOMLKitError

from bundler.bundle import integrity
from bundler.bundle.archive import read_tar
from bundler.bundle.layout import Layout
from bundler.bundle.records import (
    PATCH_FILE,
    PATCH_SITE,
    Checksums,
    Entry,
    PatchFile,
    PatchRecord,
    Platform,
    Release,
    Relocation,
    ServerState,
    SiteDefaults,
)
from bundler.bundle.tree import CHECKSUMS_RECORD, LAYOUT_RECORD, MANIFEST, Bundle
from bundler.errors import BundlerError
from bundler.fsutil import sha256_file
from bundler.spec import versions


@dataclass(frozen=True)
class OldBuild:
    """The build a patch is made against: its checksums, the SHA-256 of their record, and the
    manifest of that release ("" when the source does not hold it)."""

    files: dict[str, Entry]
    digest: str
    manifest: str = ""

    @property
    def version(self) -> str | None:
        """[bundle] version of that release (None when the source does not say)."""
        try:
            table = tomlkit.parse(self.manifest).get("bundle", {})
        except TOMLKitError:
            return None
        value = table.get("version") if isinstance(table, Mapping) else None
        return None if value is None else str(value)


def check_forward(version: str, build: OldBuild, source: Path) -> str | None:
    """Refuse a patch whose [bundle] version does not come after the release it patches (a
    server takes releases in order); a warning when `source` does not say its version."""
    base = build.version
    if base is None:
        return (f"warning: {source} does not say which release it is (a checksums.json alone): "
                f"version {version} is not checked against it")
    order = versions.compare(version, base)
    if order is not None and order > 0:
        return None
    step = versions.next_after(base)
    how = (f"`bundler version --bump {step[0]}` (makes it {step[1]})" if step and order == 0
           else f"`bundler version {step[1]}`" if step else "`bundler version NEW`")
    how += " or edit [bundle] version in bundle.toml"
    if order == 0:
        raise BundlerError(f"[bundle] version {version} is the version of the release {source} "
                           f"holds{f' ({base})' if base != version else ''}: a patch needs a newer "
                           f"one; bump it with {how}")
    if order is None:
        raise BundlerError(f"cannot tell whether [bundle] version {version} comes after {base}, "
                           f"the release {source} holds: a patch must move forward, so use "
                           "versions bundler can order (numbers and dots such as 1.4.2 or "
                           "2026.11.2, pre-releases such as 1.5.0rc1), or build a full archive")
    raise BundlerError(f"[bundle] version {version} is older than {base}, the release {source} "
                       f"holds: a patch must move forward; set a newer one with {how}")


def old_checksums(source: Path) -> OldBuild:
    """The build a patch is made against: its archive, its unpacked tree, what `bin/bundler
    state` printed on a server, or its checksums.json alone."""
    manifest = ""
    if source.is_dir():
        release = Release.read(Bundle(source, Layout.read(source / LAYOUT_RECORD)).release_record) \
            if (source / LAYOUT_RECORD).is_file() else None
        manifest = release.manifest if release is not None \
            else (source / MANIFEST).read_text("utf-8")
        source = source / CHECKSUMS_RECORD
    if source.suffix == ".json":
        data = source.read_bytes()
        if ServerState.MARK.encode() in data:
            try:
                state = ServerState.parse(data.decode("utf-8"))
            except ValueError as exc:  # UnicodeDecodeError included
                raise BundlerError(f"{source}: not a readable output of bin/bundler state "
                                   f"({exc})") from None
            data, manifest = state.checksums.encode(), state.release
    else:
        found = _members(source, (CHECKSUMS_RECORD, MANIFEST))
        data, manifest = found[CHECKSUMS_RECORD], found[MANIFEST].decode("utf-8")
    try:
        return OldBuild(dict(Checksums.parse(data.decode("utf-8")).files),
                        hashlib.sha256(data).hexdigest(), manifest)
    except ValueError as exc:
        raise BundlerError(f"{source}: {CHECKSUMS_RECORD} is not readable ({exc})") from None


def _members(archive: Path, wanted: tuple[str, ...]) -> dict[str, bytes]:
    """The files `wanted` (paths inside the bundle) of a bundle's archive (which has them in its
    first piece: no need to read on)."""
    found = {}
    with read_tar(archive) as tar:
        for member in tar:
            rel = member.name.split("/", 1)[-1]
            if member.isfile() and rel in wanted and rel not in found:
                f = tar.extractfile(member)
                assert f is not None
                found[rel] = f.read()
                if len(found) == len(wanted):
                    break
    missing = [rel for rel in wanted if rel not in found]
    if missing:
        raise BundlerError(f"{archive} holds no {missing[0]}: is it a bundle built by bundler?")
    return found


def _unit(rel: str, tree: Bundle, project: str) -> str:
    """What a path belongs to: a code version's folder, an env's folder, or the base."""
    layout = tree.layout
    code_prefix = layout.code_dir(project, "\0").split("\0")[0]
    depth = code_prefix.count("/") + 1
    if rel.startswith(code_prefix):
        return "/".join(rel.split("/")[:depth])
    if rel.startswith(layout.envs + "/"):
        return "/".join(rel.split("/")[:2])
    return "base"


def make(tree: Bundle, name: str, project: str, build: OldBuild, dest: Path) -> dict[str, int]:
    """Stage the patch of bundle `name` from the built `tree` against `build` in `dest`; return
    counts."""
    old = build.files
    new = integrity.load(tree.root)
    reloc = Relocation.read(tree.relocation)
    present = {_unit(rel, tree, project) for rel in new}
    files: dict[str, PatchFile] = {}
    links: dict[str, str] = {}
    base: dict[str, Entry | None] = {}
    for rel, entry in new.items():
        if not tree.patchable(rel) or entry.same_build(old.get(rel)):
            continue
        base[rel] = old.get(rel)
        target = dest / "files" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if entry.link is not None:  # relative and inside the bundle (make_symlinks_relative)
            links[rel] = entry.link
            target.symlink_to(entry.link)
            continue
        shutil.copy2(tree.root / rel, target)
        files[rel] = PatchFile(sha256_file(target), rel in reloc, entry, reloc.binaries.get(rel))
    remove = sorted(rel for rel in old if rel not in new and tree.patchable(rel)
                    and _unit(rel, tree, project) in present)
    base.update({rel: old[rel] for rel in remove})
    site = dict(SiteDefaults.read(tree.site_defaults).files)
    for rel in site:  # all of them, every time: apply keeps what the server changed
        target = dest / PATCH_SITE / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tree.site_config / rel, target)
    platform = Platform.read(tree.platform)
    record = PatchRecord(reloc.prefix, files, links, tuple(remove), base,
                         tree.manifest.read_text(encoding="utf-8"), name, build.digest,
                         build.manifest, site, platform.text() if platform is not None else "")
    dest.mkdir(parents=True, exist_ok=True)
    record.write(dest / PATCH_FILE)
    return {"files": len(files), "links": len(links), "remove": len(remove), "site": len(site)}
