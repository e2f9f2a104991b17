"""The one protocol of every record bundler keeps in a file: a class that says how its text is
read (`parse`) and written (`text`); `read` and `write` (atomic: a reader sees the old record or
the new one) come with it. Imports nothing heavy: the launcher and supervisord's RPC extension
use it too."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from bundler.fsutil import write_atomic

R = TypeVar("R", bound="Record")


class Record:
    """Subclasses define `parse` and `text`; `parse` raises ValueError on text it cannot read."""

    @classmethod
    def parse(cls: type[R], text: str) -> R:
        raise NotImplementedError

    def text(self) -> str:
        raise NotImplementedError

    @classmethod
    def read(cls: type[R], path: Path) -> R:
        return cls.parse(path.read_text(encoding="utf-8"))

    def write(self, path: Path, mode: int | None = None) -> None:
        """Replace `path` at once; a new file gets `mode` (default 0644), an old one keeps its."""
        write_atomic(path, self.text(), mode)
