"""Code versions: a copy of a folder or a `git archive` of a ref, optionally shipped as .pyc only."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from bundler.build.sources import (
    Chooser,
    Selection,
    check_location,
    check_not_a_link,
    refuse_secrets,
)
from bundler.bundle.safetree import extract
from bundler.errors import BundlerError
from bundler.runner import call, clean_env, run
from bundler.spec.model import CodeVersion


def check_code_source(code: CodeVersion, spec_folder: Path, output: Path) -> Selection | None:
    """Fail early, before anything is copied, when a code version's source is missing, is no code
    folder (/, a home, one holding `output`) or would ship secrets; what a folder leaves out."""
    check_code_found(code, spec_folder)
    if code.path is not None:
        src = spec_folder / code.path
        check_location(code, src, output)
        selection = Chooser(code, src.resolve()).walk()
        refuse_secrets(code, selection)
        return selection
    return None


def check_code_found(code: CodeVersion, spec_folder: Path) -> None:
    """Fail when a code version's folder is not there or is a link, or its git repository has no
    such ref (asked of the local repository: nothing is cloned or fetched)."""
    if code.path is not None:
        src = spec_folder / code.path
        check_not_a_link(code, src)
        if not src.is_dir():
            raise BundlerError(f"code {code.name}: path {src} is not a folder")
        return
    assert code.git is not None
    if "://" in code.git or code.git.startswith("git@"):
        raise BundlerError(f"code {code.name}: git = {code.git!r} is a remote; bundler takes "
                           "`git archive` of a local repository: clone it beside bundle.toml and "
                           "name that folder (a path relative to bundle.toml)")
    repo = spec_folder / code.git
    found = call(["git", "-C", repo, "rev-parse", "--verify", "--quiet", f"{code.ref}^{{commit}}"],
                 what=f"code {code.name}", env=clean_env(), timeout=120)
    if found.returncode != 0:
        raise BundlerError(f"code {code.name}: {repo} has no commit {code.ref!r} "
                           "(is it a git repository, and is the tag or branch there?)")


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


def compile_bytecode_only(folder: Path, python: Path, kept: Path | None = None) -> None:
    """Compile every .py with `python` next to its source (legacy layout), then drop the sources.
    `kept`: bytecode compiled by earlier builds, by source, place and interpreter version: what
    it holds is taken, the rest is compiled and added to it."""
    if kept is None:
        run([python, "-I", "-m", "compileall", "-q", "-b", "-j", "0",
             "--invalidation-mode", "unchecked-hash", "-d", folder.name, folder],
            what=f"compiling {folder.name} to bytecode")
    else:
        kept.mkdir(parents=True, exist_ok=True)
        run([python, "-I", "-c", _COMPILE_KEPT, folder, kept], what=f"compiling {folder.name} to bytecode")
    for source in folder.rglob("*.py"):
        if source.with_suffix(".pyc").is_file():
            source.unlink()
    for cache in folder.rglob("__pycache__"):
        shutil.rmtree(cache)


# Run by the code's interpreter: each .py's bytecode (the name it shows in tracebacks relative,
# as compileall -d gives it), from the kept folder when the same source at the same place was
# compiled by the same Python version, else compiled and kept (written aside, then renamed).
_COMPILE_KEPT = """
import hashlib, os, py_compile, shutil, sys
folder, kept = sys.argv[1:3]
name = os.path.basename(folder)
for top, dirs, files in os.walk(folder):
    dirs[:] = [d for d in dirs if d != "__pycache__"]
    for file in files:
        if not file.endswith(".py"):
            continue
        source = os.path.join(top, file)
        shown = os.path.join(name, os.path.relpath(source, folder))
        with open(source, "rb") as f:
            data = f.read()
        key = hashlib.sha256(b"\\0".join([sys.version.encode(), shown.encode(), data])).hexdigest()
        stored, target = os.path.join(kept, key + ".pyc"), source[:-3] + ".pyc"
        if os.path.isfile(stored):
            shutil.copyfile(stored, target)
            os.utime(stored)
            continue
        py_compile.compile(source, target, shown, doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
        aside = "%s.%d" % (stored, os.getpid())
        shutil.copyfile(target, aside)
        os.replace(aside, stored)
"""
