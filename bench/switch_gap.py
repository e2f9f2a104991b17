"""How long a live switch leaves a service's port without a listener, as a client sees it.

    python bench/switch_gap.py [--runs 5]

Builds a small bundle (format dir) with one web service of one process and one of two processes
(numprocs = 2, sharing their port with SO_REUSEPORT), starts it, and switches each between two code
versions --runs times while a client connects every 5 ms. Prints, per service, the median and the
longest run of refused connections per switch (the gap), beside the floor: 0 s, which a rolling
switch of a numprocs service should reach. Asserts nothing.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WEB = REPO / "tests" / "integration" / "web_src"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spec(single: int, double: int) -> str:
    services = ""
    for name, port, procs in (("single", single, 1), ("double", double, 2)):
        services += (f'[services.{name}]\ncommand = "python web.py {port}"\ncode = "a"\n'
                     f"numprocs = {procs}\nstartsecs = 1\n\n")
    return ('spec_version = 1\n[bundle]\nname = "gap"\nversion = "1"\nformat = "dir"\n'
            '[code.a]\npath = "a"\n[code.b]\npath = "b"\n\n' + services)


def gap_during(cmd: list[str], port: int) -> float:
    """The longest stretch of refused connections while `cmd` runs, in seconds."""
    refused_since: list[float | None] = [None]
    longest = [0.0]
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            now = time.monotonic()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    pass
                if refused_since[0] is not None:
                    longest[0] = max(longest[0], now - refused_since[0])
                    refused_since[0] = None
            except ConnectionRefusedError:
                if refused_since[0] is None:
                    refused_since[0] = now
            except OSError:
                pass
            time.sleep(0.005)

    poller = threading.Thread(target=poll)
    poller.start()
    subprocess.run(cmd, check=True, capture_output=True)
    time.sleep(0.3)
    done.set()
    poller.join()
    return longest[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-gap-") as tmp:
        project = Path(tmp) / "project"
        for version in ("a", "b"):
            shutil.copytree(WEB, project / version)
            (project / version / "VERSION").write_text(version + "\n")
        ports = {"single": free_port(), "double": free_port()}
        (project / "bundle.toml").write_text(spec(ports["single"], ports["double"]))
        subprocess.run([sys.executable, "-m", "bundler", "-C", str(project), "build", "--output",
                        str(Path(tmp) / "out")], check=True, capture_output=True)
        bundle = Path(tmp) / "out" / "gap-1"
        subprocess.run([bundle / "bin" / "start"], check=True, capture_output=True)
        try:
            print(f"{'service':<28} {'median gap':>10} {'longest':>9}   floor")
            for name, port in ports.items():
                gaps = [gap_during([str(bundle / "bin" / "bundler"), "switch", name,
                                    "b" if run % 2 == 0 else "a"], port)
                        for run in range(args.runs)]
                label = f"{name} (numprocs {1 if name == 'single' else 2})"
                print(f"{label:<28} {statistics.median(gaps):9.3f}s {max(gaps):8.3f}s   0 s")
        finally:
            subprocess.run([bundle / "bin" / "stop"], capture_output=True)


if __name__ == "__main__":
    main()
