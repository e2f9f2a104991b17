"""Patches on a bundle unpacked at another path: small, applied, switched to; bad ones refused."""

from __future__ import annotations

import getpass
import hashlib
import io
import json
import os
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from bundler.bundle import signing
from tests.integration.conftest import Artifacts
from tests.integration.harness import EXAMPLE, Bundle, bundler

pytestmark = pytest.mark.integration


def _tree(root: Path) -> dict[str, bytes | str]:
    """Every file and link of the bundle (but the lock file), to prove nothing was written."""
    found: dict[str, bytes | str] = {}
    for folder, dirs, files in os.walk(root):
        for name in files + dirs:
            path = Path(folder, name)
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = "-> " + os.readlink(path)
            elif path.is_file() and rel != ".bundler/lock":
                found[rel] = path.read_bytes()
            elif path.is_dir():
                found[rel] = "dir"
    return found


def test_code_only_patch_applies_and_is_switched_to(unpacked: Bundle, artifacts: Artifacts) -> None:
    assert artifacts.patch.stat().st_size < 100_000  # the code, not the bundle
    assert artifacts.archive.stat().st_size > 100 * artifacts.patch.stat().st_size
    unpacked.start()
    before = {name: pid for name, (_, pid) in unpacked.states().items()}
    verify = unpacked.cli("verify")
    assert "signature signed by SHA256:" in verify.stdout and "a key the bundle trusts" in verify.stdout
    dry = unpacked.cli("apply", "--dry-run", "--json", str(artifacts.patch))
    assert dry.returncode == 0, dry.stderr
    planned = json.loads(dry.stdout)
    assert planned["patch"] == str(artifacts.patch) and planned["conflicts"] == 0
    assert planned["files"] > 0 and planned["version"] and isinstance(planned["changes"], list)
    assert not (unpacked.root / "your_project_v4").exists()  # a dry run writes nothing
    proc = unpacked.cli("apply", str(artifacts.patch))
    assert proc.returncode == 0, proc.stderr
    assert (unpacked.root / "your_project_v4" / "service" / "sam" / "run.py").is_file()
    assert '"signed_by": "SHA256:' in (unpacked.root / ".bundler" / "history.jsonl").read_text()
    release = json.loads(unpacked.cli("status", "--json").stdout)["release"]
    assert (release["version"], release["patch"], release["by"], release["as_built"]) == \
        (planned["version"], artifacts.patch.name, getpass.getuser(), False)
    assert release["signed_by"].startswith("SHA256:")
    assert f"installed {release['at'].replace('T', ' ').replace('Z', ' UTC')} by " \
        in unpacked.cli("status").stdout.splitlines()[0]
    assert {name: pid for name, (_, pid) in unpacked.states().items()} == before  # nothing restarted
    (unpacked.root / "log" / "svc3.json").unlink()
    proc = unpacked.cli("switch", "svc3", "v4")
    assert proc.returncode == 0, proc.stderr
    report = unpacked.report("svc3")
    assert report["code"] == "v4"
    assert report["file"].startswith(f"{unpacked.root}/your_project_v4/")
    verify = unpacked.cli("verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    again = unpacked.cli("apply", str(artifacts.patch))  # applying twice changes nothing
    assert again.returncode == 0, again.stderr
    assert unpacked.cli("verify").returncode == 0


def test_releases_move_forward_and_keep_their_names(artifacts: Artifacts, tmp_path: Path) -> None:
    """The example at the archive's version: no patch of it, no second archive of that name;
    both refused in a moment, before anything is built."""
    assert artifacts.archive.name == "smartbox-2026.11.1.tar.gz"
    assert artifacts.patch.name == "smartbox-2026.11.2.patch.tar.gz"  # the fixture bumped it
    project = Path(shutil.copytree(EXAMPLE, tmp_path / "smartbox"))
    c, out = ["-C", str(project)], tmp_path / "out"
    unset = {"SOURCE_DATE_EPOCH": ""}
    same = bundler(*c, "build", "-o", str(out), "--patch-from", str(artifacts.archive), check=False)
    assert same.returncode == 1 and same.stdout == ""
    assert same.stderr == (f"Error: [bundle] version 2026.11.1 is the version of the release "
                           f"{artifacts.archive} holds: a patch needs a newer one; bump it with "
                           "`bundler version --bump patch` (makes it 2026.11.2) or edit [bundle] "
                           "version in bundle.toml\n")
    bundler(*c, "version", "2026.10.9")
    older = bundler(*c, "build", "-o", str(out), "--patch-from", str(artifacts.archive), check=False)
    assert older.returncode == 1
    assert "version 2026.10.9 is older than 2026.11.1" in older.stderr
    assert "`bundler version 2026.11.2`" in older.stderr
    bundler(*c, "version", "2026.11.1")
    out.mkdir()
    shutil.copy(artifacts.archive, out)
    again = bundler(*c, "build", "-o", str(out), check=False, env=unset)
    assert again.returncode == 1
    assert again.stderr.startswith(f"Error: {out / artifacts.archive.name} exists already and this "
                                   "build would differ from it")
    assert [p.name for p in out.iterdir()] == [artifacts.archive.name]
    assert (out / artifacts.archive.name).read_bytes() == artifacts.archive.read_bytes()


def test_verify_reports_changed_files(unpacked: Bundle) -> None:
    assert unpacked.cli("verify").returncode == 0
    (unpacked.root / "your_project_v1" / "service" / "sam" / "run.py").write_text("tampered\n")
    (unpacked.root / "lib" / "extra.txt").write_text("dropped here\n")
    proc = unpacked.cli("verify")
    assert proc.returncode == 1
    assert "changed  your_project_v1/service/sam/run.py" in proc.stdout
    assert "added    lib/extra.txt" in proc.stdout
    as_json = unpacked.cli("verify", "--json")
    assert as_json.returncode == 1
    doc = json.loads(as_json.stdout)
    assert doc["ok"] is False and doc["problems"] == ["2 file(s) differ from the build"]
    assert doc["integrity"]["changed"] == ["your_project_v1/service/sam/run.py"]
    assert doc["integrity"]["added"] == ["lib/extra.txt"] and doc["integrity"]["missing"] == []
    assert doc["portability"]["missing_libraries"] == {} and doc["portability"]["glibc"]


Members = dict[str, tuple[tarfile.TarInfo, bytes]]


def _rewrite(patch: Path, dest: Path, change: Callable[[dict, Members], None],
             key: Path | str | None = None) -> Path:
    """A copy of `patch` with its members (and patch.json) changed by `change`, signed again with
    `key`, left with its old signature (key "keep"), or with none."""
    members: Members = {}
    with tarfile.open(patch) as tar:
        for info in tar:
            data = tar.extractfile(info).read() if info.isfile() else b""
            members[info.name] = (info, data)
    top = next(iter(members)).split("/")[0]
    meta = json.loads(members[f"{top}/patch.json"][1])
    change(meta, members)
    raw = json.dumps(meta).encode()
    members[f"{top}/patch.json"] = (members[f"{top}/patch.json"][0], raw)
    signature = members.pop(f"{top}/patch.sig")
    if key == "keep":
        members[f"{top}/patch.sig"] = signature
    elif key is not None:
        text = signing.sign(signing.load_private(key), "patch", raw).text().encode()
        members[f"{top}/patch.sig"] = (signature[0], text)
    with tarfile.open(dest, "w:gz") as tar:
        for info, data in members.values():
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return dest


def _add_file(members: dict, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    members[name] = (info, data)


def _add_link(members: dict, name: str, target: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    members[name] = (info, b"")


def _top(members: dict) -> str:
    return next(iter(members)).split("/")[0]


def _traversal(meta: dict, members: dict) -> None:
    _add_file(members, f"{_top(members)}/files/../../../evil", b"x")


def _link_out(meta: dict, members: dict) -> None:
    _add_link(members, f"{_top(members)}/files/your_project_v4/escape", "../../../../../../etc")
    meta["links"]["your_project_v4/escape"] = "../../../../../../etc"


def _bad_checksum(meta: dict, members: dict) -> None:
    name = f"{_top(members)}/files/your_project_v4/service/sam/run.py"
    info, data = members[name]
    members[name] = (info, data + b"\nimport os; os.system('id')\n")


def _site_config(meta: dict, members: dict) -> None:
    data = b"overwritten\n"
    _add_file(members, f"{_top(members)}/files/etc/app/settings.ini", data)
    meta["files"]["etc/app/settings.ini"] = {"sha256": hashlib.sha256(data).hexdigest(),
                                             "relocatable": False,
                                             "checksum": {"sha256": "0", "exec": False}}


def _no_change(meta: dict, members: Members) -> None:
    pass


def _retarget(meta: dict, members: Members) -> None:
    meta["bundle"] = "payroll"


@pytest.mark.parametrize("change,key,message", [
    (_no_change, None, "it is not signed"),
    (_no_change, "other", "a key this bundle does not trust"),
    (_bad_checksum, "keep", "does not match its content"),
    (_retarget, "release", "a patch for bundle 'payroll'"),
])
def test_only_a_patch_signed_for_this_bundle_by_a_trusted_key_applies(
        unpacked: Bundle, artifacts: Artifacts, tmp_path: Path, change, key: str | None,
        message: str) -> None:
    """The round trip's other half: what an attacker can do without the release key."""
    signer: Path | str | None = {"release": artifacts.key, "keep": "keep"}.get(key or "")
    if key == "other":
        signer = tmp_path / "other"
        signing.keygen(signer, "other")
    bad = _rewrite(artifacts.patch, tmp_path / "bad.patch.tar.gz", change, signer)
    before = _tree(unpacked.root)
    proc = unpacked.cli("apply", str(bad))
    assert proc.returncode == 1, proc.stdout
    assert len(proc.stderr.splitlines()) == 1 and message in proc.stderr, proc.stderr
    assert _tree(unpacked.root) == before


@pytest.mark.parametrize("attack,message", [
    (_traversal, "is not a plain relative path"),
    (_link_out, "leads out of the tree"),
    (_bad_checksum, "does not match its checksum"),
    (_site_config, "a patch may not touch"),
])
def test_a_malicious_patch_is_refused_with_nothing_written(
        unpacked: Bundle, artifacts: Artifacts, tmp_path: Path, attack, message: str) -> None:
    (unpacked.root / "etc" / "app" / "settings.ini").write_text("site setting\n")
    bad = _rewrite(artifacts.patch, tmp_path / "bad.patch.tar.gz", attack, artifacts.key)
    before = _tree(unpacked.root)
    proc = unpacked.cli("apply", str(bad))
    assert proc.returncode == 1, proc.stdout
    assert message in proc.stderr and "nothing was changed" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert _tree(unpacked.root) == before
    assert not (unpacked.root.parent / "evil").exists()


def test_a_patch_is_not_written_through_a_link_out_of_the_bundle(
        unpacked: Bundle, artifacts: Artifacts, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (unpacked.root / "your_project_v4").symlink_to(outside)
    proc = unpacked.cli("apply", str(artifacts.patch))
    assert proc.returncode == 1 and "through the link 'your_project_v4'" in proc.stderr
    assert list(outside.iterdir()) == []


def test_a_patch_does_not_overwrite_local_changes(unpacked: Bundle, artifacts: Artifacts) -> None:
    meta = json.loads(_member(artifacts.patch, "patch.json"))
    # the patch only adds (builds are reproducible): a file it adds is already here, changed
    replaced = sorted(meta["files"])[0]
    assert meta["base"][replaced] is None
    (unpacked.root / replaced).parent.mkdir(parents=True, exist_ok=True)
    (unpacked.root / replaced).write_text("changed on the server\n")
    before = _tree(unpacked.root)
    proc = unpacked.cli("apply", str(artifacts.patch))
    assert proc.returncode == 1 and "not what it was built against" in proc.stderr
    assert replaced in proc.stderr
    assert _tree(unpacked.root) == before


def _member(archive: Path, name: str) -> bytes:
    with tarfile.open(archive) as tar:
        for info in tar:
            if info.name.endswith("/" + name):
                return tar.extractfile(info).read()
    raise AssertionError(f"{name} not in {archive}")
