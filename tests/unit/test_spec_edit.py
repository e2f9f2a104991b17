from __future__ import annotations

from pathlib import Path

import pytest

from bundler.errors import BundlerError, UsageError
from bundler.spec import edit as spec_edit
from bundler.spec.checker import SpecError
from bundler.spec.load import load_spec

SPEC = '''\
# top comment: keep me
[bundle]
name = "box"   # inline comment: keep me
version = "1"

[code.v1]
path = "src"
[code.v2]
path = "src2"

# a service comment: keep me
[services.a]
command = "python -m a"
code = "v1"
'''


@pytest.fixture
def spec_path(tmp_path: Path) -> Path:
    path = tmp_path / "bundle.toml"
    path.write_text(SPEC)
    return path


def test_edits_keep_comments_and_produce_a_valid_spec(spec_path: Path) -> None:
    spec_edit.edit(spec_path, lambda d: spec_edit.add_env(d, "pyocr", "envs/base", None, None,
                                                          ["pillow"], None))
    spec_edit.edit(spec_path, lambda d: spec_edit.add_code(d, "v3", None, ".", "v3", [".", "lib"],
                                                           True))
    spec_edit.edit(spec_path, lambda d: spec_edit.add_service(
        d, "svc3", "envs/pyocr", "v3", "python -m s", {"A": "1"}, 2, "grp", {"startsecs": 5}))
    spec_edit.edit(spec_path, lambda d: spec_edit.switch(d, "a", "v2"))
    text = spec_path.read_text()
    for comment in ("# top comment: keep me", "# inline comment: keep me",
                    "# a service comment: keep me"):
        assert comment in text
    spec = load_spec(spec_path)
    assert spec.interpreters["pyocr"].virtualenv == "base"
    assert spec.interpreters["pyocr"].requirements == ("pillow",)
    assert spec.code["v3"].git == "." and spec.code["v3"].ref == "v3" and spec.code["v3"].bytecode
    assert spec.code["v3"].pythonpath == (".", "lib")
    svc = spec.services["svc3"]
    assert (svc.python, svc.code, svc.numprocs, svc.group) == ("pyocr", "v3", 2, "grp")
    assert svc.environment == {"A": "1"} and svc.options == {"startsecs": 5}
    assert spec.services["a"].code == "v2"


@pytest.mark.parametrize("change, error, message", [
    (lambda d: spec_edit.switch(d, "a", "v9"), SpecError, "code names version 'v9'"),
    (lambda d: spec_edit.switch(d, "nope", "v1"), UsageError, "no service 'nope'"),
    (lambda d: spec_edit.add_service(d, "b", "pyocr", "v1", "python x", {}, None, None, {}),
     SpecError, "python names 'pyocr'"),
    (lambda d: spec_edit.add_service(d, "a", "base", "v1", "python x", {}, None, None, {}),
     UsageError, "service 'a' already exists"),
    (lambda d: spec_edit.add_service(d, "b", "base", "v1", "python x", {}, None, None,
                                     {"stopsignall": "INT"}),
     SpecError, "did you mean 'stopsignal'"),
    (lambda d: spec_edit.add_env(d, "e", "base", "/opt/py", None, [], None), UsageError,
     "exactly one of --virtualenv"),
    (lambda d: spec_edit.add_code(d, "v3", "src", None, "v1", [], False), UsageError,
     "--ref applies to --git only"),
    (lambda d: spec_edit.add_code(d, "bad/name", "src", None, None, [], False), UsageError,
     "invalid code name"),
])
def test_a_rejected_edit_leaves_the_file_untouched(spec_path: Path, change, error, message) -> None:
    with pytest.raises(error, match=message):
        spec_edit.edit(spec_path, change)
    assert spec_path.read_text() == SPEC


@pytest.mark.parametrize("text, expected", [
    ("startsecs=10", ("startsecs", 10)), ("autostart=false", ("autostart", False)),
    ("exitcodes=[0, 2]", ("exitcodes", [0, 2])), ("user=app", ("user", "app")),
    ("stopsignal=INT", ("stopsignal", "INT"))])
def test_set_options_are_read_as_toml_values_or_strings(text: str, expected: tuple) -> None:
    assert spec_edit.parse_option(text) == expected


def test_init_writes_a_spec_that_validates(tmp_path: Path) -> None:
    path = spec_edit.init_project(tmp_path / "smartbox", "smartbox")
    spec = load_spec(path)
    assert spec.services["hello"].code == "v1"
    assert (tmp_path / "smartbox" / "src" / "hello" / "__main__.py").is_file()
    with pytest.raises(BundlerError, match="already exists"):
        spec_edit.init_project(tmp_path / "smartbox", "smartbox")


def test_a_built_bundles_manifest_is_not_edited(spec_path: Path) -> None:
    manifest = SPEC + '\n[build]\nbundler_version = "0.1.0"\n'
    spec_path.write_text(manifest)
    with pytest.raises(BundlerError, match="manifest of a built bundle"):
        spec_edit.edit(spec_path, lambda d: spec_edit.switch(d, "a", "v2"))
    assert spec_path.read_text() == manifest


USED = '''\
[bundle]
name = "box"
version = "1"

[code.v1]
path = "src"

# v2: the next release
[code.v2]
path = "src2"   # its folder
# last of v2

# the envs: keep me
[envs.py312]
python = "3.12"

[envs.ocr]
virtualenv = "py312"

[services.a]
command = "python -m a"
code = "v1"
python = "envs/py312"

[services.b]
command = "python -m b"
code = "v2"

[services.c]
command = "python -m c"
code = "v2"
python = "ocr"

[groups.sam]
programs = ["b"]
'''


