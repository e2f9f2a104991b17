"""A bundle tree: its root and the path of everything bundler reads or writes in it (its own records
under .bundler/ and run/ included: each name is spelled here only), the lock that serialises
operations on it, and how a command tells a bundle from a project folder."""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bundler import progress
from bundler.bundle.layout import Layout
from bundler.bundle.logfaults import LOG_FAULTS
from bundler.bundle.stopped import STOPPED_RECORD
from bundler.errors import BundlerError, UsageError

MANIFEST = "bundle.toml"
META = ".bundler"  # bundler's own records inside every bundle, whatever the layout
# Records read before there is a Bundle: from an archive, or to tell a bundle by its layout.
LAYOUT_RECORD = f"{META}/layout.toml"
CHECKSUMS_RECORD = f"{META}/checksums.json"


@dataclass(frozen=True)
class Bundle:
    """A bundle tree: unpacked on a server, or being staged by a build."""

    root: Path
    layout: Layout

    # --- what the bundle is made of

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python3"

    @property
    def conf(self) -> Path:
        return self.root / self.layout.etc / "supervisord.conf"

    @property
    def programs(self) -> Path:
        return self.root / self.layout.programs

    @property
    def site_config(self) -> Path:
        """etc/app/: the site's configuration, which the services find in $PYTHON_APP_CONF."""
        return self.root / self.layout.site_config

    @property
    def log_dir(self) -> Path:
        return self.root / self.layout.log

    # --- run/: what a running bundle keeps

    @property
    def run_dir(self) -> Path:
        return self.root / self.layout.run

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "supervisord.pid"

    @property
    def socket_record(self) -> Path:
        """The socket path bin/start chose (run/supervisor.sock unless that is too long)."""
        return self.run_dir / "socket.path"

    @property
    def run_root(self) -> Path:
        """The root run/ was made for, by device and inode: a copy's run/ is not its own."""
        return self.run_dir / "root"

    @property
    def unit_record(self) -> Path:
        """The systemd unit that runs this bundle, when one was installed."""
        return self.run_dir / "systemd-unit"

    @property
    def http_password(self) -> Path:
        return self.run_dir / "http-password"

    @property
    def http_section(self) -> Path:
        """Supervisor's web server section, with the password's digest (supervisord.conf
        includes it; bin/start writes it, mode 0600)."""
        return self.run_dir / "http.ini"

    @property
    def health_record(self) -> Path:
        """What the monitor's health probes last said of each process (bundle/health.py)."""
        return self.run_dir / "health.json"

    # --- .bundler/: bundler's own records

    @property
    def meta(self) -> Path:
        return self.root / META

    @property
    def layout_record(self) -> Path:
        return self.root / LAYOUT_RECORD

    @property
    def checksums(self) -> Path:
        return self.root / CHECKSUMS_RECORD

    @property
    def relocation(self) -> Path:
        return self.meta / "relocate.json"

    @property
    def relocation_journal(self) -> Path:
        return self.meta / "relocate.journal"

    @property
    def origin(self) -> Path:
        """The build machine's paths, which `bundler verify` looks for in the bundle's files."""
        return self.meta / "origin.json"

    @property
    def platform(self) -> Path:
        """What a server needs to run the bundle: "MACHINE GLIBC FLOOR", which bin/ launchers read
        with the shell before starting Python (records.Platform)."""
        return self.meta / "platform"

    @property
    def supervisord_log(self) -> Path:
        return self.log_dir / "supervisord.log"

    @property
    def log_faults(self) -> Path:
        """Log files supervisord could not write (bundler/supervisor_rpc.py records them)."""
        return self.run_dir / LOG_FAULTS

    @property
    def run_token(self) -> Path:
        """A secret only the bundle's user can read; its processes carry it in their environment."""
        return self.run_dir / "token"

    @property
    def signature(self) -> Path:
        """The build's signature of checksums.json (bundler build --sign)."""
        return self.meta / "signature.json"

    @property
    def trusted_keys(self) -> Path:
        """The public keys whose patches the bundle accepts; under etc/, so no patch changes it."""
        return self.root / self.layout.etc / "trusted_keys"

    @property
    def release_record(self) -> Path:
        """The manifest of the last release installed (the build's, then each patch's): the
        base of apply's three-way merge."""
        return self.meta / "release.toml"

    @property
    def site_defaults(self) -> Path:
        """The SHA-256 of each default file of etc/app/ as last shipped, to tell the files the
        server changed from those it did not."""
        return self.meta / "site-defaults.json"

    @property
    def history(self) -> Path:
        return self.meta / "history.jsonl"

    @property
    def stopped(self) -> Path:
        """The services an operator stopped, which stay stopped until started by name."""
        return self.root / STOPPED_RECORD

    @property
    def transaction(self) -> Path:
        """The journal of a service change under way (switch, add, remove)."""
        return self.meta / "transaction.json"

    @property
    def files_changed(self) -> Path:
        """When the files of each code version and interpreter were last changed by a release."""
        return self.meta / "files-changed.json"

    @property
    def apply_journal(self) -> Path:
        """The journal of files being moved in by a patch."""
        return self.meta / "apply.json"

    @property
    def apply_backup(self) -> Path:
        return self.meta / "apply-backup"

    @property
    def apply_incoming(self) -> Path:
        return self.meta / "apply-incoming"

    @property
    def lock_file(self) -> Path:
        return self.meta / "lock"

    # --- which paths belong to whom

    def unchecked(self, rel: str) -> bool:
        """Paths no checksum covers: runtime state, site configuration, bundler's records."""
        layout = self.layout
        return any(rel == top or rel.startswith(top + "/")
                   for top in (layout.log, layout.run, layout.site_config, META))

    def patchable(self, rel: str) -> bool:
        """Paths a patch may carry: not the manifest, configuration, runtime state or records."""
        etc = self.layout.etc
        return rel not in (MANIFEST, etc) and not rel.startswith(etc + "/") \
            and not self.unchecked(rel)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """An exclusive lock on the bundle for operations that must not run twice at once."""
        try:
            self.meta.mkdir(parents=True, exist_ok=True)
            handle = open(self.lock_file, "a")
        except PermissionError as exc:
            raise BundlerError(f"cannot lock the bundle: {self.meta} is not writable by this user; "
                               "run as the user that owns the bundle") from exc
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self.lock_file.read_text().strip() or "?"
                progress.log(f"waiting for another operation on this bundle (pid {holder})")
                fcntl.flock(handle, fcntl.LOCK_EX)
            handle.truncate(0)
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            try:
                yield
            finally:
                handle.truncate(0)
                fcntl.flock(handle, fcntl.LOCK_UN)


