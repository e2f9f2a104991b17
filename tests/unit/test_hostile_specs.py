"""Hostile bundle.toml files, built with the real `bundler build`: each is refused in one line on
stderr that names the file and what is wrong, exit 1, and the project folder (and its
surroundings) stay byte for byte as they were: no dist/, no staging, no archive anywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bundler.cli import cli
from tests.unit.tiny import snapshot

GOOD = '''[bundle]
name = "shop"
version = "1.0"
[code.v1]
path = "src"
[services.web]
command = "python -m web"
code = "v1"
'''


def _with(service: str = "", bundle: str = "", extra: str = "", code: str = "") -> str:
    text = GOOD.replace('version = "1.0"\n', 'version = "1.0"\n' + bundle) \
        .replace('code = "v1"\n', 'code = "v1"\n' + service).replace('path = "src"\n',
                                                                     'path = "src"\n' + code)
    return text + extra


def _service(key: str, value: object) -> str:
    return _with(service=f"{key} = {json.dumps(value)}\n")


# (case, bundle.toml bytes or text, text the one line must contain)
CASES: list[tuple[str, str | bytes, str]] = [
    ("newline in the version", GOOD.replace('"1.0"', '"1.0\\n[inet_http_server]\\nport=*:9001"'),
     "line break"),
    ("a version that climbs out", GOOD.replace('"1.0"', '"1.0/../../x"'), "file names"),
    ("the version ..", GOOD.replace('"1.0"', '".."'), "file names"),
    ("a space in the version", GOOD.replace('"1.0"', '"1.0 beta"'), "file names"),
    ("newline in socket_group", _with(extra='[supervisor]\nsocket_group = "ops\\n[x]"\n'),
     "line break"),
    ("socket_group with a space", _with(extra='[supervisor]\nsocket_group = "wheel staff"\n'),
     "not a user or group name"),
    ("supervisor user injecting a section",
     _with(extra='[supervisor]\nuser = "root\\n[inet_http_server]"\n'), "line break"),
    ("service user with a space", _service("user", "bad user"), "not a user or group name"),
    ("exitcodes zero", _service("exitcodes", ["zero"]), "refused by supervisor"),
    ("stopsignal BOGUS", _service("stopsignal", "BOGUS"), "refused by supervisor"),
    ("process_name with an unknown expansion", _service("process_name", "%(bogus)s"),
     "refused by supervisor"),
    ("process_name with a colon", _service("process_name", "a:b"), "refused by supervisor"),
    ("process_name cut short", _with(service='numprocs = 2\nprocess_name = "w%(process_num)"\n'),
     "refused by supervisor"),
    ("umask 999", _service("umask", "999"), "refused by supervisor"),
    ("umask 7777", _service("umask", "7777"), "between 000 and 777"),
    ("negative startsecs", _service("startsecs", -5), "0 or more"),
    ("negative startretries", _service("startretries", -1), "0 or more"),
    ("negative stopwaitsecs", _service("stopwaitsecs", -1), "0 or more"),
    ("negative log backups", _service("stderr_logfile_backups", -1), "0 or more"),
    ("a billion processes", _service("numprocs", 1_000_000_000), "numprocs must be between"),
    ("no process", _service("numprocs", 0), "numprocs must be between"),
    ("a log size that is no size", _service("stdout_logfile_maxbytes", "lots"),
     "refused by supervisor"),
    ("two services share a log", _with(service="numprocs = 2\n", extra='[services.web_00]\n'
                                       'command = "python -m w"\ncode = "v1"\n'),
     "also service 'web'"),
    ("a dot in a service name", GOOD.replace("[services.web]", "[services.'web.v3']"), "no '.'"),
    ("a dot in a group name", _with(extra='[groups."g.1"]\nprograms = ["web"]\n'), "no '.'"),
    ("a 300-character service name", GOOD.replace("[services.web]", f"[services.{'w' * 300}]"),
     "at most 64"),
    ("a newline in the bundle name", GOOD.replace('"shop"', '"sh\\nop"'), "line break"),
    ("invalid UTF-8", GOOD.encode().replace(b'"1.0"', b'"1.0\xff"'), "not UTF-8"),
    ("invalid TOML", GOOD + "[services.web\n", "invalid TOML"),
    ("a key given twice", GOOD.replace('code = "v1"\n', 'code = "v1"\ncode = "v1"\n'),
     "invalid TOML"),
    ("a misspelt key", GOOD.replace("command =", "comand ="), "did you mean 'command'"),
    ("a service named like a key the launcher carries",
     GOOD.replace("[services.web]", "[services.command]") + 'umask = "0\\n22"\n', "line break"),
    ("a control character in a key", _with(service='"a\\u0001" = 1\n'), "control character"),
    ("pythonpath out of the code", _with(code='pythonpath = ["../x"]\n'), "inside the code folder"),
    ("http open to the world", _with(extra='[supervisor.http]\nport = 9001\nhost = "0.0.0.0"\n'),
     "allow_remote"),
    ("http host with a newline", _with(extra='[supervisor.http]\nport = 9001\n'
                                       'host = "127.0.0.1\\n[x]"\n'), "line break"),
    ("http host with a comment", _with(extra='[supervisor.http]\nport = 9001\nallow_remote = true\n'
                                       'host = "h ;x"\n'), "not a host name"),
    ("an environment name with a dash", _with(service='environment = { BAD-NAME = "1" }\n'),
     "environment variable name"),
    ("a service that sets bundler's token", _with(service='environment = { BUNDLER_TOKEN = "x" }\n'),
     "set by bundler"),
    ("a NUL in an environment value", _with(service='environment = { T = "a\\u0000b" }\n'),
     "NUL character"),
    ("autorestart sometimes", _service("autorestart", "sometimes"), "autorestart must be"),
    ("a health address with no port", _with(service='health = { tcp = "nohost" }\n'), "HOST:PORT"),
    ("an ftp webhook", _with(extra='[alerts]\nwebhook = "ftp://x"\n'), "http://"),
    ("an alert command with a newline", _with(extra='[alerts]\ncommand = "mail\\nrm -rf /"\n'),
     "line break"),
    ("an unknown format", _with(bundle='format = "zip"\n'), "is not one of"),
    ("a spec from the future", "spec_version = 99\n" + GOOD, "newer than this bundler"),
    ("code path /", GOOD.replace('path = "src"', 'path = "/"'), "is / folder"),
    ("code path that holds the output", GOOD.replace('path = "src"', 'path = "."'),
     "holds the output folder"),
    ("code with a private key", GOOD, "looks like a secret: deploy/id_rsa"),
    ("code with a .env", GOOD, "looks like a secret: .env"),
    ("a trusted key that is no key", _with(bundle='trusted_keys = ["ssh-ed25519 nonsense"]\n'),
     "not an OpenSSH public key"),
    ("a trusted keys file that is missing", _with(bundle='trusted_keys = ["keys/none.pub"]\n'),
     "cannot be read"),
]
SECRETS = {"code with a private key": "deploy/id_rsa", "code with a .env": ".env"}


@pytest.mark.parametrize("text,says", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_hostile_spec_is_refused_in_one_line_and_nothing_is_written(
        tmp_path: Path, text: str | bytes, says: str, request: pytest.FixtureRequest) -> None:
    project = tmp_path / "shop"
    (project / "src").mkdir(parents=True)
    (project / "src" / "web.py").write_text("print('hi')\n")
    case = request.node.callspec.id
    if case in SECRETS:
        (project / "src" / SECRETS[case]).parent.mkdir(parents=True, exist_ok=True)
        (project / "src" / SECRETS[case]).write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    spec = project / "bundle.toml"
    spec.write_bytes(text if isinstance(text, bytes) else text.encode())
    before = snapshot(tmp_path)
    result = CliRunner().invoke(cli, ["-C", str(project), "build"])
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and says in lines[0], result.stderr
    assert str(spec) in lines[0] or "code v1" in lines[0]
    assert snapshot(tmp_path) == before


def test_check_lists_what_each_code_version_leaves_out(tmp_path: Path) -> None:
    project = tmp_path / "shop"
    for rel in ("src/web.py", "src/.git/HEAD", "src/pkg/__pycache__/x.pyc", "src/big.bin"):
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text("x")
    (project / "src" / ".gitignore").write_text("*.bin\n")
    (project / "bundle.toml").write_text(GOOD)
    result = CliRunner().invoke(cli, ["-C", str(project), "check"])
    assert result.exit_code == 0, result.output
    assert "leaves out .gitignore: big.bin" in result.stdout
    assert "leaves out version control: .git" in result.stdout
    assert "leaves out a cache: pkg/__pycache__" in result.stdout


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40


def test_a_signing_key_the_bundle_would_not_trust_is_refused_before_building(
        tmp_path: Path) -> None:
    from bundler.bundle import signing

    project = tmp_path / "shop"
    (project / "src").mkdir(parents=True)
    signing.keygen(tmp_path / "release", "release")
    signing.keygen(tmp_path / "other", "other")
    (project / "release.pub").write_text((tmp_path / "release.pub").read_text())
    (project / "bundle.toml").write_text(_with(bundle='trusted_keys = ["release.pub"]\n'))
    check = CliRunner().invoke(cli, ["-C", str(project), "check"])
    fingerprint = signing.fingerprint((tmp_path / "release.pub").read_text().strip())
    assert check.exit_code == 0 and f"trusts key {fingerprint}" in check.stdout, check.output
    before = snapshot(tmp_path)
    result = CliRunner().invoke(cli, ["-C", str(project), "build", "--sign", str(tmp_path / "other")])
    assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1
    assert "not one of [bundle] trusted_keys" in result.stderr
    assert snapshot(tmp_path) == before
