from __future__ import annotations

import os
import py_compile
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bundler.build.code import check_code_source, compile_bytecode_only, materialize_code
from bundler.errors import BundlerError
from bundler.spec.model import CodeVersion


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _make(src: Path, *paths: str) -> None:
    for rel in paths:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text("x")


def test_a_copy_leaves_out_vcs_caches_and_build_outputs_at_the_root_only(tmp_path: Path) -> None:
    src = tmp_path / "proj"
    _make(src, ".git/HEAD", "pkg/__pycache__/m.cpython-311.pyc", "build/lib/x.py", "dist/a.whl",
          "pkg.egg-info/PKG-INFO", "pkg/m.pyc", "pkg/m.py", "pkg/data.json",
          "pkg/build/__init__.py", "pkg/dist/core.py", "venv/bin/python", "pkg/venv/keep.py")
    dest = tmp_path / "bundle" / "proj_v1"
    materialize_code(CodeVersion("v1", path="proj"), tmp_path, dest, output=tmp_path / "out")
    assert _files(dest) == ["pkg/build/__init__.py", "pkg/data.json", "pkg/dist/core.py",
                            "pkg/m.py", "pkg/venv/keep.py"]


def test_a_root_package_called_build_ships(tmp_path: Path) -> None:
    _make(tmp_path / "proj", "build/__init__.py", "build/steps.py")
    dest = tmp_path / "v1"
    materialize_code(CodeVersion("v1", path="proj"), tmp_path, dest, output=tmp_path / "out")
    assert _files(dest) == ["build/__init__.py", "build/steps.py"]


def test_gitignore_exclude_and_include(tmp_path: Path) -> None:
    src = tmp_path / "proj"
    _make(src, "app.py", "data/big.bin", "data/small.csv", "notes.txt", "sub/x.log", "sub/keep.log",
          "sub/tmp/a", "README.md")
    (src / ".gitignore").write_text("data/*.bin\n*.log\n")
    (src / "sub" / ".gitignore").write_text("tmp/\n")
    code = CodeVersion("v1", path="proj", exclude=("notes.txt",), include=("sub/keep.log",))
    selection = check_code_source(code, tmp_path, tmp_path / "out")
    assert selection is not None
    assert selection.left_out == {"data/big.bin": ".gitignore", "notes.txt": "exclude",
                                  "sub/x.log": ".gitignore", "sub/tmp": "sub/.gitignore"}
    dest = tmp_path / "v1"
    materialize_code(code, tmp_path, dest, output=tmp_path / "out")
    assert _files(dest) == [".gitignore", "README.md", "app.py", "data/small.csv", "sub/.gitignore",
                            "sub/keep.log"]


@pytest.mark.parametrize("secret", [".env", ".env.production", "deploy/id_rsa", ".ssh/config",
                                    ".netrc", "certs/server.pem", "conf/credentials.json"])
def test_likely_secrets_stop_the_build_unless_left_out_or_included(tmp_path: Path,
                                                                   secret: str) -> None:
    _make(tmp_path / "proj", "app.py", secret)
    with pytest.raises(BundlerError, match="looks like a secret"):
        check_code_source(CodeVersion("v1", path="proj"), tmp_path, tmp_path / "out")
    assert check_code_source(CodeVersion("v1", path="proj", exclude=(secret,)), tmp_path,
                             tmp_path / "out") is not None
    dest = tmp_path / "v1"
    materialize_code(CodeVersion("v1", path="proj", include=(secret,)), tmp_path, dest,
                     output=tmp_path / "out")
    assert secret in _files(dest)


def test_a_path_that_is_root_a_home_or_holds_the_output_is_refused(tmp_path: Path) -> None:
    for path, says in (("/", "is / folder"), (str(Path.home()), "a home folder"),
                       (".", "holds the output folder")):
        with pytest.raises(BundlerError, match=says):
            check_code_source(CodeVersion("v1", path=path), tmp_path, tmp_path / "dist")


needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


@needs_git
def test_git_code_is_chosen_like_a_folder(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _make(repo, "app.py", "build/__init__.py", ".env")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "v1"], check=True)
    with pytest.raises(BundlerError, match="looks like a secret: .env"):
        materialize_code(CodeVersion("v1", git="repo"), tmp_path, tmp_path / "a", tmp_path / "o")
    dest = tmp_path / "b"
    materialize_code(CodeVersion("v1", git="repo", exclude=(".env",)), tmp_path, dest,
                     tmp_path / "o")
    assert _files(dest) == ["app.py", "build/__init__.py"]


