"""The records deployed bundles already hold, as bundler before the package layout wrote them
(these texts were produced by that code): each is read into its class and written back byte for
byte, so a patch that updates bundler changes no record, no config and no running service."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bundler.bundle.records import (
    BuildRecord,
    BuiltCode,
    BuiltInterpreter,
    Checksums,
    Entry,
    Manifest,
    MonitorConfig,
    PatchRecord,
    Relocation,
)
from bundler.errors import BundlerError
from bundler.spec.model import Alerts, Health, Listen

CHECKSUMS = ('{\n"files": {\n"bin/python": {\n"link": "python3.11"\n},\n"bin/python3": {\n"sha256": '
             '"' + "a" * 64 + '",\n"exec": true\n},\n"lib/python3.11/__pycache__/x.cpython-311.pyc": '
             '{\n"sha256": "' + "b" * 64 + '",\n"exec": false,\n"source": "' + "c" * 32 + '"\n}\n}\n}\n')
RELOCATION = ('{\n "prefix": "/opt/b",\n "files": [\n  "bin/activate",\n  "envs/pyocr/pyvenv.cfg"\n'
              ' ],\n "binaries": {\n  "envs/c/bin/greet": 255\n }\n}\n')
MONITOR = '''{
  "bundle": "box",
  "version": "1",
  "services": {
    "api": {
      "health": {
        "probe": "tcp",
        "target": "127.0.0.1:9",
        "every": 2.0,
        "timeout": 3.0,
        "failures": 3
      },
      "max_rss": 67108864,
      "python": "bin/python3",
      "directory": "box_v1"
    }
  },
  "names": [
    "api",
    "plain"
  ],
  "supervisord_log": "log/supervisord.log",
  "alerts": {
    "webhook": null,
    "command": "logger",
    "on": [
      "fatal"
    ],
    "retries": 3,
    "timeout": 5.0
  },
  "metrics": {
    "port": 9464,
    "host": "127.0.0.1",
    "username": "admin"
  }
}
'''
SPEC = '''# the project's comment stays
spec_version = 1

[bundle]
name = "box"          # inline comment stays
version = "1"

[envs.pyocr]
virtualenv = "base"

[code.v1]
path = "src"
[code.v4]
path = "src4"
bytecode = true

[services.api]
command = "python -m api"
code = "v4"
'''
BUILD = '''
[build]
# Written by bundler build: what this bundle holds, resolved.
bundler_version = "0.1.0"
built_at = "2023-11-14T22:13:20Z"
spec_sha256 = "6450e32a3faba32abde85116a2736be7e74bc8169047c355ca045802dbcb077c"

[build.interpreters.base]
folder = "."
python = "bin/python3"
python_version = "3.11"

[build.interpreters.base.packages]
click = "8.1"
supervisor = "4.3.0"

[build.interpreters.pyocr]
folder = "envs/pyocr"
python = "envs/pyocr/bin/python"
python_version = "3.11"

[build.interpreters.pyocr.packages]

[build.code.v1]
folder = "box_v1"

[build.code.v4]
folder = "box_v4"
python_version = "3.11"
'''
PATCH = json.dumps({
    "format": 1, "prefix": "/build/.bundler-staging-1-x/box",
    "files": {"box_v4/api.py": {"sha256": "d" * 64, "relocatable": False,
                                "checksum": {"sha256": "e" * 64, "exec": False}},
              "envs/c/bin/greet": {"sha256": "f" * 64, "relocatable": True,
                                   "checksum": {"sha256": "0" * 64, "exec": True}, "capacity": 255}},
    "links": {"envs/c/bin/python": "python3.11"}, "remove": ["box_v3/old.py"],
    "base": {"box_v4/api.py": None, "envs/c/bin/greet": {"sha256": "1" * 64, "exec": True},
             "envs/c/bin/python": None, "box_v3/old.py": {"sha256": "2" * 64, "exec": False}},
    "manifest": SPEC + BUILD}, indent=1) + "\n"


def test_checksums_round_trip() -> None:
    checksums = Checksums.parse(CHECKSUMS)
    assert checksums.files["bin/python"] == Entry(link="python3.11")
    pyc = checksums.files["lib/python3.11/__pycache__/x.cpython-311.pyc"]
    assert (pyc.executable, pyc.source) == (False, "c" * 32)
    assert checksums.files["bin/python3"].executable
    assert checksums.text() == CHECKSUMS


def test_relocation_round_trip(tmp_path: Path) -> None:
    (tmp_path / "relocate.json").write_text(RELOCATION)
    reloc = Relocation.read(tmp_path / "relocate.json")
    assert reloc.prefix == "/opt/b" and "bin/activate" in reloc and "envs/c/bin/greet" in reloc
    assert "bin/python3" not in reloc and reloc.binaries == {"envs/c/bin/greet": 255}
    reloc.write(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_text() == RELOCATION
    assert Relocation("/x").text() == '{\n "prefix": "/x",\n "files": []\n}\n'  # no binaries key


def test_monitor_config_round_trip(tmp_path: Path) -> None:
    (tmp_path / "_monitor.json").write_text(MONITOR)
    config = MonitorConfig.read(tmp_path / "_monitor.json")
    assert config.services["api"].health == Health("tcp", "127.0.0.1:9", every=2.0)
    assert config.alerts == Alerts(command="logger", on=("fatal",))
    assert config.metrics == Listen(9464) and config.names == ("api", "plain")
    assert config.text() == MONITOR


def test_the_manifest_is_the_spec_as_written_plus_its_build_table(tmp_path: Path) -> None:
    manifest = Manifest.read(tmp_path / "bundle.toml", SPEC + BUILD)
    assert manifest.spec.services["api"].code == "v4"
    assert manifest.build == BuildRecord(
        "0.1.0", "2023-11-14T22:13:20Z",
        "6450e32a3faba32abde85116a2736be7e74bc8169047c355ca045802dbcb077c",
        {"base": BuiltInterpreter(".", "bin/python3", "3.11", {"click": "8.1", "supervisor": "4.3.0"}),
         "pyocr": BuiltInterpreter("envs/pyocr", "envs/pyocr/bin/python", "3.11", {})},
        {"v1": BuiltCode("box_v1"), "v4": BuiltCode("box_v4", "3.11")})
    assert manifest.build.pythons == {"base": "bin/python3", "pyocr": "envs/pyocr/bin/python"}
    assert Manifest.compose(SPEC, manifest.build) == SPEC + BUILD


def test_a_manifest_without_its_build_table_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BundlerError, match="not a built bundle's manifest"):
        Manifest.read(tmp_path / "bundle.toml", SPEC)
    damaged = SPEC + BUILD.replace('python = "bin/python3"\n', "")
    with pytest.raises(BundlerError, match=r"\[build\] table is damaged"):
        Manifest.read(tmp_path / "bundle.toml", damaged)


def test_patch_record_round_trip_and_refusals() -> None:
    patch = PatchRecord.parse(PATCH)
    assert patch.files["envs/c/bin/greet"].capacity == 255
    assert patch.files["box_v4/api.py"].checksum == Entry("e" * 64, executable=False)
    assert patch.base["box_v4/api.py"] is None and patch.remove == ("box_v3/old.py",)
    assert patch.text() == PATCH
    for damaged in ("[]", "not json", json.dumps({"format": 2}),
                    PATCH.replace('"relocatable": false', '"relocatable": false, "x": 1')
                    .replace('"checksum"', '"chksum"', 1)):
        with pytest.raises(ValueError):
            PatchRecord.parse(damaged)
