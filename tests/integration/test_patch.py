"""Patches on a bundle unpacked at another path: small, applied, switched to; bad ones refused."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.conftest import Artifacts
from tests.integration.harness import Bundle

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
    proc = unpacked.cli("apply", str(artifacts.patch))
    assert proc.returncode == 0, proc.stderr
    assert (unpacked.root / "your_project_v4" / "service" / "sam" / "run.py").is_file()
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


def test_verify_reports_changed_files(unpacked: Bundle) -> None:
    assert unpacked.cli("verify").returncode == 0
    (unpacked.root / "your_project_v1" / "service" / "sam" / "run.py").write_text("tampered\n")
    (unpacked.root / "lib" / "extra.txt").write_text("dropped here\n")
    proc = unpacked.cli("verify")
    assert proc.returncode == 1
    assert "changed  your_project_v1/service/sam/run.py" in proc.stdout
    assert "added    lib/extra.txt" in proc.stdout


Members = dict[str, tuple[tarfile.TarInfo, bytes]]


def _rewrite(patch: Path, dest: Path, change: Callable[[dict, Members], None]) -> Path:
    """A copy of `patch` with its members (and patch.json) changed by `change`."""
    members: Members = {}
    with tarfile.open(patch) as tar:
        for info in tar:
            data = tar.extractfile(info).read() if info.isfile() else b""
            members[info.name] = (info, data)
    top = next(iter(members)).split("/")[0]
    meta = json.loads(members[f"{top}/patch.json"][1])
    change(meta, members)
    members[f"{top}/patch.json"] = (members[f"{top}/patch.json"][0], json.dumps(meta).encode())
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


@pytest.mark.parametrize("attack,message", [
    (_traversal, "is not a plain relative path"),
    (_link_out, "points out of the bundle"),
    (_bad_checksum, "does not match its checksum"),
    (_site_config, "which a patch may not touch"),
])
def test_a_malicious_patch_is_refused_with_nothing_written(
        unpacked: Bundle, artifacts: Artifacts, tmp_path: Path, attack, message: str) -> None:
    (unpacked.root / "etc" / "app" / "settings.ini").write_text("site setting\n")
    bad = _rewrite(artifacts.patch, tmp_path / "bad.patch.tar.gz", attack)
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
    assert proc.returncode == 1 and "through a link out of the bundle" in proc.stderr
    assert list(outside.iterdir()) == []


def test_a_patch_does_not_overwrite_local_changes(unpacked: Bundle, artifacts: Artifacts) -> None:
    meta = json.loads(_member(artifacts.patch, "patch.json"))
    replaced = next(rel for rel, base in meta["base"].items() if base is not None)
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