def test_bytecode_only_runs_without_sources(tmp_path: Path) -> None:
    code = tmp_path / "v1"
    (code / "pkg").mkdir(parents=True)
    (code / "pkg" / "__init__.py").write_text("")
    (code / "pkg" / "__main__.py").write_text("print('hello from bytecode')\n")
    compile_bytecode_only(code, Path(sys.executable))
    assert sorted(p.name for p in code.rglob("*")) == ["__init__.pyc", "__main__.pyc", "pkg"]
    out = subprocess.run([sys.executable, "-m", "pkg"], cwd=code, capture_output=True, text=True,
                         check=True).stdout
    assert out == "hello from bytecode\n"


def _project(folder: Path, main: str) -> Path:
    (folder / "pkg").mkdir(parents=True)
    (folder / "pkg" / "__init__.py").write_text("")
    (folder / "pkg" / "__main__.py").write_text(main)
    (folder / "pkg" / "util.py").write_text("X = 1\n")
    return folder


def test_kept_bytecode_is_reused_for_unchanged_files_and_matches_a_fresh_compile(
        tmp_path: Path) -> None:
    kept = tmp_path / "kept"
    first = _project(tmp_path / "a" / "v1", "print('one')\n")
    compile_bytecode_only(first, Path(sys.executable), kept)
    assert len(list(kept.iterdir())) == 3
    fresh = _project(tmp_path / "b" / "v1", "print('one')\n")
    compile_bytecode_only(fresh, Path(sys.executable))  # compileall, nothing kept
    assert all((first / "pkg" / n).read_bytes() == (fresh / "pkg" / n).read_bytes()
               for n in ("__init__.pyc", "__main__.pyc", "util.pyc"))
    # the kept bytecode of util.py is swapped for that of another source: taking it shows
    util = next(p for p in kept.iterdir() if p.read_bytes() == (first / "pkg" / "util.pyc").read_bytes())
    other = tmp_path / "other.py"
    other.write_text("X = 2\n")
    py_compile.compile(str(other), str(util), "v1/pkg/util.py",
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    changed = _project(tmp_path / "c" / "v1", "from pkg.util import X; print('two', X)\n")
    compile_bytecode_only(changed, Path(sys.executable), kept)
    assert len(list(kept.iterdir())) == 4  # only __main__ was compiled again
    out = subprocess.run([sys.executable, "-m", "pkg"], cwd=changed, capture_output=True, text=True,
                         check=True).stdout
    assert out == "two 2\n" and not list(changed.rglob("*.py"))


@needs_git
def test_missing_sources_are_found_before_building(tmp_path: Path) -> None:
    with pytest.raises(BundlerError, match="is not a folder"):
        check_code_source(CodeVersion("v1", path="nope"), tmp_path, tmp_path / "dist")
    subprocess.run(["git", "init", "-q", str(tmp_path / "repo")], check=True)
    with pytest.raises(BundlerError, match="has no commit 'v3'"):
        check_code_source(CodeVersion("v3", git="repo", ref="v3"), tmp_path, tmp_path / "dist")
    with pytest.raises(BundlerError, match="has no commit"):
        check_code_source(CodeVersion("v3", git="not-a-repo", ref="v3"), tmp_path,
                          tmp_path / "dist")


@pytest.mark.parametrize(("link", "target"), [
    ("src/relssh", "../../../home/.ssh"), ("relssh", ".."), ("a/b/up", "../../../x"),
    ("abs", "/etc"), ("self", "/proc/self/root"), ("loop", "loop"),
    ("a/deeper", "up/.."),  # a/up -> .. is the folder itself; a/up/.. then is above it
])
def test_a_link_that_leads_out_of_the_code_folder_stops_the_build(tmp_path: Path, link: str,
                                                                   target: str) -> None:
    src = tmp_path / "proj"
    _make(src, "app.py", "a/keep.txt")
    os.symlink("..", src / "a" / "up")
    (src / link).parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, src / link)
    for build in (lambda c: check_code_source(c, tmp_path, tmp_path / "out"),
                  lambda c: materialize_code(c, tmp_path, tmp_path / "v1", tmp_path / "out")):
        shutil.rmtree(tmp_path / "v1", ignore_errors=True)
        with pytest.raises(BundlerError, match=f"would ship a link that leads out of the code "
                                               f"folder: {link} -> "):
            build(CodeVersion("v1", path="proj"))
    left_out = CodeVersion("v1", path="proj", exclude=(link.partition("/")[0],))
    assert check_code_source(left_out, tmp_path, tmp_path / "out") is not None


