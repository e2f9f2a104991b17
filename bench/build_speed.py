"""Build speed beside its floors, on the example (a copy, with its own build cache) and on the
example with a heavier env (numpy and pandas wheels, downloaded once into
~/.cache/bundler-bench/wheels). Each figure is the median of several runs; the ratio is what to
read (these machines are noisy).

    python bench/build_speed.py [--runs 3] [--no-heavy]

- cold build (--no-cache) vs itself: the reference
- rebuild after a one-file code change (interpreters, and their files compressed, from the
  cache) vs the cold build
- patch build for that change (--patch-from the previous archive) vs the cold build
- pack: bundler's tar.zst vs `tar -cf - | zstd -T0 -3`, bundler's tar.gz vs `tar -cf - | pigz -6`
  (pigz from Debian), on the same tree
- patch size vs the changed code folder alone, tar | zstd
- unpack + first start (relocation, every service RUNNING) vs `tar x` plus the longest
  startsecs supervisor waits for
- the example's archive size vs the 44.6 MiB it had before the server trim (tkinter and the
  Tcl/Tk/X11 libraries, ensurepip's wheels, debug sections left in: issue 27); the goal is 28
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


HEAVY = ["numpy", "pandas"]
EXAMPLE_BEFORE_MIB = 44.6  # the example's tar.zst before the server trim (issue 27)


def heavy_wheels() -> Path:
    folder = Path(os.path.expanduser("~/.cache/bundler-bench/wheels"))
    if not any(folder.glob("pandas-*.whl")):
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary", ":all:",
                        "-d", str(folder), *HEAVY], check=True)
    return folder


def speeds(work: Path, name: str, runs: int, env: dict[str, str], *pip: str) -> Path:
    """Cold build, rebuild and patch build of the project `work/name`; the last archive."""
    project = work / name
    code = project / "sam_v3" / "service" / "sam" / "run.py"

    def build(out: str, *more: str) -> None:
        subprocess.run([sys.executable, "-m", "bundler", "-C", str(project), "build",
                        "--format", "tar.zst", "-o", str(work / out), *pip, *more],
                       check=True, capture_output=True, env=env)

    cold = median_time(runs, lambda i: build(f"{name}-cold{i}", "--no-cache"))
    row(f"{name}: cold build (tar.zst, no cache)", cold, None)
    build(f"{name}-fill")  # fills the cache with the interpreters
    build(f"{name}-warm")  # and with their files compressed (this build links them from it)
    previous = next((work / f"{name}-warm").glob("*.tar.zst"))

    def change(i: int) -> None:
        code.write_text(code.read_text() + f"\n# change {i}\n")

    def rebuild(i: int) -> None:
        change(i)
        build(f"{name}-re{i}")

    row(f"{name}: rebuild after a one-file code change", median_time(runs, rebuild), cold)

    def patch_build(i: int) -> None:
        change(100 + i)
        subprocess.run([sys.executable, "-m", "bundler", "-q", "-C", str(project), "version",
                        "--bump", "patch"], check=True, capture_output=True, env=env)
        build(f"{name}-patch{i}", "--patch-from", str(previous))

    row(f"{name}: patch build for it", median_time(runs, patch_build), cold)
    size = previous.stat().st_size / 2**20
    if name == "smartbox":
        row(f"{name}: archive size vs before the trim", size, EXAMPLE_BEFORE_MIB, "MiB")
    else:
        print(f"{name + ': archive size':<44} {size:8.1f} MiB")
    return previous


def unpack_and_start(work: Path, artifact: Path, runs: int, startsecs: float) -> None:
    """bin/start on a fresh unpack (relocation, then every service RUNNING) vs tar x alone plus
    what supervisor waits for anyway."""
    def ours(i: int) -> None:
        where = work / f"run{i}"
        where.mkdir()
        subprocess.run(["tar", "-C", str(where), "-xf", str(artifact)], check=True)
        root = next(where.iterdir())
        subprocess.run([str(root / "bin" / "start")], check=True, capture_output=True)
        subprocess.run([str(root / "bin" / "stop")], check=True, capture_output=True)

    def floor(i: int) -> None:
        where = work / f"tar{i}"
        where.mkdir()
        subprocess.run(["tar", "-C", str(where), "-xf", str(artifact)], check=True)

    mine = median_time(runs, ours)  # bin/stop is inside it: measured alone, it is taken out
    root = next((work / "run0").iterdir())
    subprocess.run([str(root / "bin" / "start")], check=True, capture_output=True)
    started = time.monotonic()
    subprocess.run([str(root / "bin" / "stop")], check=True, capture_output=True)
    stop_time = time.monotonic() - started
    row("unpack + start vs tar x + startsecs", mine - stop_time,
        median_time(runs, floor) + startsecs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-heavy", action="store_true", help="skip the numpy/pandas project")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bundler-bench-"))
    env = {**os.environ, "BUNDLER_CACHE_DIR": str(work / "cache"), "SOURCE_DATE_EPOCH": "1700000000"}
    try:
        project = work / "smartbox"
        shutil.copytree(REPO / "examples" / "smartbox", project, ignore=shutil.ignore_patterns("dist"))
        print(f"{'figure':<44} {'bundler':>10}  {'floor':>10}  ratio")
        previous = speeds(work, "smartbox", args.runs, env)
        subprocess.run([sys.executable, "-m", "bundler", "-C", str(project), "build", "--format",
                        "dir", "-o", str(work / "tree")], check=True, capture_output=True, env=env)
        tree = next((work / "tree").iterdir())  # smartbox-VERSION (the patches moved it on)
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

        patch = next((work / "smartbox-patch0").glob("*.patch.tar.zst"))
        folder = tree / "your_project_v3"
        alone = subprocess.run(f"tar -C {folder.parent} -cf - {folder.name} | zstd -T0 -3",
                               shell=True, check=True, capture_output=True).stdout
        row("patch size vs the changed code folder, zstd", patch.stat().st_size / 1024,
            len(alone) / 1024, "KiB")
        unpack_and_start(work, previous, args.runs, startsecs=2.0)  # svc3's, the longest

        if not args.no_heavy:
            heavy = work / "heavy"
            shutil.copytree(project, heavy)
            spec = heavy / "bundle.toml"
            spec.write_text(spec.read_text() + "\n[envs.heavy]\nvirtualenv = \"base\"\n"
                            f"requirements = {HEAVY!r}\n".replace("'", '"'))
            speeds(work, "heavy", args.runs, env, "--find-links", str(heavy_wheels()))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
