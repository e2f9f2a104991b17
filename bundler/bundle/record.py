"""The one protocol of every record bundler keeps in a file: a class that says how its text is
read (`parse`) and written (`text`); `read` and `write` (atomic: a reader sees the old record or
the new one) come with it. A journal, which grows a line at a time, is appended to instead.

Imports nothing at all when loaded (not even typing or pathlib): the launcher that starts every
service (bundler.launch) and supervisord's RPC extension use it too."""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import TypeVar

    R = TypeVar("R", bound="Record")
    T = TypeVar("T")


class Record:
    """Subclasses define `parse` and `text`; `parse` raises ValueError on text it cannot read."""

    @classmethod
    def parse(cls: type[R], text: str) -> R:
        raise NotImplementedError

    def text(self) -> str:
        raise NotImplementedError

    @classmethod
    def read(cls: type[R], path: Path) -> R:
        """The record at `path`. A file that is missing (FileNotFoundError) or cannot be read
        (OSError) raises as such; one whose text is no such record raises DamagedRecord."""
        try:
            return cls.parse(path.read_text(encoding="utf-8"))
        except (ValueError, KeyError, TypeError, AttributeError, IndexError,
                RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise damaged(path, exc) from exc

    def write(self, path: Path, mode: int | None = None) -> None:
        """Replace `path` at once, with `mode` when given, else the old file's (0644 if new)."""
        from bundler.fsutil import write_atomic  # tempfile and hashlib: only for who writes

        write_atomic(path, self.text(), mode)


def damaged(path: Path, exc: BaseException) -> Exception:
    """The one error of a record that cannot be read: errors.DamagedRecord, naming the file."""
    from bundler.errors import DamagedRecord  # imports nothing itself

    why = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if not isinstance(exc, ValueError) or not why:
        why = f"{type(exc).__name__} {why}".strip()
    found = DamagedRecord(f"damaged record {path}: {printable(why)[:200]}")
    found.why = why
    return found


def plain_path(rel: object) -> str:
    """`rel` when it is a plain relative path inside the bundle (no `/` in front, no empty, `.`
    or `..` parts, no control characters); raises ValueError."""
    if not isinstance(rel, str) or not rel or rel.startswith("/") \
            or any(p in ("", ".", "..") for p in rel.split("/")) \
            or any(ord(ch) < 32 or ord(ch) == 127 for ch in rel):
        raise ValueError(f"{rel!r} is not a path inside the bundle")
    return rel


def printable(text: str) -> str:
    """`text` with control characters escaped, as repr shows them."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


class Journal(Record):
    """A record whose text is whole lines, each added at the end of the file as it happens:
    `parse` skips a line it cannot read (the last one, cut short by a crash), and bytes that
    are no UTF-8 damage their line only."""

    @classmethod
    def read(cls: type[R], path: Path) -> R:
        try:
            return cls.parse(path.read_bytes().decode("utf-8", errors="replace"))
        except (ValueError, KeyError, TypeError, AttributeError, IndexError,
                RecursionError) as exc:
            raise damaged(path, exc) from exc

    @staticmethod
    def lines(text: str, parse: Callable[[str], T]) -> list[T]:
        """What `parse` reads of each line; a line it cannot (ValueError, KeyError, TypeError:
        cut short by a crash, or none of ours) is skipped."""
        found = []
        for line in text.splitlines():
            try:
                found.append(parse(line))
            except (ValueError, KeyError, TypeError):
                continue
        return found

    def append(self, path: Path) -> None:
        """Add this record's lines at the end of `path` (made if missing), in one write."""
        with open(path, "a", encoding="utf-8") as f:
            f.write(self.text())
