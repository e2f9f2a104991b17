"""The build cache: a build from it is byte-identical to a cold one; what decides an
interpreter's bytes is a miss when it changes; a killed build leaves no half entry; two builds at
once both succeed. Each test has its own cache folder."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.harness import BUNDLER, bundler

pytestmark = pytest.mark.integration

SPEC = '''\
[bundle]
name = "cached"
version = "1"
format = "dir"

[base]
python = "current"

[envs.web]
virtualenv = "base"
requirements = ["tomlkit"]

[code.v1]
path = "src"

[services.hello]
command = "python -m hello"
code = "v1"
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "hello.py").write_text("print('hello')\n")
    (folder / "bundle.toml").write_text(SPEC)
    return folder


def _build(project: Path, output: Path, cache: Path, wheelhouse: Path,
           *more: str) -> subprocess.CompletedProcess[str]:
    return bundler("-C", str(project), "build", "-o", str(output), "--no-index", "--find-links",
                   str(wheelhouse), *more, env=_env(cache))


def _env(cache: Path) -> dict[str, str]:
    return {"BUNDLER_CACHE_DIR": str(cache), "SOURCE_DATE_EPOCH": "1700000000"}


def _checksums(output: Path) -> dict:
    return json.loads((output / "cached-1" / ".bundler" / "checksums.json").read_text())


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> tuple[Path, Path]:
    """A cache that one build filled (base and web), and that build's output."""
    work = tmp_path_factory.mktemp("seeded")
    project = work / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "hello.py").write_text("print('hello')\n")
    (project / "bundle.toml").write_text(SPEC)
    _build(project, work / "first", work / "cache", wheelhouse)
    return work / "cache", work / "first"


@pytest.fixture
def cache(seeded: tuple[Path, Path], tmp_path: Path) -> Path:
    """A copy of the seeded cache, for a test that changes it."""
    copy = tmp_path / "cache"
    shutil.copytree(seeded[0], copy, symlinks=True)
    return copy


def test_a_build_from_the_cache_is_byte_identical_to_a_cold_one(
        project: Path, tmp_path: Path, wheelhouse: Path, seeded: tuple[Path, Path]) -> None:
    cold = _build(project, tmp_path / "cold", tmp_path / "unused", wheelhouse, "--no-cache")
    assert "from the build cache" not in cold.stderr and not (tmp_path / "unused").exists()
    # another output folder, so another staging root, of another length
    longer = tmp_path / "a-much-longer-output-folder-name" / "here"
    again = _build(project, longer, seeded[0], wheelhouse)
    assert again.stderr.count("from the build cache") == 2, again.stderr
    reference = _checksums(tmp_path / "cold")
    assert _checksums(seeded[1]) == reference  # the build that filled the cache
    assert _checksums(longer) == reference
    listed = bundler("cache", env=_env(seeded[0])).stdout
    assert "2 interpreter(s)" in listed and "interpreter base" in listed and "interpreter web" in listed
    # an archive's staging tree takes hard links to the entries, and must never write through them
    before = _digest(seeded[0])
    packed = _build(project, tmp_path / "packed", seeded[0], wheelhouse, "--format", "tar.zst",
                    "--json")
    assert packed.stderr.count("from the build cache") == 2
    built = json.loads(packed.stdout)  # build --json: the artifact, its size and SHA-256
    artifact = tmp_path / "packed" / "cached-1.tar.zst"
    assert built == {"artifact": str(artifact), "format": "tar.zst", "patch": False,
                     "size": artifact.stat().st_size,
                     "sha256": hashlib.sha256(artifact.read_bytes()).hexdigest()}
    assert _digest(seeded[0]) == before
    inside = subprocess.run(["tar", "--zstd", "-xOf", str(tmp_path / "packed" / "cached-1.tar.zst"),
                             "cached/.bundler/checksums.json"], capture_output=True, check=True)
    assert json.loads(inside.stdout) == reference
    # the entries' files went into the archive as a compressed piece per interpreter, which the
    # next build copies instead of compressing them again
    pieces = {p.name: p.read_bytes() for p in (seeded[0] / "frames").iterdir()}
    assert len(pieces) == 2
    _build(project, tmp_path / "packed-again", seeded[0], wheelhouse, "--format", "tar.zst")
    assert {p.name for p in (seeded[0] / "frames").iterdir()} == set(pieces)
    again_bytes = (tmp_path / "packed-again" / "cached-1.tar.zst").read_bytes()
    assert all(piece in again_bytes for piece in pieces.values())
    first, second = (_unpack(tmp_path / out / "cached-1.tar.zst", tmp_path / f"{out}-x")
                     for out in ("packed", "packed-again"))
    assert first.keys() == second.keys() and len(first) > 500
    moved = json.loads(first["cached/.bundler/relocate.json"])["files"]  # name each build's path

    def same(rel: str) -> bool:
        return not rel.startswith("cached/.bundler/") and rel[len("cached/"):] not in moved

    assert {k: v for k, v in first.items() if same(k)} == {k: v for k, v in second.items() if same(k)}


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO: the terminal's last writer has gone
        return b""


