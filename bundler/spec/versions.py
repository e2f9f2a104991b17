"""[bundle] version as an order: which release comes after which, and the next one.

A release must move forward (a patch build refuses one that does not), so versions are ordered
as PEP 440 orders the forms releases use: numbers separated by dots (1.4.2, calendar versions
such as 2026.11.1; 1.0 and 1.0.0 are the same), pre-releases (1.5.0rc1, 1.5.0-beta.2: before
1.5.0), post and dev releases, a leading "v", a "+local" part (ignored). Anything else
("blue", "2026-11-01") is a valid version that has no order: refused only where the order
matters. No dependency: `packaging` is not one of bundler's, and the server side uses this too.
"""

from __future__ import annotations

import re

_FORM = re.compile(r"""
    v?(?P<release>\d+(?:\.\d+)*)
    (?:[-_.]?(?P<pre>alpha|a|beta|b|preview|pre|c|rc)[-_.]?(?P<pre_n>\d+)?)?
    (?:[-_.]?(?P<post>post|rev|r)[-_.]?(?P<post_n>\d+)?)?
    (?:[-_.]?(?P<dev>dev)[-_.]?(?P<dev_n>\d+)?)?
    (?:\+[a-z0-9]+(?:[-_.][a-z0-9]+)*)?
""", re.IGNORECASE | re.VERBOSE)
_PRE_RANK = {"alpha": 0, "a": 0, "beta": 1, "b": 1, "preview": 2, "pre": 2, "c": 2, "rc": 2}
_NONE = 2**63  # sorts after every number: "no dev part" comes after any dev release
PARTS = ("major", "minor", "patch")  # the first, second and third number

Key = tuple[tuple[int, ...], tuple[int, int], int, int]


def key(version: str) -> Key | None:
    """What `version` sorts by, or None when it has no order."""
    m = _FORM.fullmatch(version.strip())
    if m is None:
        return None
    release = tuple(int(n) for n in m["release"].split("."))
    while len(release) > 1 and release[-1] == 0:
        release = release[:-1]
    post = int(m["post_n"] or 0) if m["post"] else -1
    dev = int(m["dev_n"] or 0) if m["dev"] else _NONE
    if m["pre"]:
        pre = (_PRE_RANK[m["pre"].lower()], int(m["pre_n"] or 0))
    elif m["dev"] and not m["post"]:
        pre = (-1, 0)  # 1.0.dev1 comes before 1.0a1
    else:
        pre = (3, 0)   # a final release comes after its pre-releases
    return release, pre, post, dev


def compare(a: str, b: str) -> int | None:
    """-1, 0 or 1 as release `a` comes before, with or after `b`; None when one has no order
    (two equal texts are equal, ordered or not)."""
    if a == b:
        return 0
    ka, kb = key(a), key(b)
    if ka is None or kb is None:
        return None
    return (ka > kb) - (ka < kb)


def bump(version: str, part: str) -> str:
    """`version` with its `part` (major: the first number, minor: the second, patch: the third)
    increased and the numbers after it set to 0: 2026.11.1 -> 2026.11.2 (patch), 1.4.2 -> 1.5.0
    (minor). ValueError, saying why, for a version that is not numbers alone or has no such
    number."""
    index = PARTS.index(part)
    m = re.fullmatch(r"(v?)(\d+(?:\.\d+)*)", version)
    if m is None:
        raise ValueError(f"version {version} is not numbers separated by dots, which --bump "
                         "counts up: give the next version itself (`bundler version NEW`)")
    numbers = [int(n) for n in m[2].split(".")]
    if index >= len(numbers):
        example = ".".join(map(str, numbers + [0] * (index - len(numbers)) + [1]))
        raise ValueError(f"version {version} has no {part} number (the "
                         f"{('first', 'second', 'third')[index]}): bump "
                         f"{' or '.join(PARTS[:len(numbers)])}, or give the version itself, e.g. "
                         f"`bundler version {example}`")
    numbers[index] += 1
    numbers[index + 1:] = [0] * (len(numbers) - index - 1)
    return m[1] + ".".join(map(str, numbers))


def next_after(version: str) -> tuple[str, str] | None:
    """The bump that moves `version` on by its last number (its part, the new version), or
    None when --bump cannot count it up."""
    m = re.fullmatch(r"v?\d+(?:\.\d+)*", version)
    if m is None:
        return None
    part = PARTS[min(version.count("."), len(PARTS) - 1)]
    return part, bump(version, part)
