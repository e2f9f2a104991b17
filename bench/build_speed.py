"""Build speed beside its floors, on the example (a copy, with its own build cache). Each figure
is the median of several runs; the ratio is what to read (these machines are noisy).

    python bench/build_speed.py [--runs 3]

- cold build (--no-cache) vs itself: the reference
- rebuild after a one-file code change (interpreters from the cache) vs the cold build
- patch build for that change (--patch-from the previous archive) vs the cold build
- pack: bundler's tar.zst vs `tar -cf - | zstd -T0 -3`, bundler's tar.gz vs `tar -cf - | pigz -6`
  (pigz from Debian), on the same tree
- patch size vs the changed code folder alone, tar | zstd
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bundler.bundle import archive  # noqa: E402


def median_time(runs: int, action: Callable[[int], object]) -> float:
    times = []
    for i in range(runs):
        start = time.monotonic()
        action(i)
        times.append(time.monotonic() - start)
    return statistics.median(times)


def row(label: str, figure: float, floor: float | None, unit: str = "s") -> None:
    ratio = f"{figure / floor:6.2f} x" if floor else "      -"
    floor_text = f"{floor:8.2f} {unit}" if floor else "         -"
    print(f"{label:<44} {figure:8.2f} {unit}  {floor_text}  {ratio}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bundler-bench-"))
    env = {**os.environ, "BUNDLER_CACHE_DIR": str(work / "cache"), "SOURCE_DATE_EPOCH": "1700000000"}
    try:
        project = work / "smartbox"
        shutil.copytree(REPO / "examples" / "smartbox", project, ignore=shutil.ignore_patterns("dist"))
        code = project / "sam_v3" / "service" / "sam" / "run.py"

        def build(out: str, *more: str) -> None:
            subprocess.run([sys.executable, "-m", "bundler", "-C", str(project), "build",
                            "--format", "tar.zst", "-o", str(work / out), *more],
                           check=True, capture_output=True, env=env)

        print(f"{'figure':<44} {'bundler':>10}  {'floor':>10}  ratio")
        cold = median_time(args.runs, lambda i: build(f"cold{i}", "--no-cache"))
        row("cold build (tar.zst, no cache)", cold, None)
        build("warm")  # fills the cache
        previous = work / "warm" / "smartbox-2026.11.1.tar.zst"

        def change(i: int) -> None:
            code.write_text(code.read_text() + f"\n# change {i}\n")

        def rebuild(i: int) -> None:
            change(i)
            build(f"re{i}")

        row("rebuild after a one-file code change", median_time(args.runs, rebuild), cold)

        def patch_build(i: int) -> None:
            change(100 + i)
            build(f"patch{i}", "--patch-from", str(previous))

        row("patch build for a one-file code change", median_time(args.runs, patch_build), cold)

        build("tree", "--format", "dir")
        tree = work / "tree" / "smartbox-2026.11.1"
        out = work / "packs"
        out.mkdir()
        for fmt, floor_cmd in (("tar.zst", "zstd -T0 -3"), ("tar.gz", "pigz -6")):
            if not shutil.which(floor_cmd.split()[0]):
                print(f"{'pack ' + fmt:<44} (no {floor_cmd.split()[0]} here: install it for the floor)")
                continue
            ours = median_time(args.runs, lambda i, fmt=fmt: archive.pack(tree, out, f"p{i}", fmt))
            floor = median_time(args.runs, lambda i, c=floor_cmd: subprocess.run(
                f"tar -C {tree.parent} -cf - {tree.name} | {c} > {out}/floor{i}", shell=True,
                check=True))
            row(f"pack {fmt} vs tar | {floor_cmd}", ours, floor)

        patch = next((work / "patch0").glob("*.patch.tar.zst"))
        folder = tree / "your_project_v3"
        alone = subprocess.run(f"tar -C {folder.parent} -cf - {folder.name} | zstd -T0 -3",
                               shell=True, check=True, capture_output=True).stdout
        row("patch size vs the changed code folder, zstd", patch.stat().st_size / 1024,
            len(alone) / 1024, "KiB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
