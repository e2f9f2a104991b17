"""pip against uv for what a build installs: the example's packages (the base's own and pyocr's
pillow, or --heavy: numpy and pandas too) into a new virtualenv, from one folder of wheels, with
an empty cache and with a warm one. Then whether the two leave the same files: a build may only
use an installer whose result is the same bundle.

    python bench/installers.py [--runs 3] [--heavy]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bundler.build.serverside import base_packages  # noqa: E402

EXAMPLE = [*base_packages(signing=False), "pillow"]


def venv(folder: Path) -> Path:
    subprocess.run([sys.executable, "-m", "virtualenv", "-q", "--no-periodic-update", "--no-setuptools",
                    "--python", sys._base_executable, str(folder)], check=True)
    return folder / "bin" / "python"


def files(python: Path) -> dict[str, str]:
    """site-packages and scripts by content, without what differs by design (bytecode, RECORD,
    INSTALLER, the interpreter's path in scripts)."""
    site = next(python.parent.parent.glob("lib/python*/site-packages"))
    found = {}
    for path in sorted(site.rglob("*")):
        rel = path.relative_to(site).as_posix()
        if path.is_file() and "__pycache__" not in rel and not rel.endswith(("/RECORD", "/INSTALLER")) \
                and not rel.startswith(("pip", "_virtualenv")):
            found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    for script in python.parent.iterdir():  # entry points: each installer writes its own
        if script.is_file() and not script.is_symlink() and not script.name.startswith(
                ("python", "activate", "pip", "deactivate")):
            found[f"bin/{script.name}"] = hashlib.sha256(
                script.read_bytes().replace(bytes(python.parent), b"BIN")).hexdigest()
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--heavy", action="store_true")
    args = parser.parse_args()
    wanted = EXAMPLE + (["numpy", "pandas"] if args.heavy else [])
    work = Path(tempfile.mkdtemp(prefix="bundler-installers-"))
    try:
        wheels = work / "wheels"
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary", ":all:",
                        "-d", str(wheels), *wanted], check=True)
        tool = venv(work / "uv-tool")
        subprocess.run([tool, "-m", "pip", "install", "-q", "uv"], check=True)
        uv = tool.parent / "uv"
        version = subprocess.run([uv, "--version"], capture_output=True, text=True).stdout.strip()
        source = ["--no-index", "--find-links", str(wheels), *wanted]
        env = {**os.environ, "PIP_CONFIG_FILE": os.devnull}

        def pip(target: Path, cache: Path) -> None:
            subprocess.run([target, "-m", "pip", "install", "-q", "--cache-dir", str(cache), *source],
                           check=True, env=env)

        def uv_install(target: Path, cache: Path) -> None:
            subprocess.run([uv, "pip", "install", "-q", "--python", str(target), "--cache-dir",
                            str(cache), "--link-mode", "copy", *source], check=True, env=env)

        results = {}
        for name, install in (("pip", pip), ("uv", uv_install)):
            for state in ("cold", "warm"):
                times = []
                for i in range(args.runs):
                    target = venv(work / f"{name}-{state}-{i}")
                    cache = work / f"cache-{name}-{state}" / (str(i) if state == "cold" else "")
                    if state == "warm" and i == 0:
                        install(venv(work / f"{name}-fill"), cache)
                    started = time.monotonic()
                    install(target, cache)
                    times.append(time.monotonic() - started)
                results[name, state] = statistics.median(times)
        print(f"installing {len(wanted)} requirements from a folder of wheels ({version})")
        for state in ("cold", "warm"):
            p, u = results["pip", state], results["uv", state]
            print(f"  {state} cache: pip {p:6.2f} s  uv {u:6.2f} s  uv/pip {u / p:5.2f} x")
        a, b = files(work / "pip-cold-0" / "bin" / "python"), files(work / "uv-cold-0" / "bin" / "python")
        differ = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        print(f"  files: {len(a)} from pip, {len(b)} from uv, {len(differ)} differ"
              + (": " + ", ".join(differ[:8]) + (" ..." if len(differ) > 8 else "") if differ else ""))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
