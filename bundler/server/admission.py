"""Whether this server takes a release at all, before apply plans anything: one it can run
(its architecture, a glibc it has), and one that moves forward (newer than the release installed,
or that release again: never an older one replayed, nor another build given the same version).
"""

from __future__ import annotations

import dataclasses
import platform
from pathlib import Path

from bundler.bundle import elf
from bundler.bundle.records import PatchRecord, Platform, Release
from bundler.bundle.tree import Bundle
from bundler.errors import BundlerError
from bundler.server.incoming import Incoming
from bundler.spec import versions
from bundler.spec.live import LiveManifest


def runs_here(bundle: Bundle, patch: PatchRecord, name: str) -> Platform | None:
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


def moves_forward(bundle: Bundle, incoming: Incoming, installed: str, version: str,
                   differ: list[str]) -> None:
    """Refuse a release older than the one installed, or of its version with other content (a
    replay, or two builds given one name)."""
    name = incoming.source.name
    order = versions.compare(version, installed)
    way = "; nothing was changed (--allow-downgrade installs it all the same)"
    if order is None:
        raise BundlerError(f"refusing {name}: release {version} and the installed {installed} "
                           f"cannot be ordered (write versions as numbers: 2026.12.1, 1.4.0){way}")
    if order < 0:
        raise BundlerError(f"refusing {name}: it is release {version}, older than the "
                           f"installed {installed}{way}")
    if order > 0:
        return
    recorded = Release.read(bundle.release_record)
    other = recorded is not None and recorded.manifest != incoming.patch.manifest \
        and version_of(recorded.manifest) == version  # (not a release installed files-only)
    if differ or other:
        raise BundlerError(f"refusing {name}: it is release {version}, as installed, but with "
                           f"other content ({len(differ)} file(s) differ): a new release needs a "
                           f"new version (bundler version --bump patch){way}")


def version_of(manifest: str) -> str | None:
    try:
        return LiveManifest.parse(manifest, Path("release.toml")).version
    except BundlerError:
        return None
