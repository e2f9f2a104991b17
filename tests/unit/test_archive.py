from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest

from bundler.bundle import archive


def make_root(tmp_path: Path) -> Path:
    root = tmp_path / "stage" / "box"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "tool").write_text("#!/bin/sh\necho hi\n")
    (root / "bin" / "tool").chmod(0o755)
    (root / "bin" / "alias").symlink_to("tool")
    (root / "a dir").mkdir()
    (root / "a dir" / "f.txt").write_text("content\n")
    return root


@pytest.mark.parametrize("fmt, flag", [("tar.gz", "-z"), ("tar.zst", "--zstd")])
def test_archives_unpack_with_tar_into_one_folder(tmp_path: Path, fmt: str, flag: str) -> None:
    root = make_root(tmp_path)
    out = tmp_path / "dist"
    out.mkdir()
    artifact = archive.pack(root, out, "box-1", fmt)
    assert artifact == out / f"box-1.{fmt}"
    assert [p.name for p in out.iterdir()] == [artifact.name]
    dest = tmp_path / "x"
    dest.mkdir()
    subprocess.run(["tar", flag, "-xf", str(artifact), "-C", str(dest)], check=True)
    assert [p.name for p in dest.iterdir()] == ["box"]
    assert (dest / "box" / "a dir" / "f.txt").read_text() == "content\n"
    assert (dest / "box" / "bin" / "alias").readlink() == Path("tool")
    assert (dest / "box" / "bin" / "tool").stat().st_mode & 0o111


@pytest.mark.parametrize("writer, order", [
    ("GNU tar", ["box", "box/a dir", "box/a dir/f.txt", "box/bin", "box/bin/alias", "box/bin/tool"]),
    ("tarfile", ["box", "box/a dir", "box/bin", "box/a dir/f.txt", "box/bin/alias", "box/bin/tool"]),
])
def test_members_are_sorted_owner_free_and_reproducible(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        writer: str, order: list[str]) -> None:
    if writer == "tarfile":
        monkeypatch.setattr(archive, "_gnu_tar", lambda: None)
    elif archive._gnu_tar() is None:
        pytest.skip("no GNU tar here")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    root = make_root(tmp_path)
    first = archive.pack(root, tmp_path, "one", "tar.gz")
    (root / "a dir" / "f.txt").touch()
    second = archive.pack(root, tmp_path, "two", "tar.gz")
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == order
    assert all(m.uid == 0 and m.uname == "" and m.mtime <= 1700000000 for m in members)


def test_a_failed_pack_leaves_no_partial_file_and_keeps_the_old_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_root(tmp_path)
    out = tmp_path / "dist"
    out.mkdir()
    (out / "box-1.tar.gz").write_text("the previous build")

    def broken(root: Path, stream) -> None:
        stream.write(b"half an archive")
        raise OSError("disk full")

    monkeypatch.setattr(archive, "_write_tar", broken)
    with pytest.raises(OSError):
        archive.pack(root, out, "box-1", "tar.gz")
    assert [p.name for p in out.iterdir()] == ["box-1.tar.gz"]
    assert (out / "box-1.tar.gz").read_text() == "the previous build"


def test_dir_format_replaces_an_older_folder(tmp_path: Path) -> None:
    out = tmp_path / "dist"
    (out / "box-1").mkdir(parents=True)
    (out / "box-1" / "stale").write_text("old")
    final = archive.pack(make_root(tmp_path), out, "box-1", "dir")
    assert (final / "a dir" / "f.txt").is_file() and not (final / "stale").exists()
    assert [p.name for p in out.iterdir()] == ["box-1"]


def test_tar_gz_is_the_same_whatever_the_number_of_cores(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """1 MiB blocks are compressed on every core; the bytes must not depend on how many."""
    import os
    import random

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    root = make_root(tmp_path)
    rng = random.Random(7)
    words = [bytes(rng.choice(b"abcdefgh") for _ in range(rng.randint(3, 9))) for _ in range(500)]
    (root / "big.txt").write_bytes(b" ".join(rng.choice(words) for _ in range(900_000)))
    packed = []
    for cores in (1, 2, 8):
        monkeypatch.setattr(os, "cpu_count", lambda cores=cores: cores)
        packed.append(archive.pack(root, tmp_path, f"c{cores}", "tar.gz").read_bytes())
    assert packed[0] == packed[1] == packed[2] and len(packed[0]) > 1 << 20
    dest = tmp_path / "x"
    dest.mkdir()
    subprocess.run(["tar", "-xzf", str(tmp_path / "c2.tar.gz"), "-C", str(dest)], check=True)
    assert (dest / "box" / "big.txt").read_bytes() == (root / "big.txt").read_bytes()
