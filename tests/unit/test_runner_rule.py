"""Every command bundler starts goes through bundler/runner.py, so that each has a timeout and
stop_all() ends it: no other module imports subprocess, or starts a process through os or pty."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "bundler"
RUNNER = "bundler/runner.py"
# What starts a process, by module: names, or the start of names (os.spawnv, os.execve).
STARTERS = {
    "os": ("system", "popen", "spawn", "posix_spawn", "fork", "exec"),
    "pty": ("spawn", "fork"),
    "asyncio": ("create_subprocess",),
}
# os.exec* replaces the process, it starts none: the launcher becomes the service, and
# `bin/start --foreground` becomes supervisord.
REPLACES = {"bundler/launch.py": "exec", "bundler/server/lifecycle.py": "exec"}


def violations(source: str, path: str) -> list[str]:
    """path:line: what, for each way `source` starts a process without the runner."""
    found = []
    allowed = REPLACES.get(path)
    modules = {}  # a local name -> the module it is (import os as o)

    def starts(module: str, name: str, line: int) -> None:
        if any(name.startswith(s) for s in STARTERS[module]) and not (
                allowed and name.startswith(allowed)):
            found.append(f"{path}:{line}: {module}.{name}")

    for node in ast.walk(ast.parse(source, path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top == "subprocess":
                    found.append(f"{path}:{node.lineno}: import {alias.name}")
                elif top in STARTERS and alias.name == top:
                    modules[alias.asname or top] = top
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            top = node.module.split(".")[0]
            if top == "subprocess":
                found.append(f"{path}:{node.lineno}: from {node.module} import ...")
            elif node.module in STARTERS:
                for alias in node.names:
                    starts(node.module, alias.name, node.lineno)
    for node in ast.walk(ast.parse(source, path)):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in modules:
            starts(modules[node.value.id], node.attr, node.lineno)
    return sorted(found, key=lambda f: int(f.split(":")[1]))


def test_only_the_runner_starts_processes() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE.parent).as_posix()
        if name != RUNNER:
            found += violations(path.read_text(), name)
    assert found == []
    # the runner is seen to do it, and the exec of the launcher to be allowed
    assert violations((PACKAGE / "runner.py").read_text(), "bundler/runner.py")
    launcher = (PACKAGE / "launch.py").read_text()
    assert "os.execvpe" in launcher and violations(launcher, "bundler/x.py")


def test_every_way_of_starting_a_process_is_seen() -> None:
    source = "\n".join([
        "import os, sys",
        "import subprocess",
        "import subprocess as sp",
        "from subprocess import run",
        "import pty as terminal",
        "from os import system, getcwd",
        "from asyncio import create_subprocess_exec",
        "os.system('ls')",
        "os.popen('ls')",
        "os.spawnlp(os.P_WAIT, 'ls', 'ls')",
        "os.posix_spawnp('ls', ['ls'], {})",
        "os.fork()",
        "terminal.spawn(['sh'])",
        "os.execv('/bin/ls', ['ls'])",
        "os.getpid(); sys.exit(0)",
    ])
    assert violations(source, "bundler/x.py") == [
        "bundler/x.py:2: import subprocess", "bundler/x.py:3: import subprocess",
        "bundler/x.py:4: from subprocess import ...", "bundler/x.py:6: os.system",
        "bundler/x.py:7: asyncio.create_subprocess_exec", "bundler/x.py:8: os.system",
        "bundler/x.py:9: os.popen", "bundler/x.py:10: os.spawnlp",
        "bundler/x.py:11: os.posix_spawnp", "bundler/x.py:12: os.fork",
        "bundler/x.py:13: pty.spawn", "bundler/x.py:14: os.execv"]
    assert violations(source, "bundler/launch.py")[-1] == "bundler/launch.py:13: pty.spawn"
