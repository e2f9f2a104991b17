"""Rendered configs, read back by supervisor's own parser: what it would run is what was asked."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from supervisor.datatypes import RestartUnconditionally
from supervisor.options import ServerOptions

from bundler.bundle.layout import load_layout
from bundler.bundle.render import Renderer, command_inline, env_value_inline, option_value
from bundler.errors import BundlerError
from bundler.spec.load import parse_spec

PYTHONS = {"base": "bin/python3", "pyocr": "envs/pyocr/bin/python"}


def spec_with(services: str, tmp: Path):
    text = f'''
[bundle]
name = "box"
version = "1"
project = "proj"
[envs.pyocr]
virtualenv = "base"
[code.v1]
path = "src"
pythonpath = [".", "lib"]
{services}
'''
    return parse_spec(text, tmp / "bundle.toml")


def render(services: str, root: Path):
    spec = spec_with(services, root.parent)
    (root / "envs" / "pyocr" / "bin").mkdir(parents=True)
    (root / "envs" / "pyocr" / "bin" / "gunicorn").write_text("#!/bin/sh\n")
    Renderer(spec, load_layout(), PYTHONS).write(root)
    return spec


def supervisor_view(root: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Program name -> supervisor's ProcessConfig, parsed from the rendered files."""
    monkeypatch.setenv("BUNDLER_SOCKET", str(root / "run" / "s.sock"))
    options = ServerOptions()
    options.configfile = str(root / "etc" / "supervisord.conf")
    options.process_config(do_usage=False)
    return {p.name: p for g in options.process_group_configs for p in g.process_configs}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "a dir" / "box"


