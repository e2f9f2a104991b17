"""What killed builds and applies leave behind is removed by the next build or operation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bundler.build.pipeline import _remove_abandoned_staging
from bundler.bundle import archive
from bundler.bundle.tree import Bundle
from bundler.server.transact import recover

DEAD = 2**22 + 12345  # above the kernel's pid limit on this kind of machine: never a live pid


def test_a_killed_builds_partial_archive_goes_and_a_live_ones_stays(tmp_path: Path) -> None:
    dead = tmp_path / f".shop-1.tar.gz.{DEAD}-x1y2{archive.PARTIAL}"
    live = tmp_path / f".shop-1.tar.gz.{os.getpid()}-a3b4{archive.PARTIAL}"
    staging = tmp_path / f".bundler-staging-{DEAD}-abc"
    for path in (dead, live):
        path.write_bytes(b"half an archive")
    (staging / "shop").mkdir(parents=True)
    _remove_abandoned_staging(tmp_path)
    assert not dead.exists() and not staging.exists() and live.exists()


def test_pack_names_its_partial_file_after_its_process(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    real = os.replace

    def spy(src: str, dst: str) -> None:
        seen.append(Path(src).name)
        real(src, dst)

    monkeypatch.setattr(archive.os, "replace", spy)
    (tmp_path / "tree" / "shop").mkdir(parents=True)
    (tmp_path / "out").mkdir()
    archive.pack(tmp_path / "tree" / "shop", tmp_path / "out", "shop-1", "tar.gz")
    assert seen[0].startswith(f".shop-1.tar.gz.{os.getpid()}-") and seen[0].endswith(".partial")


def test_a_killed_applys_unpacked_files_go_with_the_next_operation(tiny: Bundle) -> None:
    (tiny.apply_incoming / "files" / "app_v2").mkdir(parents=True)
    (tiny.apply_incoming / "files" / "app_v2" / "big.bin").write_bytes(b"x" * 1000)
    with tiny.locked():
        recover(tiny)
    assert not tiny.apply_incoming.exists()
