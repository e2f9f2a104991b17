"""The documents `--json` prints: one JSON object on stdout per command, with the stable keys
README's "Machine-readable output" lists. Each takes what the core returned; nothing is computed
here that the text output does not also show."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from bundler.build.plan import Plan
    from bundler.server.apply import Applied
    from bundler.server.history import HistoryEntry
    from bundler.server.status import InstalledRelease, Interrupted, ServiceRow
    from bundler.server.verify import Verdict

Doc = dict[str, Any]


def emit(doc: Doc) -> None:
    import json  # here: `bundler --help` and the text outputs do without it

    click.echo(json.dumps(doc, indent=2, ensure_ascii=False))


def process(row: ServiceRow) -> Doc:
    return {"name": row.process, "service": row.service or None, "group": row.group or None,
            "state": row.state, "pid": row.pid or None, "uptime": row.uptime,
            "python": row.python, "python_version": row.python_version or None,
            "code": row.code, "autostart": row.autostart,
            "health": row.health, "health_since": row.health_since or None,
            "health_reason": row.health_reason or None, "restarts": row.restarts,
            "cpu_percent": None if row.cpu_percent is None else round(row.cpu_percent, 2),
            "rss": row.rss, "stale": row.stale or None,
            "stopped_by": row.stopped_by or None}


def status(root: Path, running: bool, rows: list[ServiceRow],
           release: InstalledRelease | None = None,
           interrupted: list[Interrupted] | None = None, damaged: list[str] | None = None) -> Doc:
    doc: Doc = {"root": str(root), "supervisord": "running" if running else "not running",
                "processes": [process(r) for r in rows],
                "interrupted": [{"what": i.what, "journal": i.journal} for i in interrupted or []],
                "damaged": list(damaged or [])}
    if release is not None:
        doc["version"] = release.version
        doc["release"] = {"version": release.version, "as_built": release.as_built,
                          "at": release.at or None, "by": release.by, "patch": release.patch,
                          "signed_by": release.signed_by}
    return doc


def history(root: Path, entries: list[tuple[int, HistoryEntry]]) -> Doc:
    return {"root": str(root), "entries": [{"id": i, **e.fields()} for i, e in entries]}


def verify(verdict: Verdict) -> Doc:
    integrity, port, problems = verdict.integrity, verdict.portability, verdict.problems()
    return {
        "target": verdict.name,
        "ok": not problems,
        "problems": problems,
        "damaged": list(verdict.damaged),
        "unchecked": list(verdict.unchecked),
        "integrity": {"checked": integrity.checked, "changed": integrity.changed,
                      "missing": integrity.missing, "added": integrity.added},
        "links_out": verdict.links_out,
        "portability": {"elf_files": port.elf_files, "glibc": ".".join(map(str, port.glibc)) or None,
                        "glibc_file": port.glibc_file or None,
                        "floor": port.platform.floor if port.platform and port.platform.floor else None,
                        "missing_libraries": port.missing, "runpaths_outside": port.outside,
                        "build_paths": port.leaks},
        "signature": verdict.signature,
    }


def plan(p: Plan) -> Doc:
    from bundler.build import floor

    spec = p.spec
    return {
        "bundle": {"name": spec.name, "version": spec.version, "format": spec.format,
                   "layout": spec.layout, "project": spec.project},
        "interpreters": [{"name": i.interp.name, "folder": i.folder, "python": i.python,
                          "python_version": i.minor, "source": i.source,
                          "glibc": floor.text(i.glibc), "glibc_from": i.glibc_from}
                         for i in p.interpreters.values()],
        "glibc": {"floor": floor.text(spec.glibc) if spec.glibc else None, "needs": floor.text(p.glibc_need)},
        "code": [{"name": c.name, "folder": p.layout.code_dir(spec.project, c.name),
                  "path": c.path, "git": c.git, "ref": c.ref, "bytecode": c.bytecode}
                 for c in spec.code.values()],
        "services": [{"name": s.name, "python": s.python, "code": s.code, "command": s.command,
                      "group": s.group} for s in spec.services.values()],
        "groups": {name: list(g.programs) for name, g in spec.groups.items()},
        "trusted_keys": len(p.trusted_keys),
    }


def applied(patch: Path, done: Applied, site: str) -> Doc:
    return {
        "patch": str(patch), "version": done.version, "files": done.files,
        "removed": done.removed, "notes": done.notes,
        "site_config": [{"path": f"{site}/{c.rel}", "action": c.action} for c in done.site],
        "changes": [{"kind": m.kind[:-1], "name": m.name, "change": m.changes, "kept": m.kept,
                     "conflicts": list(m.conflicts), "describe": m.describe()}
                    for m in done.merged],
        "conflicts": sum(1 for m in done.merged if m.conflicts),
        "restarts": [{"service": name, "why": why} for name, why in done.restarts.items()],
    }


def artifact(path: Path, fmt: str, patch: bool) -> Doc:
    from bundler.fsutil import sha256_file

    is_file = path.is_file()
    return {"artifact": str(path), "format": fmt, "patch": patch,
            "size": path.stat().st_size if is_file else None,
            "sha256": sha256_file(path) if is_file else None}