def test_defaults_paths_and_interpreters(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    render('''
[services.web]
command = "gunicorn app:app -b 127.0.0.1:80"
python = "envs/pyocr"
code = "v1"
[services.worker]
command = "python -m worker"
code = "v1"
numprocs = 2
startsecs = 7
[groups.g]
programs = ["web"]
''', root)
    programs = supervisor_view(root, monkeypatch)
    assert sorted(programs) == ["web", "worker_00", "worker_01"]
    web, worker = programs["web"], programs["worker_00"]
    etc = f"{root}/etc/conf.d/../.."
    assert shlex.split(web.command) == [f"{etc}/envs/pyocr/bin/gunicorn", "app:app", "-b",
                                        "127.0.0.1:80"]
    assert shlex.split(worker.command) == [f"{etc}/bin/python3", "-m", "worker"]
    assert worker.directory == f"{etc}/proj_v1"
    assert worker.environment["PYTHONPATH"] == f"{etc}/proj_v1:{etc}/proj_v1/lib"
    assert worker.environment["PYTHONUNBUFFERED"] == "1"
    assert worker.environment["PYTHON_APP_CONF"] == f"{etc}/etc/app"
    assert (worker.startsecs, web.startsecs, web.startretries) == (7, 3, 5)
    assert web.autorestart is RestartUnconditionally
    assert web.stopasgroup and web.killasgroup and web.redirect_stderr
    assert web.stdout_logfile == f"{etc}/log/web.log"
    assert worker.stdout_logfile == f"{etc}/log/worker_00.log"
    assert web.stdout_logfile_maxbytes == 50 * 1024 * 1024 and web.stdout_logfile_backups == 10


def test_groups_are_rendered(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    render('''
[services.a]
command = "python -m a"
code = "v1"
[services.b]
command = "python -m b"
code = "v1"
[groups.pair]
programs = ["a", "b"]
priority = 5
''', root)
    monkeypatch.setenv("BUNDLER_SOCKET", "/tmp/x.sock")
    options = ServerOptions()
    options.configfile = str(root / "etc" / "supervisord.conf")
    options.process_config(do_usage=False)
    groups = {g.name: g for g in options.process_group_configs}
    assert set(groups) == {"pair"}
    assert sorted(p.name for p in groups["pair"].process_configs) == ["a", "b"]
    assert groups["pair"].priority == 5


NASTY_ARGS = ["100%", "a b", "it's", "x,y", "", "%(program_name)s", 'say "hi"', "#x", "$HOME"]
NASTY_ENV = {"PCT": "100% %(program_name)s", "COMMA": "a,b=c", "SQ": "it's", "EMPTY": "",
             "SPACES": "  two  ", "EQ": "k=v"}


def test_hard_values_written_inline_reach_the_process_unchanged(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    command = "python -m probe " + " ".join(shlex.quote(a) for a in NASTY_ARGS)
    env = ", ".join(f"{k} = {json.dumps(v)}" for k, v in NASTY_ENV.items())
    render(f'[services.n]\ncommand = {json.dumps(command)}\ncode = "v1"\n'
           f'environment = {{ {env} }}\n', root)
    n = supervisor_view(root, monkeypatch)["n"]
    assert "bundler.launch" not in n.command
    assert shlex.split(n.command)[3:] == NASTY_ARGS
    assert {k: n.environment[k] for k in NASTY_ENV} == NASTY_ENV


@pytest.mark.parametrize("args, env", [
    (["a ;b"], {}), (["tab\t#x"], {}), (["%(here)s"], {}), ([], {"H": "abc #def"}),
    ([], {"D": 'say "hi"'}), ([], {"N": "l1\nl2"}), ([], {"E": "'q'"}), ([], {"R": "%(here)s/x"})])
def test_values_supervisor_cannot_carry_go_through_the_launcher(
        root: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict) -> None:
    command = "python -m probe " + " ".join(shlex.quote(a) for a in args)
    env_toml = ", ".join(f"{k} = {json.dumps(v)}" for k, v in env.items())
    render(f'[services.n]\ncommand = {json.dumps(command)}\ncode = "v1"\n'
           f'environment = {{ {env_toml} }}\n', root)
    n = supervisor_view(root, monkeypatch)["n"]
    argv = shlex.split(n.command)
    etc = f"{root}/etc/conf.d"
    assert argv == [f"{etc}/../../bin/python3", "-I", "-m", "bundler.launch",
                    f"{etc}/n.launch.json", f"{etc}/../../bin/python3"]
    launch = json.loads((root / "etc" / "conf.d" / "n.launch.json").read_text())
    assert launch == {"args": ["-m", "probe", *args], "environment": env}


def test_the_launcher_execs_with_the_arguments_and_environment(tmp_path: Path) -> None:
    spec = tmp_path / "x.launch.json"
    args = ["-c", "import json, os, sys; print(json.dumps([sys.argv[1:], os.environ['H']]))",
            "a ;b", "%(here)s"]
    spec.write_text(json.dumps({"args": args, "environment": {"H": "abc #def"}}))
    out = subprocess.run([sys.executable, "-I", "-m", "bundler.launch", str(spec), sys.executable],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [["a ;b", "%(here)s"], "abc #def"]


@pytest.mark.parametrize("value, inline", [
    ("plain", True), ("a,b", True), ("100%", True), ("it's", True), ("x #y", False),
    ("x;y", True), ("x ;y", False), ('q"', False), ("'q", False), ("l\n", False)])
def test_env_value_inline_decisions(value: str, inline: bool) -> None:
    assert (env_value_inline(value) is not None) == inline


def test_command_inline_quotes_and_escapes() -> None:
    assert command_inline(["-m", "x", "a b", "50%"]) == "-m x 'a b' 50%%"
    assert command_inline(["a ;b"]) is None


def test_passthrough_options_that_would_be_cut_are_refused() -> None:
    assert option_value("exitcodes", [0, 2]) == "0,2"
    assert option_value("autostart", False) == "false"
    with pytest.raises(BundlerError, match="cannot be written"):
        option_value("user", "app ;x")


def test_no_absolute_build_path_in_generated_files(root: Path) -> None:
    render('[services.a]\ncommand = "python -m a"\ncode = "v1"\n', root)
    for path in [*(root / "etc").rglob("*"), *(root / "bin").iterdir()]:
        if path.is_file():
            assert str(root.parent) not in path.read_text(), path


def test_separate_stderr_gets_its_own_log(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    render('[services.e]\ncommand = "python -m e"\ncode = "v1"\nredirect_stderr = false\n', root)
    e = supervisor_view(root, monkeypatch)["e"]
    assert not e.redirect_stderr
    assert e.stderr_logfile == f"{root}/etc/conf.d/../../log/e.err.log"
