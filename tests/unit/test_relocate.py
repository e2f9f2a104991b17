from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bundler.build import relocatable
from bundler.bundle import relocation as rel
from bundler.bundle.layout import load_layout
from bundler.bundle.tree import Bundle
from bundler.errors import BundlerError


def tree(root: Path) -> Bundle:
    return Bundle(root, load_layout())


def make_tree(root: Path) -> None:
    (root / "bin").mkdir(parents=True)
    (root / ".bundler").mkdir()
    (root / "env.cfg").write_text(f"home = {root}/bin\nother = {root}/lib\n")
    (root / "activate").write_text(f'VIRTUAL_ENV="{root}"\n')
    (root / "plain.txt").write_text("nothing to see\n")
    (root / "blob.bin").write_bytes(b"\x00\x01" + os.fsencode(root) + b"\x00")
    (root / "cached.pyc").write_bytes(os.fsencode(root))


def move(src: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(src), str(dest))
    return dest


def relocate_interrupted(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run a relocation that is interrupted after rewriting its first file."""
    real = rel._replace_in_file
    calls = []

    def crash_after_first(root: Path, rel: str, old: bytes, new: bytes,
                          binary: bool = False) -> None:
        calls.append(rel)
        if len(calls) > 1:
            raise KeyboardInterrupt
        real(root, rel, old, new, binary)

    with monkeypatch.context() as patch:
        patch.setattr(rel, "_replace_in_file", crash_after_first)
        with pytest.raises(KeyboardInterrupt):
            rel.relocate(tree(root))
    assert len(calls) == 2


def test_record_lists_text_files_and_reports_binaries(tmp_path: Path) -> None:
    root = tmp_path / "a"
    make_tree(root)
    binaries = relocatable.record(tree(root))
    assert binaries == ["blob.bin"]
    assert not rel.relocate(tree(root))  # nothing moved


def test_relocate_rewrites_once_and_again_after_a_second_move(tmp_path: Path) -> None:
    root = tmp_path / "a"
    make_tree(root)
    relocatable.record(tree(root))
    mode = (root / "activate").stat().st_mode
    for dest in (tmp_path / "b b" / "x", tmp_path / "c"):
        root = move(root, dest)
        assert rel.relocate(tree(root))
        assert (root / "env.cfg").read_text() == f"home = {root}/bin\nother = {root}/lib\n"
        assert (root / "activate").read_text() == f'VIRTUAL_ENV="{root}"\n'
        assert (root / "activate").stat().st_mode == mode
        assert not rel.relocate(tree(root))


@pytest.mark.parametrize("new_name", ["elsewhere", "a/inside"])
def test_an_interrupted_relocation_finishes_next_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      new_name: str) -> None:
    root = tmp_path / "a"
    make_tree(root)
    relocatable.record(tree(root))
    if new_name == "a/inside":  # the new path contains the old one as a prefix
        staging = move(root, tmp_path / "tmp")
        root = move(staging, tmp_path / "a" / "inside")
    else:
        root = move(root, tmp_path / new_name)
    relocate_interrupted(root, monkeypatch)
    assert rel.relocate(tree(root))
    assert (root / "env.cfg").read_text() == f"home = {root}/bin\nother = {root}/lib\n"
    assert (root / "activate").read_text() == f'VIRTUAL_ENV="{root}"\n'
    assert not tree(root).relocation_journal.exists()


def test_an_interrupted_relocation_then_another_move(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "a"
    make_tree(root)
    relocatable.record(tree(root))
    root = move(root, tmp_path / "b")
    relocate_interrupted(root, monkeypatch)
    root = move(root, tmp_path / "c")
    assert rel.relocate(tree(root))
    assert (root / "env.cfg").read_text() == f"home = {root}/bin\nother = {root}/lib\n"
    assert (root / "activate").read_text() == f'VIRTUAL_ENV="{root}"\n'


def test_symlinks_inside_become_relative_and_links_outside_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "r"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "python3.11").write_text("")
    (root / "env" / "bin").mkdir(parents=True)
    (root / "env" / "bin" / "python").symlink_to(root / "bin" / "python3.11")
    relocatable.make_symlinks_relative(root)
    assert os.readlink(root / "env" / "bin" / "python") == "../../bin/python3.11"
    (root / "out").symlink_to("/etc/passwd")
    with pytest.raises(BundlerError, match="outside the bundle"):
        relocatable.make_symlinks_relative(root)
    (root / "out").unlink()
    (root / "env" / "up").symlink_to("..")  # the root: inside
    relocatable.make_symlinks_relative(root)
    for target in ("../../..", "../up/..", "../up/../x"):  # lexically, the last two stay in
        (root / "env" / "bin" / "rel").symlink_to(target)
        with pytest.raises(BundlerError, match=f"env/bin/rel links to {target}, which leads out"):
            relocatable.make_symlinks_relative(root)
        (root / "env" / "bin" / "rel").unlink()


def test_scripts_get_a_relative_launcher_that_survives_spaces(tmp_path: Path) -> None:
    root = tmp_path / "r"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "python3").symlink_to(sys.executable)
    script = root / "bin" / "tool"
    script.write_text(f"#!{root}/bin/python3\nimport sys\nprint('tool', sys.argv[1:])\n")
    script.chmod(0o755)
    (root / "bin" / "other").write_text("#!/bin/sh\necho hi\n")
    assert relocatable.make_scripts_relocatable(root) == 1
    assert (root / "bin" / "other").read_text() == "#!/bin/sh\necho hi\n"
    moved = move(root, tmp_path / "with space" / "r")
    out = subprocess.run([str(moved / "bin" / "tool"), "a b"], capture_output=True, text=True,
                         check=True).stdout
    assert out == "tool ['a b']\n"
    assert str(root) not in (moved / "bin" / "tool").read_text()


def test_a_script_distlib_started_with_sh_gets_the_same_launcher(tmp_path: Path) -> None:
    """For a shebang longer than the kernel takes, pip and virtualenv write a /bin/sh line that
    execs the interpreter: whether a build's folder is long or short, the script ends the same."""
    scripts = {}
    for name in ("short", "a-much-longer-name"):
        root = tmp_path / name
        (root / "bin").mkdir(parents=True)
        (root / "bin" / "python3").symlink_to(sys.executable)
        body = "import sys\nprint('tool', sys.argv[1:])\n"
        long_form = f"#!/bin/sh\n'''exec' {root}/bin/python3 \"$0\" \"$@\"\n' '''\n"
        head = f"#!{root}/bin/python3\n" if name == "short" else long_form
        (root / "bin" / "tool").write_text(head + body)
        (root / "bin" / "tool").chmod(0o755)
        assert relocatable.make_scripts_relocatable(root) == 1
        scripts[name] = (root / "bin" / "tool").read_bytes()
        out = subprocess.run([str(root / "bin" / "tool"), "a b"], capture_output=True, text=True,
                             check=True).stdout
        assert out == "tool ['a b']\n"
    assert scripts["short"] == scripts["a-much-longer-name"]


def test_lock_serialises(tmp_path: Path) -> None:
    import fcntl

    bundle = tree(tmp_path)
    with bundle.locked():
        with open(bundle.lock_file) as other:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with open(bundle.lock_file) as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
