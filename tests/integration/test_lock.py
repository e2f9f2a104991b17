"""bundler lock: every interpreter's packages pinned with their hashes (PEP 751), builds that
install exactly that, and locks that no longer fit the spec (or were tampered with) refused."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import tomlkit

from bundler.build import floor
from bundler.bundle import elf
from tests.integration.harness import bundler
from tests.integration.test_cache import SPEC, _env
from tests.wheels import wheel

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def locked_once(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> tuple[Path, Path]:
    """A project whose interpreters were locked from the wheelhouse, and the build cache its
    tests share (each test's own interpreter changes are misses in it)."""
    work = tmp_path_factory.mktemp("locked")
    folder = work / "project"
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "hello.py").write_text("print('hello')\n")
    (folder / "bundle.toml").write_text(SPEC)
    said = bundler("-C", str(folder), "lock", *_offline(wheelhouse), env=_env(work / "cache"))
    assert said.stdout.split() == [str(folder / "pylock.base.toml"), str(folder / "pylock.web.toml")]
    return folder, work / "cache"


@pytest.fixture
def locked(locked_once: tuple[Path, Path], tmp_path: Path) -> Path:
    """A copy of the locked project, for a test that changes it."""
    return Path(shutil.copytree(locked_once[0], tmp_path / "project"))


@pytest.fixture
def env(locked_once: tuple[Path, Path]) -> dict[str, str]:
    return _env(locked_once[1])


def _offline(wheelhouse: Path) -> list[str]:
    return ["--no-index", "--find-links", str(wheelhouse)]


def _packages(path: Path) -> dict[str, dict]:
    return {p["name"]: p for p in tomlkit.parse(path.read_text()).unwrap()["packages"]}


def test_a_lock_pins_every_package_by_hash_and_the_build_installs_it(
        locked: Path, tmp_path: Path, wheelhouse: Path, env: dict[str, str]) -> None:
    base, web = _packages(locked / "pylock.base.toml"), _packages(locked / "pylock.web.toml")
    assert tomlkit.parse((locked / "pylock.web.toml").read_text()).unwrap()["lock-version"] == "1.0"
    assert {"supervisor", "click", "jinja2", "tomlkit", "zstandard", "psutil"} <= set(base)
    assert set(web) == {"tomlkit"}
    for package in [*base.values(), *web.values()]:
        (wheel,) = package["wheels"]
        file = Path(unquote(urlparse(wheel["url"]).path))
        assert file.name == wheel["name"]
        assert hashlib.sha256(file.read_bytes()).hexdigest() == wheel["hashes"]["sha256"]
    built = bundler("-C", str(locked), "build", "--locked", "-o", str(tmp_path / "out"),
                    *_offline(wheelhouse), env=env)
    assert "installing the 1 package(s) pylock.web.toml pins" in built.stderr
    assert "afresh" not in built.stderr
    manifest = tomlkit.parse((tmp_path / "out" / "cached-1" / "bundle.toml").read_text())
    interps = manifest["build"]["interpreters"]
    assert interps["web"]["packages"]["tomlkit"] == web["tomlkit"]["version"]
    assert all(interps["base"]["packages"][n] == p["version"] for n, p in base.items()
               if n in interps["base"]["packages"])


def test_a_lock_the_spec_outgrew_is_refused_with_locked_and_said_without(
        locked: Path, tmp_path: Path, wheelhouse: Path, env: dict[str, str]) -> None:
    spec = locked / "bundle.toml"
    spec.write_text(spec.read_text().replace('requirements = ["tomlkit"]',
                                             'requirements = ["tomlkit", "click"]'))
    out = tmp_path / "out"
    refused = bundler("-C", str(locked), "build", "--locked", "-o", str(out), *_offline(wheelhouse),
                      env=env, check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "Error: interpreter web: pylock.web.toml was made for other inputs (requirements "
        "['tomlkit'] -> ['tomlkit', 'click']); run `bundler lock` (build --locked installs only "
        "what a lock pins)"]
    assert not out.exists() or not any(out.iterdir())
    built = bundler("-C", str(locked), "build", "-o", str(out), *_offline(wheelhouse),
                    env=env)
    assert "pylock.web.toml was made for other inputs" in built.stderr
    assert "pip resolves its requirements afresh" in built.stderr
    assert "pylock.base.toml" not in built.stderr  # the base's lock still holds


