"""Where things go inside a bundle, read from the layout files shipped in bundler/layouts/."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import tomlkit

from bundler.errors import BundlerError

META = ".bundler"  # bundler's own records inside every bundle, whatever the layout
LAYOUT_FILE = "layout.toml"


@dataclass(frozen=True)
class Layout:
    envs: str
    etc: str
    programs: str
    site_config: str
    log: str
    run: str
    code: str

    def code_dir(self, project: str, version: str) -> str:
        return self.code.format(project=project, version=version)

    def env_dir(self, env: str) -> str:
        return "." if env == "base" else f"{self.envs}/{env}"

    def up_from(self, folder: str) -> str:
        """The relative path from `folder` back to the bundle root, e.g. '../..'."""
        return "/".join(".." for _ in folder.split("/"))


def load_layout(name: str = "miniconda") -> Layout:
    try:
        text = resources.files("bundler").joinpath("layouts", f"{name}.toml").read_text()
    except FileNotFoundError as exc:
        raise BundlerError(f"unknown layout {name!r}") from exc
    return Layout(**tomlkit.loads(text).unwrap())
