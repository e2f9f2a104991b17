"""What one `apply` reads and computes: how often it parses each manifest and the patch's
patch.json, merges, stamps the history, and hashes each staged file. The floor of each is one
per manifest read or written (each text written is parsed once, to check what will be on disk),
one stamp per event (the release installed; the services it moved). Prints figures; asserts
nothing.

    python bench/apply_reads.py [--keep DIR]

The example is built (tar.gz), then built again as a patch whose release moves svc1 to code v2
and changes a file of v1; the archive is unpacked elsewhere and the patch applied to it (its
supervisord not running: the services' change is written as configuration), under a profiler
hook that counts the calls.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def build(project: Path, dist: Path, *extra: str) -> Path:
    subprocess.run([sys.executable, "-m", "bundler", "-q", "-C", str(project), "build",
                    "--output", str(dist), *extra], check=True)
    return max(dist.iterdir(), key=lambda p: p.stat().st_mtime)


def make(work: Path) -> tuple[Path, Path]:
    project = work / "smartbox"
    shutil.copytree(REPO / "examples" / "smartbox", project, ignore=shutil.ignore_patterns("dist"))
    archive = build(project, work / "dist")
    spec = project / "bundle.toml"
    text = spec.read_text()
    text = text.replace('version = "2026.11.1"', 'version = "2026.11.2"')
    text = re.sub(r'(\[services\.svc1\][^\[]*?code = )"v1"', r'\1"v2"', text, count=1)
    spec.write_text(text)
    changed = next(p for p in sorted((project / "sam_v1").rglob("*.py")))
    changed.write_text(changed.read_text() + "\n# changed by the next release\n")
    patch = build(project, work / "patches", "--patch-from", str(archive))
    server = work / "server"
    server.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(server)
    return next(server.iterdir()), patch


def _called_from(frame: Any, name: str) -> bool:
    while frame is not None:
        if frame.f_code.co_name == name:
            return True
        frame = frame.f_back
    return False


def count(root: Path, patch: Path) -> collections.Counter[str]:
    """Apply `patch` to `root` in this process, counting the calls that matter."""
    from bundler.cli import cli

    with tarfile.open(patch) as tar:
        member = next(m for m in tar if m.name.endswith("/patch.json"))
        raw = tar.extractfile(member).read()  # type: ignore[union-attr]
    patch_manifest = json.loads(raw)["manifest"]
    bundle_manifest = (root / "bundle.toml").read_text()
    staged = {rel for rel in json.loads(raw)["files"]}
    counts: collections.Counter[str] = collections.Counter()

    def kind(text: Any) -> str:
        if text == patch_manifest:
            return "the release's manifest"
        if text == bundle_manifest:
            return "the bundle's manifest"
        return "a manifest about to be written, checked" \
            if isinstance(text, str) and "[build]" in text else "other TOML (layout.toml)"

    def hook(frame: Any, event: str, arg: Any) -> None:
        if event != "call":
            return
        code = frame.f_code
        name, where = code.co_name, code.co_filename
        if where.endswith("tomlkit/api.py") and name in ("parse", "loads"):
            if frame.f_back is None or not frame.f_back.f_code.co_filename.endswith(
                    "tomlkit/api.py"):
                what = kind(frame.f_locals.get("string"))
                if _called_from(frame, "_release_base"):
                    what = "the last release installed (release.toml)"
                counts[f"TOML parse: {what}"] += 1
                if os.environ.get("BENCH_WHERE"):
                    traceback.print_stack(frame, limit=8)
                    print(what, file=sys.stderr)
        elif where.endswith("bundle/records.py") and name == "parse" and \
                frame.f_locals.get("cls").__name__ == "PatchRecord":
            counts["patch.json parse"] += 1
        elif where.endswith("spec/merge.py") and name == "merge":
            counts["three-way merge"] += 1
        elif where.endswith("server/history.py") and name == "stamp":
            counts["history stamped"] += 1
        elif where.endswith("bundle/integrity.py") and name == "entry" and \
                "apply-incoming" in str(frame.f_locals.get("path")):
            counts["staged file hashed"] += 1
        elif where.endswith("bundle/integrity.py") and name == "entry_of" and \
                frame.f_back is not None and frame.f_back.f_code.co_name != "entry":
            counts["staged file hashed"] += 1  # a relocated file, from its bytes
        elif where.endswith(("server/apply.py", "server/incoming.py")) and name == "_stage":
            counts["staged file hashed"] += 1

    sys.setprofile(hook)
    try:
        cli.main(["apply", "--root", str(root), str(patch)], standalone_mode=False)
    finally:
        sys.setprofile(None)
    counts["files in the patch"] = len(staged)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keep", type=Path, help="keep the work folder here")
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="bundler-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        root, patch = make(work)
        counts = count(root, patch)
        for key, value in sorted(counts.items()):
            if value:
                print(f"{key:<44} {value:4d}")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
