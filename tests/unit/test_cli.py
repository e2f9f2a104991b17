from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bundler.build import floor
from bundler.build.interpreters import find_python, probe
from bundler.cli import cli, make_cli
from bundler.cli.options import BUILD_COMMANDS, build_machine_only
from bundler.spec.load import load_spec
from tests.pythons import PY37
from tests.unit.tiny import make_tiny

COMMANDS = sorted(cli.commands)


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_explains_itself(command: str) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0
    assert len(result.output.splitlines()) > 4


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_shows_an_example(command: str) -> None:
    help = invoke(command, "--help").output
    examples = help.split("Example", 1)[1].splitlines()[1:] if "Example" in help else []
    assert any(f"bundler {command}" in line or f"bin/{command}" in line for line in examples), help


def test_help_lists_project_and_bundle_commands_apart_and_never_cuts_a_line() -> None:
    help = invoke("--help").output
    project, rest = help.split("Project commands", 1)[1].split("Bundle commands", 1)
    assert "build " in project and "start " not in project
    assert "start " in rest.split("Project and bundle commands")[0]
    assert "..." not in help.split("Options:")[1]
    listed = {line.split()[0] for line in help.split("Project commands")[1].splitlines()
              if line.startswith("  ") and line.strip()[0].isalpha()}
    assert listed >= set(cli.commands), set(cli.commands) - listed
    assert invoke("-V").output == invoke("--version").output != ""


def test_a_new_project_round_trip(tmp_path: Path) -> None:
    assert invoke("-C", str(tmp_path), "init", "box").exit_code == 0
    project = str(tmp_path / "box")
    assert invoke("-C", project, "add-code", "v2", "--path", "src").exit_code == 0
    result = invoke("-C", project, "add-service", "two", "--code", "v2", "--command",
                    "python -m hello", "-e", "A=1", "--set", "startsecs=1", "--group", "g")
    assert result.exit_code == 0, result.output
    assert invoke("-C", project, "switch", "hello", "v2").output == "hello: code: v1 -> v2\n"
    check = invoke("-C", project, "check")
    assert check.exit_code == 0
    assert "service two" in check.output and "[group g]" in check.output
    assert invoke("-C", project, "switch", "--group", "g", "v1").output == "two: code: v2 -> v1\n"
    assert invoke("-C", project, "switch", "--group", "g", "two", "v1").exit_code == 2
    assert invoke("-C", project, "remove-service", "two").exit_code == 0
    text = (tmp_path / "box" / "bundle.toml").read_text()
    assert "[services.two]" not in text and "[groups.g]" not in text  # an empty group goes too


