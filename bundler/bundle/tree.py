"""An unpacked bundle: its root and where things are inside it."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import tomlkit

from bundler.errors import BundlerError
from bundler.layout import LAYOUT_FILE, META, Layout
from bundler.supervisor import Supervisor, recorded_socket

MANIFEST = "bundle.toml"


@dataclass(frozen=True)
class Bundle:
    """An unpacked bundle: its root and where things are inside it."""

    root: Path
    layout: Layout

    @property
    def meta(self) -> Path:
        return self.root / META

    @property
    def run_dir(self) -> Path:
        return self.root / self.layout.run

    @property
    def conf(self) -> Path:
        return self.root / self.layout.etc / "supervisord.conf"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "supervisord.pid"

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python3"

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    @property
    def programs(self) -> Path:
        return self.root / self.layout.programs

    def supervisor(self, timeout: float = 10.0) -> Supervisor:
        return Supervisor(recorded_socket(self.root, self.run_dir), timeout)


def open_bundle(root: Path | None) -> Bundle:
    """The bundle at `root`, or the one whose interpreter runs this code."""
    root = Path(root if root is not None else sys.prefix).resolve()
    layout_file = root / META / LAYOUT_FILE
    if not layout_file.is_file():
        raise BundlerError(f"{root} is not a bundle (no {META}/{LAYOUT_FILE}); run this from a "
                           "bundle's bin/ or pass --root")
    return Bundle(root=root, layout=Layout(**tomlkit.parse(layout_file.read_text()).unwrap()))
