from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from bundler.build import cache
from bundler.bundle import archive

# tar.zst needs the zstd program (tar --zstd runs it); README lists it as a prerequisite
FORMATS = [("tar.gz", "-z"), pytest.param("tar.zst", "--zstd", marks=pytest.mark.skipif(
    shutil.which("zstd") is None, reason="the zstd program is not installed"))]


def make_root(tmp_path: Path) -> Path:
    root = tmp_path / "stage" / "box"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "tool").write_text("#!/bin/sh\necho hi\n")
    (root / "bin" / "tool").chmod(0o755)
    (root / "bin" / "alias").symlink_to("tool")
    (root / "a dir").mkdir()
    (root / "a dir" / "f.txt").write_text("content\n")
    return root


@pytest.mark.parametrize("fmt, flag", FORMATS)
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


@pytest.mark.parametrize("writer", ["GNU tar", "tarfile"])
def test_members_are_sorted_owner_free_and_reproducible(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        writer: str) -> None:
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
    assert [m.name for m in members] == ["box/a dir/f.txt", "box/bin/alias", "box/bin/tool",
                                         "box", "box/a dir", "box/bin"]  # folders last
    assert all(m.uid == 0 and m.uname == "" and m.mtime <= 1700000000 for m in members)


def test_a_failed_pack_leaves_no_partial_file_and_keeps_the_old_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_root(tmp_path)
    out = tmp_path / "dist"
    out.mkdir()
    (out / "box-1.tar.gz").write_text("the previous build")

    def broken(top: Path, names: list[str], stream) -> None:
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


def _linked_tree(tmp_path: Path) -> tuple[Path, Path]:
    """A bundle root whose base and env share files by hard link with an "entry" folder, as a
    staging tree shares them with the build cache, besides files of its own."""
    root = make_root(tmp_path)
    entry = tmp_path / "entry"
    for rel, text in [("bin/python", "base binary\n"), ("lib/os.py", "import sys\n"),
                      ("envs/web/lib/site.py", "web = 1\n"), ("envs/web/bin/web", "#!web\n")]:
        (entry / rel).parent.mkdir(parents=True, exist_ok=True)
        (entry / rel).write_text(text)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        os.link(entry / rel, root / rel)
    (root / "envs" / "web" / "pyvenv.cfg").write_text("home = here\n")  # written by this build
    return root, entry


def _unpacked(artifact: Path, dest: Path, flag: str) -> dict[str, bytes]:
    dest.mkdir()
    subprocess.run(["tar", flag, "-xf", str(artifact), "-C", str(dest)], check=True)
    return {str(p.relative_to(dest)): p.read_bytes() for p in sorted(dest.rglob("*"))
            if p.is_file() and not p.is_symlink()}


