"""Code versions: a copy of a folder or a `git archive` of a ref, optionally shipped as .pyc only."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from bundler.build.sources import Chooser, Selection, check_location, refuse_secrets
from bundler.bundle.safetree import extract
from bundler.errors import BundlerError
from bundler.runner import call, clean_env, run
from bundler.spec.model import CodeVersion


def check_code_source(code: CodeVersion, spec_folder: Path, output: Path) -> Selection | None:
    """Fail early, before anything is copied, when a code version's source is missing, is no code
    folder (/, a home, one holding `output`) or would ship secrets; what a folder leaves out."""
    if code.path is not None:
        src = spec_folder / code.path
        if not src.is_dir():
            raise BundlerError(f"code {code.name}: path {src} is not a folder")
        check_location(code, src, output)
        selection = Chooser(code, src.resolve()).walk()
        refuse_secrets(code, selection)
        return selection
    assert code.git is not None
    repo = spec_folder / code.git
    found = call(["git", "-C", repo, "rev-parse", "--verify", "--quiet", f"{code.ref}^{{commit}}"],
                 what=f"code {code.name}", env=clean_env(), timeout=120)
    if found.returncode != 0:
        raise BundlerError(f"code {code.name}: {repo} has no commit {code.ref!r} "
                           "(is it a git repository, and is the tag or branch there?)")
    return None


def materialize_code(code: CodeVersion, spec_folder: Path, dest: Path, output: Path) -> None:
    """Put the source of `code` (checked by `check_code_source`) into `dest`, which must not
    exist yet: the files sources.Chooser lets through."""
    if code.path is not None:
        src = spec_folder / code.path
        check_location(code, src, output)
        _copy(code, src.resolve(), dest)
        return
    assert code.git is not None
    with tempfile.TemporaryDirectory(prefix="bundler-git-") as tmp:
        tree = Path(tmp) / "tree"
        _git_archive((spec_folder / code.git).resolve(), code.ref, Path(tmp) / "code.tar", code.name)
        extract(Path(tmp) / "code.tar", tree)
        _copy(code, tree, dest)


def _copy(code: CodeVersion, src: Path, dest: Path) -> None:
    chooser = Chooser(code, src)
    # copytree walks from the resolved src without following links: paths are real
    shutil.copytree(src, dest, symlinks=True, ignore=chooser.ignore)
    refuse_secrets(code, chooser.selection)


def _git_archive(repo: Path, ref: str, tar_path: Path, name: str) -> None:
    run(["git", "-C", repo, "archive", "--format=tar", "-o", tar_path, ref],
        what=f"code {name}: git archive {ref} in {repo}", env=clean_env())


def compile_bytecode_only(folder: Path, python: Path) -> None:
    """Compile every .py with `python` next to its source (legacy layout), then drop the sources."""
    run([python, "-I", "-m", "compileall", "-q", "-b", "-j", "0",
         "--invalidation-mode", "unchecked-hash", "-d", folder.name, folder],
        what=f"compiling {folder.name} to bytecode")
    for source in folder.rglob("*.py"):
        if source.with_suffix(".pyc").is_file():
            source.unlink()
    for cache in folder.rglob("__pycache__"):
        shutil.rmtree(cache)
