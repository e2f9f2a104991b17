"""The one exception family that reaches the user as a single clear line."""

from __future__ import annotations


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
