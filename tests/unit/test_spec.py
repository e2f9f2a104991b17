from __future__ import annotations

from pathlib import Path

import pytest

from bundler.spec.checker import SpecError
from bundler.spec.load import load_spec, parse_spec
from bundler.spec.model import normalize_python

REPO = Path(__file__).resolve().parents[2]

HEAD = '''\
[bundle]
name = "box"
version = "1"

[envs.pyocr]
virtualenv = "base"

[code.v1]
path = "src"
'''


def parse(body: str, head: str = HEAD):
    return parse_spec(head + body, Path("/p/bundle.toml"))


def error_of(body: str, head: str = HEAD) -> str:
    with pytest.raises(SpecError) as info:
        parse(body, head)
    return str(info.value)


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_the_example_loads_with_its_services_envs_and_group() -> None:
    spec = load_spec(REPO / "examples" / "smartbox")
    assert spec.name == "smartbox" and spec.project == "your_project"
    assert spec.services["svc3"].python == "pyocr"
    assert spec.interpreters["pyocr"].virtualenv == "base"
    assert spec.services["svc1"].group == "sam" and spec.services["svc3"].group is None
    assert spec.services["svc1"].environment == {"PYTHON_APP_DEBUG": "false"}
    assert spec.services["svc3"].options == {"startsecs": 2}


@pytest.mark.parametrize("value, expected", [
    ("base", "base"), ("", "base"), ("pyocr", "pyocr"), ("envs/pyocr", "pyocr"),
    ("envs/pyocr/", "pyocr")])
def test_python_names_are_normalized(value: str, expected: str) -> None:
    assert normalize_python(value) == expected


@pytest.mark.parametrize("body, needle, message", [
    ('[services.a]\ncomand = "python x"\ncode = "v1"\n', "comand",
     "[services.a] unknown key 'comand' (did you mean 'command'?)"),
    ('[services.a]\ncommand = "python x"\ncode = "v1"\nnumprocs = "2"\n', "numprocs",
     "numprocs must be an integer, not a string ('2')"),
    ('[services.a]\ncommand = "python x"\ncode = "v1"\npython = "pyocrr"\n', "pyocrr",
     "python names 'pyocrr', which is neither 'base' nor an env (did you mean 'pyocr'?)"),
    ('[services.a]\ncommand = "python x"\ncode = "v9"\n', "v9",
     "code names version 'v9', which is not declared"),
    ('[services.a]\ncommand = "python x"\ncode = "v1"\nautostart = "yes"\n', "autostart",
     "autostart must be true or false, not a string ('yes')"),
    ('[services.a]\ncommand = "python x"\ncode = "v1"\nautorestart = "always"\n', "autorestart",
     'autorestart must be true, false or "unexpected"'),
    ('[services."bad name"]\ncommand = "python x"\ncode = "v1"\n', "bad name",
     "name 'bad name' is invalid"),
    ('[services.a]\ncommand = "python x"\ncode = "v1"\nenvironment = { "A-B" = "1" }\n',
     "environment", "environment variable name 'A-B' is invalid"),
    ('[services.a]\ncommand = "python x"\ncode = "v1"\nnumprocs = 2\nprocess_name = "w"\n',
     "process_name", "process_name must contain %(process_num)s"),
    ('[envs.legacy]\nconda = "/opt/conda/envs/legacy"\nvendor_libs = false\n', "vendor_libs =",
     "vendor_libs applies to copied CPythons"),
    ('[base]\npython = "/opt/py"\nconda = "/opt/conda"\n', "conda =",
     "needs one of python = PREFIX or conda = ENV_PREFIX, not both"),
    ('[base]\narchive = "python.tar.gz"\n', "archive =",
     'a standalone CPython archive is given as python = "path/to/cpython-'),
    ('[envs.both]\nvirtualenv = "base"\npython = "/opt/py"\n', "[envs.both]",
     "needs exactly one of virtualenv = ENV, python = PREFIX or conda = ENV_PREFIX"),
    ('[envs.nested]\nvirtualenv = "pyocr"\n', "virtualenv = \"pyocr\"",
     "virtualenv 'pyocr' is itself a virtualenv"),
    ('[code.v2]\npath = "a"\ngit = "."\n', "[code.v2]", "needs exactly one of path = DIR or git"),
    ('[code.v2]\npath = "a"\npythonpath = ["../x"]\n', "pythonpath",
     "pythonpath entry '../x' must stay inside the code folder"),
    ('[services.a]\ncommand = "python x"\ncode = "v1"\n[groups.g]\nprograms = ["a", "b"]\n',
     "programs", "programs names 'b', which is not a service"),
    ('[services.a]\ncommand = "python x"\ncode = "v1"\n[groups.a]\nprograms = ["a"]\n',
     "[groups.a]", "group 'a' has the same name as a service"),
    ('[services.a]\ncommand = "python x"\ncode = "v1"\n'
     '[groups.g]\nprograms = ["a"]\n[groups.h]\nprograms = ["a"]\n', '[groups.h]',
     "service 'a' is already in group 'g'"),
    ('[services.a]\ncommand = "  "\ncode = "v1"\n', "command", "command is empty"),
    ('[sevices.a]\ncommand = "x"\n', "[sevices.a]", "unknown key 'sevices' (did you mean 'services'?)"),
])
def test_errors_name_the_file_the_line_and_the_key(body: str, needle: str, message: str) -> None:
    text = HEAD + body
    error = error_of(body)
    assert message in error
    expected_line = line_of(text, needle)
    if needle == "[groups.h]":  # the offending key is the programs line under [groups.h]
        expected_line += 1
    assert error.startswith(f"/p/bundle.toml:{expected_line}: "), error


def test_missing_required_keys_and_bad_bundle_values() -> None:
    assert "is missing the required key 'name'" in error_of("", '[bundle]\nversion = "1"\n')
    fmt = error_of("", '[bundle]\nname = "b"\nversion = "1"\nformat = "tar.zstd"\n')
    assert fmt.startswith("/p/bundle.toml:4: ") and "(did you mean 'tar.zst'?)" in fmt
    newer = error_of("", 'spec_version = 99\n[bundle]\nname = "b"\nversion = "1"\n')
    assert "spec_version 99 is newer" in newer


def test_invalid_toml_and_duplicate_keys_report_their_line() -> None:
    error = error_of('[services.a]\ncommand = "x"\ncommand = "y"\n')
    assert error.startswith(f"/p/bundle.toml:{line_of(HEAD, 'path') + 3}: invalid TOML")
    broken = error_of('[services.a\ncommand = "x"\n')
    assert broken.startswith(f"/p/bundle.toml:{line_of(HEAD, 'path') + 1}: invalid TOML")


def test_environment_numbers_and_booleans_become_strings() -> None:
    spec = parse('[services.a]\ncommand = "python x"\ncode = "v1"\n'
                 'environment = { PORT = 8080, DEBUG = false, RATIO = 0.5 }\n')
    assert spec.services["a"].environment == {"PORT": "8080", "DEBUG": "false", "RATIO": "0.5"}


def test_missing_spec_file_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="run `bundler init`"):
        load_spec(tmp_path)
