"""pip's own words when a requirement cannot be installed (pipfail): the reason read from what
pip printed, a long version list cut, and the glibc a wheel's file name says it needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bundler.build import pipfail

NO_PROJECT = """\
Looking in links: /wheels
ERROR: Could not find a version that satisfies the requirement flask-nonexistent-pkg-zz (from versions: none)
ERROR: No matching distribution found for flask-nonexistent-pkg-zz
"""
MANY = ", ".join(f"2.{n}.0" for n in range(40))
NO_VERSION = f"""\
Collecting requests==99.0
ERROR: Ignored the following yanked versions: 2.32.0, 2.32.1
ERROR: Could not find a version that satisfies the requirement requests==99.0 (from versions: {MANY})
ERROR: No matching distribution found for requests==99.0
"""
CONFLICT = """\
Processing ./aa-1.0-py3-none-any.whl
INFO: pip is looking at multiple versions of bb to determine which version is compatible with \
other requirements. This could take a while.
ERROR: Cannot install aa==1.0 and bb==1.0 because these package versions have conflicting dependencies.

The conflict is caused by:
    aa 1.0 depends on cc==1
    The user requested cc==2

To fix this you could try to:
1. loosen the range of package versions you've specified
2. remove package versions to allow pip attempt to solve the dependency conflict

ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/dependency-resolution/#dealing-with-dependency-conflicts
"""
A_DEPENDENCY = """\
ERROR: Could not find a version that satisfies the requirement nosuchdep-zz>=1 (from dd) (from versions: none)
ERROR: No matching distribution found for nosuchdep-zz>=1
"""
SDIST_FAILED = """\
  error: subprocess-exited-with-error

  × python setup.py egg_info did not run successfully.
  │ exit code: 1
note: This error originates from a subprocess, and is likely not a problem with pip.
error: metadata-generation-failed
"""


def test_no_such_project_is_said_in_pips_words() -> None:
    refusal = pipfail.read(NO_PROJECT)
    assert refusal == pipfail.Refusal(
        "Could not find a version that satisfies the requirement flask-nonexistent-pkg-zz (from "
        "versions: none); No matching distribution found for flask-nonexistent-pkg-zz",
        "flask-nonexistent-pkg-zz", True)
    assert pipfail.message("pip install for interpreter base", refusal, None) == \
        f"pip install for interpreter base failed: {refusal.reason}"


def test_no_such_version_comes_first_and_a_long_version_list_is_cut() -> None:
    refusal = pipfail.read(NO_VERSION)
    assert refusal is not None and refusal.missing == "requests==99.0" and not refusal.none
    assert refusal.reason == (
        "Could not find a version that satisfies the requirement requests==99.0 (from versions: "
        "2.0.0, 2.1.0, ..., 2.34.0, 2.35.0, 2.36.0, 2.37.0, 2.38.0, 2.39.0; 40 in all); No "
        "matching distribution found for requests==99.0; Ignored the following yanked versions: "
        "2.32.0, 2.32.1")


def test_a_conflict_names_its_causes() -> None:
    refusal = pipfail.read(CONFLICT)
    assert refusal is not None and refusal.missing is None
    assert refusal.reason == (
        "Cannot install aa==1.0 and bb==1.0 because these package versions have conflicting "
        "dependencies; The conflict is caused by: aa 1.0 depends on cc==1; The user requested "
        "cc==2; ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/"
        "dependency-resolution/#dealing-with-dependency-conflicts")
    assert "\n" not in refusal.reason


def test_a_missing_dependency_is_the_requirement_asked_again() -> None:
    refusal = pipfail.read(A_DEPENDENCY)
    assert refusal is not None and refusal.missing == "nosuchdep-zz>=1" and refusal.none


@pytest.mark.parametrize("output", [SDIST_FAILED, "", "ERROR: Could not install packages due to "
                                    "an OSError: [Errno 28] No space left on device\n"])
def test_other_failures_are_not_read_as_a_requirements_reason(output: str) -> None:
    assert pipfail.read(output) is None


@pytest.mark.parametrize("name, needs", [
    ("hi-1.0-cp311-cp311-manylinux_2_99_x86_64.whl", (2, 99)),
    ("numpy-2.4.6-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl", (2, 27)),
    ("psutil-5.9.8-cp36-abi3-manylinux_2_12_x86_64.manylinux2010_x86_64.manylinux_2_17_x86_64"
     ".manylinux2014_x86_64.whl", (2, 12)),
    ("old-1.0-cp37-cp37m-manylinux1_x86_64.whl", (2, 5)),
    ("pure-1.0-py3-none-any.whl", None),
    ("musl-1.0-cp311-cp311-musllinux_1_1_x86_64.whl", None),
    ("pure-1.0.tar.gz", None),
])
def test_the_glibc_a_wheel_needs_is_read_from_its_name(name: str, needs: tuple | None) -> None:
    assert pipfail.wheel_glibc(name) == needs


def test_newer_platforms_are_every_manylinux_above_the_floor() -> None:
    tags = pipfail.newer_platforms((2, 12), "x86_64")
    assert tags[0] == "manylinux_2_13_x86_64" and "manylinux_2_99_x86_64" in tags
    assert "manylinux_2_12_x86_64" not in tags and "manylinux2014_x86_64" in tags
    assert "manylinux2010_x86_64" not in tags and "manylinux1_x86_64" not in tags


def test_an_unreached_index_is_said_and_not_asked_again() -> None:
    output = ("WARNING: Retrying (Retry(total=4, connect=None, read=None, redirect=None, status=None"
              ")) after connection broken by 'NewConnectionError(\"Failed to establish a new "
              "connection: [Errno 111] Connection refused\")': /simple/flask/\n" + NO_PROJECT
              .replace("flask-nonexistent-pkg-zz", "flask"))
    refusal = pipfail.read(output)
    assert refusal is not None and refusal.unreached and refusal.missing == "flask"
    assert refusal.reason.endswith("; the index was not reached: Retrying (Retry(total=4, "
                                   "connect=None, read=None, redirect=None, status=None)) after "
                                   "connection broken by 'NewConnectionError(\"Failed to "
                                   "establish a new connection: [Errno 111] Connection "
                                   "refused\")': /simple/flask/")
    assert pipfail.floor_to_blame(Path("/no/python"), refusal, (2, 17), True, ()) is None