def open_bundle(root: Path | None) -> Bundle:
    """The bundle at `root`, or the one whose interpreter runs this code."""
    root = Path(root if root is not None else sys.prefix).resolve()
    if not (root / LAYOUT_RECORD).is_file():
        raise BundlerError(f"{root} is not a bundle (no {LAYOUT_RECORD}); run this from a "
                           "bundle's bin/ or pass --root")
    return Bundle(root=root, layout=Layout.read(root / LAYOUT_RECORD))


def own_bundle() -> Bundle | None:
    """The bundle whose interpreter runs this code (its bin/bundler), or None (a project's
    bundler, on the build machine)."""
    root = Path(sys.prefix).resolve()
    if not (root / LAYOUT_RECORD).is_file():
        return None
    return Bundle(root=root, layout=Layout.read(root / LAYOUT_RECORD))


def acting_on(folder: Path, root: Path | None) -> Bundle | None:
    """The built bundle a command acts on, or None when it acts on a project's bundle.toml.

    A bundle's own bin/bundler acts on that bundle (or --root), wherever it is run from.
    Otherwise a project is a folder whose bundle.toml is not a bundle's manifest, and a folder
    that is a bundle's root is that bundle.
    """
    if root is not None:
        return open_bundle(root)
    own = own_bundle()
    if own is not None:
        return own
    if (folder / MANIFEST).is_file():
        return open_bundle(folder) if (folder / META).is_dir() else None
    raise UsageError(f"no bundle.toml in {folder.resolve()}: run this in a project (bundler "
                     "init NAME makes one), in a bundle, or with --root BUNDLE")
