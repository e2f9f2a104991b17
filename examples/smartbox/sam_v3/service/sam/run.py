"""A stand-in service: says where it runs, then works until it is stopped.

It writes log/<program>.json (interpreter, Python version, code version, pid) so a person or a
test can see which interpreter and which code each service really runs.
"""
import argparse
import json
import os
import signal
import sys
import time

from service.sam import VERSION



def _stop(signum, frame):
    raise SystemExit(0)  # leave the sleep at once; supervisor waits stopwaitsecs at most


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--interval", type=float, default=5.0)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _stop)
    extra = {}
    try:
        import PIL  # only the pyocr env has it
        extra["pillow"] = PIL.__version__
    except ImportError:
        pass
    name = os.environ.get("SUPERVISOR_PROCESS_NAME", "manual")
    report = {"program": name, "pid": os.getpid(), "executable": sys.executable,
              "prefix": sys.prefix, "base_prefix": sys.base_prefix, "version": sys.version,
              "code": VERSION, "file": __file__, "cwd": os.getcwd(), **extra}
    root = os.environ.get("BUNDLE_ROOT", ".")
    path = os.path.join(root, "log", f"{name}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(report, f)
    os.replace(path + ".tmp", path)
    print(f"{name} running code {VERSION} on Python {sys.version.split()[0]}", flush=True)
    try:
        while True:
            time.sleep(args.interval)
    finally:
        print(f"{name} stopped", flush=True)


if __name__ == "__main__":
    main()
