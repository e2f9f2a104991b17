"""`python -m bundler.server.monitor CONFIG`: what every bundle's etc/conf.d/_monitor.ini runs."""

from __future__ import annotations

import sys

from bundler.server.monitor.listener import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
