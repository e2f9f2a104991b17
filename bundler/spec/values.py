"""What each spec value becomes, checked before it is written anywhere: a string that reaches a
generated file may not carry a line break or a control character, the version becomes a file name,
users and groups must be account names, and the [program:x] options must be what supervisor's own
parser (supervisor.datatypes) accepts, so that no value can take the whole bundle down at start."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bundler.spec.checker import Checker

VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")
ACCOUNT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")  # POSIX portable user/group names
MAX_NUMPROCS = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LAUNCHED = ("command", "environment")  # render.py hands what an .ini cannot hold to bundler.launch

# Options checked with a supervisor.datatypes converter, and the least value of integer ones.
_AT_LEAST_ZERO = ("startsecs", "startretries", "stopwaitsecs", "numprocs_start",
                  "stdout_logfile_backups", "stderr_logfile_backups")
_BYTE_SIZES = ("stdout_logfile_maxbytes", "stderr_logfile_maxbytes", "stdout_capture_maxbytes")


def no_control_characters(raw: Any, c: Checker, table: tuple[str, ...] = (),
                          key: str | None = None) -> None:
    """Every key and string in the document is free of line breaks and control characters;
    below [table.name] (environment, health) an error names the key that holds the value."""
    if isinstance(raw, Mapping):
        for name, value in raw.items():
            if _CONTROL.search(str(name)):
                raise c.fail(table, None, f"key {str(name)!r} has a control character")
            if len(table) == 2 and table[0] == "services" and key is None and name in _LAUNCHED:
                # written to a JSON file when supervisor's syntax cannot hold them; no process
                # can be given a NUL, though
                if _has_nul(value):
                    raise c.fail(table, str(name), f"{name} holds a NUL character")
                continue
            if isinstance(value, Mapping) and key is None and len(table) < 2:
                no_control_characters(value, c, (*table, str(name)))
            else:
                no_control_characters(value, c, table, key or str(name))
    elif isinstance(raw, list):
        for item in raw:
            no_control_characters(item, c, table, key)
    elif isinstance(raw, str) and _CONTROL.search(raw):
        raise c.fail(table, key, f"{key} {raw[:40]!r} has a line break or control character, "
                     "which no generated file can hold")


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    items = value.values() if isinstance(value, Mapping) else value if isinstance(value, list) else ()
    return any(_has_nul(item) for item in items)


def version(c: Checker, value: str) -> None:
    if not VERSION_RE.match(value) or value in (".", ".."):
        raise c.fail(("bundle",), "version", f"version {value!r} becomes part of file names: use "
                     "letters, digits, '.', '_', '+', '-' (not first), at most 100")


GLIBC_RE = re.compile(r"^2\.(\d{1,2})$")


def glibc(c: Checker, value: str | None) -> tuple[int, int] | None:
    """[bundle] glibc = "2.17": the floor, as (2, 17)."""
    if value is None:
        return None
    match = GLIBC_RE.match(value)
    if not match or int(match[1]) < 5:
        raise c.fail(("bundle",), "glibc", f"glibc {value!r} is not a glibc version: write the "
                     "oldest the servers have, e.g. \"2.17\" (CentOS 7), \"2.28\" (RHEL 8), "
                     "\"2.31\" (Debian 11, Ubuntu 20.04)")
    return (2, int(match[1]))


def account(c: Checker, table: tuple[str, ...], key: str, value: str | None) -> None:
    if value is not None and not ACCOUNT_RE.match(value):
        raise c.fail(table, key, f"{key} {value!r} is not a user or group name (letters, digits, "
                     "'_', '.', '-', at most 32, not starting with a digit or '-')")


def supervisor_options(c: Checker, t: tuple[str, ...], name: str, options: Mapping[str, Any],
                       numprocs: int) -> None:
    """The [program:x] options as supervisor would read them."""
    from supervisor import datatypes

    if not 1 <= numprocs <= MAX_NUMPROCS:
        raise c.fail(t, "numprocs", f"numprocs must be between 1 and {MAX_NUMPROCS}")
    checks = {"exitcodes": lambda v: datatypes.list_of_exitcodes(
                  ",".join(map(str, v)) if isinstance(v, list) else str(v)),
              "stopsignal": datatypes.signal_number,
              "umask": datatypes.octal_type,
              **{k: lambda v: datatypes.byte_size(str(v)) for k in _BYTE_SIZES}}
    for key, check in checks.items():
        if key in options:
            try:
                check(options[key])
            except (ValueError, TypeError, OverflowError) as exc:
                raise c.fail(t, key, f"{key} = {options[key]!r} is refused by supervisor ({exc})") \
                    from None
    if "umask" in options and not 0 <= int(options["umask"], 8) <= 0o777:
        raise c.fail(t, "umask", f"umask {options['umask']!r} is not between 000 and 777")
    for key in _AT_LEAST_ZERO:
        if key in options and options[key] < 0:
            raise c.fail(t, key, f"{key} must be 0 or more, not {options[key]}")
    if "process_name" in options:
        process_names(c, t, name, options["process_name"], numprocs)


def process_names(c: Checker, t: tuple[str, ...], name: str, pattern: str,
                  numprocs: int) -> list[str]:
    """The names supervisor gives a service's processes with process_name = `pattern`."""
    from supervisor import datatypes

    names = []
    for number in range(numprocs):
        expansions = {"program_name": name, "group_name": name, "process_num": number,
                      "numprocs": numprocs, "host_node_name": "host", "here": "/bundle"}
        try:
            names.append(datatypes.process_or_group_name(pattern % expansions))
        except (KeyError, ValueError, TypeError) as exc:
            raise c.fail(t, "process_name", f"process_name {pattern!r} is refused by supervisor "
                         f"({exc.__class__.__name__}: {exc}); it may use %(program_name)s, "
                         "%(process_num)d, %(group_name)s, %(host_node_name)s") from None
    if len(set(names)) != len(names):
        raise c.fail(t, "process_name", f"process_name {pattern!r} gives two processes one name")
    return names


def log_names(service: str, numprocs: int) -> list[str]:
    """The stems of a service's log files (render.py names them so)."""
    if numprocs == 1:
        return [service]
    return [f"{service}_{n:02d}" for n in range(numprocs)]


def unique_logs(c: Checker, services: Mapping[str, int]) -> None:
    """No two services write one log file (`web` with numprocs 2 and a service `web_00`)."""
    owner: dict[str, str] = {}
    for service, numprocs in services.items():
        for stem in log_names(service, numprocs):
            if stem in owner:
                raise c.fail(("services", service), None, f"its log {stem}.log is also service "
                             f"{owner[stem]!r}'s: rename one of them")
            owner[stem] = service
