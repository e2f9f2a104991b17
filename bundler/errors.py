"""The one exception family that reaches the user as a single clear line, and how any text a
user did not write (a value from a spec, a patch, a program's output) is shown on a terminal."""

from __future__ import annotations

import re

# C0 but tab and line feed, DEL, C1 and the Unicode line and paragraph separators: what a
# terminal acts on (ESC sequences clear it, move the cursor, retitle the window) or splits lines at.
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str, lines: bool = False) -> str:
    """`text` on one line, every control character written as Python writes it in a string
    (`\\x1b`, `\\n`); with `lines`, line feeds are kept (a message of several lines)."""
    text = _UNPRINTABLE.sub(_escaped, text)
    return text if lines else text.replace("\n", "\\n")


def _escaped(match: re.Match[str]) -> str:
    return repr(match[0])[1:-1]


class BundlerError(Exception):
    """A failure the user can act on; the CLI prints it as one line and exits 1."""

    exit_code = 1


class UsageError(BundlerError):
    """The command line or the spec was used wrongly; exit code 2."""

    exit_code = 2


class DamagedRecord(BundlerError, ValueError):
    """A record of bundler's that exists but cannot be read (bundle/record.py): a ValueError too,
    as a record's parse errors always were, so that who tolerates a bad record still does."""

    why = ""  # what is wrong with it, without the file's name
