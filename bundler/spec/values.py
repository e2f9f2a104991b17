"""What each spec value becomes, checked before it is written anywhere: a string that reaches a
generated file may not carry a line break or a control character, the version becomes a file name,
users and groups must be account names, and the [program:x] options must be what supervisor's own
parser (supervisor.datatypes) accepts, so that no value can take the whole bundle down at start."""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Mapping
from typing import Any

from bundler.spec.checker import Checker

VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}\Z")
ACCOUNT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}\Z")  # POSIX portable user/group names
MAX_NUMPROCS = 256
# C0 (tab and line breaks included), DEL, C1 and the Unicode line and paragraph separators:
# what a terminal acts on, an ini or XML-RPC answer cannot carry, or str.splitlines() splits.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# In a command's words and environment values, the whitespace a value may mean (a tab separator,
# a multi-line certificate) reaches the process through bundler.launch's JSON file (render.py);
# every other control character is refused there too.
_LAUNCHED_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")
_LAUNCHED = ("command", "environment")
_COMMENT = re.compile(r"\s[;#]")  # what the ini parser takes for a comment's start


def ini_safe(value: str) -> bool:
    """True when supervisor's ini parser reads `value` back unchanged as the value of `key=value`
    (no comment start, no line break, no edge whitespace), whatever the server's locale encoding
    (supervisor reads its files in it: ASCII only), and its XML-RPC answers (XML 1.0) and a
    terminal can show it (no control character)."""
    return value.isascii() and not _COMMENT.search(value) and not CONTROL.search(value) \
        and value == value.strip()


# Options checked with a supervisor.datatypes converter, and the least value of integer ones.
_AT_LEAST_ZERO = ("startsecs", "startretries", "stopwaitsecs", "numprocs_start",
                  "stdout_logfile_backups", "stderr_logfile_backups")
_BYTE_SIZES = ("stdout_logfile_maxbytes", "stderr_logfile_maxbytes", "stdout_capture_maxbytes")


def no_control_characters(raw: Any, c: Checker, table: tuple[str, ...] = (),
                          key: str | None = None, allowed: bool = False) -> None:
    """Every key and string in the document is free of line breaks and control characters
    (`allowed`: but for the tab and line breaks of a service's command and environment);
    below [table.name] (environment, health) an error names the key that holds the value."""
    if isinstance(raw, Mapping):
        for name, value in raw.items():
            if CONTROL.search(str(name)):
                raise c.fail(table, key, f"key {str(name)[:40]!r} has a control character")
            launched = len(table) == 2 and table[0] == "services" and key is None \
                and name in _LAUNCHED
            if isinstance(value, Mapping) and key is None and len(table) < 2:
                no_control_characters(value, c, (*table, str(name)))
            else:
                no_control_characters(value, c, table, key or str(name), allowed or launched)
    elif isinstance(raw, list):
        for item in raw:
            no_control_characters(item, c, table, key, allowed)
    elif isinstance(raw, str):
        found = (_LAUNCHED_CONTROL if allowed else CONTROL).search(raw)
        if found:
            what = "a NUL character" if found[0] == "\x00" else \
                "a line break" if found[0] in "\n\r\u2028\u2029" else \
                f"the control character {found[0]!r}"
            why = "no generated file can hold" if not allowed else "no process can be given" \
                if found[0] == "\x00" else "a command or environment value may not hold (tab " \
                "and line breaks only: a terminal or log reader acts on the others)"
            raise c.fail(table, key, f"{key} {raw[:40]!r} has {what}, which {why}")


def command_words(c: Checker, t: tuple[str, ...], command: str) -> list[str]:
    """The words of a service's command, split as the build splits it (shlex); the program,
    which supervisor's config names itself (render.py), must be writable there."""
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise c.fail(t, "command", f"command {command[:60]!r} cannot be split into words "
                     f"({exc}): close its quotes, or escape them") from None
    if not words or not words[0]:
        raise c.fail(t, "command", "command names no program")
    if "%(here)s" in words[0] or not ini_safe(shlex.quote(words[0])):
        raise c.fail(t, "command", f"program {words[0][:60]!r} cannot be written to a supervisor "
                     "config: ASCII only, no line break or control character, no '%(here)s', "
                     "no space before ';' or '#'")
    return words


HOST_NAME_RE = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9-]{1,63}){0,10}\Z")
_PART = r"(0[xX][0-9A-Fa-f]*|[0-9]+)"
_NUMERIC = re.compile(rf"({_PART}\.){{0,3}}{_PART}\Z")  # what inet_aton reads as an IPv4 address


