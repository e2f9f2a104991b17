"""`bin/bundler state`: what this server runs, for `bundler build --patch-from state.json`."""

from __future__ import annotations

from bundler.bundle.manifest import Manifest
from bundler.bundle.records import Checksums, Release, ServerState
from bundler.bundle.tree import Bundle


def state(bundle: Bundle) -> ServerState:
    with bundle.locked():  # not half-way through a change
        manifest = Manifest.read(bundle.manifest)
        release = Release.read(bundle.release_record)
        Checksums.read(bundle.checksums)  # damaged: one line here, not a puzzle on the build machine
        return ServerState(bundle=manifest.spec.name, manifest=manifest.text,
                           release=release.manifest if release is not None else manifest.text,
                           checksums=bundle.checksums.read_text(encoding="utf-8"))
