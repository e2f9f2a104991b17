"""Links in a bundle that lead out of it, or out of their code folder, once followed as the kernel
would (chains and loops included): on a server they would reach that machine's files. The build
refuses both (build/sources.py for code folders, build/relocatable.py for the rest); `bundler
verify` reports any that a hand, a copy or an archive from elsewhere brought in. Folders the site
and the services own (log/, run/, etc/app/) and bundler's records are not looked at.
"""

from __future__ import annotations

import os

from bundler.bundle.safetree import Overlay
from bundler.bundle.tree import Bundle
from bundler.errors import BundlerError
from bundler.fsutil import tree_entries


def leading_out(bundle: Bundle) -> dict[str, str]:
    """Each link (relative path) that leads out -> its target and where it leaves."""
    code = code_folders(bundle)
    whole = Overlay(bundle.root)
    top = str(bundle.root) + "/"
    found = {}
    for item in tree_entries(bundle.root):
        rel = item.path[len(top):]
        if not item.is_symlink() or bundle.unchecked(rel):
            continue
        folder = next((f for f in code if rel.startswith(f + "/")), None)
        if folder is not None:
            if Overlay(bundle.root / folder).resolve(rel[len(folder) + 1:]) is None:
                found[rel] = f"{os.readlink(item.path)}, out of its code folder {folder}"
        elif whole.resolve(rel) is None:
            found[rel] = f"{os.readlink(item.path)}, out of the bundle"
    return dict(sorted(found.items()))


def code_folders(bundle: Bundle) -> list[str]:
    """The code folders the manifest's [build] table names (none when it cannot be read: then
    every link is held to the bundle's root only)."""
    from bundler.bundle.manifest import Manifest  # the spec's parser: only when verifying

    try:
        build = Manifest.read(bundle.manifest).build
    except (BundlerError, OSError, ValueError):
        return []
    return [c.folder.strip("/") for c in build.code.values() if c.folder.strip("/") not in ("", ".")]

