"""Lock files: what `bundler lock` writes reads back the same; locks bundler cannot use are
refused in one line that says what to do; a spec that moved on is described."""

from __future__ import annotations

from pathlib import Path

import pytest

from bundler.build.lock import Lock, Package, disagreement, read
from bundler.errors import BundlerError

INPUTS = {"python": "3.11.7", "requirements": ["pillow"], "requirements_file": "",
          "requirements_file_sha256": "", "glibc": "2.17"}
LOCK = Lock("pyocr", INPUTS, (
    Package("pillow", "12.0.0", "pillow-12.0.0-cp311-cp311-manylinux_2_28_x86_64.whl",
            "https://files.example/pillow-12.0.0-cp311-cp311-manylinux_2_28_x86_64.whl", "a" * 64),
    Package("legacy", "1.0", "legacy-1.0.tar.gz", "file:///wheels/legacy-1.0.tar.gz", "b" * 64)))


def test_a_lock_reads_back_as_written(tmp_path: Path) -> None:
    path = tmp_path / "pylock.pyocr.toml"
    path.write_text(LOCK.text())
    assert read(path) == LOCK
    assert 'lock-version = "1.0"' in path.read_text()
    assert LOCK.requirements().splitlines() == [
        f"pillow==12.0.0 --hash=sha256:{'a' * 64}", f"legacy==1.0 --hash=sha256:{'b' * 64}"]
    assert read(tmp_path / "pylock.none.toml") is None


@pytest.mark.parametrize("change, said", [
    (lambda t: t.replace('lock-version = "1.0"', 'lock-version = "2.0"'), "lock-version 2.0"),
    (lambda t: t.split("[tool")[0], "not a lock bundler wrote (no 'tool')"),
    (lambda t: t + "\n[[broken", "cannot be read"),
])
def test_a_lock_bundler_cannot_use_is_refused(tmp_path: Path, change, said: str) -> None:
    path = tmp_path / "pylock.pyocr.toml"
    path.write_text(change(LOCK.text()))
    with pytest.raises(BundlerError) as info:
        read(path)
    assert said in str(info.value) and "bundler lock" in str(info.value)


def test_what_changed_since_the_lock_is_named() -> None:
    assert disagreement(LOCK, INPUTS) is None
    moved = {**INPUTS, "requirements": ["pillow>=12"], "glibc": "2.28"}
    assert disagreement(LOCK, moved) == ("requirements ['pillow'] -> ['pillow>=12']; "
                                         "glibc '2.17' -> '2.28'")
