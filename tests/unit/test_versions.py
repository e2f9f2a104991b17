import pytest

from bundler.spec.versions import compare


@pytest.mark.parametrize("older, newer", [
    ("0.1.1", "0.1.2"), ("0.1.9", "0.1.10"), ("2026.11.1", "2026.12.1"), ("1.9", "1.10.0"),
    ("1.0rc1", "1.0"), ("1.0.dev3", "1.0a1"), ("1.0a1", "1.0b1"), ("1.0b2", "1.0rc1"),
    ("1.0", "1.0.post1"), ("v1.2", "1.3"), ("1.0-rc.1", "1.0-rc.2"),
])
def test_versions_are_ordered(older: str, newer: str) -> None:
    assert compare(older, newer) == -1
    assert compare(newer, older) == 1


def test_trailing_zeros_and_a_leading_v_do_not_count() -> None:
    assert compare("1.0", "1.0.0") == 0
    assert compare("v2.1", "2.1") == 0


def test_other_shapes_are_ordered_only_when_equal() -> None:
    assert compare("blue", "green") is None
    assert compare("1.0-foo", "1.1") is None
    assert compare("nightly", "nightly") == 0
