"""Ordering bundle versions ([bundle] version), which both sides need: a patch build refuses a
version that does not move forward, and `apply` a release older than the one installed.

Versions are free-form (`values.VERSION_RE`); the common shapes are ordered: numbers separated by
dots, with an optional `v` before them (`2026.11.1`, `0.1.2`, `v3.10`), and after them a
pre-release (`a1`, `b2`, `rc1`, `dev3`: before the release) or a post-release (`post1`: after).
Trailing zeros do not count (`1.0` is `1.0.0`). Two versions of other shapes are ordered only when
they are equal.
"""

from __future__ import annotations

import re

_SHAPE = re.compile(r"^[vV]?(\d+(?:\.\d+)*)(?:[._+-]?([A-Za-z]+)[._-]?(\d*))?$")
_PHASES = {"dev": -4, "a": -3, "alpha": -3, "b": -2, "beta": -2, "c": -1, "rc": -1, "pre": -1,
           "post": 1}


def _key(version: str) -> tuple[tuple[int, ...], int, int] | None:
    m = _SHAPE.match(version)
    if m is None:
        return None
    numbers = [int(n) for n in m.group(1).split(".")]
    while len(numbers) > 1 and numbers[-1] == 0:
        numbers.pop()
    phase = 0
    if m.group(2) is not None:
        found = _PHASES.get(m.group(2).lower())
        if found is None:
            return None
        phase = found
    return tuple(numbers), phase, int(m.group(3) or 0)


def compare(a: str, b: str) -> int | None:
    """-1, 0 or 1 as `a` is older than, the same as, or newer than `b`; None when they cannot
    be ordered (another shape, and not equal)."""
    if a == b:
        return 0
    ka, kb = _key(a), _key(b)
    if ka is None or kb is None:
        return None
    return (ka > kb) - (ka < kb)
