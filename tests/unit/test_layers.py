"""The package's layout is a contract: cli -> build | server -> bundle -> spec -> errors (with
fsutil and runner beside errors), and what runs inside a bundle never loads the build machinery."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bundler.bundle.layout import load_layout
from bundler.bundle.tree import Bundle

PACKAGE = Path(__file__).resolve().parents[2] / "bundler"
FOUNDATION = {"errors", "fsutil", "runner", "progress", "redact"}
# What each part may import from bundler (besides itself and `from bundler import __version__, DISTRIBUTION`).
ALLOWED = {
    "cli": {"build", "server", "bundle", "spec", *FOUNDATION},
    "build": {"bundle", "spec", *FOUNDATION},
    "server": {"bundle", "spec", *FOUNDATION},
    "bundle": {"spec", *FOUNDATION},
    "spec": {"errors", "fsutil"},
    "errors": set(), "fsutil": {"errors"}, "runner": {"errors", "progress"}, "progress": set(),
    "redact": set(),
    "__main__": {"cli"},
    "launch": set(),         # run in every service process launched through it: LIGHT only
    "supervisor_rpc": set(), # imported by supervisord itself: LIGHT only
    "__init__": set(),
}
BUILD_ONLY = ("virtualenv", "conda_pack", "pathspec")
# The records those two read or write, in modules that import nothing else of bundler.
LIGHT = {"launch": {"bundler.bundle.launchspec"},
         "supervisor_rpc": {"bundler.bundle.logfaults", "bundler.bundle.stopped"}}


def _part(module: str) -> str:
    """bundler.server.monitor.listener -> server; bundler.errors -> errors."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    """Every bundler module `path` imports, at the top or inside a function."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("bundler.")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "bundler":
                found += [(node.lineno, f"bundler.{a.name}") for a in node.names
                          if a.name not in ("__version__", "DISTRIBUTION")]
            elif node.module.startswith("bundler."):
                found.append((node.lineno, node.module))
    return found


def test_every_import_follows_the_dependency_rule() -> None:
    violations, seen = [], set()
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(("bundler", *path.relative_to(PACKAGE).with_suffix("").parts))
        module = module.removesuffix(".__init__")
        part = _part(module)
        for line, target in _imports(path, module):
            seen.add((part, _part(target)))
            if _part(target) != part and _part(target) not in ALLOWED[part] \
                    and target not in LIGHT.get(part, ()):
                violations.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {part} imports {target}")
    assert violations == []
    # the scan sees the imports it should, so an empty list means something
    assert {("cli", "build"), ("cli", "server"), ("server", "bundle"), ("build", "bundle"),
            ("bundle", "spec"), ("__main__", "cli")} <= seen


def _loaded(code: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run `code` in a fresh interpreter; the modules loaded by its end (or its exit)."""
    script = ("import atexit, json, sys\n"
              "atexit.register(lambda: print('MODULES=' + json.dumps(sorted(sys.modules))))\n"
              + code)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    line = next(line for line in proc.stdout.splitlines() if line.startswith("MODULES="))
    return proc, set(json.loads(line.removeprefix("MODULES=")))


def _build_side(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m == "bundler.build" or m.startswith("bundler.build.")
                  or m.split(".")[0] in BUILD_ONLY)


@pytest.mark.parametrize("module", ["bundler.launch", "bundler.supervisor_rpc"])
def test_the_launcher_and_supervisords_extension_load_their_record_alone(module: str) -> None:
    """bundler.launch runs before every service it starts, supervisor_rpc inside supervisord:
    of bundler, each loads its records' modules and record.py, and the launcher no typing,
    dataclasses or tempfile either."""
    _, modules = _loaded(f"import {module}")
    part = module.split(".")[1]
    assert sorted(m for m in modules if m.split(".")[0] == "bundler") == \
        sorted({"bundler", "bundler.bundle", "bundler.bundle.record", *LIGHT[part], module})
    if module == "bundler.launch":
        assert not {"typing", "dataclasses", "tempfile"} & modules


def test_importing_the_bundle_commands_loads_no_build_machinery() -> None:
    _, modules = _loaded("import bundler.cli.bundle")
    assert "bundler.cli.bundle" in modules
    assert _build_side(modules) == []


@pytest.fixture
def tiny_bundle(tmp_path: Path) -> Bundle:
    """The records bin/bundler status reads: a layout, a manifest with its [build] table."""
    bundle = Bundle(tmp_path / "tiny", load_layout())
    bundle.meta.mkdir(parents=True)
    bundle.run_dir.mkdir()
    bundle.layout.write(bundle.layout_record)
    bundle.manifest.write_text('[bundle]\nname = "tiny"\nversion = "1"\n[code.v1]\npath = "src"\n'
                               '[services.web]\ncommand = "python -m web"\ncode = "v1"\n'
                               '[build.interpreters.base]\nfolder = "."\npython = "bin/python3"\n'
                               'python_version = "3.11"\n[build.code.v1]\nfolder = "tiny_v1"\n')
    return bundle


def test_the_in_bundle_status_command_loads_no_build_machinery(tiny_bundle: Bundle) -> None:
    proc, modules = _loaded(
        "import runpy\n"
        f"sys.argv = ['bundler', 'status', '--root', {str(tiny_bundle.root)!r}]\n"
        "runpy.run_module('bundler', run_name='__main__')\n")
    assert proc.returncode == 3, proc.stderr  # it ran: supervisord is not running
    assert "web" in proc.stdout and "supervisord is not running" in proc.stderr
    assert "bundler.server.status" in modules
    assert _build_side(modules) == []


def test_help_loads_only_the_command_line() -> None:
    proc, modules = _loaded(
        "import runpy\n"
        "sys.argv = ['bundler', '--help']\n"
        "runpy.run_module('bundler', run_name='__main__')\n")
    assert proc.returncode == 0 and "switch" in proc.stdout
    beyond = sorted(m for m in modules if m.startswith("bundler.")
                    and not m.startswith("bundler.cli") and m not in ("bundler.errors", "bundler.progress"))
    assert beyond == []
    assert not {"tomlkit", "jinja2", "elftools", "xmlrpc.client"} & modules