@pytest.mark.parametrize("change, error, message", [
    (lambda d: spec_edit.remove_code(d, "v2"), BundlerError,
     r"code v2 is in use by b \(group sam\), c: switch them"),
    (lambda d: spec_edit.remove_code(d, "v3"), UsageError, "no code version 'v3'"),
    (lambda d: spec_edit.remove_env(d, "py312"), BundlerError,
     r"env py312 is in use by services a and virtualenvs envs/ocr \(made on it\)"),
    (lambda d: spec_edit.remove_env(d, "envs/ocr"), BundlerError, "env ocr is in use by services c"),
    (lambda d: spec_edit.remove_env(d, "base"), UsageError, "cannot be removed"),
    (lambda d: spec_edit.remove_env(d, "ocrr"), UsageError, "did you mean 'ocr'"),
])
def test_what_a_service_or_virtualenv_uses_is_not_removed(tmp_path: Path, change, error,
                                                          message) -> None:
    path = tmp_path / "bundle.toml"
    path.write_text(USED)
    with pytest.raises(error, match=message):
        spec_edit.edit(path, change)
    assert path.read_text() == USED


def test_removing_code_and_envs_keeps_the_comments_of_what_follows(tmp_path: Path) -> None:
    path = tmp_path / "bundle.toml"
    path.write_text(USED)

    def unused(doc) -> None:
        for name in ("b", "c"):
            spec_edit.remove_service(doc, name)
        spec_edit.remove_code(doc, "v2")
        spec_edit.remove_env(doc, "ocr")

    spec = spec_edit.edit(path, unused)
    assert set(spec.code) == {"v1"} and set(spec.interpreters) == {"base", "py312"}
    text = path.read_text()
    assert "# the envs: keep me\n[envs.py312]" in text  # held in v2's table by tomlkit
    assert "src2" not in text and "# its folder" not in text and "# last of v2" not in text
    assert "[envs.ocr]" not in text and "[groups" not in text
    assert "# v2: the next release" in text  # above v2's header: the table before holds it

    def last_env(doc) -> None:
        spec_edit.switch(doc, "a", None, "base")
        spec_edit.remove_env(doc, "envs/py312")

    spec_edit.edit(path, last_env)
    assert set(load_spec(path).interpreters) == {"base"} and "[envs" not in path.read_text()


CALENDAR = SPEC.replace('version = "1"', 'version = "2026.11.1"   # the release: keep me')


@pytest.mark.parametrize("new, part, after", [
    (None, "patch", "2026.11.2"), (None, "minor", "2026.12.0"), (None, "major", "2027.0.0"),
    ("2026.12.0rc1", None, "2026.12.0rc1"),
])
def test_the_version_is_set_or_bumped_and_comments_kept(spec_path: Path, new: str | None,
                                                        part: str | None, after: str) -> None:
    spec_path.write_text(CALENDAR)
    assert spec_edit.read_version(spec_path) == "2026.11.1"
    assert spec_edit.change_version(spec_path, new, part) == ("2026.11.1", after)
    assert spec_path.read_text() == CALENDAR.replace('"2026.11.1"', f'"{after}"')
    assert load_spec(spec_path).version == after


@pytest.mark.parametrize("version, part, refused", [
    ("1.4", "patch", "version 1.4 has no patch number (the third): bump major or minor, or give "
                     "the version itself, e.g. `bundler version 1.4.1`"),
    ("1", "minor", "version 1 has no minor number (the second): bump major"),
    ("1.5.0rc1", "patch", "version 1.5.0rc1 is not numbers separated by dots"),
])
def test_a_version_without_the_number_to_bump_is_refused(spec_path: Path, version: str,
                                                         part: str, refused: str) -> None:
    text = SPEC.replace('version = "1"', f'version = "{version}"')
    spec_path.write_text(text)
    with pytest.raises(UsageError, match=refused.replace("(", r"\(").replace(")", r"\)")
                       .replace(".", r"\.")):
        spec_edit.change_version(spec_path, None, part)
    assert spec_path.read_text() == text


def test_a_version_is_validated_as_the_spec_validates_it_and_an_integer_stays_one(
        spec_path: Path) -> None:
    with pytest.raises(SpecError, match="becomes part of file names"):
        spec_edit.change_version(spec_path, "../1", None)
    assert spec_path.read_text() == SPEC
    spec_path.write_text(SPEC.replace('version = "1"', "version = 7"))
    assert spec_edit.change_version(spec_path, None, "major") == ("7", "8")
    assert "version = 8\n" in spec_path.read_text()


@pytest.mark.parametrize("a, b, order", [
    ("2026.11.2", "2026.11.1", 1), ("0.1.1", "0.1.2", -1), ("0.1.10", "0.1.9", 1),
    ("1.0", "1.0.0", 0), ("1.0+build7", "1.0", 0), ("v1.2", "1.2", 0),
    ("1.5.0rc1", "1.5.0", -1), ("1.5.0-beta.2", "1.5.0-rc.1", -1), ("1.5.0a1", "1.5.0.dev3", 1),
    ("1.0.post1", "1.0", 1), ("2", "10", -1),
    ("blue", "green", None), ("2026-11-01", "2026-11-02", None), ("blue", "blue", 0),
])
def test_versions_are_ordered_as_releases_are(a: str, b: str, order: int | None) -> None:
    from bundler.spec import versions

    assert versions.compare(a, b) == order
    assert versions.compare(b, a) == (None if order is None else -order)
