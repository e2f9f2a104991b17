"""What every bundle's base carries of bundler: its server side (no build machinery, nothing only
the build reads), a dist-info that lists it, and the packages pyproject declares for it once."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import tomlkit

from bundler.build import serverside
from bundler.cli import project
from bundler.cli.options import BUILD_COMMANDS

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "bundler"
# What a bundle runs: bin/bundler, the monitor, the launcher of services, supervisord's RPC.
IN_BUNDLE = ("__main__.py", "cli/__init__.py", "cli/bundle.py", "cli/operate.py", "cli/services.py",
             "cli/shell.py", "server/monitor/__main__.py", "launch.py", "supervisor_rpc.py")
# The in-bundle CLI's only ways into what a bundle leaves out, each taken on the build machine only.
BUILD_MACHINE_BRANCHES = {
    ("cli/__init__.py", "bundler.cli.project"),   # registered only where the build side is
    ("cli/services.py", "bundler.build.plan"),    # switch in a project checks the plan
    ("cli/jsondocs.py", "bundler.build.floor"),   # check --json: the plan's glibc
    ("cli/jsondocs.py", "bundler.build.plan"),    # (a type only)
}


def _module_file(module: str) -> str | None:
    """bundler.server.status -> server/status.py (a package: its __init__.py)."""
    parts = module.split(".")[1:]
    for candidate in ([*parts[:-1], f"{parts[-1]}.py"] if parts else [], [*parts, "__init__.py"]):
        if candidate and (PACKAGE / Path(*candidate)).is_file():
            return "/".join(candidate)
    return None


def _packages_of(rel: str) -> list[str]:
    """The __init__.py of every package that holds `rel`: importing it runs them."""
    folders = rel.split("/")[:-1]
    return ["/".join([*folders[:i], "__init__.py"]) for i in range(len(folders) + 1)]


def _imports(rel: str) -> set[str]:
    """The bundler modules the file `rel` of the package imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse((PACKAGE / rel).read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("bundler.")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.startswith("bundler"):
            found |= {f"{node.module}.{a.name}" if _module_file(f"{node.module}.{a.name}")
                      else node.module for a in node.names}
    return found


def test_a_bundle_ships_everything_its_code_imports_and_no_build_machinery() -> None:
    shipped = set(serverside.shipped(PACKAGE))
    assert set(IN_BUNDLE) <= shipped
    assert not any(rel.startswith("build/") for rel in shipped)
    assert "cli/project.py" not in shipped and not any(rel.startswith("layouts/") for rel in shipped)
    reached, todo = set(), list(IN_BUNDLE)
    while todo:
        rel = todo.pop()
        if rel in reached:
            continue
        reached.add(rel)
        todo += _packages_of(rel)
        for module in _imports(rel):
            target = _module_file(module)
            assert target is not None, f"{rel} imports {module}, which is not in the package"
            if target not in shipped:
                assert (rel, module) in BUILD_MACHINE_BRANCHES, f"{rel} imports {module}"
            else:
                todo.append(target)
    # a shipped module nothing in a bundle imports is build-side code in the wrong place
    assert {r for r in shipped if r.endswith(".py")} - reached <= {"bundle/record.py"}


def test_a_bundle_ships_the_templates_its_code_renders() -> None:
    shipped = set(serverside.shipped(PACKAGE))
    rendered = {f"templates/{name}" for rel in shipped if rel.endswith(".py")
                for name in re.findall(r'get_template\("([^"]+)"\)', (PACKAGE / rel).read_text())}
    assert {"templates/program.ini.j2", "templates/monitor.ini.j2",
            "templates/systemd.service.j2"} <= rendered <= shipped
    assert not {"templates/distro-sitecustomize.py.in", "templates/distro-sysconfig.py.in"} & shipped


def test_install_self_records_exactly_what_it_copied(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    site.mkdir()
    serverside.install_self(site)
    (info,) = site.glob("offline_bundler-*.dist-info")
    listed = [line.split(",")[0] for line in (info / "RECORD").read_text().splitlines()]
    there = sorted(p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file())
    assert listed == there
    assert [f"bundler/{rel}" for rel in serverside.shipped(PACKAGE)] == \
        [rel for rel in listed if rel.startswith("bundler/")]
    assert not (site / "bundler" / "build").exists()


def test_the_base_installs_the_server_requirements_pyproject_declares() -> None:
    project_table = tomlkit.parse((REPO / "pyproject.toml").read_text()).unwrap()["project"]
    extras = project_table["optional-dependencies"]
    assert serverside.base_packages(signing=False) == tuple(extras["server"])
    assert serverside.base_packages(signing=True) == (*extras["server"], *extras["signing"])
    assert {"supervisor>=4.3.0", "click>=8.0", "cryptography>=42"} <= \
        set(serverside.base_packages(signing=True))
    # the build machine installs them too, declared once: through the package's own extras
    assert "offline-bundler[server,signing]" in project_table["dependencies"]


def test_the_in_bundle_cli_knows_every_build_command_by_name() -> None:
    assert BUILD_COMMANDS == tuple(c.name for c in project.COMMANDS)
