"""Random archives and patches (names with `..`, `/`, `.`, empty parts, deep nesting; links of
every kind: relative, absolute, chains, loops, hard links, to folders, out of the tree; modes with
setuid; fifos and devices; duplicates; sizes) through the safe unpacker, `bundler verify ARCHIVE`
and `bundler apply` (--dry-run, then for real) on a tiny bundle. The property: success, or one
`Error:` line and exit 1; never a traceback; nothing written beside the target (a canary folder
next to it stays byte for byte); no link in the result that leads out of it, no setuid bit, no
special file.

Bounded: 150 examples (the suite's hypothesis profile, tests/conftest.py), about 20 s here."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bundler import fsutil
from bundler.bundle import safetree
from bundler.bundle.records import PatchRecord
from bundler.cli import cli
from bundler.errors import BundlerError
from tests.unit.test_hostile_patches import NEW_MANIFEST
from tests.unit.tiny import make_tiny, snapshot

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies
given = hypothesis.given

GOOD_PARTS = ["a", "b", "c", "lib", "x y", "é", "app_v2"]
BAD_PARTS = ["..", ".", "", "a\nb", "etc", "log", ".bundler", "bundle.toml", "run"]
KINDS = ["file"] * 8 + ["dir"] * 3 + ["link"] * 5 + ["hardlink", "fifo", "chr", "blk"]
MODES = [0o644, 0o755, 0o4755, 0o2755, 0o1777, 0o000, 0o7777]
TYPES = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "link": tarfile.SYMTYPE,
         "hardlink": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE, "chr": tarfile.CHRTYPE,
         "blk": tarfile.BLKTYPE}


@dataclass(frozen=True, repr=False)
class Member:
    name: str
    kind: str
    target: str
    data: bytes
    mode: int

    def __repr__(self) -> str:  # a failing example, shown short
        return f"Member({_short(self.name)}, {self.kind!r}, {_short(self.target)}, " \
               f"<{len(self.data)} bytes>, {self.mode:#o})"


def _short(text: str) -> str:
    return repr(text) if len(text) < 80 else f"{text[:30]!r} ... {text[-30:]!r} <{len(text)}>"


@st.composite
def paths(draw: st.DrawFn) -> str:
    """A member name or link target: mostly plain, one in five hostile, sometimes deep."""
    hostile = draw(st.integers(0, 4)) == 0
    parts = draw(st.lists(st.sampled_from(GOOD_PARTS + BAD_PARTS if hostile else GOOD_PARTS),
                          min_size=1, max_size=4))
    if draw(st.integers(0, 12)) == 0:
        depth = draw(st.sampled_from([100, 127, 128, 129, 300, 1000, 1500, 1950]))
        parts = ["d"] * depth + parts  # near the depth limit, past it, up to PATH_MAX
    lead = draw(st.sampled_from(["", "/", "./", "../", "../../"])) if hostile else ""
    return lead + "/".join(parts)


@st.composite
def members(draw: st.DrawFn) -> list[Member]:
    found: list[Member] = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(KINDS))
        earlier = [m.name for m in found]
        name = draw(st.sampled_from(earlier)) if earlier and draw(st.integers(0, 9)) == 0 \
            else draw(paths())  # a duplicate now and then
        target = ""
        if kind in ("link", "hardlink"):
            target = draw(st.sampled_from(earlier)) if earlier and draw(st.booleans()) else \
                draw(st.sampled_from(["/etc/passwd", "/", "..", "../..", "../../canary",
                                      name, ".", "../lib", "a/../b"])) \
                if draw(st.integers(0, 3)) == 0 else draw(paths())
        data = b"\0" * (1 << 20) if draw(st.integers(0, 30)) == 0 else draw(st.binary(max_size=40))
        mode = draw(st.sampled_from(MODES)) if draw(st.booleans()) else 0o644
        found.append(Member(name, kind, target, data, mode))
    return found


def _tar(path: Path, items: list[Member], prefix: str = "", extra: list[Member] = ()) -> None:
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for m in [*extra, *items]:
            info = tarfile.TarInfo(m.name if m in extra else prefix + m.name)
            info.type, info.mode = TYPES[m.kind], m.mode
            info.linkname = (prefix + m.target if m.kind == "hardlink" else m.target)
            if m.kind == "file":
                info.size = len(m.data)
                tar.addfile(info, io.BytesIO(m.data))
            else:
                tar.addfile(info)


def _patch(path: Path, items: list[Member], listed: bool) -> None:
    """A patch of the tiny bundle carrying `items` under files/; patch.json lists them when
    `listed` (the hash of a file's last copy), so that some patches are good ones."""
    record = {"format": PatchRecord.FORMAT, "prefix": "/build/tiny", "files": {}, "links": {},
              "remove": [], "base": {}, "manifest": NEW_MANIFEST, "bundle": "tiny", "against": ""}
    for m in items if listed else []:
        if m.kind == "file":
            digest = hashlib.sha256(m.data).hexdigest()
            record["files"][m.name] = {"sha256": digest, "relocatable": False,
                                       "checksum": {"sha256": digest, "exec": bool(m.mode & 0o100)}}
        elif m.kind == "link":
            record["links"][m.name] = m.target
        record["base"][m.name] = None
    meta = Member("tiny-2.patch/patch.json", "file", "", json.dumps(record).encode(), 0o644)
    _tar(path, items, "tiny-2.patch/files/", [meta])


def _one_line_or_success(result: Result) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    assert result.exit_code in (0, 1), result.output
    if result.exit_code == 1:
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr


def _inside(root: Path) -> None:
    """No link under `root` leads out of it; no setuid, setgid or special file."""
    top = os.path.realpath(root)
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            st_ = os.lstat(path)
            if stat.S_ISLNK(st_.st_mode):
                real = os.path.realpath(path)
                assert real == top or real.startswith(top + "/"), (path, os.readlink(path))
            else:
                assert stat.S_ISDIR(st_.st_mode) or stat.S_ISREG(st_.st_mode), path
                assert not st_.st_mode & (stat.S_ISUID | stat.S_ISGID), path


@contextmanager
def as_a_command() -> Iterator[None]:
    """The recursion limit a `bundler` command runs with: hypothesis raises it for its tests,
    which would hide a RecursionError on deep trees."""
    saved = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        yield
    finally:
        sys.setrecursionlimit(saved)


@contextmanager
def _case() -> Iterator[tuple[Path, Path]]:
    """A new folder for one example, with a canary folder in it beside what is written; removed
    after, whatever happened."""
    case = Path(tempfile.mkdtemp(prefix="bundler-prop-"))
    (case / "canary").mkdir()
    (case / "canary" / "keep.txt").write_text("keep\n")
    try:
        yield case, case / "canary"
    finally:
        _remove(case)


@given(members())
def test_the_safe_unpacker_refuses_in_one_line_or_unpacks_inside(items: list[Member]) -> None:
    with _case() as (case, canary):
        _unpack(items, case, canary)


def _unpack(items: list[Member], case: Path, canary: Path) -> None:
    archive = case / "in.tar.gz"
    _tar(archive, items)
    before = snapshot(canary)
    try:
        with as_a_command():
            safetree.extract(archive, case / "dest")
    except BundlerError as exc:
        assert "\n" not in str(exc)
        hypothesis.event("unpacker: refused")
    else:
        _inside(case / "dest")
        hypothesis.event("unpacker: unpacked")
    assert snapshot(canary) == before
    scratch = case / "scratch"  # verify unpacks into the temporary folder: this one
    scratch.mkdir()
    saved, tempfile.tempdir = tempfile.tempdir, str(scratch)
    try:
        with as_a_command():
            _one_line_or_success(CliRunner().invoke(cli, ["verify", str(archive)]))
    finally:
        tempfile.tempdir = saved
    assert snapshot(canary) == before and not any(scratch.iterdir())


@given(members(), st.booleans())
def test_apply_refuses_in_one_line_or_installs_inside(items: list[Member], listed: bool) -> None:
    with _case() as (case, canary):
        _apply(items, listed, case, canary)


def _apply(items: list[Member], listed: bool, case: Path, canary: Path) -> None:
    bundle = make_tiny(case / "tiny")
    archive = case / "p.patch.tar.gz"
    _patch(archive, items, listed)
    before, inside = snapshot(canary), snapshot(bundle.root)
    with as_a_command():
        dry = CliRunner().invoke(cli, ["apply", "--dry-run", str(archive), "--root",
                                       str(bundle.root)])
    _one_line_or_success(dry)
    assert snapshot(bundle.root) == inside and snapshot(canary) == before
    with as_a_command():
        real = CliRunner().invoke(cli, ["apply", str(archive), "--root", str(bundle.root)])
    _one_line_or_success(real)
    assert real.exit_code == dry.exit_code, (dry.output, real.output)
    hypothesis.event(f"apply: {'refused' if real.exit_code else 'installed'}")
    _inside(bundle.root)
    assert snapshot(canary) == before
    if real.exit_code == 1:
        assert snapshot(bundle.root) == inside


def _remove(case: Path) -> None:
    """Without recursion (shutil.rmtree recurses before Python 3.12, and a failing example may
    leave a deep tree); folders made writable first (a member's mode may be 0)."""
    walked = list(fsutil.walk(case))
    for folder, _, _ in walked:
        os.chmod(folder, 0o755)
    for folder, _, files in reversed(walked):
        for name in files:
            os.unlink(os.path.join(folder, name))
        os.rmdir(folder)
