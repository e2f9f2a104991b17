"""For monitors started by a bundler older than this package layout: they import `rss` from here
when they check memory, and keep running while a patch replaces bundler under them. New code
uses bundler.server.monitor.memory."""

from __future__ import annotations

import importlib

# such a monitor listed bundler's folders before the patch: let it see the files the patch added
importlib.invalidate_caches()

from bundler.server.monitor.memory import rss  # noqa: E402

__all__ = ["rss"]
