"""Hostile patches, applied through the real `bundler apply` command to a tiny bundle that trusts one
signing key: each is refused in one line on stderr with exit 1, and the bundle and what lies
around it (a folder outside the bundle that a link of the site points to) stay byte for byte as
they were. A control case shows the same harness applies a good patch."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bundler import fsutil
from bundler.bundle import integrity, relocation, safetree, signing
from bundler.bundle.manifest import Manifest
from bundler.bundle.records import PatchRecord, Relocation
from bundler.bundle.tree import Bundle
from bundler.cli import cli
from bundler.errors import BundlerError
from bundler.server import filemoves, transact
from tests.unit.tiny import MANIFEST, make_tiny, snapshot

NEW_MANIFEST = MANIFEST.replace('[services.web]', '[code.v2]\npath = "src2"\n[services.web]') \
    .replace('version = "1"', 'version = "2"') + '[build.code.v2]\nfolder = "app_v2"\n'


@dataclass(frozen=True)
class M:
    """One member under files/ (or, with raw, anywhere in the archive)."""

    name: str
    kind: str = "file"      # file, dir, link, hardlink, chr, blk, fifo
    data: bytes = b"print('v2')\n"
    target: str = ""
    listed: bool = True     # in patch.json
    raw: bool = False       # name is the whole member name


@dataclass
class Site:
    root: Path        # what must not change: the bundle and its surroundings
    bundle: Bundle
    key: Any          # the private key the bundle trusts
    other_key: Any


@pytest.fixture
def site(tmp_path: Path) -> Site:
    key, other = (signing.load_private(_keyfile(tmp_path, n)) for n in ("trusted", "other"))
    root = tmp_path / "site"
    (root / "outside").mkdir(parents=True)
    (root / "outside" / "secret.txt").write_text("not the bundle's\n")
    bundle = make_tiny(root / "tiny", trusted_keys=signing.public_line(key, "release") + "\n")
    (bundle.root / "app_v1" / "data").symlink_to("../../outside")  # a site's link to its data
    integrity.write(bundle)
    return Site(root, bundle, key, other)


def _keyfile(folder: Path, name: str) -> Path:
    signing.keygen(folder / name, name)
    return folder / name


def build_patch(dest: Path, members: list[M], *, key: Any = None, sign_kind: str = "patch",
                meta: Callable[[dict[str, Any]], None] | None = None,
                patch_json: bytes | None = None, tamper_after_signing: bool = False,
                top: str = "tiny-2.patch") -> Path:
    record: dict[str, Any] = {"format": PatchRecord.FORMAT, "prefix": "/build/tiny", "files": {},
                              "links": {}, "remove": [], "base": {}, "manifest": NEW_MANIFEST,
                              "bundle": "tiny", "against": ""}
    for m in members:
        if not m.listed or m.raw:
            continue
        if m.kind == "file":
            entry = {"sha256": hashlib.sha256(m.data).hexdigest(), "exec": False}  # checksums.json's
            record["files"][m.name] = {"sha256": entry["sha256"], "relocatable": False,
                                       "checksum": entry}
            record["base"][m.name] = None
        elif m.kind == "link":
            record["links"][m.name] = m.target
            record["base"][m.name] = None
    if meta:
        meta(record)
    raw = patch_json if patch_json is not None else json.dumps(record).encode()
    extra: list[tuple[str, bytes]] = [("patch.json", raw)] if raw != b"-" else []
    if key is not None:
        signature = signing.sign(key, sign_kind, raw).text().encode()
        if tamper_after_signing:
            extra[0] = ("patch.json", raw.replace(b'"tiny"', b'"tiny" ', 1))
        extra.append(("patch.sig", signature))
    archive = dest / "hostile.patch.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in extra:
            _add(tar, f"{top}/{name}", "file", data)
        for m in members:
            _add(tar, m.name if m.raw else f"{top}/files/{m.name}", m.kind, m.data, m.target)
    return archive


def _add(tar: tarfile.TarFile, name: str, kind: str, data: bytes = b"", target: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "link": tarfile.SYMTYPE,
                 "hardlink": tarfile.LNKTYPE, "chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE,
                 "fifo": tarfile.FIFOTYPE}[kind]
    info.mode = 0o755 if kind == "dir" else 0o644
    info.linkname = target
    if kind == "file":
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        tar.addfile(info)


GOOD = M("app_v2/web.py")
CHAIN_OUT = [M("app_v2/a", "link", target="b"), M("app_v2/b", "link", target="c"),
             M("app_v2/c", "link", target="../../..")]
HOPS = [M(f"app_v2/l{i}", "link", target=f"l{i + 1}") for i in range(45)] + \
    [M("app_v2/l45", "link", target="../web.py")]

RELOCATABLE = M("app_v2/web.py", data=b"#!/build/tiny/bin/python3\n")
BOMB = M("app_v2/web.py", data=b"/abcd" * 200_000)  # 1 MB: each /abcd becomes the bundle's root


def _relocatable(prefix: str) -> Callable[[dict[str, Any]], None]:
    """patch.json's edit: `prefix` as the build's path, app_v2/web.py a file that names it."""
    def edit(record: dict[str, Any]) -> None:
        record["prefix"] = prefix
        record["files"]["app_v2/web.py"]["relocatable"] = True
    return edit


# (case, members, options for build_patch, text the one line must contain)
CASES: list[tuple[str, list[M], dict[str, Any], str]] = [
    ("member above the archive", [GOOD, M("../evil", raw=True)], {}, "top-level folder"),
    ("traversal under files/", [GOOD, M("app_v2/../../../evil")], {}, "plain relative path"),
    ("absolute member name", [GOOD, M("/tmp/evil", raw=True)], {}, "top-level folder"),
    ("absolute path under files/", [M("/etc/passwd", raw=False)], {}, "is an absolute path"),
    ("dot part", [M("app_v2/./web.py")], {}, "plain relative path"),
    ("newline in a name", [M("app_v2/a\nb.py")], {}, "control character"),
    ("300-character name", [M("app_v2/" + "x" * 300)], {}, "longer than"),
    ("two top folders", [GOOD, M("other/files/x", raw=True)], {}, "top-level folder"),
    ("member beside files/", [GOOD, M("tiny-2.patch/stray", raw=True)], {}, "plain relative"),
    ("absolute link", [M("app_v2/passwd", "link", target="/etc/passwd")], {}, "absolute path"),
    ("link out by ..", [M("app_v2/up", "link", target="../../outside")], {}, "out of the tree"),
    ("chain of links out", CHAIN_OUT, {}, "out of the tree"),
    ("link through an earlier link", [M("app_v2/l1", "link", target=".."),
                                      M("app_v2/l2", "link", target="l1/..")], {}, "out of the tree"),
    ("loop of links", [M("app_v2/a", "link", target="b"), M("app_v2/b", "link", target="a")],
     {}, "out of the tree"),
    ("more hops than the kernel follows", HOPS, {}, "out of the tree"),
    ("link through the site's link out", [M("app_v2/s", "link", target="../app_v1/data/secret.txt")],
     {}, "out of the tree"),
    ("file through the site's link out", [M("app_v1/data/secret.txt", data=b"owned")], {},
     "through the link 'app_v1/data'"),
    ("file into etc/conf.d through a link", [M("app_v2/e", "link", target="../etc"),
                                             M("app_v2/e/conf.d/evil.ini", data=b"[program:x]")],
     {}, "through the link"),
    ("file into etc/app through a link", [M("app_v2/e", "link", target="../etc/app"),
                                          M("app_v2/e/settings.toml")], {}, "through the link"),
    ("file into log through a link", [M("app_v2/l", "link", target="../log"), M("app_v2/l/x")],
     {}, "through the link"),
    ("file into .bundler through a chain", [M("app_v2/a", "link", target="b"),
                                            M("app_v2/b", "link", target="../.bundler"),
                                            M("app_v2/a/checksums.json")], {}, "through the link"),
    ("etc/conf.d directly", [M("etc/conf.d/evil.ini")], {}, "may not touch"),
    ("etc/app directly", [M("etc/app/settings.toml")], {}, "may not touch"),
    ("etc itself as a link", [M("etc", "link", target="app_v1")], {}, "may not touch"),
    ("log/", [M("log/supervisord.log")], {}, "may not touch"),
    ("run/", [M("run/supervisord.pid")], {}, "may not touch"),
    ("the records", [M(".bundler/checksums.json")], {}, "may not touch"),
    ("the manifest", [M("bundle.toml")], {}, "may not touch"),
    ("removing etc/supervisord.conf", [GOOD],
     {"meta": lambda r: r.update(remove=["etc/supervisord.conf"])}, "may not touch"),
    ("removing through the site's link", [GOOD],
     {"meta": lambda r: r.update(remove=["app_v1/data/secret.txt"])}, "through the link"),
    ("hard link", [GOOD, M("app_v2/h", "hardlink", target="tiny-2.patch/files/app_v2/web.py")],
     {}, "hardlink"),
    ("character device", [GOOD, M("app_v2/tty", "chr")], {}, "character device"),
    ("block device", [GOOD, M("app_v2/sda", "blk")], {}, "block device"),
    ("fifo", [GOOD, M("app_v2/pipe", "fifo")], {}, "fifo"),
    ("duplicate member", [GOOD, M("app_v2/web.py", data=b"again", listed=False)], {}, "comes twice"),
    ("a path under a file", [M("app_v2/a"), M("app_v2/a/b")], {}, "under the file"),
    ("a link and a file of one name", [M("app_v2/x", "link", target="web.py"), M("app_v2/x")],
     {}, "comes twice"),
    ("a file over a folder", [M("app_v1")], {}, "replace a folder"),
    ("a link over a folder", [M("app_v1", "link", target="app_v2")], {}, "replace a folder"),
    ("a lying checksum", [GOOD], {"meta": lambda r: r["files"]["app_v2/web.py"].update(
        sha256="0" * 64)}, "does not match its checksum"),
    ("a lying checksums.json entry", [GOOD], {"meta": lambda r: r["files"]["app_v2/web.py"][
        "checksum"].update(sha256="1" * 64)}, "checksum it records"),
    ("a file patch.json does not list", [GOOD, M("app_v2/extra.py", listed=False)], {}, "not listed"),
    ("a listed file that is not there", [GOOD], {"meta": lambda r: r["files"].update(
        {"app_v2/ghost.py": dict(r["files"]["app_v2/web.py"])})}, "is missing"),
    ("links that disagree", [GOOD], {"meta": lambda r: r["links"].update({"app_v2/l": "web.py"})},
     "links do not match"),
    ("patch.json is no JSON", [GOOD], {"patch_json": b"{not json"}, "not a bundler patch"),
    ("patch.json misses keys", [GOOD], {"patch_json": b'{"format": 1}'}, "not a bundler patch"),
    ("patch.json of another format", [GOOD], {"meta": lambda r: r.update(format=99)},
     "not a bundler patch"),
    ("patch.json with wrong types", [GOOD], {"meta": lambda r: r.update(files=["x"])},
     "not a bundler patch"),
    ("no patch.json", [GOOD], {"patch_json": b"-"}, "not a bundler patch"),
    ("bad TOML in the manifest", [GOOD], {"meta": lambda r: r.update(manifest="[bundle\nx=")},
     "manifest is not a bundle manifest"),
    ("a manifest without [build]", [GOOD], {"meta": lambda r: r.update(
        manifest=NEW_MANIFEST.split("[build.")[0])}, "manifest is not a bundle manifest"),
    ("another bundle's patch", [GOOD], {"meta": lambda r: r.update(bundle="payroll")},
     "a patch for bundle 'payroll'"),
    ("a patch naming no bundle", [GOOD], {"meta": lambda r: r.pop("bundle")}, "no named bundle"),
    ("made against another build", [M("app_v1/web.py", data=b"x")],
     {"meta": lambda r: r["base"].update({"app_v1/web.py": {
         "sha256": hashlib.sha256(b"other").hexdigest(), "exec": False}})},
     "not what it was built against"),
    ("a site default above etc/app", [GOOD, M("tiny-2.patch/site/../x", raw=True)],
     {"meta": lambda r: r.update(site={"../x": hashlib.sha256(GOOD.data).hexdigest()})},
     "plain relative path"),
    ("a site default that is a link", [GOOD, M("tiny-2.patch/site/s.toml", "link", raw=True,
                                               target="../../outside/secret.txt")],
     {}, "site configuration is plain files"),
    ("a site default patch.json does not list", [GOOD, M("tiny-2.patch/site/x.toml", raw=True)],
     {}, "site configuration does not match"),
    ("a site default that is not there", [GOOD],
     {"meta": lambda r: r.update(site={"x.toml": "0" * 64})}, "site configuration does not match"),
    ("a site default through the site's link", [GOOD, M("tiny-2.patch/site/sub/x", raw=True)],
     {"meta": lambda r: r.update(site={"sub/x": hashlib.sha256(GOOD.data).hexdigest()}),
      "site_link": True}, "through the link 'etc/app/sub'"),
    ("services that are no tables", [GOOD], {"meta": lambda r: r.update(
        manifest=NEW_MANIFEST.replace("spec_version = 1\n", 'spec_version = 1\nservices = "x"\n')
        .replace('[services.web]\ncommand = "python -m web"\ncode = "v1"\n', ""))},
     "the release's bundle.toml"),
    ("a release spec the bundle refuses", [GOOD], {"meta": lambda r: r.update(
        manifest=NEW_MANIFEST.replace('code = "v1"', 'code = "v1"\nnumprocs = 0'))},
     "numprocs must be between 1 and 256"),
    ("a base spec that is no spec", [GOOD], {"meta": lambda r: r.update(
        release_base="services = 3\n")}, "base spec is not a bundle spec"),
    # names too deep for the tools that walk trees (issue 28, class 2)
    ("a name 1,901 folders deep", [M("a/" * 1900 + "f")], {}, "1901 path components"),
    ("a name 129 folders deep", [M("app_v2/" + "d/" * 127 + "f")], {}, "more than the 128"),
    ("a deep site default", [GOOD, M("tiny-2.patch/site/" + "d/" * 200 + "x", raw=True)],
     {}, "201 path components"),
    ("a deep link target out", [M("app_v2/deep", "link",
                                  target="x/" * 600 + "../" * 602 + "outside")], {}, "out of the tree"),
    # what a relocation may replace, and how much it may write (class 3)
    ("an empty relocation prefix", [RELOCATABLE], {"meta": _relocatable("")},
     "relocation prefix ''"),
    ("the relocation prefix /", [RELOCATABLE], {"meta": _relocatable("/")},
     "relocation prefix '/'"),
    ("a 3-byte relocation prefix", [RELOCATABLE], {"meta": _relocatable("/ab")},
     "relocation prefix '/ab'"),
    ("a relative relocation prefix", [RELOCATABLE], {"meta": _relocatable("build/tiny")},
     "relocation prefix 'build/tiny'"),
    ("a relocation prefix with ..", [RELOCATABLE], {"meta": _relocatable("/build/../tiny")},
     "relocation prefix"),
    ("a relocation bomb", [BOMB], {"meta": _relocatable("/abcd")}, "would grow from 1000000"),
    # refusals said as what they are (class 11)
    ("an oversized patch.sig", [GOOD, M("tiny-2.patch/patch.sig", raw=True, data=b"x" * 70000)],
     {"key": None}, "too large to be a patch.sig (70000 bytes"),
    ("a second patch.json", [GOOD, M("tiny-2.patch/patch.json", raw=True, data=b"{}")], {},
     "comes twice"),
    ("patch.sig a folder", [GOOD, M("tiny-2.patch/patch.sig", "dir", raw=True)], {"key": None},
     "is a dir, not a file"),
    ("the top folder a file", [M("tiny-2.patch", raw=True), GOOD], {}, "where the patch has a folder"),
    ("files/ a link", [M("tiny-2.patch/files", "link", raw=True, target="/etc"), GOOD], {},
     "where the patch has a folder"),
    ("unsigned", [GOOD], {"key": None}, "not signed"),
    ("signed by another key", [GOOD], {"key": "other"}, "does not trust"),
    ("signed, then changed", [GOOD], {"tamper_after_signing": True}, "does not match its content"),
    ("a bundle's signature passed off as a patch's", [GOOD], {"sign_kind": "bundle"},
     "not a patch's"),
]


def _apply(patch_file: Path, root: Path) -> Any:
    return CliRunner().invoke(cli, ["apply", str(patch_file), "--root", str(root)])


def _build(site: Site, tmp_path: Path, members: list[M], options: dict[str, Any]) -> Path:
    options = dict(options)
    if options.pop("site_link", False):  # the site made etc/app/sub a link to its data
        (site.bundle.root / "etc" / "app" / "sub").symlink_to("../../../outside")
    key = options.pop("key", "trusted")
    key = {"trusted": site.key, "other": site.other_key, None: None}[key]
    (tmp_path / "patches").mkdir(exist_ok=True)
    return build_patch(tmp_path / "patches", members, key=key, **options)


@pytest.mark.parametrize("members,options,says", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_hostile_patch_is_refused_in_one_line_and_changes_nothing(
        site: Site, tmp_path: Path, members: list[M], options: dict[str, Any], says: str) -> None:
    patch_file = _build(site, tmp_path, members, options)
    before = snapshot(site.root)
    result = _apply(patch_file, site.bundle.root)
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: refusing"), result.stderr
    assert says in lines[0]
    assert result.stdout == ""
    assert snapshot(site.root) == before


def test_a_patch_larger_than_the_free_space_is_refused(site: Site, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    patch_file = _build(site, tmp_path, [GOOD], {})
    monkeypatch.setattr(fsutil, "SPARE_BYTES", 1 << 62)  # as if the disk were full
    before = snapshot(site.root)
    result = _apply(patch_file, site.bundle.root)
    assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1
    assert "MiB must stay free); nothing was changed" in result.stderr
    assert snapshot(site.root) == before


def test_a_disk_that_fills_during_apply_is_one_line_and_the_bundle_stays(
        site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    patch_file = _build(site, tmp_path, [GOOD, M("app_v2/util.py", data=b"")], {})
    real, moves = os.replace, []

    def full(src: str, dst: str) -> None:
        moves.append(dst)
        if len(moves) == 2:
            raise OSError(28, "No space left on device", str(dst))
        real(src, dst)

    monkeypatch.setattr(filemoves.os, "replace", full)
    before = snapshot(site.root)
    result = _apply(patch_file, site.bundle.root)
    assert result.exit_code == 1 and result.stderr.splitlines() == [
        f"Error: No space left on device: {moves[1]}"]
    assert snapshot(site.root) == before


def test_the_harness_applies_a_good_signed_patch(site: Site, tmp_path: Path) -> None:
    members = [GOOD, M("app_v2/lib", "dir"), M("app_v2/lib/util.py", data=b""),
               M("app_v2/current", "link", target="lib/util.py"),
               M("app_v2/shared", "link", target="../app_v1/web.py")]
    result = _apply(_build(site, tmp_path, members, {}), site.bundle.root)
    assert result.exit_code == 0, result.output
    root = site.bundle.root
    assert (root / "app_v2" / "web.py").read_text() == "print('v2')\n"
    assert os.readlink(root / "app_v2" / "shared") == "../app_v1/web.py"
    assert integrity.verify(site.bundle).clean
    history = (site.bundle.history).read_text()
    assert '"signed_by": "SHA256:' in history


def test_a_bundle_that_trusts_no_key_takes_an_unsigned_patch(tiny: Bundle, tmp_path: Path) -> None:
    (tmp_path / "patches").mkdir()
    patch_file = build_patch(tmp_path / "patches", [GOOD])
    result = _apply(patch_file, tiny.root)
    assert result.exit_code == 0, result.output


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) + 1 >= 40


ARCHIVES: list[tuple[str, list[tuple[str, str, str]], str]] = [
    ("a link, then a file through it", [("b/out", "link", ".."), ("b/out/x", "file", "")],
     "through the link"),
    ("a chain of links out", [("b/a", "link", "c"), ("b/c", "link", "../..")], "out of the tree"),
    ("an absolute link", [("b/p", "link", "/etc/passwd")], "absolute path"),
    ("a hard link to a file outside", [("b/h", "hardlink", "../../outside/secret.txt")],
     "no file before it"),
    ("a device", [("b/tty", "chr", "")], "character device"),
    ("traversal", [("b/../../x", "file", "")], "plain relative path"),
]


@pytest.mark.parametrize("members,says", [c[1:] for c in ARCHIVES], ids=[c[0] for c in ARCHIVES])
def test_verify_refuses_a_hostile_archive_and_writes_nothing_outside(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, members: list[tuple[str, str, str]],
        says: str) -> None:
    scratch = tmp_path / "scratch"  # where verify unpacks (its TMPDIR), with a neighbour
    (scratch / "outside").mkdir(parents=True)
    (scratch / "outside" / "secret.txt").write_text("keep\n")
    monkeypatch.setenv("TMPDIR", str(scratch))
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, kind, target in members:
            _add(tar, name, kind, b"x", target)
    before = snapshot(tmp_path)
    result = CliRunner().invoke(cli, ["verify", str(archive)])
    assert result.exit_code == 1, result.output
    assert len(result.stderr.splitlines()) == 1 and says in result.stderr, result.stderr
    assert snapshot(tmp_path) == before


# --- archives verify and the safe unpacker refuse before reading them (issue 28, classes 2, 3)

def _header_bomb(archive: Path) -> None:
    """A pax header declaring 2 MiB (tarfile would read it all into memory; gigabytes compress
    to a few hundred KB)."""
    info = tarfile.TarInfo("b/big")
    info.type, info.size = tarfile.XHDTYPE, 2 << 20
    with gzip.open(archive, "wb") as out:
        out.write(info.tobuf(tarfile.USTAR_FORMAT) + b"\0" * info.size + b"\0" * 1024)


def _gnu_sparse(archive: Path) -> None:
    info = tarfile.TarInfo("b/holes")
    info.type, info.size = tarfile.GNUTYPE_SPARSE, 0
    with gzip.open(archive, "wb") as out:
        out.write(info.tobuf(tarfile.GNU_FORMAT) + b"\0" * 1024)


def _pax_sparse(archive: Path) -> None:
    with tarfile.open(archive, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("b/holes")
        info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0",
                            "GNU.sparse.name": "b/holes", "GNU.sparse.realsize": str(1 << 40)}
        info.size = 512
        tar.addfile(info, io.BytesIO(b"1\n0\n512\n".ljust(512, b"\0")))


def _deep(archive: Path) -> None:
    with tarfile.open(archive, "w:gz") as tar:
        _add(tar, "b/" + "a/" * 1900 + "f", "file", b"x")


def _deep_link(archive: Path) -> None:
    with tarfile.open(archive, "w:gz") as tar:
        _add(tar, "b/l", "link", target="x/" * 700 + "../" * 702 + "outside")


@pytest.mark.parametrize("make,says", [
    (_header_bomb, "extended header declares 2097152 bytes"), (_gnu_sparse, "sparse file"),
    (_pax_sparse, "sparse file"), (_deep, "1902 path components"), (_deep_link, "out of the tree"),
], ids=["pax header bomb", "GNU sparse member", "pax sparse member", "deep name", "deep link"])
def test_verify_refuses_an_archive_that_would_exhaust_memory_or_recursion(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: Callable[[Path], None],
        says: str) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path / "scratch"))
    (tmp_path / "scratch").mkdir()
    archive = tmp_path / "evil.tar.gz"
    make(archive)
    before = snapshot(tmp_path)
    result = CliRunner().invoke(cli, ["verify", str(archive)])
    assert result.exit_code == 1, result.output
    assert len(result.stderr.splitlines()) == 1 and says in result.stderr, result.stderr
    assert not isinstance(result.exception, RecursionError)
    assert snapshot(tmp_path) == before
    with pytest.raises(BundlerError, match=says):
        safetree.extract(archive, tmp_path / "dest")


def test_a_tree_deeper_than_recursion_allows_on_disk_is_verified(tiny: Bundle) -> None:
    """A service can make a folder 1,500 deep: verify (integrity and portability) walks it."""
    fd = os.open(tiny.root / "app_v1", os.O_RDONLY)
    for _ in range(1500):
        os.mkdir("a", dir_fd=fd)
        deeper = os.open("a", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = deeper
    os.close(os.open("f", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
    os.close(fd)
    try:
        result = CliRunner().invoke(cli, ["verify", str(tiny.root)])
        assert result.exit_code == 1, result.output
        assert result.stderr == f"Error: {tiny.root}: 1 file(s) differ from the build\n"
        assert "added    app_v1/" + "a/" * 1500 + "f" in result.stdout
    finally:  # by hand: shutil.rmtree (pytest's cleanup) recurses too before Python 3.12
        walked = list(fsutil.walk(tiny.root / "app_v1" / "a"))
        for folder, _, files in reversed(walked):
            for name in files:
                os.unlink(os.path.join(folder, name))
            os.rmdir(folder)


# --- relocation writes within bounds (class 3)

def test_bin_start_refuses_a_relocation_that_would_multiply_a_file(tiny: Bundle) -> None:
    web = tiny.root / "app_v1" / "web.py"
    web.write_bytes(b"/abcd" * 200_000)
    tiny.relocation.write_text(json.dumps({"prefix": "/abcd", "files": ["app_v1/web.py"]}))
    with pytest.raises(BundlerError, match="refusing to relocate app_v1/web.py: it would grow "
                       "from 1000000 bytes"):
        relocation.relocate(tiny)
    assert web.read_bytes() == b"/abcd" * 200_000


def test_a_relocation_that_fits_its_ratio_but_not_the_disk_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fsutil, "SPARE_BYTES", 1 << 62)
    with pytest.raises(BundlerError, match="relocating a.txt needs 15 bytes and .* MiB free"):
        relocation.check_growth("a.txt", b"/srv/x/bin", b"/srv/x", b"/srv/longer", tmp_path)


@pytest.mark.parametrize("prefix", ["", "/", "/ab", "relative/x", "/srv//x", "/srv/x/",
                                    "/srv/./x", "/srv/x\n"])
def test_a_relocation_record_names_a_real_path(prefix: str) -> None:
    with pytest.raises(ValueError, match="relocation prefix"):
        Relocation.parse(json.dumps({"prefix": prefix, "files": []}))


@pytest.mark.parametrize("files", [["/etc/passwd"], ["../x"], ["a//b"], [""], "abc", [1]])
def test_a_relocation_record_names_files_inside_the_bundle(files: object) -> None:
    with pytest.raises(ValueError):
        Relocation.parse(json.dumps({"prefix": "/srv/x", "files": files}))


# --- damaged records: one line naming the file, verify reports them (class 9)

DAMAGED_RECORDS = [
    (".bundler/checksums.json", lambda text: text + "garbage\n", "Extra data"),
    (".bundler/checksums.json", lambda text: '{"files": []}', "AttributeError"),
    (".bundler/checksums.json", lambda text: "[]", "malformed"),
    (".bundler/checksums.json", lambda text: '{"files": {"a": 5}}', "malformed"),
    (".bundler/checksums.json", lambda text: "[" * 100_000, "RecursionError"),
    (".bundler/relocate.json", lambda text: '{"prefix": "", "files": []}', "relocation prefix"),
    (".bundler/relocate.json", lambda text: '{"prefix": "/srv/x", "files": ["/etc/passwd"]}',
     "not a path inside the bundle"),
    (".bundler/relocate.json", lambda text: text[:-3], "Expecting"),
]


@pytest.mark.parametrize("rel,damage,says", DAMAGED_RECORDS,
                         ids=[f"{r}-{i}" for i, (r, _, _) in enumerate(DAMAGED_RECORDS)])
def test_verify_reports_a_damaged_record_in_one_line(tiny: Bundle, rel: str,
                                                     damage: Callable[[str], str], says: str) -> None:
    path = tiny.root / rel
    path.write_text(damage(path.read_text()))
    result = CliRunner().invoke(cli, ["verify", str(tiny.root)])
    assert result.exit_code == 1, result.output
    assert result.stderr == f"Error: {tiny.root}: 1 damaged record(s)\n"
    damaged = [line for line in result.stdout.splitlines() if line.startswith("damaged")]
    assert len(damaged) == 1 and damaged[0].startswith(f"damaged  {path}: ") and says in damaged[0]
    doc = json.loads(CliRunner().invoke(cli, ["verify", "--json", str(tiny.root)]).stdout)
    assert not doc["ok"] and doc["damaged"][0].startswith(f"{path}: ")


@pytest.mark.parametrize("rel,damage,says", DAMAGED_RECORDS[:2] + DAMAGED_RECORDS[5:6],
                         ids=["checksums appended", "checksums files list", "relocate empty prefix"])
def test_apply_refuses_on_a_damaged_record_in_one_line(site: Site, tmp_path: Path, rel: str,
                                                       damage: Callable[[str], str], says: str) -> None:
    path = site.bundle.root / rel
    path.write_text(damage(path.read_text()))
    patch_file = _build(site, tmp_path, [GOOD], {})
    before = snapshot(site.root)
    for args in ([], ["--dry-run"]):
        result = _apply(patch_file, site.bundle.root) if not args else CliRunner().invoke(
            cli, ["apply", *args, str(patch_file), "--root", str(site.bundle.root)])
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith(f"Error: damaged record {path}: ")
        assert says in result.stderr and len(result.stderr.splitlines()) == 1
    assert snapshot(site.root) == before


@pytest.mark.parametrize("garbage", ["\n=garbage[[\n", "\nenvs = 3\n", "\nx = {a = [\n"])
def test_a_damaged_layout_record_is_one_line_for_status_and_verify(tiny: Bundle, garbage: str
                                                                   ) -> None:
    path = tiny.layout_record
    path.write_text(path.read_text() + garbage)
    for args in (["status", "--root", str(tiny.root)], ["verify", str(tiny.root)]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith(f"Error: damaged record {path}: not a layout")
        assert len(result.stderr.splitlines()) == 1


def test_status_still_works_with_damaged_runtime_records(tiny: Bundle) -> None:
    for path in (tiny.health_record, tiny.stopped, tiny.files_changed, tiny.history):
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"\xff{garbage")
    result = CliRunner().invoke(cli, ["status", "--root", str(tiny.root)])
    assert result.exit_code == 3 and "not running" in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    for path in (tiny.health_record, tiny.stopped, tiny.files_changed):
        assert f"warning: damaged record {path}: " in result.output, result.output
    doc = json.loads(CliRunner().invoke(cli, ["status", "--json", "--root", str(tiny.root)]).stdout)
    assert len(doc["damaged"]) == 3 and doc["processes"]


def test_a_manifest_that_is_no_utf8_is_one_line_for_every_command(site: Site, tmp_path: Path
                                                                  ) -> None:
    patch_file = _build(site, tmp_path, [GOOD], {})
    manifest = site.bundle.manifest
    manifest.write_bytes(manifest.read_bytes().replace(b'"tiny"', b'"t\xffny"', 1))
    line = manifest.read_bytes().split(b"\xff")[0].count(b"\n") + 1
    for args in (["status"], ["state"], ["apply", "--dry-run", str(patch_file)],
                 ["set", "web", "startsecs=2"], ["add-service", "w2", "--command", "python -m w",
                                                 "--code", "v1"]):
        result = CliRunner().invoke(cli, [*args, "--root", str(site.bundle.root)])
        assert result.exit_code == 1, result.output
        assert result.stderr == (f"Error: {manifest}:{line}: is not UTF-8 text (byte 0xff); "
                                 "TOML files are UTF-8\n")


def test_state_refuses_damaged_checksums_in_one_line(tiny: Bundle) -> None:
    tiny.checksums.write_bytes(b"\xff\xfe\x1b[2J")
    result = CliRunner().invoke(cli, ["state", "--root", str(tiny.root)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: damaged record {tiny.checksums}: 'utf-8' codec")
    assert len(result.stderr.splitlines()) == 1 and "\x1b" not in result.stderr


def test_a_generated_conf_file_that_is_no_utf8_is_written_anew(tiny: Bundle) -> None:
    manifest = Manifest.read(tiny.manifest)
    files, _ = transact._plan_files(tiny, manifest, manifest)
    for name, text in files.items():
        (tiny.programs / name).write_text(text or "")
    assert transact._plan_files(tiny, manifest, manifest)[0] == {}
    name = next(iter(files))
    (tiny.programs / name).write_bytes(b"\xff\xfe[program:web]\n")
    again, _ = transact._plan_files(tiny, manifest, manifest)
    assert again == {name: files[name]}
    assert transact._old_files(tiny, again)[name] == "\ufffd\ufffd[program:web]\n"


@pytest.mark.parametrize("rel", ["ABSOLUTE", "../outside/secret.txt",
                                 "app_v1/../../outside/secret.txt"])
def test_a_move_journal_naming_a_path_outside_is_damaged_and_nothing_is_removed(
        site: Site, rel: str) -> None:
    """.bundler/apply.json is written by whoever owns the bundle, and undone by root."""
    rel = str(site.root / "outside" / "secret.txt") if rel == "ABSOLUTE" else rel
    site.bundle.apply_journal.write_text(json.dumps(
        {"ops": [{"rel": rel, "put": "file", "existed": False}], "created": []}))
    before = snapshot(site.root)
    with pytest.raises(BundlerError, match=f"damaged record {site.bundle.apply_journal}: "):
        filemoves.undo(site.bundle)
    assert snapshot(site.root) == before


def test_a_move_journal_is_not_undone_through_a_link(site: Site) -> None:
    site.bundle.apply_journal.write_text(json.dumps(
        {"ops": [{"rel": "app_v1/data/secret.txt", "put": "file", "existed": False}],
         "created": []}))
    before = snapshot(site.root)
    with pytest.raises(BundlerError, match="reached through a link"):
        filemoves.undo(site.bundle)
    assert snapshot(site.root) == before


@pytest.mark.parametrize("key,value", [("log", "/var/log"), ("run", "../../run"), ("envs", ""),
                                       ("code", "../{project}"), ("code", "{nope}")])
def test_a_layout_record_that_leads_out_of_the_bundle_is_damaged(tiny: Bundle, key: str,
                                                                  value: str) -> None:
    """The layout says where bundler writes (logs, the pid file, the socket): root must not
    write outside the bundle because its owner edited layout.toml."""
    path = tiny.layout_record
    path.write_text("\n".join(line if not line.startswith(f"{key} =") else f"{key} = {value!r}"
                              for line in path.read_text().splitlines()) + "\n")
    result = CliRunner().invoke(cli, ["status", "--root", str(tiny.root)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: damaged record {path}: not a layout")
