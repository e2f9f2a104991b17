"""Patch logic on a tiny bundle tree: manifest merge, path rules, and undo after a failure."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest
import tomlkit

from bundler.build import patch as make_patch
from bundler.bundle import elf, integrity
from bundler.bundle.records import PatchRecord, Platform
from bundler.bundle.safetree import check_name
from bundler.bundle.tree import Bundle
from bundler.errors import BundlerError
from bundler.server import apply as patch
from bundler.server import filemoves
from bundler.spec.live import LiveManifest
from tests.unit.tiny import MANIFEST
from tests.unit.tiny import files_of as _tree


def _patch(tmp_path: Path, bundle: Bundle, files: dict[str, bytes],
           site: dict[str, bytes] | None = None, manifest: str | None = None,
           platform: str = "") -> Path:
    """A patch that adds code v2 (its files as given) to the tiny bundle, with default files
    for etc/app/ (`site`) and another manifest when given."""
    new_manifest = MANIFEST.replace('[services.web]', '[code.v2]\npath = "src2"\n[services.web]') \
        + '[build.code.v2]\nfolder = "app_v2"\n'
    new_manifest = new_manifest.replace('version = "1"', 'version = "2"')
    stage = tmp_path / "stage" / "tiny-2.patch"
    meta: dict = {"format": PatchRecord.FORMAT, "prefix": "/build/tiny", "files": {}, "links": {},
                  "remove": [], "base": {}, "manifest": new_manifest, "bundle": "tiny"}
    for rel, data in files.items():
        (stage / "files" / rel).parent.mkdir(parents=True, exist_ok=True)
        (stage / "files" / rel).write_bytes(data)
        entry = {"sha256": hashlib.sha256(data).hexdigest(), "exec": False}  # checksums.json's
        meta["files"][rel] = {"sha256": entry["sha256"], "relocatable": False, "checksum": entry}
        meta["base"][rel] = None
    for rel, data in (site or {}).items():
        (stage / "site" / rel).parent.mkdir(parents=True, exist_ok=True)
        (stage / "site" / rel).write_bytes(data)
        meta.setdefault("site", {})[rel] = hashlib.sha256(data).hexdigest()
    if manifest is not None:
        meta["manifest"] = manifest
    if platform:
        meta["platform"] = platform
    (stage / "patch.json").write_text(json.dumps(meta))
    archive = tmp_path / "tiny-2.patch.tar.gz"
    archive.unlink(missing_ok=True)
    shutil.rmtree(stage.parent / "done", ignore_errors=True)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(stage, arcname=stage.name)
    shutil.move(str(stage), str(stage.parent / "done"))  # the next patch stages afresh
    return archive


def test_apply_adds_the_code_and_merges_the_manifest(tiny: Bundle, tmp_path: Path) -> None:
    source = _patch(tmp_path, tiny, {"app_v2/web.py": b"print('v2')\n", "app_v2/util.py": b""})
    done = patch.apply(tiny, source)
    assert done.files == 2
    assert (tiny.root / "app_v2" / "web.py").read_text() == "print('v2')\n"
    manifest = tomlkit.parse((tiny.root / "bundle.toml").read_text())
    assert manifest["services"]["web"]["code"] == "v1"  # services do not move
    assert manifest["build"]["code"]["v2"]["folder"] == "app_v2"
    assert integrity.verify(tiny).clean
    assert not tiny.apply_journal.exists() and not tiny.apply_backup.exists()


def test_a_failure_half_way_leaves_the_bundle_as_it_was(tiny: Bundle, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    source = _patch(tmp_path, tiny, {"app_v2/a.py": b"a", "app_v2/b.py": b"b", "app_v2/c.py": b"c"})
    before = _tree(tiny.root)
    real_replace, calls = os.replace, []

    def failing_replace(src: str, dst: str) -> None:
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(patch.os, "replace", failing_replace)
    with pytest.raises(OSError):
        patch.apply(tiny, source)
    monkeypatch.undo()
    assert _tree(tiny.root) == before
    assert not (tiny.root / "app_v2").exists()


def test_an_interrupted_apply_is_undone_by_the_next_one(tiny: Bundle, tmp_path: Path) -> None:
    before = _tree(tiny.root)
    tiny.apply_backup.mkdir()
    (tiny.root / "app_v2").mkdir()
    (tiny.root / "app_v2" / "a.py").write_text("half")
    tiny.apply_journal.write_text(json.dumps(
        {"ops": [{"rel": "app_v2/a.py", "put": "file", "existed": False}], "created": ["app_v2"]}))
    assert filemoves.undo(tiny)
    assert _tree(tiny.root) == before and not (tiny.root / "app_v2").exists()


@pytest.mark.parametrize("rel,ok", [
    ("app_v2/web.py", True), ("../x", False), ("/etc/passwd", False), ("a/../../b", False),
    ("a//b", False), ("./a", False), ("", False),
])
def test_safe_relative_paths(rel: str, ok: bool) -> None:
    assert (check_name(rel) is None) is ok


def _take_release(server: str, release: str) -> str:
    live = LiveManifest.parse(server, Path("bundle.toml"))
    live.take_release(LiveManifest.parse(release, Path("release.toml")))
    return live.text()


def test_merge_manifest_takes_code_and_envs_and_leaves_services_to_converge() -> None:
    server = MANIFEST.replace('code = "v1"', 'code = "v1"\n# a comment kept')
    new = MANIFEST.replace('[services.web]', '[code.v2]\npath = "src2"\n[services.web]') \
        .replace('code = "v1"\n', 'code = "v2"\n').replace('version = "1"', 'version = "2"') \
        + '[services.api]\ncommand = "python -m api"\ncode = "v2"\n'
    merged = _take_release(server, new)
    doc = tomlkit.parse(merged)
    assert doc["services"]["web"]["code"] == "v1" and "api" not in doc["services"]
    assert "v2" in doc["code"] and doc["bundle"]["version"] == "2"
    assert "# a comment kept" in merged


def test_old_checksums_from_an_archive_a_tree_or_a_file(tiny: Bundle, tmp_path: Path) -> None:
    expected = integrity.load(tiny.root)
    archive = tmp_path / "tiny.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tiny.root, arcname="tiny")
    assert make_patch.old_checksums(archive).files == expected
    assert make_patch.old_checksums(tiny.root).files == expected
    assert make_patch.old_checksums(tiny.checksums).files == expected
    (tmp_path / "junk.tar.gz").write_bytes(b"not an archive")
    with pytest.raises(BundlerError, match="not a readable tar archive"):
        make_patch.old_checksums(tmp_path / "junk.tar.gz")


def test_merge_takes_the_default_base_of_a_spec_without_one() -> None:
    server = MANIFEST.replace('[base]\npython = "current"\n', '[base]\npython = "/opt/py"\n')
    new = MANIFEST.replace('[base]\npython = "current"\n', "").replace('version = "1"', 'version = "2"')
    merged = _take_release(server, new)
    doc = tomlkit.parse(merged)
    assert "base" not in doc and doc["bundle"]["version"] == "2"
    assert doc["build"]["code"]["v1"]["folder"] == "app_v1"


def test_site_defaults_are_added_updated_and_never_overwrite_a_change(tiny: Bundle,
                                                                      tmp_path: Path) -> None:
    app = tiny.root / "etc" / "app"
    patch.apply(tiny, _patch(tmp_path, tiny, {}, {"app.toml": b"a = 1\n", "db/db.toml": b"b = 1\n"}))
    assert (app / "app.toml").read_text() == "a = 1\n" and (app / "db/db.toml").exists()
    (app / "db/db.toml").write_text("b = 'this server'\n")  # the site's own setting
    (app / "local.toml").write_text("mine\n")
    done = patch.apply(tiny, _patch(tmp_path, tiny, {}, {
        "app.toml": b"a = 2\n", "db/db.toml": b"b = 2\n", "new.toml": b"n = 1\n"}))
    assert {c.rel: c.action for c in done.site} == {"app.toml": "update", "db/db.toml": "keep",
                                                    "new.toml": "add"}
    assert (app / "app.toml").read_text() == "a = 2\n"
    assert (app / "db/db.toml").read_text() == "b = 'this server'\n"
    assert (app / "db/db.toml.new").read_text() == "b = 2\n"
    assert (app / "new.toml").read_text() == "n = 1\n" and (app / "local.toml").exists()
    again = patch.apply(tiny, _patch(tmp_path, tiny, {}, {"app.toml": b"a = 2\n"}))
    assert [c.action for c in again.site] == ["same"] and (app / "new.toml").exists()


def test_site_defaults_are_never_written_through_a_link(tiny: Bundle, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.toml").write_text("theirs\n")
    app = tiny.root / "etc" / "app"
    (app / "linked.toml").symlink_to(outside / "x.toml")
    done = patch.apply(tiny, _patch(tmp_path, tiny, {}, {"linked.toml": b"ours\n"}))
    assert [c.action for c in done.site] == ["keep"]
    assert (outside / "x.toml").read_text() == "theirs\n"
    assert (app / "linked.toml").is_symlink() and (app / "linked.toml.new").read_text() == "ours\n"
    (app / "sub").symlink_to(outside)
    before = _tree(tmp_path)
    with pytest.raises(BundlerError, match="through the link"):
        patch.apply(tiny, _patch(tmp_path, tiny, {}, {"sub/evil.toml": b"x\n"}))
    assert not (outside / "evil.toml").exists()
    assert {k: v for k, v in _tree(tmp_path).items() if "stage" not in k and "patch" not in k} \
        == {k: v for k, v in before.items() if "stage" not in k and "patch" not in k}


RELEASE_2 = MANIFEST.replace('[services.web]', '[code.v2]\npath = "src2"\n[services.web]') \
    .replace('code = "v1"\n', 'code = "v2"\n', 1).replace('version = "1"', 'version = "2"') \
    + '[services.api]\ncommand = "python -m api"\ncode = "v2"\n[build.code.v2]\nfolder = "app_v2"\n'


def _services(bundle: Bundle) -> dict:
    return tomlkit.parse(bundle.manifest.read_text()).unwrap()["services"]


def test_apply_merges_the_release_with_the_servers_own_changes(tiny: Bundle, tmp_path: Path) -> None:
    from bundler.server import services

    (tiny.root / "bin").mkdir()
    (tiny.root / "bin" / "python3").touch()  # what check_runnable looks for
    tiny.release_record.write_text(MANIFEST)  # as the build leaves it
    services.set_keys(tiny, "web", {"environment.MODE": "site"}, [], 5)  # the operator's change
    source = _patch(tmp_path, tiny, {"app_v2/web.py": b"v2\n"}, manifest=RELEASE_2)
    before = _tree(tiny.root)
    dry = patch.apply(tiny, source, dry_run=True)
    assert [m.describe() for m in dry.merged if m.changes] == \
        ["service api: added", "service web: code: v1 -> v2"]
    assert _tree(tiny.root) == before
    done = patch.apply(tiny, source)
    assert done.outcome is not None and not done.outcome.live  # no supervisord: config only
    assert _services(tiny) == {
        "web": {"command": "python -m web", "code": "v2", "python": "base",
                "environment": {"MODE": "site"}},
        "api": {"command": "python -m api", "code": "v2", "python": "base"}}
    assert tiny.release_record.read_text() == RELEASE_2
    assert [(e.change.service, e.change.change) for e in done.entries if e.change] == \
        [("api", "added"), ("web", "code: v1 -> v2")]
    rolled = services.rollback(tiny, "web", 5)[1]
    assert rolled[0].change is not None and rolled[0].change.change == "code: v2 -> v1"
    assert _services(tiny)["web"]["code"] == "v1"


def test_a_conflict_refuses_the_patch_unless_a_side_is_preferred(tiny: Bundle,
                                                                 tmp_path: Path) -> None:
    from bundler.server import services

    (tiny.root / "bin").mkdir()
    (tiny.root / "bin" / "python3").touch()
    tiny.release_record.write_text(MANIFEST)
    services.set_keys(tiny, "web", {"command": "python -m web --here"}, [], 5)
    release = RELEASE_2.replace('command = "python -m web"', 'command = "python -m web --release"')
    source = _patch(tmp_path, tiny, {"app_v2/web.py": b"v2\n"}, manifest=release)
    before = _tree(tiny.root)
    with pytest.raises(BundlerError, match=r"CONFLICT: changed here and by the release: command "
                       r"\(here python -m web --here, release python -m web --release\)"):
        patch.apply(tiny, source)
    assert _tree(tiny.root) == before
    files_only = patch.apply(tiny, source, files_only=True)
    assert files_only.outcome is None and (tiny.root / "app_v2" / "web.py").exists()
    assert _services(tiny)["web"]["command"] == "python -m web --here"
    assert tiny.release_record.read_text() == MANIFEST  # the services did not converge yet
    patch.apply(tiny, source, prefer="release")
    assert _services(tiny)["web"] == {"command": "python -m web --release", "code": "v2",
                                      "python": "base"}


def test_apply_says_what_a_patch_does_not_change(tiny: Bundle, tmp_path: Path) -> None:
    release = RELEASE_2 + "[metrics]\nport = 9100\n"
    source = _patch(tmp_path, tiny, {"app_v2/web.py": b"v2\n"}, manifest=release)
    dry = patch.apply(tiny, source, dry_run=True)
    assert dry.notes == ["the release changes [metrics], which a patch does not: ship a full "
                         "archive for it"]


def test_a_servers_state_is_a_build_to_patch_against(tiny: Bundle, tmp_path: Path) -> None:
    from bundler.server.state import state

    tiny.release_record.write_text(MANIFEST.replace('version = "1"', 'version = "0"'))
    found = tmp_path / "state.json"
    found.write_text(state(tiny).text())
    old = make_patch.old_checksums(found)
    assert old.files == integrity.load(tiny.root)
    assert old.digest == hashlib.sha256(tiny.checksums.read_bytes()).hexdigest()
    assert old.manifest == tiny.release_record.read_text()
    found.write_text(json.dumps({"state_format": 1, "bundle": "tiny"}))
    with pytest.raises(BundlerError, match="not a readable output of bin/bundler state"):
        make_patch.old_checksums(found)


def test_a_dry_run_prints_the_plan_and_exits_1_on_a_conflict(tiny: Bundle, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from bundler.cli import cli
    from bundler.server import services

    (tiny.root / "bin").mkdir()
    (tiny.root / "bin" / "python3").touch()
    tiny.release_record.write_text(MANIFEST)
    release = RELEASE_2.replace('command = "python -m web"', 'command = "python -m web --release"')
    source = _patch(tmp_path, tiny, {"app_v2/web.py": b"v2\n"}, manifest=release)
    dry = ["apply", "--dry-run", str(source), "--root", str(tiny.root)]
    clean = CliRunner().invoke(cli, dry)
    assert clean.exit_code == 0, clean.output
    assert clean.stdout == ("tiny-2.patch.tar.gz: would write 1 file(s), removed 0; bundle version 2\n"
                            "  service api: added\n  service web: code: v1 -> v2; command: python "
                            "-m web -> python -m web --release\n")
    services.set_keys(tiny, "web", {"command": "python -m web --here"}, [], 5)
    before = _tree(tiny.root)
    conflict = CliRunner().invoke(cli, dry)
    assert conflict.exit_code == 1
    assert "  service web: CONFLICT: changed here and by the release: command" in conflict.stdout
    assert "1 conflict(s): apply refuses this patch unless --prefer" in conflict.stderr
    assert _tree(tiny.root) == before


def test_a_release_this_server_cannot_run_is_refused_and_one_it_can_is_recorded(
        tiny: Bundle, tmp_path: Path) -> None:
    machine, have = os.uname().machine, ".".join(map(str, elf.host_glibc()))
    before = _tree(tiny.root)
    for line, said in ((f"{machine} 2.99 2.99\n", "with glibc 2.99 or newer, and this server is"),
                       ("s390x 2.17 -\n", "the release needs s390x with glibc 2.17")):
        source = _patch(tmp_path, tiny, {"app_v2/web.py": b"v2\n"}, platform=line)
        with pytest.raises(BundlerError, match=said) as info:
            patch.apply(tiny, source)
        assert "nothing was changed" in str(info.value) and f"glibc {have}" in str(info.value)
        assert _tree(tiny.root) == before
    Platform(machine, "2.30", "").write(tiny.platform)  # what the bundle's own files need
    patch.apply(tiny, _patch(tmp_path, tiny, {"app_v2/web.py": b"v2\n"},
                             platform=f"{machine} 2.17 2.17\n"))
    assert Platform.read(tiny.platform) == Platform(machine, "2.30", "2.17")


def test_a_patch_build_must_move_the_version_forward(tiny: Bundle, tmp_path: Path) -> None:
    archive = tmp_path / "tiny-1.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tiny.root, arcname="tiny")
    old = make_patch.old_checksums(archive)
    assert old.version == "1"
    assert make_patch.check_forward("2", old, archive) is None
    assert make_patch.check_forward("1.0.1", old, archive) is None
    refused = {
        "1": f"[bundle] version 1 is the version of the release {archive} holds: a patch needs a "
             "newer one; bump it with `bundler version --bump major` (makes it 2) or edit "
             "[bundle] version in bundle.toml",
        "1.0": f"[bundle] version 1.0 is the version of the release {archive} holds (1)",
        "0.9": f"[bundle] version 0.9 is older than 1, the release {archive} holds: a patch must "
               "move forward; set a newer one with `bundler version 2`",
        "blue": f"cannot tell whether [bundle] version blue comes after 1, the release {archive} "
                "holds: a patch must move forward",
    }
    for version, said in refused.items():
        with pytest.raises(BundlerError) as info:
            make_patch.check_forward(version, old, archive)
        assert str(info.value).startswith(said) and "\n" not in str(info.value)
    calendar = make_patch.OldBuild({}, "", MANIFEST.replace('version = "1"', 'version = "2026.11.1"'))
    with pytest.raises(BundlerError, match=r"--bump patch` \(makes it 2026\.11\.2\)"):
        make_patch.check_forward("2026.11.1", calendar, archive)
    alone = make_patch.old_checksums(tiny.checksums)  # a checksums.json says no version
    assert alone.version is None
    assert "does not say which release it is" in (make_patch.check_forward("1", alone,
                                                                           tiny.checksums) or "")
