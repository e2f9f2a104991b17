"""bundler's server side, which every bundle's base carries for its bin/bundler, supervisord
and monitor: the package's files less the build machinery, and the packages they need, read
from this package's own metadata (pyproject's `server` and `signing` extras)."""

from __future__ import annotations

import fnmatch
import importlib.metadata
import shutil
from functools import cache as once
from pathlib import Path

import bundler
from bundler import DISTRIBUTION
from bundler.errors import BundlerError

# What a bundle leaves out of the package (paths inside it): the build machinery, the build
# commands (cli/project.py; the in-bundle CLI knows their names only), and the package data
# only they read: distro.py's templates and plan.py's layouts (a bundle reads its own record).
BUILD_ONLY = ("build/*", "cli/project.py", "templates/*.in", "layouts/*")


def shipped(source: Path) -> list[str]:
    """The files of the package at `source` a bundle carries, relative to it, sorted."""
    found = []
    for path in source.rglob("*"):
        rel = path.relative_to(source).as_posix()
        if path.is_file() and "__pycache__" not in path.parts and not path.name.endswith(".pyc") \
                and not any(fnmatch.fnmatchcase(rel, pattern) for pattern in BUILD_ONLY):
            found.append(rel)
    return sorted(found)


def install_self(site: Path) -> None:
    """Put bundler's server side (package and data) into the base's site-packages, with a
    dist-info whose RECORD lists exactly the files copied, so the bundle carries bin/bundler."""
    source = Path(bundler.__file__).parent
    files = []
    for rel in shipped(source):
        dest = site / "bundler" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / rel, dest)
        files.append(f"bundler/{rel}")
    info = f"{DISTRIBUTION.replace('-', '_')}-{bundler.__version__}.dist-info"
    (site / info).mkdir()
    (site / info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DISTRIBUTION}\n"
                                          f"Version: {bundler.__version__}\n")
    (site / info / "INSTALLER").write_text("bundler\n")
    files += [f"{info}/{n}" for n in ("METADATA", "INSTALLER", "RECORD")]
    (site / info / "RECORD").write_text("".join(f"{f},,\n" for f in sorted(files)))


def base_packages(signing: bool) -> tuple[str, ...]:
    """What pip installs into every base: the `server` extra (supervisor runs the services, the
    rest is bin/bundler's and the monitor's), and the `signing` one for a bundle that checks
    signatures (it is signed, or trusts keys)."""
    return (*extra("server"), *(extra("signing") if signing else ()))


@once
def extra(name: str) -> tuple[str, ...]:
    """The requirements of this package's extra `name`, as its installed metadata lists them
    (`click>=8.0; extra == "server"`); the extras bundler reads carry no other marker."""
    try:
        declared = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        declared = []
    marker = f'extra=="{name}"'
    found = tuple(requirement.strip() for requirement, _, condition in
                  (line.partition(";") for line in declared)
                  if condition.replace(" ", "").replace("'", '"') == marker)
    if not found:
        raise BundlerError(f"the installed metadata of {DISTRIBUTION} lists no [{name}] "
                           "requirements, which every bundle's base installs: install bundler "
                           "with pip (pip install offline-bundler; in a checkout, pip install -e "
                           ". again after pyproject.toml changed)")
    return found
