"""The bundle's monitor, one supervisor event listener (`python -m bundler.server.monitor`): the
listener and its watcher (listener.py), health probes (probes.py), alerts (alerts.py) and the
Prometheus endpoint (metrics.py)."""
