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


def install(bundle: Bundle, changes: list[SiteChange], staged: Path,
            shipped: Mapping[str, str]) -> None:
    """Carry out `changes` (from changes()) with the files staged in `staged`."""
    for change in changes:
        if change.action == "same":
            continue
        target = bundle.site_config / (change.rel + (NEW if change.action == "keep" else ""))
        target.parent.mkdir(parents=True, exist_ok=True)
        new = not target.exists()
        write_atomic(target, (staged / change.rel).read_bytes())
        if new and os.geteuid() == 0:  # the site's files stay its owner's to edit
            folder = bundle.site_config.stat()
            os.chown(target, folder.st_uid, folder.st_gid)
    recorded = SiteDefaults.read(bundle.site_defaults).files
    SiteDefaults({**recorded, **shipped}).write(bundle.site_defaults)
