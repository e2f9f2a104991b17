"""Where things go inside a bundle, read from the layout files shipped in bundler/layouts/ and
recorded in every bundle (.bundler/layout.toml, a record.Record)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import tomlkit
from tomlkit.exceptions import TOMLKitError

from bundler.bundle.record import Record, plain_path
from bundler.errors import BundlerError

MONITOR = "_monitor"      # bundler's event listener: etc/conf.d/_monitor.ini and .json
GROUP_PREFIX = "_group."  # etc/conf.d/_group.<name>.ini


@dataclass(frozen=True)
class Layout(Record):
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

    @classmethod
    def parse(cls, text: str) -> Layout:
        """Raises ValueError unless every value is a plain path inside the bundle (a layout
        says where bundler writes: none may lead out)."""
        try:
            layout = cls(**tomlkit.parse(text).unwrap())
            for name, value in asdict(layout).items():
                plain_path(value.format(project="p", version="v") if name == "code" else value)
        except (TOMLKitError, TypeError, AttributeError, KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"not a layout: {exc}") from None
        return layout

    def text(self) -> str:
        doc = tomlkit.document()
        doc.update(asdict(self))
        return tomlkit.dumps(doc)


def load_layout(name: str = "miniconda") -> Layout:
    """A layout shipped with bundler (a new bundle's); a built one reads its own record."""
    from importlib import resources  # not needed to run a bundle: kept off bin/bundler's path

    try:
        text = resources.files("bundler").joinpath("layouts", f"{name}.toml").read_text()
    except FileNotFoundError as exc:
        raise BundlerError(f"unknown layout {name!r}") from exc
    return Layout.parse(text)
