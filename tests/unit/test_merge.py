"""The three-way merge of a release into a server's services and groups (spec/merge.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bundler.spec.live import Definitions, LiveManifest
from bundler.spec.merge import Merged, merge

BASE = """
[services.a]
command = "python -m a"
code = "v1"
python = "base"
[services.b]
command = "python -m b"
code = "v1"
python = "envs/pyocr"
environment = { X = "1" }
[groups.g]
programs = ["a", "b"]
"""


def _defs(text: str) -> Definitions:
    return LiveManifest.parse(text, Path("bundle.toml")).definitions()


def _by_name(found: list[Merged]) -> dict[str, Merged]:
    return {f"{m.kind}.{m.name}": m for m in found}


def test_release_changes_apply_and_server_changes_stay() -> None:
    server = BASE.replace('code = "v1"\npython = "envs/pyocr"', 'code = "v2"\npython = "pyocr"')
    release = BASE.replace('command = "python -m a"\ncode = "v1"', 'command = "python -m a"\n'
                           'code = "v3"') + '[services.c]\ncommand = "c"\ncode = "v4"\n'
    found = _by_name(merge(_defs(BASE), _defs(server), _defs(release)))
    assert found["services.a"].result is not None and found["services.a"].result["code"] == "v3"
    assert found["services.b"].kept and not found["services.b"].changes
    assert found["services.b"].result is not None and found["services.b"].result["code"] == "v2"
    assert found["services.c"].server is None and found["services.c"].changes
    assert found["services.c"].describe() == "service c: added"
    assert not found["groups.g"].changes
    assert not any(m.conflicts for m in found.values())


def test_both_sides_changing_other_keys_of_one_service_merge() -> None:
    server = BASE.replace('environment = { X = "1" }', 'environment = { X = "2" }')
    release = BASE.replace('python = "envs/pyocr"', 'python = "envs/pytest"')
    b = _by_name(merge(_defs(BASE), _defs(server), _defs(release)))["services.b"]
    assert b.result == {"command": "python -m b", "code": "v1", "python": "envs/pytest",
                        "environment": {"X": "2"}}
    assert not b.conflicts
    assert b.describe() == "service b: python: envs/pyocr -> envs/pytest"


@pytest.mark.parametrize("prefer,code", [(None, None), ("release", "v3"), ("server", "v2")])
def test_one_key_changed_on_both_sides_is_a_conflict_unless_preferred(prefer: str | None,
                                                                       code: str | None) -> None:
    server = BASE.replace('command = "python -m a"\ncode = "v1"', 'command = "python -m a"\n'
                          'code = "v2"')
    release = server.replace('code = "v2"', 'code = "v3"')
    a = _by_name(merge(_defs(BASE), _defs(server), _defs(release), prefer))["services.a"]
    if prefer is None:
        assert a.conflicts == ("code",)
        assert a.describe() == "service a: CONFLICT: changed here and by the release: code (here " \
                               "v2, release v3)"
    else:
        assert not a.conflicts and a.result is not None and a.result["code"] == code


def test_removed_by_the_release_and_changed_here_is_a_conflict() -> None:
    server = BASE.replace('command = "python -m b"', 'command = "python -m b --fast"')
    release = BASE.replace('[services.b]', '[services.gone]').replace('["a", "b"]', '["a"]')
    found = _by_name(merge(_defs(BASE), _defs(server), _defs(release)))
    assert found["services.b"].conflicts and "removed by the release" in found["services.b"].describe()
    assert found["groups.g"].result == {"programs": ["a"]}
    removed = _by_name(merge(_defs(BASE), _defs(BASE), _defs(release)))["services.b"]
    assert removed.result is None and removed.describe() == "service b: removed"


def test_a_service_added_here_stays_and_the_same_change_on_both_sides_is_no_conflict() -> None:
    server = BASE + '[services.mine]\ncommand = "m"\ncode = "v1"\n'
    release = BASE.replace('code = "v1"\npython = "base"', 'code = "v2"\npython = "base"')
    server = server.replace('code = "v1"\npython = "base"', 'code = "v2"\npython = "base"')
    found = _by_name(merge(_defs(BASE), _defs(server), _defs(release)))
    assert found["services.mine"].kept and found["services.mine"].result is not None
    assert not found["services.a"].changes and not found["services.a"].conflicts
