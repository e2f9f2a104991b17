"""Which bundle a run/ folder and a supervisord belong to.

`cp -a` of a started bundle copies its run/: the token its processes carry, the pid file and the
socket record of the original's supervisord. Taken as they are, they would let the copy's bin/stop
shut the original down and kill its services. Two checks keep a copy away from the original:

- run/root records the root run/ was made for, by device and inode (a bundle moved within its
  file system keeps both). A run/ made for another root is not this bundle's: its token, pid file
  and socket record are not used, and bin/start drops them and makes the copy's own.
- a supervisord that answers on the socket must say which root it serves (bundler.root() in
  supervisor_rpc.py; one started by an older bundler, by the config file on its command line),
  and only one that serves this root is acted on (supervisor.Supervisor.alive).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bundler.bundle.record import Record
from bundler.bundle.tree import Bundle


@dataclass(frozen=True)
class RunRoot(Record):
    """run/root: "DEVICE INODE PATH" of the root bin/start made run/ for."""

    dev: int
    ino: int
    path: str

    @classmethod
    def of(cls, root: Path) -> RunRoot:
        st = os.stat(root)
        return cls(st.st_dev, st.st_ino, str(root))

    def same(self, other: RunRoot) -> bool:
        return (self.dev, self.ino) == (other.dev, other.ino)

    def text(self) -> str:
        return f"{self.dev} {self.ino} {self.path}\n"

    @classmethod
    def parse(cls, text: str) -> RunRoot:
        dev, ino, path = text.rstrip("\n").split(" ", 2)
        return cls(int(dev), int(ino), path)


def _one_run(bundle: Bundle) -> list[Path]:
    """What of run/ belongs to one root's run: a copy must not use the original's."""
    return [bundle.run_token, bundle.socket_record, bundle.pidfile, bundle.http_password,
            bundle.health_record]


def ours(bundle: Bundle) -> bool:
    """Whether run/ was made for this bundle's root; without run/root (a bundler that kept
    none), unless the supervisord of its pid file reads another bundle's config."""
    try:
        recorded = RunRoot.read(bundle.run_root)
    except FileNotFoundError:
        try:
            pid = int(bundle.pidfile.read_text().strip())
        except (OSError, ValueError):
            return True  # nothing runs from here: nothing to tell
        return pid_serves(pid, bundle) is not False
    except (OSError, ValueError):
        return False  # unreadable or damaged: trust none of run/
    return recorded.same(RunRoot.of(bundle.root))


def claim(bundle: Bundle) -> bool:
    """Make run/ this bundle's, before its supervisord starts: what a copy brought of another
    root's run is dropped. True when something was dropped."""
    dropped = False
    if not ours(bundle):
        for path in _one_run(bundle):
            if path.exists():
                path.unlink()
                dropped = True
    here = RunRoot.of(bundle.root)
    try:
        if RunRoot.read(bundle.run_root) == here:
            return dropped
    except (OSError, ValueError):
        pass
    bundle.run_dir.mkdir(exist_ok=True)
    here.write(bundle.run_root, 0o644)
    return dropped


def config_of(pid: int) -> str | None:
    """The config file supervisord `pid` was started with (-c FILE); None when `pid` is no
    supervisord or its command line cannot be read."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    program = next((i for i, a in enumerate(args) if a.endswith(b"supervisord")), None)
    if program is None:
        return None
    options = args[program + 1:]
    if b"-c" not in options[:-1]:
        return None
    return os.fsdecode(options[options.index(b"-c") + 1])


def pid_serves(pid: int, bundle: Bundle) -> bool | None:
    """Whether supervisord `pid` reads this bundle's config; None when that cannot be told."""
    config = config_of(pid)
    if config is None:
        return None
    try:
        return os.path.samefile(config, bundle.conf)
    except OSError:
        return None  # its config is gone (moved since): it may be this one
