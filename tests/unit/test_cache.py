"""The build cache's entries (real folders, real files) and what its keys depend on (a real plan
of a project on the running interpreter)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import bundler
from bundler.build import cache, debuginfo, installs, lock
from bundler.build.interpreters import BuildContext
from bundler.build.plan import make_plan
from bundler.cli import cli
from bundler.spec.load import load_spec


@pytest.fixture(autouse=True)
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(cache.ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def _interpreter(root: Path) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "tool").write_text(f"#!{root}/bin/python3\nprint(1)\n")
    (root / "lib").mkdir()
    (root / "lib" / "data.bin").write_bytes(b"\x7fELF\x00 no root here")
    (root / "bin" / "python3").symlink_to("python3.11")
    (root / "bin" / "python").symlink_to(root / "bin" / "python3")  # as virtualenv makes them
    return root


def test_an_entry_is_copied_with_the_new_root_in_its_files(tmp_path: Path, folder: Path) -> None:
    old = _interpreter(tmp_path / "stage-1" / "box")
    assert cache.store("k1", old, old, "interpreter base: test", {"pip": "25.0"})
    entry = cache.lookup("k1")
    assert entry is not None and entry.names_root == ("bin/tool",) and entry.versions == {"pip": "25.0"}
    new = tmp_path / "a-longer-staging-folder" / "box"
    cache.restore(entry, new, new)
    assert (new / "bin" / "tool").read_text() == f"#!{new}/bin/python3\nprint(1)\n"
    assert (new / "bin" / "python3").readlink() == Path("python3.11")
    assert (new / "bin" / "python").readlink() == new / "bin" / "python3"
    assert (new / "lib" / "data.bin").read_bytes() == b"\x7fELF\x00 no root here"
    assert (old / "bin" / "tool").read_text().startswith(f"#!{old}/")  # the entry is a copy
    assert (folder / "k1" / "tree" / "bin" / "tool").read_text().startswith(f"#!{old}/")


def test_a_binary_naming_its_root_is_not_cached_and_a_second_store_loses(tmp_path: Path,
                                                                          folder: Path) -> None:
    root = _interpreter(tmp_path / "stage" / "box")
    (root / "lib" / "lib.so").write_bytes(b"\x7fELF\x00" + os.fsencode(root) + b"\x00")
    assert not cache.store("k2", root, root, "x", {})
    assert cache.lookup("k2") is None
    (root / "lib" / "lib.so").unlink()
    assert cache.store("k2", root, root, "x", {})
    assert not cache.store("k2", root, root, "x", {})  # published already: kept as it is
    assert not list(folder.glob(".partial-*"))


def test_what_a_killed_build_left_goes_and_prune_removes_entries(tmp_path: Path,
                                                                 folder: Path) -> None:
    root = _interpreter(tmp_path / "stage" / "box")
    cache.store("k3", root, root, "x", {})
    dead = folder / ".partial-999999999-abc"  # no such pid
    dead.mkdir()
    alive = folder / f".partial-{os.getpid()}-abc"
    alive.mkdir()
    cache.store("k4", root, root, "y", {})
    assert not dead.exists() and alive.exists()
    assert [e.key for e in cache.entries()] == ["k4", "k3"]  # the most recently used first
    result = CliRunner().invoke(cli, ["cache"])
    assert result.exit_code == 0 and "2 interpreter(s)" in result.output
    assert CliRunner().invoke(cli, ["cache", "prune"]).exit_code == 2
    result = CliRunner().invoke(cli, ["cache", "prune", "--older-than", "1"])
    assert result.output == "removed 0 interpreter(s), 0 MiB\n"
    assert cache.lookup("k3") is not None  # used now: k4 is the least recently used
    removed = cache.shrink(limit=cache.entries()[0].size)
    assert [e.key for e in removed] == ["k4"] and [e.key for e in cache.entries()] == ["k3"]
    assert CliRunner().invoke(cli, ["cache", "prune", "--all"]).output.startswith("removed 1 ")
    assert cache.entries() == []


SPEC = '''\
[bundle]
name = "box"
version = "1"

[base]
python = "current"

[envs.web]
virtualenv = "base"
requirements = ["tomlkit"]

[code.v1]
path = "src"
'''


def _keys(tmp_path: Path, spec: str, pip: tuple[str, ...] = (),
          locks: dict[str, lock.Lock] | None = None) -> dict[str, str | None]:
    project = tmp_path / "p"
    (project / "src").mkdir(parents=True, exist_ok=True)
    (project / "bundle.toml").write_text(spec)
    plan = make_plan(load_spec(project / "bundle.toml"))
    ctx = BuildContext(spec_folder=project, pip_options=pip)
    keys: dict[str, str] = {}
    found = {}
    for name, p in plan.interpreters.items():
        key = installs.cache_key(plan, name, p, lock.requirements_of(plan, name, False), ctx,
                                 keys, (locks or {}).get(name))
        found[name] = key
        if key:
            keys[name] = key
    return found


def test_a_key_changes_with_what_decides_the_interpreter(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    same = _keys(tmp_path, SPEC)
    assert same == _keys(tmp_path, SPEC) and None not in same.values()
    changed = _keys(tmp_path, SPEC.replace('["tomlkit"]', '["tomlkit", "click"]'))
    assert changed["base"] == same["base"] and changed["web"] != same["web"]
    for variant in (SPEC.replace('"current"', '"current"\nvendor_libs = false'),
                    SPEC.replace('"current"', '"current"\nkeep = ["tkinter"]'),
                    SPEC.replace('version = "1"', 'version = "1"\nglibc = "2.99"')):
        other = _keys(tmp_path, variant)
        assert other["base"] != same["base"] and other["web"] != same["web"]  # a venv follows its parent
    assert _keys(tmp_path, SPEC, ("--no-index",))["base"] != same["base"]
    pinned = lock.Lock("web", {}, (lock.Package("tomlkit", "0.13.2", "t.whl", "file:///t.whl", "a" * 64),))
    with_lock = _keys(tmp_path, SPEC, locks={"web": pinned})
    assert with_lock["base"] == same["base"] and with_lock["web"] != same["web"]
    repinned = lock.Lock("web", {}, (lock.Package("tomlkit", "0.13.3", "t.whl", "file:///t.whl", "a" * 64),))
    assert _keys(tmp_path, SPEC, locks={"web": repinned})["web"] != with_lock["web"]
    monkeypatch.setenv("PIP_INDEX_URL", "http://mirror.invalid/simple")
    assert _keys(tmp_path, SPEC)["base"] != same["base"]
    monkeypatch.delenv("PIP_INDEX_URL")
    monkeypatch.setattr(debuginfo, "RULE", "strip-debug 99")  # what is stripped, and how
    assert _keys(tmp_path, SPEC)["base"] != same["base"]
    monkeypatch.setattr(bundler, "__version__", "99.0")
    assert _keys(tmp_path, SPEC)["base"] != same["base"]


def test_prune_removes_kept_bytecode_unused_as_long(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cache.ENV, str(tmp_path / "c"))
    cache.bytecode_dir().mkdir(parents=True)
    old, new = cache.bytecode_dir() / "old.pyc", cache.bytecode_dir() / "new.pyc"
    old.write_bytes(b"x")
    new.write_bytes(b"y")
    os.utime(old, (time.time() - 40 * 86400,) * 2)
    cache.prune(older_than=30 * 86400)
    assert not old.exists() and new.exists()
    cache.prune(everything=True)
    assert not new.exists()
