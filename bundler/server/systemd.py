"""A systemd unit for a bundle's supervisord: rendered, validated, installed and removed.

The bundle's path enters the unit as systemd reads each directive (systemd.syntax(7) "Quoting",
systemd.service(5) "Command lines", systemd.unit(5) "Specifiers"): every '%' is doubled, as it
starts a specifier everywhere; the program of ExecStart= is one word, in double quotes when it
holds a space (it is never expanded, so '$' stays); WorkingDirectory= takes the rest of its line
as the path, unquoted (a quoted path is "not absolute"); Documentation= wants an ASCII URL, so
the path is percent-encoded there. UTF-8 letters need no escape. What no directive can carry (a
control character, a path that is not UTF-8) and what systemd refuses in a program's path (a
quote, a backslash), or a trailing space, which it would strip, is refused with where to move
the bundle. `systemd-escape` is for unit names; the unit's name comes from the bundle's name."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bundler import __version__, fsutil
from bundler.bundle.record import Record
from bundler.bundle.render import templates
from bundler.bundle.tree import Bundle
from bundler.errors import BundlerError
from bundler.fsutil import write_atomic
from bundler.runner import call
from bundler.spec.model import NAME_RE, Spec
from bundler.spec.values import ACCOUNT_RE

UNIT_DIR = Path("/etc/systemd/system")
NOFILE = 65536
STOP_MARGIN = 30  # seconds above the longest stopwaitsecs
HOMES = ("/home", "/root", "/run/user")


@dataclass(frozen=True)
class Unit:
    name: str   # e.g. bundler-smartbox.service
    text: str


UNIT_NAME_MAX = 255  # systemd's UNIT_NAME_MAX (256) counts the terminating NUL


def unit_path(path: Path) -> str:
    """The path checked for what a unit file can carry, '%' doubled (it starts a specifier)."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BundlerError(f"{path!r} is not valid UTF-8, which a systemd unit must be: move "
                           "the bundle to a path spelt in UTF-8") from None
    bad = sorted({c for c in text if ord(c) < 32 or ord(c) == 127 or c in "\"'\\"})
    if bad or text != text.rstrip():
        what = " ".join(repr(c) for c in bad) if bad else "a space at its end"
        raise BundlerError(f"systemd cannot run a bundle at {text!r}: its path holds {what}; move "
                           "the bundle to a path without it (spaces and letters of any language "
                           "are fine)")
    return text.replace("%", "%%")


def exec_word(path: Path) -> str:
    """A path as the program of an ExecStart= line: one word, quoted when it holds a space."""
    text = unit_path(path)
    return f'"{text}"' if any(c.isspace() for c in text) else text


def file_url(path: Path) -> str:
    """A path as a file:// URL for Documentation= (ASCII: percent-encoded, then '%' doubled)."""
    from urllib.parse import quote

    unit_path(path)
    return "file://" + quote(str(path), safe="/").replace("%", "%%")


def unit_name(spec: Spec, name: str | None) -> str:
    name = name or f"bundler-{spec.name}"
    name = name.removesuffix(".service")
    if not NAME_RE.fullmatch(name):
        raise BundlerError(f"unit name {name!r} is invalid: use letters, digits, '_', '.', '-'")
    if len(name) + len(".service") > UNIT_NAME_MAX:
        raise BundlerError(f"unit name {name!r} is too long for systemd (at most "
                           f"{UNIT_NAME_MAX - len('.service')} characters before .service): "
                           "choose a shorter --name")
    return f"{name}.service"


def render(bundle: Bundle, spec: Spec, name: str | None = None, user: str | None = None) -> Unit:
    if user is not None:
        if not ACCOUNT_RE.fullmatch(user):  # it is echoed in the hint, and written into the unit
            raise BundlerError(f"--user {user!r} is not an account name: use letters, digits, "
                               "'_', '.', '-' (not first), at most 32")
        try:
            pwd.getpwnam(user)
        except KeyError as exc:
            raise BundlerError(f"no user {user!r} on this machine: create it (useradd --system "
                               f"{user}) or leave out --user") from exc
        if spec.supervisor.user and spec.supervisor.user != user:
            raise BundlerError(f"--user {user}: this bundle runs as {spec.supervisor.user!r} "
                               "([supervisor] user); leave out --user (systemd starts it as root "
                               "and supervisord drops to that user)")
        if any(s.options.get("user") not in (None, user) for s in spec.services.values()):
            raise BundlerError(f"--user {user}: some services set their own user, which needs "
                               "supervisord to start as root; leave out --user")
    waits = [int(s.options.get("stopwaitsecs", 10)) for s in spec.services.values()]
    root = bundle.root
    directory = unit_path(root)
    unit = unit_name(spec, name)
    text = templates().get_template("systemd.service.j2").render(
        bundler_version=__version__, name=spec.name, version=spec.version, root=root,
        description=f"bundle {spec.name} {spec.version} (supervisord) at {root}".replace("%", "%%"),
        documentation=file_url(root / bundle.layout.etc / "supervisord.conf"),
        start=exec_word(root / "bin" / "start"), directory=directory, unit=unit,
        user=user, stop_timeout=max(waits, default=10) + STOP_MARGIN, nofile=NOFILE,
        protect_home=not any(str(root).startswith(h + "/") for h in HOMES))
    return Unit(unit, text)