def test_add_code_checks_its_folder_or_ref_and_remove_code_what_no_service_runs(
        tmp_path: Path) -> None:
    invoke("-C", str(tmp_path), "init", "box")
    project = tmp_path / "box"
    spec = project / "bundle.toml"
    before = spec.read_text()
    (project / "conf").symlink_to("/etc")
    for args, said in [(["--path", "nope"], f"code v2: path {project}/nope is not a folder"),
                       (["--path", "conf"], f"code v2: path {project}/conf is a link to /etc"),
                       (["--git", ".", "--ref", "v9"], f"code v2: {project} has no commit 'v9'"),
                       (["--git", "https://example.invalid/r.git"], "is a remote")]:
        result = CliRunner().invoke(cli, ["-C", str(project), "add-code", "v2", *args])
        assert result.exit_code == 1 and said in result.output, result.output
        assert len(result.output.splitlines()) == 1 and spec.read_text() == before
    git = ["git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    for command in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "x"], ["tag", "v9"]):
        subprocess.run([*git, *command], check=True, capture_output=True)
    assert invoke("-C", str(project), "add-code", "v2", "--git", ".", "--ref", "v9").exit_code == 0
    refused = CliRunner().invoke(cli, ["-C", str(project), "remove-code", "v1"])
    assert refused.exit_code == 1 and "code v1 is in use by hello" in refused.output
    assert invoke("-C", str(project), "switch", "hello", "v2").exit_code == 0
    assert invoke("-C", str(project), "remove-code", "v1").output == f"removed code v1 from {spec}\n"
    assert list(load_spec(spec).code) == ["v2"]


def test_set_and_switch_python_in_a_project(tmp_path: Path) -> None:
    invoke("-C", str(tmp_path), "init", "box")
    project = str(tmp_path / "box")
    assert invoke("-C", project, "add-env", "tools", "--virtualenv", "base").exit_code == 0
    result = invoke("-C", project, "set", "hello", "environment.MODE=fast", "environment.ON=true",
                    "startsecs=3",
                    "command=python -m hello --loud")
    assert result.exit_code == 0, result.output
    assert invoke("-C", project, "switch", "hello", "--python", "envs/tools").output == \
        "hello: python: base -> envs/tools\n"
    spec = load_spec(tmp_path / "box" / "bundle.toml").services["hello"]
    assert (spec.python, spec.command, spec.environment, spec.options["startsecs"]) == \
        ("tools", "python -m hello --loud", {"MODE": "fast", "ON": "true"}, 3)
    assert invoke("-C", project, "set", "hello", "--unset", "startsecs").exit_code == 0
    bad = CliRunner().invoke(cli, ["-C", project, "set", "hello", "startsecs=-1"])
    assert bad.exit_code == 1 and "startsecs" in bad.output
    assert "startsecs" not in load_spec(tmp_path / "box" / "bundle.toml").services["hello"].options
    missing = CliRunner().invoke(cli, ["-C", project, "switch", "hello", "--python", "nope"])
    assert missing.exit_code != 0 and "nope" in missing.output


def test_a_bundles_own_bundler_acts_on_it_wherever_it_runs(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    invoke("-C", str(tmp_path), "init", "box")
    project = tmp_path / "box"
    spec_before = (project / "bundle.toml").read_text()
    bundle = make_tiny(tmp_path / "tiny")
    (bundle.root / "bin").mkdir()
    (bundle.root / "bin" / "python3").touch()
    monkeypatch.setattr(sys, "prefix", str(bundle.root))  # as if run by the bundle's python
    refused = CliRunner().invoke(cli, ["-C", str(project), "check"])
    assert refused.exit_code == 2 and refused.output == f"Error: {build_machine_only('check')}\n"
    result = CliRunner().invoke(cli, ["-C", str(project), "set", "web", "startsecs=2"])
    assert result.exit_code == 0, result.output
    assert (project / "bundle.toml").read_text() == spec_before  # the project is untouched
    assert "startsecs = 2" in bundle.manifest.read_text()


def test_a_bundles_bin_bundler_lists_no_build_command_and_says_where_they_run() -> None:
    in_bundle = make_cli(build_side=False)  # a bundle's: its bundler has no build/
    help = CliRunner().invoke(in_bundle, ["--help"]).output
    listed = {line.split()[0] for line in help.split("Bundle commands")[1].splitlines()
              if line.startswith("  ") and line.strip()[0].isalpha()}
    assert "Project commands" not in help.split("Bundle commands")[0]
    assert listed == set(in_bundle.commands) == set(cli.commands) - set(BUILD_COMMANDS)
    for command in BUILD_COMMANDS:
        for args in ([command], [command, "--help"], ["-C", "elsewhere", command, "x"]):
            result = CliRunner().invoke(in_bundle, args)
            assert result.exit_code == 2, result.output
            assert result.output == f"Error: {build_machine_only(command)}\n"
    line = build_machine_only("build")
    assert "build-machine command" in line and "pip install offline-bundler" in line
    assert "No such command 'nope'" in CliRunner().invoke(in_bundle, ["nope"]).output


def test_switch_outside_a_project_or_bundle_says_where_to_run_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["-C", str(tmp_path), "switch", "svc1", "v2"])
    assert result.exit_code == 2 and "no bundle.toml in" in result.output


def test_spec_errors_are_one_line_and_exit_1(tmp_path: Path) -> None:
    invoke("-C", str(tmp_path), "init", "box")
    spec = tmp_path / "box" / "bundle.toml"
    spec.write_text(spec.read_text().replace('code = "v1"', 'code = "v7"'))
    result = CliRunner().invoke(cli, ["-C", str(tmp_path / "box"), "check"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {spec}:")
    assert "code names version 'v7'" in lines[0]


def test_misuse_exits_2(tmp_path: Path) -> None:
    invoke("-C", str(tmp_path), "init", "box")
    result = CliRunner().invoke(cli, ["-C", str(tmp_path / "box"), "add-env", "e",
                                      "--virtualenv", "base", "--python", "/opt/py"])
    assert result.exit_code == 2 and "exactly one of" in result.output
    assert CliRunner().invoke(cli, ["build", "--format", "zip"]).exit_code == 2


def test_bundle_commands_outside_a_bundle_say_so(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["status", "--root", str(tmp_path)])
    assert result.exit_code == 1 and "is not a bundle" in result.output


def test_check_plans_the_distribution_python_as_gathered(tmp_path: Path) -> None:
    system = Path("/usr/bin/python3")
    if not system.is_file() or probe(system).prefix != Path("/usr"):
        pytest.skip("no distribution's Python at /usr/bin/python3")
    invoke("-C", str(tmp_path), "init", "box")
    spec = tmp_path / "box" / "bundle.toml"
    spec.write_text(spec.read_text().replace('python = "current"', 'python = "/usr/bin/python3"'))
    result = CliRunner().invoke(cli, ["-C", str(tmp_path / "box"), "check"])
    assert result.exit_code == 0, result.output
    assert "interpreter base" in result.output
    assert "the distribution's CPython, gathered from /usr/bin/python3." in result.output


def test_check_refuses_a_virtualenv_as_a_base_with_the_ways_out(tmp_path: Path) -> None:
    if sys.prefix == sys.base_prefix:
        pytest.skip("the tests do not run in a virtual environment")
    invoke("-C", str(tmp_path), "init", "box")
    spec = tmp_path / "box" / "bundle.toml"
    spec.write_text(spec.read_text().replace('python = "current"', f'python = "{sys.executable}"'))
    result = CliRunner().invoke(cli, ["-C", str(tmp_path / "box"), "check"])
    line = next(n for n, text in enumerate(spec.read_text().splitlines(), 1)
                if text.startswith(f'python = "{sys.executable}"'))
    first = result.output.splitlines()[0]
    assert result.exit_code == 1 and first.startswith(f"Error: {spec}:{line}: [base] python = ")
    assert "is a virtual environment" in first
    for way in ('python = "current"', 'python = "3.12"', 'python = "/path/prefix"',
                "install_only.tar.gz", "conda = "):
        assert way in result.output


def test_a_base_older_than_3_9_is_refused(tmp_path: Path) -> None:
    if PY37 is None:
        pytest.skip("pyenv's CPython 3.7.16 is not installed")
    invoke("-C", str(tmp_path), "init", "box")
    spec = tmp_path / "box" / "bundle.toml"
    spec.write_text(spec.read_text().replace('python = "current"', f'python = "{PY37}"'))
    result = CliRunner().invoke(cli, ["-C", str(tmp_path / "box"), "check"])
    assert result.exit_code == 1
    assert "the base is Python 3.7" in result.output and "put the older Python in envs/" in result.output


def test_a_refused_switch_leaves_the_spec_as_it_was(tmp_path: Path) -> None:
    invoke("-C", str(tmp_path), "init", "box")
    project = tmp_path / "box"
    (project / "gone").mkdir()
    assert invoke("-C", str(project), "add-code", "v2", "--path", "gone", "--bytecode").exit_code == 0
    (project / "gone").rmdir()
    before = (project / "bundle.toml").read_text()
    result = CliRunner().invoke(cli, ["-C", str(project), "switch", "hello", "v2"])
    assert result.exit_code == 1 and "gone is not a folder" in result.output
    assert (project / "bundle.toml").read_text() == before


@pytest.mark.parametrize("state,code", [("RUNNING", 0), ("STARTING", 0), ("BACKOFF", 3),
                                        ("FATAL", 3)])
def test_status_exits_3_only_for_a_service_that_is_down(state: str, code: int, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from bundler.server import status

    bundle = make_tiny(tmp_path / "tiny")
    rows = [status.ServiceRow("web", "web", "", state, 42, 5, "base", "3.11", "v1", True),
            status.ServiceRow("idle", "idle", "", "STOPPED", 0, 0, "base", "3.11", "v1", False)]
    monkeypatch.setattr(status, "service_rows", lambda *_, **__: rows)
    assert invoke("status", "--root", str(bundle.root)).exit_code == code


def test_check_json_is_the_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    monkeypatch.delenv("BUNDLER_PYTHON_MIRROR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # nothing downloaded before
    invoke("-C", str(tmp_path), "init", "box")
    project = str(tmp_path / "box")
    invoke("-C", project, "add-code", "v2", "--path", "src")
    invoke("-C", project, "add-service", "two", "--code", "v2", "--command", "python -m x",
           "--group", "g")
    doc = json.loads(invoke("-C", project, "check", "--json").output)
    assert doc["bundle"]["name"] == "box"
    (base,) = doc["interpreters"]
    minor = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert (base["name"], base["folder"], base["python_version"]) == ("base", ".", minor)
    need = floor.text(floor.highest(floor.needs(probe(find_python("current", tmp_path))
                                                .elf_files()))[0])
    assert base["glibc"] == need and doc["glibc"] == {"floor": None, "needs": need}
    assert [c["name"] for c in doc["code"]] == ["v1", "v2"]
    assert {s["name"]: (s["code"], s["group"]) for s in doc["services"]} == \
        {"hello": ("v1", None), "two": ("v2", "g")}
    assert doc["groups"] == {"g": ["two"]}
    text = invoke("-C", project, "check").output
    assert text.startswith("bundle box") and "{" not in text


def test_logs_of_everything_a_group_or_the_monitor(tmp_path: Path) -> None:
    bundle = make_tiny(tmp_path / "tiny")
    manifest = bundle.manifest.read_text().replace(
        "[build.interpreters.base]",
        '[services.pool]\ncommand = "python -m web"\ncode = "v1"\nnumprocs = 2\n'
        '[groups.g]\nprograms = ["pool"]\n[build.interpreters.base]')
    bundle.manifest.write_text(manifest)
    for name, text in (("web", "w1\nw2\n"), ("pool_00", "p0\n"), ("pool_01", "p1\n"),
                       ("_monitor", "m\n")):
        (bundle.log_dir / f"{name}.log").write_text(text)
    root = ["--root", str(bundle.root)]
    everything = invoke("logs", *root).output.splitlines()
    assert everything == ["web      | w1", "web      | w2", "pool_00  | p0", "pool_01  | p1",
                          "_monitor | m"]
    assert invoke("logs", "g", "-n", "1", *root).output.splitlines() == ["pool_00 | p0",
                                                                        "pool_01 | p1"]
    assert invoke("logs", "_monitor", *root).output == "m\n"  # one log: no prefix
    unknown = CliRunner().invoke(cli, ["logs", "nope", *root])
    assert unknown.exit_code == 1 and "no log of nope" in unknown.output
    assert "services: web, pool; groups: g" in unknown.output


def test_logs_of_processes_numbered_past_99_and_no_other_services(tmp_path: Path) -> None:
    bundle = make_tiny(tmp_path / "tiny")
    bundle.manifest.write_text(bundle.manifest.read_text().replace(
        "[build.interpreters.base]", '[services.pool]\ncommand = "python -m web"\ncode = "v1"\n'
        'numprocs = 3\nnumprocs_start = 99\n[build.interpreters.base]'))
    for name in ("pool_99", "pool_100", "pool_101", "pool_1000", "pool_x"):
        (bundle.log_dir / f"{name}.log").write_text(f"{name}\n")
    shown = invoke("logs", "pool", "--root", str(bundle.root)).output.splitlines()
    assert shown == ["pool_99  | pool_99", "pool_100 | pool_100", "pool_101 | pool_101"]


def test_version_prints_sets_and_bumps_the_projects_version(tmp_path: Path) -> None:
    invoke("-C", str(tmp_path), "init", "box")
    project = str(tmp_path / "box")
    assert invoke("-C", project, "version").output == "0.1.0\n"
    assert invoke("-C", project, "-q", "version", "--bump", "patch").output == "0.1.1\n"
    assert invoke("-C", project, "-q", "version", "2026.11.1").output == "2026.11.1\n"
    assert load_spec(tmp_path / "box" / "bundle.toml").version == "2026.11.1"
    assert "# the root folder inside the archive" in (tmp_path / "box" / "bundle.toml").read_text()
    both = invoke("-C", project, "version", "1.0.0", "--bump", "minor")
    assert both.exit_code == 2 and "give NEW or --bump, not both" in both.output


def _tiny_release(tmp_path: Path) -> tuple[Path, Path]:
    """A project at version 1 and the archive of its release 1 (the tiny bundle)."""
    import tarfile

    tiny = make_tiny(tmp_path / "tiny")
    archive = tmp_path / "tiny-1.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tiny.root, arcname="tiny")
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "bundle.toml").write_text('[bundle]\nname = "tiny"\nversion = "1"\nproject = "app"\n'
                                         '[code.v1]\npath = "src"\n')
    return project, archive


def test_a_patch_of_the_same_version_is_refused_before_building(tmp_path: Path) -> None:
    project, archive = _tiny_release(tmp_path)
    result = invoke("-C", str(project), "build", "--patch-from", str(archive))
    assert result.exit_code == 1
    assert result.output == (f"Error: [bundle] version 1 is the version of the release {archive} "
                             "holds: a patch needs a newer one; bump it with `bundler version "
                             "--bump major` (makes it 2) or edit [bundle] version in bundle.toml\n")
    assert not (project / "dist").exists()


@pytest.mark.parametrize("patch", [False, True])
def test_an_artifact_of_another_build_is_not_overwritten(tmp_path: Path, patch: bool,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    project, archive = _tiny_release(tmp_path)
    if patch:
        invoke("-C", str(project), "-q", "version", "2")
    dist = project / "dist"
    dist.mkdir()
    name = "tiny-2.patch.tar.zst" if patch else "tiny-1.tar.gz"
    (dist / name).write_text("an earlier build")
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    more = ["--patch-from", str(archive), "--format", "tar.zst"] if patch else []
    result = invoke("-C", str(project), "build", *more)
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {dist / name} exists already and this build would "
                                    "differ from it")
    assert "`bundler version --bump major`" in result.output and "--overwrite" in result.output
    assert [p.name for p in dist.iterdir()] == [name]  # refused before a staging folder was made
    assert (dist / name).read_text() == "an earlier build"


def test_keygen_makes_the_keys_folder_it_is_given(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """README's `bundler keygen keys/release` in a fresh project: keys/ is made, 0700."""
    import stat

    from bundler.bundle import signing

    monkeypatch.chdir(tmp_path)
    (tmp_path / "shared").mkdir(mode=0o755)
    for path in ("keys/release", "deep/er/release", "shared/release"):
        result = CliRunner().invoke(cli, ["keygen", path])
        assert result.exit_code == 0, result.output
        key = tmp_path / path
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert signing.load_private(key) is not None
        assert (tmp_path / f"{path}.pub").read_text().startswith("ssh-ed25519 ")
    for made in ("keys", "deep", "deep/er"):
        assert stat.S_IMODE((tmp_path / made).stat().st_mode) == 0o700, made
    assert stat.S_IMODE((tmp_path / "shared").stat().st_mode) == 0o755  # an existing one: as it was
    (tmp_path / "file").write_text("")
    result = CliRunner().invoke(cli, ["keygen", "file/release"])
    assert result.exit_code == 1 and result.stderr.startswith("Error: cannot make the key's folder")
    assert len(result.stderr.splitlines()) == 1
    result = CliRunner().invoke(cli, ["keygen", "keys/release"])
    assert result.exit_code == 1 and "exists: bundler never overwrites a key" in result.stderr


@pytest.mark.parametrize(("args", "says"), [
    (["k", "--comment", "a\nssh-ed25519 AAAAC3Nza evil"], "Error: --comment 'a\\nssh-ed25519 "),
    (["k\x1b[2J"], "Error: the key's path 'k\\x1b[2J' has a control character"),
])
def test_keygen_refuses_control_characters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           args: list[str], says: str) -> None:
    """A line feed in the comment wrote a second key line into the .pub file."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["keygen", *args])
    assert result.exit_code == 1 and result.stderr.startswith(says), result.output
    assert len(result.stderr.splitlines()) == 1 and list(tmp_path.iterdir()) == []


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path: Path) -> None:
    """`bin/bundler status | head -1`: the pipe closes, and bundler leaves quietly (it printed
    'Error: Broken pipe' and an ignored BrokenPipeError)."""
    import os

    bundle = make_tiny(tmp_path / "tiny")
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([sys.executable, "-m", "bundler", "history", "--root",
                               str(bundle.root)], stdout=write, stderr=subprocess.PIPE,
                              timeout=60, env={**os.environ,
                                               "PYTHONPATH": str(Path(__file__).parents[2])})
    finally:
        os.close(write)
    assert (proc.returncode, proc.stderr) == (1, b"")
