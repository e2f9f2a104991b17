"""`python -m bundler.monitor CONFIG`: the name every bundle's etc/conf.d/_monitor.ini runs (and
keeps running after a patch updates bundler). The monitor is bundler.server.monitor."""

from __future__ import annotations

import sys

from bundler.server.monitor.listener import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
