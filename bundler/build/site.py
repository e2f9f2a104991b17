"""[bundle] site_config: a project's default files for the bundle's etc/app/ (the seeds' "project
config"; each server's own changes to them are its "environment config", which releases keep).

The build puts them into etc/app/ and records each one's SHA-256 (.bundler/site-defaults.json);
every patch carries them all (they are small), and server/site.py installs them without ever
overwriting a file the server changed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from bundler.bundle.records import SiteDefaults
from bundler.bundle.safetree import check_name
from bundler.bundle.tree import Bundle
from bundler.errors import BundlerError, printable
from bundler.fsutil import sha256_file
from bundler.spec.model import Spec


def site_files(spec: Spec) -> dict[str, Path]:
    """The default files, by path inside etc/app/; only plain files and folders are taken."""
    if spec.site_config is None:
        return {}
    folder = spec.folder / spec.site_config
    where = f"{spec.path}: [bundle] site_config {spec.site_config!r}"
    if folder.is_symlink() or not folder.is_dir():
        raise BundlerError(f"{where} is not a folder")
    if not folder.resolve().is_relative_to(spec.folder.resolve()):
        raise BundlerError(f"{where} is outside the project folder")
    found = {}
    for parent, dirs, files in os.walk(folder):
        for name in sorted(dirs + files):
            path = Path(parent, name)
            rel = str(path.relative_to(folder))
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                raise BundlerError(f"{where}: {rel} is not a plain file or folder")
            bad = check_name(rel)
            if bad is not None:  # a server's safe unpacker would refuse the bundle
                raise BundlerError(f"{where}: {printable(rel)} {bad}: rename it")
            if path.is_file():
                found[rel] = path
    return found


def install(files: dict[str, Path], tree: Bundle) -> None:
    """Put the defaults into the staged tree's etc/app/ and record what each one was."""
    record = {}
    for rel, source in sorted(files.items()):
        target = tree.site_config / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        record[rel] = sha256_file(target)
    SiteDefaults(record).write(tree.site_defaults)