def _unpack(archive: Path, dest: Path) -> dict[str, bytes]:
    dest.mkdir()
    subprocess.run(["tar", "--zstd", "-xf", str(archive), "-C", str(dest)], check=True)
    return {str(p.relative_to(dest)): b"link " + os.fsencode(os.readlink(p)) if p.is_symlink()
            else p.read_bytes() for p in dest.rglob("*") if p.is_symlink() or p.is_file()}


def _entries(cache: Path) -> list[Path]:
    return [p for p in cache.iterdir() if (p / "entry.json").is_file()]


def _digest(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file of the entries' trees by mode and content."""
    return {str(p.relative_to(folder)): (p.lstat().st_mode, p.read_bytes())
            for p in sorted(folder.glob("*/tree/**/*")) if p.is_file() and not p.is_symlink()}


def test_a_changed_requirement_is_a_miss_for_its_interpreter_only_and_shows_progress(
        project: Path, tmp_path: Path, wheelhouse: Path, cache: Path) -> None:
    """The miss is built on a terminal: its steps show a timed status line there (pip's line in
    it), and not on a pipe or with -q."""
    (project / "bundle.toml").write_text(CHANGED)
    screen, device = pty.openpty()
    argv = [*BUNDLER, "-C", str(project), "build", "-o", str(tmp_path / "two"), "--no-index",
            "--find-links", str(wheelhouse)]
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=device, text=True,
                                env={**os.environ, **_env(cache)})
        os.close(device)
        shown = b""
        while chunk := _read(screen):
            shown += chunk
        out = proc.communicate(timeout=300)[0]
    finally:
        os.close(screen)
    changed = shown.decode(errors="replace")
    assert proc.returncode == 0, changed
    assert "interpreter web: virtualenv on base\r\n" in changed
    assert changed.count("from the build cache") == 1  # the base only
    # the step's line carries pip's last line as pip prints it (which one a redraw catches varies)
    assert re.search(r"\r\x1b\[K. interpreter web: [^\r]+ \(\d+ s\)  \S", text := changed), \
        repr(text)
    assert out.strip() == str(tmp_path / "two" / "cached-1")  # stdout: the artifact alone
    piped = _build(project, tmp_path / "pipe", cache, wheelhouse)  # from the cache now
    assert "\r" not in piped.stderr and "\x1b" not in piped.stderr
    assert piped.stderr.count("from the build cache") == 2
    quiet = bundler("-q", "-C", str(project), "build", "-o", str(tmp_path / "quiet"), "--no-index",
                    "--find-links", str(wheelhouse), env=_env(cache))
    assert quiet.stderr == "" and quiet.stdout.strip().endswith("cached-1")
    pruned = bundler("cache", "prune", "--all", env=_env(cache)).stdout
    assert pruned.startswith("removed 3 interpreter(s)"), pruned


CHANGED = SPEC.replace('requirements = ["tomlkit"]', 'requirements = ["tomlkit", "click"]')


def test_a_killed_build_leaves_no_half_entry(project: Path, tmp_path: Path, wheelhouse: Path,
                                             cache: Path) -> None:
    (project / "bundle.toml").write_text(CHANGED)  # the base comes from the cache, web is stored
    proc = subprocess.Popen([*BUNDLER, "-C", str(project), "build", "-o", str(tmp_path / "out"),
                             "--no-index", "--find-links", str(wheelhouse)],
                            env={**os.environ, **_env(cache)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not list(cache.glob(".partial-*")) and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.002)
        assert proc.poll() is None, "the build ended before it stored anything"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    entries = [p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".partial-")
               and p.name != "frames"]
    assert len(entries) == 2 and all((p / "entry.json").is_file() for p in entries)
    assert list(cache.glob(".partial-*"))  # what the killed build was writing...
    done = _build(project, tmp_path / "again", cache, wheelhouse)  # ...goes with the next store
    assert not list(cache.glob(".partial-*")), done.stderr
    assert len(_entries(cache)) == 3


def test_two_builds_at_once_both_succeed(project: Path, tmp_path: Path, wheelhouse: Path,
                                         cache: Path) -> None:
    (project / "bundle.toml").write_text(CHANGED)  # both make web anew and store it
    env = {**os.environ, **_env(cache)}
    procs = [subprocess.Popen([*BUNDLER, "-C", str(project), "build", "-o", str(tmp_path / f"out{i}"),
                               "--no-index", "--find-links", str(wheelhouse)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert _checksums(tmp_path / "out0") == _checksums(tmp_path / "out1")
    assert len(_entries(cache)) == 3
    assert not list(cache.glob(".partial-*"))
