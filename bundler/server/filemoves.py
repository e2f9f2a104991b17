"""Moving a set of files into a tree, all or nothing.

Each path that is replaced or removed is first moved to a backup folder, and a journal lists the
moves before the first one is made. A failure undoes them at once; a kill leaves the journal, and
the next operation on the bundle undoes them (see transact.recover).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from bundler.bundle.tree import Bundle
from bundler.fsutil import write_atomic


def commit(bundle: Bundle, ops: list[dict[str, Any]], staged: Path) -> None:
    """Carry out `ops` in the bundle: {"rel", "put": "file" (taken from staged/rel), "link" (to
    "target") or None (remove), "existed": whether rel is there now}. All or nothing."""
    root, backup = bundle.root, bundle.apply_backup
    shutil.rmtree(backup, ignore_errors=True)
    created = []
    for op in ops:
        parent = (root / op["rel"]).parent
        missing = []
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        created += [str(p.relative_to(root)) for p in missing if str(p.relative_to(root)) not in created]
    write_atomic(bundle.apply_journal, json.dumps({"ops": ops, "created": created}, indent=0))
    try:
        for op in ops:
            path = root / op["rel"]
            if op["existed"]:
                saved = backup / op["rel"]
                saved.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, saved)
            if op["put"] is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                if op["put"] == "link":
                    path.symlink_to(op["target"])
                else:
                    os.replace(staged / op["rel"], path)
    except BaseException:
        undo(bundle)
        raise
    bundle.apply_journal.unlink()
    shutil.rmtree(backup, ignore_errors=True)


def undo(bundle: Bundle) -> bool:
    """Undo a commit that did not finish (its journal is there). Caller holds the lock."""
    journal_path = bundle.apply_journal
    if not journal_path.exists():
        return False
    journal = json.loads(journal_path.read_text())
    root, backup = bundle.root, bundle.apply_backup
    for op in reversed(journal["ops"]):
        path, saved = root / op["rel"], backup / op["rel"]
        if op["existed"]:
            if saved.is_symlink() or saved.exists():
                if path.is_symlink() or path.is_file():
                    path.unlink()
                os.replace(saved, path)
        elif path.is_symlink() or path.exists():
            path.unlink()
    for rel in sorted(journal["created"], key=len, reverse=True):
        try:
            (root / rel).rmdir()
        except OSError:
            pass
    journal_path.unlink()
    shutil.rmtree(backup, ignore_errors=True)
    return True