def listen_host(c: Checker, t: tuple[str, ...], host: str, ipv4_only: bool) -> tuple[str, bool]:
    """The address to listen on (an IPv6 one without its brackets) and whether it stays on this
    host: any 127/8 address, ::1 and localhost do. Short and octal IPv4 forms (127.1, 0177.0.0.1)
    are refused, not guessed: programs read them differently."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        address = None
    if address is None and not _NUMERIC.fullmatch(bare) and HOST_NAME_RE.fullmatch(bare):
        return bare, bare.lower() == "localhost"
    if address is None:
        hint = ": write it in full, e.g. 127.0.0.1 (short and octal forms like 127.1 are read " \
            "differently by different programs)" if _NUMERIC.fullmatch(bare) else ""
        raise c.fail(t, "host", f"host {host[:60]!r} is not a host name or IP address{hint}")
    if ipv4_only and address.version == 6:
        raise c.fail(t, "host", f"host {host!r}: supervisor's web server listens on IPv4 only "
                     "(use 127.0.0.1, or 0.0.0.0 with allow_remote = true)")
    return str(address), address.is_loopback


def version(c: Checker, value: str) -> None:
    if not VERSION_RE.fullmatch(value) or value in (".", ".."):
        raise c.fail(("bundle",), "version", f"version {value!r} becomes part of file names: use "
                     "letters, digits, '.', '_', '+', '-' (not first), at most 100")


GLIBC_RE = re.compile(r"2\.(\d{1,2})\Z")


def glibc(c: Checker, value: str | None) -> tuple[int, int] | None:
    """[bundle] glibc = "2.17": the floor, as (2, 17)."""
    if value is None:
        return None
    match = GLIBC_RE.fullmatch(value)
    if not match or int(match[1]) < 5:
        raise c.fail(("bundle",), "glibc", f"glibc {value!r} is not a glibc version: write the "
                     "oldest the servers have, e.g. \"2.17\" (CentOS 7), \"2.28\" (RHEL 8), "
                     "\"2.31\" (Debian 11, Ubuntu 20.04)")
    return (2, int(match[1]))


def account(c: Checker, table: tuple[str, ...], key: str, value: str | None) -> None:
    if value is not None and not ACCOUNT_RE.fullmatch(value):
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
    for key, value in options.items():
        if isinstance(value, str) and not ini_safe(value):
            raise c.fail(t, key, f"{key} {value!r} cannot be written to a supervisor config: "
                         "ASCII only, no space before ';' or '#', none at either end")
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
        process_names(c, t, name, options["process_name"], numprocs,
                      options.get("numprocs_start", 0))


def process_names(c: Checker, t: tuple[str, ...], name: str, pattern: str,
                  numprocs: int, start: int = 0) -> list[str]:
    """The names supervisor gives a service's processes with process_name = `pattern`."""
    from supervisor import datatypes

    names = []
    for number in range(start, start + numprocs):
        expansions = {"program_name": name, "group_name": name, "process_num": number,
                      "numprocs": numprocs, "host_node_name": "host", "here": "/bundle"}
        try:
            names.append(datatypes.process_or_group_name(pattern % expansions))
        except (KeyError, ValueError, TypeError) as exc:
            raise c.fail(t, "process_name", f"process_name {pattern!r} is refused by supervisor "
                         f"({exc.__class__.__name__}: {exc}); it may use %(program_name)s, "
                         "%(process_num)d, %(group_name)s, %(host_node_name)s") from None
    if "" in names:
        raise c.fail(t, "process_name", f"process_name {pattern!r} gives a process no name")
    if len(set(names)) != len(names):
        raise c.fail(t, "process_name", f"process_name {pattern!r} gives two processes one name")
    return names


def log_names(service: str, numprocs: int, start: int = 0) -> list[str]:
    """The stems of a service's log files (render.py names them so: process_num counts from
    numprocs_start)."""
    if numprocs == 1:
        return [service]
    return [f"{service}_{n:02d}" for n in range(start, start + numprocs)]


_NUMBERED = re.compile(r"(.+)_\d+")


def unique_logs(c: Checker, services: Mapping[str, tuple[int, int]]) -> None:
    """No two services write one log file (`web` with numprocs 2 and a service `web_00`), and no
    service is named like another's numbered processes (`web_00` beside `web`: `logs web` reads
    web_NN.log, and a later numprocs would give both one file). `services`: name -> (numprocs,
    numprocs_start)."""
    owner: dict[str, str] = {}
    for service, (numprocs, start) in services.items():
        for stem in log_names(service, numprocs, start):
            if stem in owner:
                raise c.fail(("services", service), None, f"its log {stem}.log is also service "
                             f"{owner[stem]!r}'s: rename one of them")
            owner[stem] = service
    for service in services:
        numbered = _NUMBERED.fullmatch(service)
        if numbered and numbered[1] in services:
            raise c.fail(("services", service), None, f"its name reads as a process of service "
                         f"{numbered[1]!r} (whose processes log to {numbered[1]}_NN.log): "
                         "rename one of them")
