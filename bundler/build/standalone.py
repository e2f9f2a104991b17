"""Standalone CPython archives (python-build-standalone's `install_only` format, which uv uses):
named by path, or by version (`python = "3.12"`) and found in a mirror (a folder of archives or an
HTTP(S) URL, each with its SHA256SUMS; upstream's latest release when none is named), checked
against the published SHA-256, unpacked once into bundler's cache, then copied into bundles like
any CPython prefix."""

from __future__ import annotations

import os
import platform
import re
import shutil
import tempfile
from pathlib import Path

from bundler.bundle.safetree import extract
from bundler.errors import BundlerError
from bundler.fsutil import sha256_file

SUFFIXES = (".tar.gz", ".tgz", ".tar.zst", ".tar.xz", ".tar.bz2", ".tar")


VERSION_RE = re.compile(r"3\.\d{1,2}(\.\d{1,3})?\Z")
UPSTREAM = "https://github.com/astral-sh/python-build-standalone/releases/latest/download/"
MIRROR_ENV = "BUNDLER_PYTHON_MIRROR"
_ARCHIVE_RE = re.compile(r"^cpython-(\d+)\.(\d+)\.(\d+)\+([A-Za-z0-9._]+)-([A-Za-z0-9_]+)"
                         r"-unknown-linux-gnu-install_only\.tar\.gz\Z")
_HEX = re.compile(r"[0-9a-f]{64}\Z")


def is_version(value: str) -> bool:
    """python = "3.12" or "3.12.7": a standalone CPython found in a mirror."""
    return bool(VERSION_RE.match(value))


def mirror_of(named: str | None, spec_folder: Path) -> str:
    """Where archives are looked for: $BUNDLER_PYTHON_MIRROR, else [bundle] python_mirror (a
    folder relative to bundle.toml, or a URL), else upstream's latest release."""
    value = os.environ.get(MIRROR_ENV) or named
    if not value:
        return UPSTREAM
    if value.startswith(("http://", "https://")):
        return value.rstrip("/") + "/"
    return str((spec_folder / os.path.expanduser(value)).absolute())


def _is_url(mirror: str) -> bool:
    return mirror.startswith(("http://", "https://"))


def _read(mirror: str, name: str) -> bytes:
    """A file of the mirror; BundlerError when it cannot be read."""
    if not _is_url(mirror):
        try:
            return Path(mirror, name).read_bytes()
        except OSError as exc:
            raise BundlerError(f"python mirror {mirror}: cannot read {name} ({exc.strerror})") from None
    import urllib.request  # here: it loads ssl, which every build would pay for

    try:
        with urllib.request.urlopen(mirror + name, timeout=60) as response:
            return bytes(response.read())
    except (OSError, ValueError) as exc:  # URLError is an OSError
        reason = getattr(exc, "reason", exc)
        raise BundlerError(f"python mirror {mirror}: cannot fetch {name} ({reason}); name a "
                           "reachable mirror with [bundle] python_mirror or $BUNDLER_PYTHON_MIRROR "
                           "(a folder of python-build-standalone archives with their SHA256SUMS, or "
                           "a URL serving them)") from None


