from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bundler.build.code import check_code_source, compile_bytecode_only, materialize_code
from bundler.errors import BundlerError
from bundler.spec.model import CodeVersion


def test_a_copy_skips_vcs_caches_build_junk_and_the_output_folder(tmp_path: Path) -> None:
    src = tmp_path / "proj"
    for junk in (".git/HEAD", "pkg/__pycache__/m.cpython-311.pyc", "build/lib/x.py", "dist/a.whl",
                 "pkg.egg-info/PKG-INFO", "out/staging/huge", "pkg/m.pyc"):
        (src / junk).parent.mkdir(parents=True, exist_ok=True)
        (src / junk).write_text("junk")
    (src / "pkg" / "m.py").write_text("X = 1\n")
    (src / "pkg" / "data.json").write_text("{}")
    dest = tmp_path / "bundle" / "proj_v1"
    materialize_code(CodeVersion("v1", path="."), src, dest, output=src / "out")
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == ["pkg/data.json", "pkg/m.py"]


def test_bytecode_only_runs_without_sources(tmp_path: Path) -> None:
    code = tmp_path / "v1"
    (code / "pkg").mkdir(parents=True)
    (code / "pkg" / "__init__.py").write_text("")
    (code / "pkg" / "__main__.py").write_text("print('hello from bytecode')\n")
    compile_bytecode_only(code, Path(sys.executable))
    assert sorted(p.name for p in code.rglob("*")) == ["__init__.pyc", "__main__.pyc", "pkg"]
    out = subprocess.run([sys.executable, "-m", "pkg"], cwd=code, capture_output=True, text=True,
                         check=True).stdout
    assert out == "hello from bytecode\n"


def test_missing_sources_are_found_before_building(tmp_path: Path) -> None:
    with pytest.raises(BundlerError, match="is not a folder"):
        check_code_source(CodeVersion("v1", path="nope"), tmp_path)
    subprocess.run(["git", "init", "-q", str(tmp_path / "repo")], check=True)
    with pytest.raises(BundlerError, match="has no commit 'v3'"):
        check_code_source(CodeVersion("v3", git="repo", ref="v3"), tmp_path)
    with pytest.raises(BundlerError, match="has no commit"):
        check_code_source(CodeVersion("v3", git="not-a-repo", ref="v3"), tmp_path)
