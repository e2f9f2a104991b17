"""python = "3.12": a standalone CPython archive found in a mirror (a folder, or a real local
HTTP server here), checked against its published SHA-256, unpacked once into the cache."""

from __future__ import annotations

import hashlib
import http.server
import io
import platform
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bundler.build import standalone
from bundler.build.interpreters import find_python
from bundler.errors import BundlerError

ARCH = platform.machine()


def _archive(folder: Path, version: str, tag: str = "20260101", arch: str = ARCH) -> str:
    """A standalone-format archive: one python/ folder with bin/python3."""
    name = f"cpython-{version}+{tag}-{arch}-unknown-linux-gnu-install_only.tar.gz"
    script = f"#!/bin/sh\necho {version}\n".encode()
    with tarfile.open(folder / name, "w:gz") as tar:
        info = tarfile.TarInfo("python/bin/python3")
        info.size, info.mode = len(script), 0o755
        tar.addfile(info, io.BytesIO(script))
    return name


def _sums(folder: Path, names: list[str], wrong: str = "") -> None:
    lines = [f"{'0' * 64 if n == wrong else hashlib.sha256((folder / n).read_bytes()).hexdigest()}"
             f"  {n}\n" for n in names]
    (folder / "SHA256SUMS").write_text("".join(lines))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served by a real HTTP server on loopback: (the folder, its URL)."""
    folder = tmp_path / "mirror"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(standalone.MIRROR_ENV, raising=False)
    return tmp_path / "cache"


def test_a_version_resolves_to_the_newest_matching_archive_from_a_url(
        served: tuple[Path, str], cache: Path) -> None:
    folder, url = served
    names = [_archive(folder, v) for v in ("3.12.1", "3.12.8", "3.13.0", "3.11.9")]
    names.append(_archive(folder, "3.12.9", arch="riscv64"))
    _sums(folder, names)
    python = find_python("3.12", Path("/"), url)
    assert python is not None and python.read_text().endswith("echo 3.12.8\n")
    assert python.is_relative_to(cache / "bundler" / "pythons")
    assert (cache / "bundler" / "pythons" / "archives" / names[1]).is_file()
    assert find_python("3.12.1", Path("/"), url).read_text().endswith("echo 3.12.1\n")  # type: ignore[union-attr]
    # without fetch, what was downloaded before is found; what was not is left for the build
    assert find_python("3.12", Path("/"), url, fetch=False) == python
    assert find_python("3.13", Path("/"), url, fetch=False) is None
    with pytest.raises(BundlerError, match="has no install_only archive of CPython 3.10 for"):
        find_python("3.10", Path("/"), url)


def test_an_archive_whose_sha256_differs_from_the_published_one_is_not_used(
        served: tuple[Path, str], cache: Path) -> None:
    folder, url = served
    name = _archive(folder, "3.12.8")
    _sums(folder, [name], wrong=name)
    with pytest.raises(BundlerError) as info:
        find_python("3.12", Path("/"), url)
    assert f"{name} from python mirror {url}: its SHA-256 is " in str(info.value)
    assert "the published one is " + "0" * 64 in str(info.value)
    assert not (cache / "bundler" / "pythons" / "archives" / name).exists()
    assert [p.name for p in (cache / "bundler" / "pythons").iterdir()] == ["archives"]  # none unpacked
    assert not list((cache / "bundler" / "pythons" / "archives").iterdir())  # no partial download


def test_a_folder_mirror_may_list_sha256_files_and_be_named_relative_to_the_spec(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "project" / "pythons"
    folder.mkdir(parents=True)
    name = _archive(folder, "3.11.9")
    (folder / f"{name}.sha256").write_text(hashlib.sha256((folder / name).read_bytes()).hexdigest() + "\n")
    python = find_python("3.11", tmp_path / "project", "pythons")
    assert python is not None and python.read_text().endswith("echo 3.11.9\n")
    # the environment names the machine's mirror, over the spec's
    monkeypatch.setenv(standalone.MIRROR_ENV, str(tmp_path / "elsewhere"))
    with pytest.raises(BundlerError, match="elsewhere is not a folder or an http"):
        find_python("3.11", tmp_path / "project", "pythons")


def test_an_unreachable_mirror_says_how_to_name_another() -> None:
    with pytest.raises(BundlerError) as info:
        find_python("3.12", Path("/"), "http://127.0.0.1:9/")
    assert "cannot fetch SHA256SUMS" in str(info.value) and "python_mirror" in str(info.value)


def test_check_plans_a_version_from_a_reachable_mirror_without_downloading_it(
        served: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from bundler.cli import cli

    folder, url = served
    name = f"cpython-3.12.8+20260101-{ARCH}-unknown-linux-gnu-install_only.tar.gz"
    (folder / "SHA256SUMS").write_text(f"{'1' * 64}  {name}\n")  # listed, not there: no download
    monkeypatch.setenv(standalone.MIRROR_ENV, url)
    assert CliRunner().invoke(cli, ["-C", str(tmp_path), "init", "box"]).exit_code == 0
    spec = tmp_path / "box" / "bundle.toml"
    spec.write_text(spec.read_text().replace('python = "current"', 'python = "3.12"')
                    .replace('# glibc = "2.17"', 'glibc = "2.17"'))
    result = CliRunner().invoke(cli, ["-C", str(tmp_path / "box"), "check"])
    assert result.exit_code == 0, result.output
    assert f"python-build-standalone CPython 3.12 from {url} (downloaded at build)" in result.output
    assert "glibc floor 2.17" in result.output
