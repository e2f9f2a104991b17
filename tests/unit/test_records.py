"""The records deployed bundles already hold, as bundler before the package layout wrote them
(these texts were produced by that code): each is read into its class and written back byte for
byte, so a patch that updates bundler changes no record, no config and no running service."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bundler.bundle import signing
from bundler.bundle.launchspec import LaunchSpec
from bundler.bundle.layout import Layout, load_layout
from bundler.bundle.logfaults import LogFault, LogFaults
from bundler.bundle.manifest import BuildRecord, BuiltCode, BuiltInterpreter, Manifest
from bundler.bundle.record import Record
from bundler.bundle.records import (
    Checksums,
    Entry,
    MonitorConfig,
    Origin,
    PatchRecord,
    Platform,
    Release,
    Relocation,
    RelocationJournal,
    ServerState,
    SiteDefaults,
)
from bundler.bundle.signing import Signature, TrustedKeys
from bundler.errors import BundlerError
from bundler.server.supervisor import SocketPath
from bundler.server.systemd import UnitRecord
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


def _key(seed: int, comment: str) -> str:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return signing.public_line(Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32), comment)


KEYS = (_key(1, "release"), _key(2, "ci"))
FAULT = LogFault("2024-05-01T12:00:00Z", "/b/log/api.log", "failing", "cannot rotate")
FAULT_LINE = ('{"at": "2024-05-01T12:00:00Z", "file": "/b/log/api.log", "state": "failing", '
              '"what": "cannot rotate"}\n')
# Each record and its text as the code before record.Record wrote it (the same texts).
TEXTS: list[tuple[Record, str]] = [
    (Origin("/build/.bundler-staging-1-x/box", "/home/me/box", {"base": "/opt/python3.11"}),
     '{\n "staging": "/build/.bundler-staging-1-x/box",\n "project": "/home/me/box",\n'
     ' "sources": {\n  "base": "/opt/python3.11"\n }\n}\n'),
    (Platform("x86_64", "2.28"), "x86_64 2.28 -\n"),
    (Platform("aarch64", "2.17", "2.17"), "aarch64 2.17 2.17\n"),
    (SiteDefaults({"b.toml": "b" * 64, "a/x.ini": "a" * 64}),
     '{\n "a/x.ini": "' + "a" * 64 + '",\n "b.toml": "' + "b" * 64 + '"\n}\n'),
    (ServerState("box", "M", "R", "C"), '{\n "state_format": 1,\n "bundle": "box",\n "manifest": "M",'
     '\n "release": "R",\n "checksums": "C"\n}\n'),
    (Release(SPEC + BUILD), SPEC + BUILD),
    (TrustedKeys(KEYS), f"{KEYS[0]}\n{KEYS[1]}\n"),
    (SocketPath("/run/bundler-0123456789abcdef.sock"), "/run/bundler-0123456789abcdef.sock\n"),
    (UnitRecord("bundler-box.service"), "bundler-box.service\n"),
    (Signature("patch", KEYS[0], b"\x01" * 64),
     '{\n "format": 1,\n "kind": "patch",\n "key": "' + KEYS[0] + '",\n "signature": "'
     + "AQEB" * 21 + 'AQ=="\n}\n'),
    (LaunchSpec(("-m", "probe", "a ;b"), {"NL": "l1\nl2", "\u00c9": "\u00fc"}),
     '{\n  "args": [\n    "-m",\n    "probe",\n    "a ;b"\n  ],\n  "environment": {\n'
     '    "NL": "l1\\nl2",\n    "\u00c9": "\u00fc"\n  }\n}\n'),
    (LogFaults((FAULT,)), FAULT_LINE),
    (RelocationJournal({"bin/activate": "/srv/b", "envs/c/bin/greet": "/srv/b"}),
     '{"file": "bin/activate", "prefix": "/srv/b"}\n{"file": "envs/c/bin/greet", "prefix": "/srv/b"}\n'),
    (load_layout(), 'envs = "envs"\netc = "etc"\nprograms = "etc/conf.d"\nsite_config = "etc/app"\n'
     'log = "log"\nrun = "run"\ncode = "{project}_{version}"\n'),
]


@pytest.mark.parametrize("record, text", TEXTS,
                         ids=[f"{type(r).__name__}-{i}" for i, (r, _) in enumerate(TEXTS)])
def test_each_record_writes_its_text_and_reads_it_back(record: Record, text: str,
                                                       tmp_path: Path) -> None:
    assert record.text() == text
    assert type(record).parse(text) == record
    record.write(tmp_path / "record")
    assert (tmp_path / "record").read_bytes() == text.encode()
    assert type(record).read(tmp_path / "record") == record


# A damaged record: the text, and what parsing it gives (ValueError: refused).
DAMAGED: list[tuple[type[Record], str, object]] = [
    (Checksums, '{"files": {"bin/x": {"exec": true}}}', ValueError),
    (Relocation, '{"files": []}', ValueError),
    (Origin, '{"staging": "/b"}', ValueError),
    (Platform, "x86_64\n", ValueError),
    (SiteDefaults, '["a.toml"]', ValueError),
    (ServerState, '{"state_format": 2}', ValueError),
    (Release, "[bundle\nname =", Release("[bundle\nname =")),  # any text: apply refuses it
    (TrustedKeys, f"# ours\n\n{KEYS[0]}\nssh-ed25519 nonsense\n", ValueError),
    (SocketPath, "\n", ValueError),
    (UnitRecord, "../etc/passwd\n", ValueError),
    (Signature, '{"format": 1, "kind": "patch", "key": "k", "signature": "not base64!"}', ValueError),
    (Signature, '{"format": 2, "kind": "patch", "key": "k", "signature": ""}', ValueError),
    (LaunchSpec, '{"args": "-m probe", "environment": {}}', ValueError),
    (LaunchSpec, '{"args": [], "environment": {"N": 1}}', ValueError),
    (LogFaults, FAULT_LINE + '{"x": 1}\n3\n{"at": "2024-05-01T12:00:01Z", "fi',
     LogFaults((FAULT,))),  # lines not ours, and one cut short, skipped
    (RelocationJournal,
     '{"file": "a", "prefix": "/srv/x"}\n{"file": "a", "prefix": "/srv/y"}\n{"file": "b", "pre',
     RelocationJournal({"a": "/srv/y"})),  # the last word on each file; a line cut short skipped
    (Layout, 'envs = "envs"\n', ValueError),
    (Layout, "envs = [", ValueError),
]


@pytest.mark.parametrize("cls, text, gives", DAMAGED,
                         ids=[f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(DAMAGED)])
def test_a_damaged_record_is_refused_or_read_for_what_it_holds(cls: type[Record], text: str,
                                                               gives: object) -> None:
    if gives is ValueError:
        with pytest.raises(ValueError):
            cls.parse(text)
    else:
        assert cls.parse(text) == gives


def test_records_kept_optional_read_as_none_or_empty_when_missing_or_unreadable(
        tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    assert Origin.read(missing) is None and Platform.read(missing) is None
    assert Release.read(missing) is None
    assert SiteDefaults.read(missing) == SiteDefaults({})
    assert TrustedKeys.read(missing) == TrustedKeys() and signing.trusted_keys(missing) == []
    assert RelocationJournal.read(missing) == RelocationJournal()
    (tmp_path / "platform").write_text("x86_64\n")
    assert Platform.read(tmp_path / "platform") is None  # bin/ launchers skip the check too
    (tmp_path / "platform").write_bytes(b"\xff 2.17 -\n")
    assert Platform.read(tmp_path / "platform") is None
    with pytest.raises(FileNotFoundError):
        Relocation.read(missing)  # a bundle has one: relocation.py says which is missing


def test_a_trusted_key_that_is_no_key_is_refused_with_its_file_and_line(tmp_path: Path) -> None:
    keys = tmp_path / "trusted_keys"
    keys.write_text(f"# ours\n{KEYS[0]}\nssh-ed25519 nonsense\n")
    with pytest.raises(BundlerError, match=f"^{keys}:3: 'ssh-ed25519 nonsense'"):
        signing.trusted_keys(keys)


def test_a_journal_grows_by_whole_records(tmp_path: Path) -> None:
    path = tmp_path / "log-faults.jsonl"
    recovered = LogFault("2024-05-01T12:01:00Z", "/b/log/api.log", "recovered", "can be written")
    LogFaults((FAULT,)).append(path)
    LogFaults((recovered,)).append(path)
    assert path.read_text() == FAULT_LINE + LogFaults((recovered,)).text()
    assert LogFaults.read(path) == LogFaults((FAULT, recovered))
