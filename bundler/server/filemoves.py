"""Moving a set of files into a tree, all or nothing.

Each path that is replaced or removed is first moved to a backup folder, and a journal lists the
moves before the first one is made. A failure undoes them at once; a kill leaves the journal, and
the next operation on the bundle undoes them (see transact.recover).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from bundler.bundle.record import Record, plain_path
from bundler.bundle.tree import Bundle
from bundler.errors import BundlerError


@dataclass(frozen=True)
class Move:
    """One path of the bundle, replaced or removed."""

    rel: str
    put: str | None  # "file" (taken from the staged folder), "link" (to `target`), None: removed
    existed: bool    # whether `rel` is there now (it is saved in the backup folder first)
    target: str = ""

    @classmethod
    def to(cls, root: Path, rel: str, put: str | None, target: str = "") -> Move:
        path = root / rel
        return cls(rel, put, path.is_symlink() or path.exists(), target)

    def raw(self) -> dict[str, object]:
        found: dict[str, object] = {"rel": self.rel, "put": self.put}
        if self.put == "link":
            found["target"] = self.target
        found["existed"] = self.existed
        return found


@dataclass(frozen=True)
class MoveJournal(Record):
    """.bundler/apply.json: the moves under way, and the folders they create."""

    moves: list[Move]
    created: list[str]

    def text(self) -> str:
        return json.dumps({"ops": [m.raw() for m in self.moves], "created": self.created},
                          indent=0)

    @classmethod
    def parse(cls, text: str) -> MoveJournal:
        """The journal; a path in it that is not plain and inside the bundle makes it damaged
        (undo() removes and replaces what it names)."""
        raw = json.loads(text)
        moves = [Move(plain_path(m["rel"]), _put(m["put"]), bool(m["existed"]),
                      str(m.get("target", ""))) for m in raw["ops"]]
        return cls(moves, [plain_path(rel) for rel in raw["created"]])


def _put(put: object) -> str | None:
    if put not in ("file", "link", None):
        raise ValueError(f"not a move: {put!r}")
    return put


def _direct(root: Path, rel: str) -> None:
    """Refuse to undo a move whose path is reached through a link (the bundle changed since)."""
    parent = os.path.dirname(rel)
    if parent and os.path.realpath(root / parent) != os.path.join(os.path.realpath(root), parent):
        raise BundlerError(f"refusing to undo the interrupted apply ({rel} is now reached through "
                           "a link): restore the bundle from its archive")


def commit(bundle: Bundle, moves: list[Move], staged: Path, keep: bool = False) -> None:
    """Carry out `moves` in the bundle (a file put is taken from staged/rel). All or nothing;
    with `keep`, the journal and the old files stay, to be undone until finish()."""
    root, backup = bundle.root, bundle.apply_backup
    shutil.rmtree(backup, ignore_errors=True)
    created: list[str] = []
    for move in moves:
        parent = (root / move.rel).parent
        missing = []
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        created += [str(p.relative_to(root)) for p in missing if str(p.relative_to(root)) not in created]
    MoveJournal(moves, created).write(bundle.apply_journal)
    try:
        for move in moves:
            path = root / move.rel
            if move.existed:
                saved = backup / move.rel
                saved.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, saved)
            if move.put is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                if move.put == "link":
                    path.symlink_to(move.target)
                else:
                    os.replace(staged / move.rel, path)
        _prune(root, [m.rel for m in moves if m.put is None])
    except BaseException:
        undo(bundle)
        raise
    if not keep:
        finish(bundle)


def finish(bundle: Bundle) -> None:
    """Keep the moves made: drop their journal, then the old files."""
    bundle.apply_journal.unlink(missing_ok=True)
    shutil.rmtree(bundle.apply_backup, ignore_errors=True)


def _prune(root: Path, removed: list[str]) -> None:
    """Remove the folders that removing `removed` left empty (a package's dist-info folder)."""
    for rel in removed:
        parent = (root / rel).parent
        while parent != root and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent


def undo(bundle: Bundle) -> bool:
    """Undo a commit that did not finish (its journal is there). Caller holds the lock."""
    journal_path = bundle.apply_journal
    if not journal_path.exists():
        return False
    journal = MoveJournal.read(journal_path)
    root, backup = bundle.root, bundle.apply_backup
    for move in journal.moves:
        _direct(root, move.rel)
    for move in reversed(journal.moves):
        path, saved = root / move.rel, backup / move.rel
        if move.existed:
            if saved.is_symlink() or saved.exists():
                if path.is_symlink() or path.is_file():
                    path.unlink()
                path.parent.mkdir(parents=True, exist_ok=True)  # a folder _prune removed
                os.replace(saved, path)
        elif path.is_symlink() or path.exists():
            path.unlink()
    for rel in sorted(journal.created, key=len, reverse=True):
        try:
            (root / rel).rmdir()
        except OSError:
            pass
    journal_path.unlink()
    shutil.rmtree(backup, ignore_errors=True)
    return True