def unreachable(mirror: str, timeout: float = 5) -> str | None:
    """Why an HTTP(S) mirror's SHA256SUMS cannot be had (None: it can): a short probe, no
    download. (A folder is read whole when planned.)"""
    import urllib.request

    request = urllib.request.Request(mirror + "SHA256SUMS", headers={"Range": "bytes=0-63"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(64)
    except (OSError, ValueError) as exc:
        return str(getattr(exc, "reason", exc))
    return None


def published(mirror: str) -> dict[str, str]:
    """Archive name -> its SHA-256, from the mirror's SHA256SUMS (`sha256sum` lines); a folder
    may instead hold one NAME.sha256 beside each archive."""
    sums: dict[str, str] = {}
    if not _is_url(mirror) and not Path(mirror, "SHA256SUMS").is_file():
        if not Path(mirror).is_dir():
            raise BundlerError(f"python mirror {mirror} is not a folder or an http(s) URL")
        for path in Path(mirror).glob("*.sha256"):
            digest = path.read_text(encoding="utf-8", errors="replace").split()
            if digest and _HEX.match(digest[0].lower()):
                sums[path.name[:-len(".sha256")]] = digest[0].lower()
        return sums
    for line in _read(mirror, "SHA256SUMS").decode("utf-8", "replace").splitlines():
        parts = line.split()
        if len(parts) == 2 and _HEX.match(parts[0].lower()):
            sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def choose(sums: dict[str, str], version: str, arch: str) -> str | None:
    """The newest install_only archive for `arch` whose version starts with `version`."""
    wanted = tuple(int(n) for n in version.split("."))
    best: tuple[tuple[int, ...], str, str] | None = None
    for name in sums:
        match = _ARCHIVE_RE.match(name)
        if not match or match[5] != arch:
            continue
        found = tuple(int(match[i]) for i in (1, 2, 3))
        if found[:len(wanted)] == wanted and (best is None or (found, match[4]) > best[:2]):
            best = (found, match[4], name)
    return best[2] if best else None


def locate(version: str, mirror: str, fetch: bool = True) -> Path | None:
    """The unpacked prefix of the standalone CPython `version` names, for this machine's
    architecture. Without `fetch`, nothing is downloaded: None when it would have to be."""
    arch = platform.machine()
    if _is_url(mirror) and not fetch:
        cached = choose({p.name: "" for p in _archives().glob("*.tar.gz")}, version, arch)
        return unpack(_archives() / cached) if cached else None
    sums = published(mirror)
    name = choose(sums, version, arch)
    if name is None:
        known = sorted(n for n in sums if _ARCHIVE_RE.match(n))
        raise BundlerError(f"python = {version!r}: python mirror {mirror} has no install_only "
                           f"archive of CPython {version} for {arch}-unknown-linux-gnu"
                           + (f" (it has {', '.join(known[:4])}{' ...' if len(known) > 4 else ''})"
                              if known else " (its SHA256SUMS lists no install_only archive)"))
    return unpack(_fetch(mirror, name, sums[name]))


def _archives() -> Path:
    return cache_dir() / "archives"


def _fetch(mirror: str, name: str, expected: str) -> Path:
    """The archive, checked against its published SHA-256 (downloads land in the cache)."""
    if not _is_url(mirror):
        path = Path(mirror, name)
        _check_sha(path, name, expected, mirror)
        return path
    target = _archives() / name
    if target.is_file() and sha256_file(target) == expected:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=f".{name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(_read(mirror, name))
        _check_sha(Path(partial), name, expected, mirror)
        os.replace(partial, target)
    finally:
        Path(partial).unlink(missing_ok=True)
    return target


def _check_sha(path: Path, name: str, expected: str, mirror: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise BundlerError(f"{name} from python mirror {mirror}: its SHA-256 is {actual}, but "
                           f"the published one is {expected}: the archive is damaged or not the one "
                           "published; it was not used")


def is_archive(value: str) -> bool:
    return value.endswith(SUFFIXES)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "bundler" / "pythons"


def unpack(archive: Path) -> Path:
    """The prefix (the archive's one top-level folder, e.g. python/) unpacked from `archive`;
    reused when the same archive (by SHA-256) was unpacked before."""
    final = cache_dir() / sha256_file(archive)[:32]
    if not final.is_dir():
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=final.parent))
        try:
            extract(archive, staging)
            os.replace(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    tops = [p for p in final.iterdir() if p.is_dir() and (p / "bin").is_dir()]
    if len(tops) != 1:
        raise BundlerError(f"{archive} is not a standalone CPython archive: expected one folder "
                           "with bin/ inside (as python/ in python-build-standalone's "
                           "install_only archives)")
    return tops[0]
