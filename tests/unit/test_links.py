"""`bundler verify` reports links that lead out of the bundle, or out of their code folder, once
followed as the kernel would; links the site owns (log/, etc/app/) and links inside pass."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from bundler.bundle import integrity, links
from bundler.bundle.tree import Bundle
from bundler.cli import cli
from tests.unit.tiny import make_tiny


@pytest.fixture
def tiny(tmp_path: Path) -> Bundle:
    bundle = make_tiny(tmp_path / "tiny")
    (bundle.root / "lib").mkdir()
    (bundle.root / "lib" / "libx.so").write_text("")
    (bundle.root / "app_v1" / "a").mkdir()
    os.symlink("..", bundle.root / "app_v1" / "a" / "up")  # the code folder itself: inside
    return bundle


OUT = [("app_v1/relssh", "../../../home/.ssh", "out of its code folder app_v1"),
       ("app_v1/shared", "../lib", "out of its code folder app_v1"),   # inside the bundle only
       ("app_v1/abs", "/etc", "out of its code folder app_v1"),
       ("app_v1/via", "a/up/..", "out of its code folder app_v1"),     # lexically app_v1
       ("app_v1/loop", "loop", "out of its code folder app_v1"),
       ("lib/out", "../..", "out of the bundle"), ("bin/etc", "/etc", "out of the bundle"),
       ("lib/chain", "libz", "out of the bundle")]                     # libz -> ../../x


@pytest.mark.parametrize(("rel", "target", "where"), OUT)
def test_a_link_leading_out_is_reported_by_verify(tiny: Bundle, rel: str, target: str,
                                                  where: str) -> None:
    (tiny.root / rel).parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, tiny.root / rel)
    if rel == "lib/chain":
        os.symlink("../../x", tiny.root / "lib" / "libz")
    integrity.write(tiny)
    found = links.leading_out(tiny)
    assert found[rel] == f"{target}, {where}"
    result = CliRunner().invoke(cli, ["verify", str(tiny.root)])
    assert result.exit_code == 1
    assert f"link      {rel} -> {target}, {where}" in result.stdout
    assert result.stderr.count("\n") == 1 and "link(s) lead out of the bundle or their code " \
        "folder" in result.stderr


def test_links_inside_and_links_the_site_owns_pass(tiny: Bundle) -> None:
    os.symlink("web.py", tiny.root / "app_v1" / "alias.py")
    (tiny.root / "bin").mkdir(exist_ok=True)
    os.symlink("../lib/libx.so", tiny.root / "bin" / "x")
    os.symlink("/var/log/app", tiny.root / "log" / "archive")     # the site's: not looked at
    os.symlink("/etc/ssl/certs", tiny.root / "etc" / "app" / "certs")
    integrity.write(tiny)
    assert links.leading_out(tiny) == {}
    result = CliRunner().invoke(cli, ["verify", str(tiny.root)])
    assert "link " not in result.stdout and "lead out" not in result.output


def test_verify_of_an_archive_reports_a_link_out_of_the_bundle(tiny: Bundle, tmp_path: Path) -> None:
    os.symlink("../../neighbour", tiny.root / "app_v1" / "next")  # stays in the unpacking folder
    integrity.write(tiny)
    archive = tmp_path / "tiny.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tiny.root, arcname="tiny")
    result = CliRunner().invoke(cli, ["verify", str(archive)])
    assert result.exit_code == 1, result.output
    assert "link      app_v1/next -> ../../neighbour, out of its code folder app_v1" in result.stdout


def test_a_link_with_control_characters_is_shown_escaped(tiny: Bundle) -> None:
    os.symlink("../../\x1b[2J", tiny.root / "lib" / "odd\x1b")
    (tiny.root / "lib" / "new\x1b").write_text("")  # added since the build
    result = CliRunner().invoke(cli, ["verify", str(tiny.root)])
    assert "link      'lib/odd\\x1b' -> '../../\\x1b[2J, out of the bundle'" in result.stdout
    assert "\x1b" not in result.output


def test_without_a_readable_manifest_links_are_held_to_the_bundle(tiny: Bundle) -> None:
    os.symlink("../lib", tiny.root / "app_v1" / "shared")
    tiny.manifest.write_text("not = [toml")
    assert links.code_folders(tiny) == []
    assert links.leading_out(tiny) == {}
    os.symlink("../..", tiny.root / "app_v1" / "out")
    assert links.leading_out(tiny) == {"app_v1/out": "../.., out of the bundle"}
