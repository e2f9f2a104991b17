"""URLs as bundler shows them: without their secrets.

A webhook's `?token=`, a probe's `?key=`, an index's `user:password@` are credentials. Every
line bundler writes to a log, the history or the terminal passes through `redact`, which hides
each URL's userinfo and query and keeps where it points (scheme, host, port, path, fragment):
enough to tell which URL failed, nothing to reuse. The URLs themselves are used unchanged.
"""

from __future__ import annotations

import re

HIDDEN = "***"
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")
_TRAILING = ".,:;!)]}"  # punctuation after a URL in a sentence, kept out of it


def redact(text: str) -> str:
    """`text` with the userinfo and query of every URL in it hidden."""
    if "://" not in text:
        return text
    return _URL.sub(lambda m: _redact_match(m.group(0)), text)


def _redact_match(found: str) -> str:
    url = found.rstrip(_TRAILING)
    return redact_url(url) + found[len(url):]


def redact_url(url: str) -> str:
    """One URL with its userinfo and query hidden."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    netloc, tail = rest[:end], rest[end:]
    if "@" in netloc:
        netloc = f"{HIDDEN}@{netloc.rpartition('@')[2]}"
    path, query, after = tail.partition("?")
    if "#" in path:  # a fragment, and no query (a '?' after '#' is the fragment's)
        query = ""
        path, after = tail, ""
    fragment = after[after.index("#"):] if "#" in after else ""
    return f"{scheme}://{netloc}{path}" + (f"?{HIDDEN}{fragment}" if query else "")