def test_a_lock_whose_hash_was_changed_fails_the_build(
        locked: Path, tmp_path: Path, wheelhouse: Path, env: dict[str, str]) -> None:
    lock = locked / "pylock.web.toml"
    digest = _packages(lock)["tomlkit"]["wheels"][0]["hashes"]["sha256"]
    lock.write_text(lock.read_text().replace(digest, "0" * 64))
    out = tmp_path / "out"
    failed = bundler("-C", str(locked), "build", "-o", str(out), *_offline(wheelhouse),
                     env=env, check=False)
    assert failed.returncode == 1
    assert "pip install for interpreter web failed" in failed.stderr
    assert "DO NOT MATCH THE HASHES" in failed.stderr
    assert not any(out.glob("cached-1*"))


def test_pip_says_why_a_requirement_cannot_be_installed_and_blames_the_floor_only_for_a_wheel(
        tmp_path: Path, wheelhouse: Path) -> None:
    """With [bundle] glibc below this machine's: a misspelt project or a version that does not
    exist is said in pip's words, without a word of glibc; a project whose only wheel needs a
    newer glibc than the floor is blamed on the floor, naming that wheel."""
    folder = tmp_path / "project"
    (folder / "src").mkdir(parents=True)
    (folder / "bundle.toml").write_text(SPEC.replace('requirements = ["tomlkit"]',
                                                     "requirements = []"))
    plan = json.loads(bundler("-C", str(folder), "check", "--json").stdout)
    needs = next(i["glibc"] for i in plan["interpreters"] if i["name"] == "base")
    here = floor.text(elf.host_glibc())
    if elf.parse_version(needs) >= elf.host_glibc() or os.uname().machine != "x86_64":
        pytest.skip(f"the base needs glibc {needs}, this machine's ({here}): no floor below it")
    cp = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    extra = tmp_path / "extra"
    extra.mkdir()
    wheel(extra, "futurelib", f"{cp}-{cp}-manylinux_2_99_x86_64")
    sources = [*_offline(wheelhouse), "--find-links", str(extra)]
    spec = folder / "bundle.toml"
    floored = spec.read_text().replace('version = "1"\n', f'version = "1"\nglibc = "{needs}"\n')
    for requirement, pip_says in (
            ("flask-nonexistent-pkg-zz", "Could not find a version that satisfies the requirement "
                                         "flask-nonexistent-pkg-zz (from versions: none)"),
            ("tomlkit==99.0", "Could not find a version that satisfies the requirement "
                              "tomlkit==99.0 (from versions: ")):
        spec.write_text(floored.replace("requirements = []", f'requirements = ["{requirement}"]'))
        said = bundler("-C", str(folder), "lock", *sources, check=False)
        error = said.stderr.splitlines()[-1]  # after base's line
        assert said.returncode == 1
        assert error.startswith(f"Error: resolving interpreter web failed: {pip_says}"), error
        assert f"No matching distribution found for {requirement}" in error
        assert "glibc" not in error
    spec.write_text(floored.replace("requirements = []", 'requirements = ["futurelib"]'))
    said = bundler("-C", str(folder), "lock", *sources, check=False)
    error = said.stderr.splitlines()[-1]
    assert said.returncode == 1
    assert error.startswith("Error: resolving interpreter web failed: Could not find a version "
                            "that satisfies the requirement futurelib"), error
    assert (f"the glibc floor is why: futurelib-1.0-{cp}-{cp}-manylinux_2_99_x86_64.whl needs "
            f"glibc 2.99, above [bundle] glibc = {needs}") in error
    assert not (folder / "pylock.web.toml").exists()
