"""Installing a release's default files for etc/app/ (build/site.py ships them) the way rpm
installs %config(noreplace) files: a new file is added; a file the server never changed is
updated; a file the server changed (or made a link) is kept, and the new default is written
beside it as <file>.new. Nothing is ever removed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bundler.bundle.records import SiteDefaults
from bundler.bundle.safetree import Overlay, Refused
from bundler.bundle.tree import Bundle
from bundler.errors import BundlerError
from bundler.fsutil import sha256_file, write_atomic

NEW = ".new"


@dataclass(frozen=True)
class SiteChange:
    rel: str     # inside etc/app/
    action: str  # "add", "update", "keep" (<rel>.new is written), "same"

    def describe(self, site: str) -> str:
        path = f"{site}/{self.rel}"
        return {"add": f"{path}: added", "update": f"{path}: updated (unchanged here)",
                "keep": f"{path}: changed here, kept; the release's version is {path}{NEW}",
                "same": f"{path}: unchanged"}[self.action]


def changes(bundle: Bundle, shipped: Mapping[str, str]) -> list[SiteChange]:
    """What installing the defaults `shipped` (path -> SHA-256) would do; refuses paths that
    would be written through a link or over a folder."""
    site = bundle.layout.site_config
    checks = Overlay(bundle.root, lambda rel: None if rel.startswith(site + "/") else
                  "is outside the site configuration")
    recorded = SiteDefaults.read(bundle.site_defaults).files
    changes = []
    try:
        for rel, digest in sorted(shipped.items()):
            path = bundle.site_config / rel
            checks.add(f"{site}/{rel}", "file")
            if path.is_symlink():
                action = "keep"
            elif not path.exists():
                action = "add"
            else:
                current = sha256_file(path)
                action = "same" if current == digest else \
                    "update" if current == recorded.get(rel) else "keep"
            if action == "keep":
                checks.add(f"{site}/{rel}{NEW}", "file")
            changes.append(SiteChange(rel, action))
        checks.finish()
    except Refused as exc:
        raise BundlerError(f"refusing the patch: its site configuration {exc}; nothing was "
                           "changed") from None
    return changes


def stage(bundle: Bundle, changes: list[SiteChange], staged: Path, files: Path,
          shipped: Mapping[str, str]) -> list[str]:
    """Ready `changes` (from changes()) as files to move in with the release's (apply.py: one
    journal, undone with them): each default staged in `staged` is moved under `files` at its
    path in the bundle, with the record of what was shipped; those paths."""
    site = bundle.layout.site_config
    owner = bundle.site_config.stat() if bundle.site_config.is_dir() else None
    rels = []
    for change in changes:
        if change.action == "same":
            continue
        rel = f"{site}/{change.rel}{NEW if change.action == 'keep' else ''}"
        target = files / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged / change.rel, target)
        existing = bundle.root / rel
        os.chmod(target, existing.stat().st_mode & 0o7777 if existing.exists() else 0o644)
        like = existing.stat() if existing.exists() else owner
        if like is not None and os.geteuid() == 0:  # the site's files stay its owner's to edit
            os.chown(target, like.st_uid, like.st_gid)
        rels.append(rel)
    if not shipped:
        return rels
    recorded = SiteDefaults.read(bundle.site_defaults).files
    record = bundle.site_defaults.relative_to(bundle.root)
    (files / record).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(files / record, SiteDefaults({**recorded, **shipped}).text())
    return [*rels, str(record)]
