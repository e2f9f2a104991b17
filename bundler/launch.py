"""Exec a service whose arguments or environment supervisor's config syntax cannot carry.

Usage: python -I -m bundler.launch SPEC.json PROGRAM. SPEC.json (bundle/launchspec.py) holds
{"args": [...], "environment": {...}}; PROGRAM (a path, or a name looked up on PATH) replaces
this process (same pid) with those arguments, and the environment added to the one supervisord
gave. It runs before every such service starts: it imports launchspec.py (record.py and json)
and nothing else.
"""

from __future__ import annotations

import os
import sys

from bundler.bundle.launchspec import LaunchSpec


def main(argv: list[str]) -> None:
    if len(argv) != 3:
        sys.exit("usage: python -m bundler.launch SPEC.json PROGRAM")
    with open(argv[1], encoding="utf-8") as f:  # not LaunchSpec.read: its Path is pathlib's
        spec = LaunchSpec.parse(f.read())
    env = dict(os.environ)
    env.update(spec.environment)
    program = argv[2]
    os.execvpe(program, [program, *spec.args], env)


if __name__ == "__main__":
    main(sys.argv)
