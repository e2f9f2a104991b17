"""Build the example bundle and time what users wait for. Prints figures; asserts nothing.

    python bench/build_and_start.py [--format tar.zst|tar.gz]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(label: str, cmd: list[str]) -> float:
    start = time.monotonic()
    subprocess.run(cmd, check=True, capture_output=True)
    elapsed = time.monotonic() - start
    print(f"{label:<28} {elapsed:7.2f} s")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--format", default="tar.zst", choices=["tar.zst", "tar.gz"])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bundler-bench-"))
    try:
        project = work / "smartbox"
        shutil.copytree(REPO / "examples" / "smartbox", project, ignore=shutil.ignore_patterns("dist"))
        dist = work / "dist"
        timed("build", [sys.executable, "-m", "bundler", "-C", str(project), "build",
                        "--format", args.format, "--output", str(dist)])
        artifact = next(dist.iterdir())
        print(f"{'archive size':<28} {artifact.stat().st_size / 2**20:7.1f} MiB ({artifact.name})")
        first, second = work / "a", work / "b b"
        first.mkdir()
        timed("unpack (tar xf)", ["tar", "xf", str(artifact), "-C", str(first)])
        tree = subprocess.run(["du", "-sm", str(first)], capture_output=True, text=True).stdout
        print(f"{'unpacked size':<28} {int(tree.split()[0]):7d} MiB")
        root = first / "smartbox"
        timed("first start (relocates)", [str(root / "bin" / "start")])
        timed("stop", [str(root / "bin" / "stop")])
        timed("start (nothing moved)", [str(root / "bin" / "start")])
        timed("stop", [str(root / "bin" / "stop")])
        shutil.move(str(first), str(second))
        root = second / "smartbox"
        timed("start after a move", [str(root / "bin" / "start")])
        timed("stop", [str(root / "bin" / "stop")])
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