def validate(unit: Unit) -> str | None:
    """What `systemd-analyze verify` says against the unit, or None when it is clean (or when
    systemd-analyze is not installed)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return None
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / unit.name
        path.write_text(unit.text)
        done = call([analyze, "verify", path], what="systemd-analyze verify", timeout=60)
    said = [line for line in done.output.splitlines() if unit.name in line or done.returncode != 0]
    if done.returncode == 0 and not said:
        return None
    return "; ".join(said) or f"exit {done.returncode}"


def require_systemd() -> None:
    if not (Path("/run/systemd/system").is_dir() and shutil.which("systemctl")):
        raise BundlerError("systemd is not running on this machine (no /run/systemd/system): "
                           "`install-systemd --print` shows the unit to install by hand")
    if os.geteuid() != 0:
        raise BundlerError("installing or removing a system unit needs root: run it with sudo")


def _systemctl(*args: str) -> None:
    done = call(["systemctl", *args], what=f"systemctl {' '.join(args)}", timeout=120, merge=False)
    if done.returncode != 0:
        raise BundlerError(f"systemctl {' '.join(args)} failed: {done.errors.strip()}")


def install(bundle: Bundle, unit: Unit, user: str | None, unit_dir: Path = UNIT_DIR) -> Path:
    """Write, enable and start the unit (the caller checked require_systemd)."""
    problem = validate(unit)
    if problem:
        raise BundlerError(f"systemd-analyze rejects the unit: {problem}")
    path = unit_dir / unit.name
    if path.exists() and f" at {bundle.root}.\n" not in path.read_text().split("\n", 1)[0] + "\n":
        raise BundlerError(f"{path} exists and runs another bundle: choose another --name")
    if user is not None:  # the service user writes logs, sockets and relocations
        entry = pwd.getpwnam(user)
        for folder, _, files in fsutil.walk(bundle.root):
            for item in (folder, *(os.path.join(folder, f) for f in files)):
                os.lchown(item, entry.pw_uid, entry.pw_gid)
    write_atomic(path, unit.text)
    UnitRecord(unit.name).write(bundle.unit_record)
    _systemctl("daemon-reload")
    _systemctl("enable", "--now", unit.name)
    return path


@dataclass(frozen=True)
class UnitRecord(Record):
    """run/systemd-unit: the name of the unit install-systemd made for this bundle, on a line."""

    name: str

    @classmethod
    def parse(cls, text: str) -> UnitRecord:
        name = text.strip()
        if not name or "/" in name or "\n" in name:
            raise ValueError(f"not a unit name: {text[:40]!r}")
        return cls(name)

    def text(self) -> str:
        return f"{self.name}\n"


def uninstall(bundle: Bundle, name: str, unit_dir: Path = UNIT_DIR) -> Path:
    """Stop, disable and remove the unit."""
    require_systemd()
    path = unit_dir / name
    if not path.exists():
        raise BundlerError(f"{path} does not exist: no unit {name} to remove")
    _systemctl("disable", "--now", name)
    path.unlink()
    bundle.unit_record.unlink(missing_ok=True)
    _systemctl("daemon-reload")
    return path


def managing_unit(bundle: Bundle, pid: int) -> str | None:
    """The unit recorded for this bundle, when the supervisord `pid` runs in its cgroup."""
    try:
        name = UnitRecord.read(bundle.unit_record).name
        cgroup = Path(f"/proc/{pid}/cgroup").read_text()
    except (OSError, ValueError):
        return None
    return name if f"/{name}" in cgroup else None
