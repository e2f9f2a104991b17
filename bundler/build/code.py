"""Code versions: a copy of a folder or a `git archive` of a ref, optionally shipped as .pyc only."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from bundler.bundle.safetree import extract
from bundler.errors import BundlerError
from bundler.runner import call, clean_env, run
from bundler.spec.model import CodeVersion

# Never shipped: version control, caches, and what builds leave behind.
JUNK_DIRS = {".git", ".hg", ".svn", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache",
             ".tox", ".nox", ".venv", "venv", "build", "dist", ".idea", ".vscode", ".eggs"}
JUNK_SUFFIXES = (".pyc", ".pyo", ".egg-info", ".swp")
JUNK_FILES = {".DS_Store", "bundle.toml"}


def check_code_source(code: CodeVersion, spec_folder: Path) -> None:
    """Fail early, before anything is copied, when a code version's source is missing."""
    if code.path is not None:
        if not (spec_folder / code.path).is_dir():
            raise BundlerError(f"code {code.name}: path {spec_folder / code.path} is not a folder")
        return
    assert code.git is not None
    repo = spec_folder / code.git
    found = call(["git", "-C", repo, "rev-parse", "--verify", "--quiet", f"{code.ref}^{{commit}}"],
                 what=f"code {code.name}", env=clean_env(), timeout=120)
    if found.returncode != 0:
        raise BundlerError(f"code {code.name}: {repo} has no commit {code.ref!r} "
                           "(is it a git repository, and is the tag or branch there?)")


def materialize_code(code: CodeVersion, spec_folder: Path, dest: Path, output: Path) -> None:
    """Put the source of `code` (checked by `check_code_source`) into `dest`, which must not
    exist yet; never copy `output` (a resolved path)."""
    if code.path is not None:
        src = (spec_folder / code.path).resolve()

        def ignore(folder: str, names: list[str]) -> set[str]:
            # copytree walks from the resolved src without following links: paths are real
            return {n for n in names
                    if n in JUNK_DIRS or n in JUNK_FILES or n.endswith(JUNK_SUFFIXES)
                    or Path(folder, n) == output}

        shutil.copytree(src, dest, symlinks=True, ignore=ignore)
    else:
        assert code.git is not None
        _git_archive((spec_folder / code.git).resolve(), code.ref, dest, code.name)


def _git_archive(repo: Path, ref: str, dest: Path, name: str) -> None:
    with tempfile.TemporaryDirectory(prefix="bundler-git-") as tmp:
        tar_path = Path(tmp) / "code.tar"
        run(["git", "-C", repo, "archive", "--format=tar", "-o", tar_path, ref],
            what=f"code {name}: git archive {ref} in {repo}", env=clean_env())
        extract(tar_path, dest)


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
