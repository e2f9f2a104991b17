"""`bundler completion SHELL`: each script it prints, run by its real shell against the installed
bundler, completes commands and a project's service, code version, interpreter and group names.
A shell that is not installed is skipped (.ci/run installs bash, zsh and fish)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bundler.cli import cli

BIN = Path(sys.executable).parent


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """init's project, plus code v2, a virtualenv pyocr and service svc2 in group sam."""
    folder = tmp_path_factory.mktemp("completion")
    invoke("-C", str(folder), "init", "box")
    box = str(folder / "box")
    invoke("-C", box, "add-code", "v2", "--path", "src")
    invoke("-C", box, "add-env", "pyocr", "--virtualenv", "base")
    invoke("-C", box, "add-service", "svc2", "--code", "v2", "--command", "python -m x",
           "--python", "pyocr", "--group", "sam")
    return folder / "box"


def shell_env() -> dict[str, str]:
    if not (BIN / "bundler").is_file():
        pytest.skip(f"no bundler executable in {BIN} (install the package: pip install -e .)")
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def script(shell: str, folder: Path) -> Path:
    path = folder / f"bundler.{shell}"
    path.write_text(invoke("completion", shell))
    return path


def bash(project: Path, line: str) -> list[str]:
    words = line.split(" ")
    code = (f"source {script('bash', project.parent)}\n"
            f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
            "_bundler_completion bundler; printf '%s\\n' \"${COMPREPLY[@]}\"")
    return _run(["bash", "-c", code], project)


def zsh(project: Path, line: str) -> list[str]:
    words = line.split(" ")
    # compdef, _describe and compadd belong to zsh's completion system; here they print what
    # they were given, so the script's own function runs as it would on a key press
    code = (f"compdef() {{ :; }}\nsource {script('zsh', project.parent)}\n"
            "_describe() { print -l -- ${completions_with_descriptions%%:*}; }\n"
            "compadd() { print -l -- $completions; }\n"
            f"words=({' '.join(repr(w) for w in words)}); CURRENT={len(words)}\n"
            "_bundler_completion")
    return _run(["zsh", "-f", "-c", code], project)


def fish(project: Path, line: str) -> list[str]:
    code = f"source {script('fish', project.parent)}; complete -C '{line}'"
    return [w.split("\t")[0] for w in _run(["fish", "--no-config", "-c", code], project)]


def _run(argv: list[str], project: Path) -> list[str]:
    if not shutil.which(argv[0]):
        pytest.skip(f"{argv[0]} is not installed")
    done = subprocess.run(argv, cwd=project, env=shell_env(), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return sorted(w for w in done.stdout.splitlines() if w)


SHELLS = {"bash": bash, "zsh": zsh, "fish": fish}


@pytest.mark.parametrize("shell", SHELLS)
def test_the_script_completes_names_from_the_project(shell: str, project: Path) -> None:
    complete = SHELLS[shell]
    assert complete(project, "bundler switch svc2 ") == ["v1", "v2"]
    assert complete(project, "bundler logs ") == ["_monitor", "hello", "sam", "svc2"]
    if shell != "bash":  # the rest is bundler's side, the same for every shell
        return
    assert "switch" in complete(project, "bundler sw")
    assert complete(project, "bundler switch ") == ["hello", "svc2"]
    assert complete(project, "bundler switch --group ") == ["sam"]
    assert complete(project, "bundler add-service x --python ") == ["base", "envs/pyocr"]
    # -C names the project from elsewhere
    assert complete(project.parent, f"bundler -C {project} set ") == ["hello", "svc2"]


@pytest.mark.parametrize("shell", SHELLS)
def test_the_script_is_the_shells_own(shell: str, tmp_path: Path) -> None:
    text = invoke("completion", shell)
    assert "_BUNDLER_COMPLETE" in text
    if shutil.which(shell) and shell != "fish":
        check = subprocess.run([shell, "-n", str(script(shell, tmp_path))], capture_output=True,
                               text=True)
        assert check.returncode == 0, check.stderr


def test_outside_a_project_only_commands_complete(tmp_path: Path) -> None:
    assert bash(tmp_path, "bundler switch ") == []
    assert "build" in bash(tmp_path, "bundler bu")
