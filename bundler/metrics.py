"""For monitors started by a bundler older than this package layout: they import `rss` from here
when they check memory, and keep running while a patch replaces bundler under them. New code
uses bundler.server.monitor.memory."""

from __future__ import annotations

from bundler.server.monitor.memory import rss

__all__ = ["rss"]
