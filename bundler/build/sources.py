"""Which files of a code folder enter the bundle, and why the others stay out.

Left out: version control and virtualenvs at the code's root, the build outputs `build/` and
`dist/` at its root when they are no package, caches by their well-known names anywhere, what the
folder's .gitignore files ignore, and the code version's own `exclude` patterns. `include` patterns
bring anything back. Files that look like secrets (secretfiles.py: families of names, private keys
by content) stop the build unless they are left out or named in `include`: a bundle travels
through many hands. So does a link that leads out of the code folder (absolute, or `..` above it,
followed through the folder's own links): on a server it would reach that machine's files.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from bundler.build import secretfiles
from bundler.bundle.safetree import Overlay, check_name
from bundler.errors import BundlerError
from bundler.spec.model import CodeVersion

ROOT_ONLY = {".git": "version control", ".hg": "version control", ".svn": "version control",
             ".venv": "a virtualenv", "venv": "a virtualenv", ".idea": "editor settings",
             ".vscode": "editor settings", "bundle.toml": "the project's spec"}
BUILD_OUTPUTS = ("build", "dist")  # left out at the root unless they are packages
CACHES = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".tox", ".nox", ".eggs",
          ".ipynb_checkpoints", ".DS_Store"}
CACHE_SUFFIXES = (".pyc", ".pyo", ".egg-info", ".swp")


@dataclass
class Selection:
    """What `choose` decided for one code folder."""

    left_out: dict[str, str] = field(default_factory=dict)   # relative path -> why
    secrets: dict[str, str] = field(default_factory=dict)    # would ship, look like secrets: why
    links_out: dict[str, str] = field(default_factory=dict)  # would ship, lead out: the target

    def summary(self, limit: int = 4) -> list[str]:
        by_reason: dict[str, list[str]] = {}
        for rel, why in self.left_out.items():
            by_reason.setdefault(why, []).append(rel)
        return [f"{why}: " + ", ".join(paths[:limit]) + (f" (+{len(paths) - limit})"
                                                          if len(paths) > limit else "")
                for why, paths in sorted(by_reason.items())]


class Chooser:
    """Decides, path by path under `src`, what a code version ships."""

    def __init__(self, code: CodeVersion, src: Path):
        self.src = src
        self.name = code.name
        self.include = pathspec.GitIgnoreSpec.from_lines(code.include)
        self.exclude = pathspec.GitIgnoreSpec.from_lines(code.exclude)
        self.ignores: dict[str, pathspec.GitIgnoreSpec] = {}  # folder -> its .gitignore
        self.selection = Selection()

    def why_out(self, rel: str, is_dir: bool) -> str | None:
        """Why `rel` stays out of the bundle (None: it ships)."""
        probe = rel + "/" if is_dir else rel
        if self.include.match_file(probe):
            return None
        name = rel.rpartition("/")[2]
        top = "/" not in rel
        if top and name in ROOT_ONLY:
            return ROOT_ONLY[name]
        if top and is_dir and name in BUILD_OUTPUTS and not (self.src / rel / "__init__.py").exists():
            return "a build output"
        if name in CACHES or name.endswith(CACHE_SUFFIXES):
            return "a cache"
        if self.exclude.match_file(probe):
            return "exclude"
        for folder, spec in self._gitignores(rel):
            if spec.match_file(probe[len(folder) + 1:] if folder else probe):
                return f"{folder + '/' if folder else ''}.gitignore"
        return None

    def look(self, rel: str, path: Path) -> None:
        """Note `rel`, which ships, when it is a link out of the folder or looks like a secret."""
        if path.is_symlink():
            if Overlay(self.src).resolve(rel) is None:
                self.selection.links_out[rel] = os.readlink(path)
        elif not path.is_dir() and not self.include.match_file(rel):
            why = secretfiles.looks_secret(rel, str(path))
            if why is not None:
                self.selection.secrets[rel] = why

    def _gitignores(self, rel: str) -> list[tuple[str, pathspec.GitIgnoreSpec]]:
        parts = rel.split("/")
        found = []
        for depth in range(len(parts)):
            folder = "/".join(parts[:depth])
            if folder not in self.ignores:
                path = self.src / folder / ".gitignore"
                try:
                    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
                except OSError:
                    lines = []
                self.ignores[folder] = pathspec.GitIgnoreSpec.from_lines(lines)
            found.append((folder, self.ignores[folder]))
        return found

    def ignore(self, folder: str, names: list[str]) -> set[str]:
        """For shutil.copytree: the names in `folder` that stay out."""
        out = set()
        base = os.path.relpath(folder, self.src)
        for name in names:
            rel = name if base == "." else f"{base}/{name}"
            path = Path(folder, name)
            why = self.why_out(rel, path.is_dir() and not path.is_symlink())
            if why is not None:
                out.add(name)
                self.selection.left_out[rel] = why
            else:
                _check_unpackable(self.name, rel)
                self.look(rel, path)
        return out

    def walk(self) -> Selection:
        """Decide for the whole folder without copying (what `bundler check` shows)."""
        for folder, dirs, files in os.walk(self.src):
            left = self.ignore(folder, dirs + files)
            dirs[:] = [d for d in dirs if d not in left]
        return self.selection


def _check_unpackable(code: str, rel: str) -> None:
    """Refuse a path the server's safe unpacker would refuse (bundle/safetree.py): a control
    character, a name too long, a tree too deep. In the archive it lies under the bundle's root
    folder and the code version's: two more parts."""
    why = check_name(f"root/app/{rel}")
    if why is not None:
        raise BundlerError(f"code {code}: {_some([rel])} {why} (counted in the bundle's "
                           "archive, where it lies two folders deeper): a server would refuse "
                           "the archive; rename or move it, or leave it out (exclude = [...])")


