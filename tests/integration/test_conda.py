"""The conda variant of the example: a real conda environment (made offline with py-rattler) as
the bundle's base, packed with conda-pack, built, unpacked elsewhere and moved again."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.condaenv import GREETING, make_env
from tests.integration.harness import EXAMPLE, Bundle, bundler, run_hidden

pytest.importorskip("rattler")
pytest.importorskip("conda_package_handling")
CONDA_EXAMPLE = EXAMPLE.parent / "smartbox-conda"


@dataclass(frozen=True)
class CondaBuild:
    archive: Path
    refusal: subprocess.CompletedProcess[str]  # a build of an env conda-pack refuses


@pytest.fixture(scope="module")
def conda_build(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Iterator[CondaBuild]:
    """The conda example built into a tar.zst; the project, the conda environment and its
    package cache are deleted before any test runs the bundle."""
    if shutil.which("gcc") is None:
        pytest.skip("the test's conda package holds a C tool, compiled with gcc (apt install gcc)")
    work = tmp_path_factory.mktemp("conda")
    examples = work / "examples"
    shutil.copytree(EXAMPLE, examples / "smartbox", ignore=shutil.ignore_patterns("dist"))
    project = examples / "smartbox-conda"
    shutil.copytree(CONDA_EXAMPLE, project)
    make_env(work / "condawork", project / "conda-env")
    result = bundler("-C", str(project), "build", "--no-index", "--find-links", str(wheelhouse))
    artifact = Path(result.stdout.strip())
    keep = tmp_path_factory.mktemp("conda-artifact")
    shutil.move(str(artifact), keep / artifact.name)

    # an env conda-pack must refuse: a file of a package is gone
    (project / "conda-env" / "share" / "greet" / "message.txt").unlink()
    refusal = bundler("-C", str(project), "build", "--no-index", "--find-links", str(wheelhouse),
                      check=False)
    shutil.rmtree(work)
    yield CondaBuild(keep / artifact.name, refusal)
    shutil.rmtree(keep)


@pytest.fixture
def conda_bundle(conda_build: CondaBuild, tmp_path: Path) -> Iterator[Bundle]:
    dest = tmp_path / "unpacked here"
    dest.mkdir()
    subprocess.run(["tar", "--zstd", "-xf", str(conda_build.archive), "-C", str(dest)], check=True)
    bundle = Bundle(dest / "smartbox")
    yield bundle
    bundle.stop()


def _greet(bundle: Bundle) -> str:
    proc = run_hidden([str(bundle.root / "bin" / "greet")])
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_a_conda_base_runs_its_services_after_two_moves(conda_bundle: Bundle, tmp_path: Path) -> None:
    for move_to in (None, tmp_path / "a much longer path" / "than the one before" / "smartbox"):
        if move_to is not None:
            conda_bundle.stop()
            conda_bundle.move(move_to)
        conda_bundle.start()
        states = conda_bundle.states()
        assert {k: v[0] for k, v in states.items()} == {"svc1": "RUNNING", "svc3": "RUNNING"}
        base = conda_bundle.report("svc1")
        assert base["prefix"] == str(conda_bundle.root)
        assert conda_bundle.report("svc3")["prefix"] == str(conda_bundle.root / "envs" / "pyocr")
        # a C program whose data path was compiled in as the package's placeholder
        assert _greet(conda_bundle) == GREETING
        assert (conda_bundle.root / "conda-meta").is_dir()
        assert not (conda_bundle.root / "bin" / "conda-unpack").exists()
    verify = conda_bundle.cli("verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "leaks     no file names a path of the build machine" in verify.stdout


def test_conda_pack_errors_reach_the_user_as_one_line(conda_build: CondaBuild) -> None:
    refusal = conda_build.refusal
    assert refusal.returncode == 1
    errors = [line for line in refusal.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and refusal.stderr.rstrip().endswith(errors[0]), refusal.stderr
    assert errors[0].startswith("Error: conda-pack cannot pack ")
    assert "share/greet/message.txt" in errors[0]
    assert "reinstall the packages named" in errors[0]
    assert not list(conda_build.archive.parent.glob("*.partial*"))