def test_links_inside_the_code_folder_ship(tmp_path: Path) -> None:
    src = tmp_path / "proj"
    _make(src, "pkg/data/real.txt", "app.py")
    os.symlink("data/real.txt", src / "pkg" / "alias.txt")
    os.symlink("../app.py", src / "pkg" / "up.py")
    os.symlink("..", src / "pkg" / "root")   # the code folder itself
    os.symlink("missing", src / "dangling")  # dangling, but inside
    dest = tmp_path / "v1"
    materialize_code(CodeVersion("v1", path="proj"), tmp_path, dest, tmp_path / "out")
    assert os.readlink(dest / "pkg" / "alias.txt") == "data/real.txt"
    assert os.readlink(dest / "pkg" / "root") == ".."


def test_a_code_path_that_is_a_link_or_a_system_folder_is_refused(tmp_path: Path) -> None:
    os.symlink("/etc", tmp_path / "conf")
    os.symlink("sub", tmp_path / "alias")
    (tmp_path / "sub").mkdir()
    for path, says in (("conf", r"path .*/conf is a link to /etc: name the folder itself \(path = "
                                r"\"/etc\"\)"),
                       ("alias", "is a link to sub: name the folder itself"),
                       ("conf/ssl", "path conf/ssl leads through the link .*/conf \\(to /etc\\)"),
                       ("/etc", "path /etc is a system folder"), ("/usr", "is a system folder"),
                       ("/proc/sys", "is a system folder")):
        for build in (lambda c: check_code_source(c, tmp_path, tmp_path / "out"),
                      lambda c: materialize_code(c, tmp_path, tmp_path / "v1", tmp_path / "out")):
            with pytest.raises(BundlerError, match=says):
                build(CodeVersion("v1", path=path))


@pytest.mark.parametrize("rel, says", [
    ("/".join(["d"] * 127) + "/f.py", "more than the 128 allowed"),
    ("bad\x1bname.py", "control character"),
])
def test_a_path_the_servers_unpacker_would_refuse_stops_the_build(tmp_path: Path, rel: str,
                                                                  says: str) -> None:
    src = tmp_path / "proj"
    _make(src, "app.py")
    _make(src, rel)
    for build in (lambda c: check_code_source(c, tmp_path, tmp_path / "out"),
                  lambda c: materialize_code(c, tmp_path, tmp_path / "v1", tmp_path / "out")):
        shutil.rmtree(tmp_path / "v1", ignore_errors=True)
        with pytest.raises(BundlerError, match=f"code v1: .* {says}") as refused:
            build(CodeVersion("v1", path="proj"))
        assert "\x1b" not in str(refused.value) and "exclude" in str(refused.value)
    top = rel.partition("/")[0] if "/" in rel else rel
    assert check_code_source(CodeVersion("v1", path="proj", exclude=(top,)), tmp_path,
                             tmp_path / "out") is not None


def test_a_site_file_named_so_that_servers_refuse_it_stops_the_build(tmp_path: Path) -> None:
    from bundler.build.site import site_files
    from bundler.spec.load import load_spec

    (tmp_path / "bundle.toml").write_text('spec_version = 1\n[bundle]\nname = "box"\n'
                                          'version = "1"\nsite_config = "site"\n')
    (tmp_path / "site" / "conf").mkdir(parents=True)
    (tmp_path / "site" / "conf" / "app.ini").write_text("x")
    assert list(site_files(load_spec(tmp_path))) == ["conf/app.ini"]
    (tmp_path / "site" / "conf" / "a\x1b[2J.ini").write_text("x")
    with pytest.raises(BundlerError, match=r"site_config 'site': conf/a\\x1b\[2J.ini has a control "
                                           "character in its name: rename it"):
        site_files(load_spec(tmp_path))