def refuse_secrets(code: CodeVersion, selection: Selection) -> None:
    """Stop on files that look like secrets, then on links out of the code folder."""
    if selection.secrets:
        found = _some([f"{rel} ({why})" for rel, why in selection.secrets.items()])
        raise BundlerError(f"code {code.name}: would ship what looks like a secret: {found}; leave "
                           "it out (exclude = [...] or .gitignore) or, to ship it, name it in "
                           "include = [...]")
    if selection.links_out:
        found = _some([f"{rel} -> {target}" for rel, target in selection.links_out.items()])
        raise BundlerError(f"code {code.name}: would ship a link that leads out of the code folder: "
                           f"{found}; on a server it would reach that machine's files: leave it out "
                           "(exclude = [...] or .gitignore) or put what it names in the folder")


def _some(items: list[str], limit: int = 5) -> str:
    """The first `limit` of `items`; a name with a control character or no UTF-8 shown escaped."""
    shown = [i if i.isprintable() else repr(i) for i in items[:limit]]
    return ", ".join(shown) + (" ..." if len(items) > limit else "")


SYSTEM_TREES = ("/etc", "/proc", "/sys", "/dev", "/boot")  # no code folder lies in them
SYSTEM_FOLDERS = ("/usr", "/var", "/bin", "/sbin", "/lib", "/lib64", "/opt", "/srv", "/tmp", "/mnt",
                  "/media", "/run", "/home")                # nor is one of them


def check_location(code: CodeVersion, src: Path, output: Path) -> None:
    """Refuse a code path that is a link, /, a system or home folder, or holds the output folder."""
    check_not_a_link(code, src)
    src, output = src.resolve(), output.resolve()
    if str(src) in SYSTEM_FOLDERS or any(src.is_relative_to(top) for top in SYSTEM_TREES):
        raise BundlerError(f"code {code.name}: path {src} is a system folder: point path at the "
                           "code's own folder")
    homes = {Path(p.pw_dir).resolve() for p in pwd.getpwall() if p.pw_dir not in ("", "/")}
    homes.add(Path.home().resolve())
    if src == Path("/") or src in homes:
        raise BundlerError(f"code {code.name}: path {src} is {'/' if src == Path('/') else 'a home'}"
                           " folder: point path at the code's own folder")
    if output == src or output.is_relative_to(src):
        raise BundlerError(f"code {code.name}: path {src} holds the output folder {output}: build "
                           "into a folder outside it (bundler build -o DIR) or point path at the "
                           "code's own folder")


def check_not_a_link(code: CodeVersion, src: Path) -> None:
    """Refuse a code path that is a link, or (written relative to the project) passes through
    one: what ships would be wherever it leads (a link to /etc would ship /etc), not the folder
    bundle.toml names."""
    written = Path(code.path or "")
    steps = [src] if written.is_absolute() else [src, *tuple(src.parents)[:len(written.parts) - 1]]
    for step in steps:
        if not step.is_symlink():
            continue
        target = _some([os.readlink(step)])
        if step == src:
            raise BundlerError(f"code {code.name}: path {_some([str(src)])} is a link to {target}: "
                               f"name the folder itself (path = \"{_some([str(src.resolve())])}\")")
        raise BundlerError(f"code {code.name}: path {code.path} leads through the link "
                           f"{_some([str(step)])} (to {target}): point path at the folder itself")