@pytest.mark.parametrize("fmt, flag", FORMATS)
def test_shared_files_are_pieces_taken_from_the_store_while_they_do_not_change(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str, flag: str) -> None:
    monkeypatch.setenv("BUNDLER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    root, entry = _linked_tree(tmp_path)
    written: list[list[str]] = []
    tar = archive._write_tar
    monkeypatch.setattr(archive, "_write_tar", lambda top, names, stream: (
        written.append(names), tar(top, names, stream)))
    groups = [".", "envs/web"]

    first = archive.pack(root, tmp_path, "one", fmt, groups, cache.Frames())
    assert written == [
        ["box/a dir/f.txt", "box/bin/alias", "box/bin/tool", "box/envs/web/pyvenv.cfg"],
        ["box/bin/python", "box/lib/os.py"],
        ["box/envs/web/bin/web", "box/envs/web/lib/site.py"],
        ["box", "box/a dir", "box/bin", "box/envs", "box/envs/web", "box/envs/web/bin",
         "box/envs/web/lib", "box/lib"]]
    assert len(list(cache.frames_dir().iterdir())) == 2
    expected = {f"box/{p.relative_to(root)}": p.read_bytes() for p in sorted(root.rglob("*"))
                if p.is_file() and not p.is_symlink()}
    assert _unpacked(first, tmp_path / "x1", flag) == expected

    written.clear()
    second = archive.pack(root, tmp_path, "two", fmt, groups, cache.Frames())
    assert [names[0] for names in written] == ["box/a dir/f.txt", "box"]  # not the shared ones
    assert second.read_bytes() == first.read_bytes()
    with archive.read_tar(second) as reader:
        assert sorted(m.name for m in reader if m.isfile()) == sorted(expected)

    # a file of the env replaced (a new inode) makes the env's piece anew, not the base's
    (entry / "envs/web/lib/site.py").unlink()
    (entry / "envs/web/lib/site.py").write_text("web = 2\n")
    (root / "envs/web/lib/site.py").unlink()
    os.link(entry / "envs/web/lib/site.py", root / "envs/web/lib/site.py")
    written.clear()
    third = archive.pack(root, tmp_path, "three", fmt, groups, cache.Frames())
    assert [names[0] for names in written] == ["box/a dir/f.txt", "box/envs/web/bin/web", "box"]
    assert _unpacked(third, tmp_path / "x3", flag)["box/envs/web/lib/site.py"] == b"web = 2\n"


def test_a_piece_that_fails_to_pack_is_not_kept(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUNDLER_CACHE_DIR", str(tmp_path / "cache"))
    root, _ = _linked_tree(tmp_path)
    tar = archive._write_tar

    def full_disk(top: Path, names: list[str], stream) -> None:
        if names[0] == "box/envs/web/bin/web":
            stream.write(b"half a piece")
            raise OSError(28, "No space left on device")
        tar(top, names, stream)

    monkeypatch.setattr(archive, "_write_tar", full_disk)
    with pytest.raises(OSError):
        archive.pack(root, tmp_path, "one", "tar.zst", [".", "envs/web"], cache.Frames())
    assert [p.name for p in cache.frames_dir().iterdir()] != []  # the base's piece was kept
    assert all(not p.name.startswith(".") for p in cache.frames_dir().iterdir())
    assert len(list(cache.frames_dir().iterdir())) == 1
    assert not list(tmp_path.glob("*.tar.zst")) and not list(tmp_path.glob(".*partial"))


@pytest.mark.parametrize("writer", ["GNU tar", "tarfile"])
def test_pieces_ending_in_zero_blocks_or_long_names_keep_every_byte(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str) -> None:
    """Each piece loses its tar end (zero blocks), never a member's own zeros."""
    if writer == "tarfile":
        monkeypatch.setattr(archive, "_gnu_tar", lambda: None)
    elif archive._gnu_tar() is None:
        pytest.skip("no GNU tar here")
    monkeypatch.setenv("BUNDLER_CACHE_DIR", str(tmp_path / "cache"))
    root, entry = _linked_tree(tmp_path)
    long_name = "z" * 150  # its file is the last of the base's piece
    for folder in (root / "zz", entry / "lib" / long_name):
        folder.mkdir(parents=True)
    (root / "zz" / "zeros.bin").write_bytes(b"\0" * 5000)  # the last of the bundle's own files
    (entry / "lib" / long_name / "zeros.bin").write_bytes(b"\0" * 1536)
    (root / "lib" / long_name).mkdir()
    os.link(entry / "lib" / long_name / "zeros.bin", root / "lib" / long_name / "zeros.bin")
    expected = {f"box/{p.relative_to(root)}": p.read_bytes() for p in sorted(root.rglob("*"))
                if p.is_file() and not p.is_symlink()}
    formats = (("tar.zst", "--zstd"), ("tar.gz", "-z")) if shutil.which("zstd") else (("tar.gz", "-z"),)
    for fmt, flag in formats:
        artifact = archive.pack(root, tmp_path, "one", fmt, [".", "envs/web"], cache.Frames())
        assert _unpacked(artifact, tmp_path / f"x-{fmt}", flag) == expected
        with archive.read_tar(artifact) as reader:
            names = [m.name for m in reader]
        assert f"box/lib/{long_name}/zeros.bin" in names and "box/zz/zeros.bin" in names
