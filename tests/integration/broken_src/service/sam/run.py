"""A code version that cannot start: what a bad upgrade looks like."""
raise SystemExit("broken version: cannot start (missing setting)")
