"""How long the CLI takes to answer, beside the floor: the same interpreter starting and exiting.

    python bench/cli_startup.py [--runs 21] [--bundle BUNDLE_DIR]

Figures (median of --runs, after one warm-up run each):
  bundler --help               the build machine's CLI (this interpreter's `-m bundler`)
  bin/bundler --help           the in-bundle CLI
  bin/bundler status           the in-bundle CLI reading the manifest (supervisord not running)
and, from `python -X importtime`, how many bundler modules `bin/bundler status` loads and
whether any is of the build side. Without --bundle the example is built (format dir) first.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def median_seconds(cmd: list[str], runs: int) -> float:
    subprocess.run(cmd, capture_output=True)  # warm the page cache and the bytecode
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def row(label: str, cmd: list[str], floor_cmd: list[str], runs: int) -> None:
    figure, floor = median_seconds(cmd, runs), median_seconds(floor_cmd, runs)
    print(f"{label:<24} {figure * 1000:7.1f} ms   floor {floor * 1000:6.1f} ms   "
          f"ratio {figure / floor:5.2f}")


def loaded_modules(python: Path, args: list[str]) -> list[str]:
    out = subprocess.run([str(python), "-I", "-X", "importtime", "-m", "bundler", *args],
                         capture_output=True, text=True).stderr
    names = [line.rsplit("|", 1)[-1].strip() for line in out.splitlines() if "|" in line]
    return [n for n in names if n == "bundler" or n.startswith("bundler.")]


def build_example(work: Path) -> Path:
    project = work / "smartbox"
    shutil.copytree(REPO / "examples" / "smartbox", project, ignore=shutil.ignore_patterns("dist"))
    subprocess.run([sys.executable, "-m", "bundler", "-C", str(project), "build", "--format", "dir",
                    "--output", str(work / "dist")], check=True, capture_output=True)
    return work / "dist" / "smartbox-2026.11.1"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--bundle", type=Path, help="an unpacked bundle (default: build the example)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bundler-bench-"))
    try:
        bundle = args.bundle.resolve() if args.bundle else build_example(work)
        python, cli = bundle / "bin" / "python3", bundle / "bin" / "bundler"
        here = [sys.executable, "-I", "-c", "pass"]
        there = [str(python), "-I", "-c", "pass"]
        row("bundler --help", [sys.executable, "-m", "bundler", "--help"], here, args.runs)
        row("bin/bundler --help", [str(cli), "--help"], there, args.runs)
        row("bin/bundler status", [str(cli), "status"], there, args.runs)
        modules = loaded_modules(python, ["status"])
        build_side = [m for m in modules if m == "bundler.build" or m.startswith("bundler.build.")]
        print(f"{'bin/bundler status loads':<24} {len(modules)} bundler modules; build side: "
              f"{', '.join(build_side) or 'none'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
