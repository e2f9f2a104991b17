"""The Prometheus endpoint of a bundle: every process supervisord runs, read at each scrape."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from bundler.server.monitor.memory import cpu_seconds, rss
from bundler.server.supervisor import RUNNING, Supervisor
from bundler.spec.model import Listen

STATES = ("STOPPED", "STARTING", "RUNNING", "BACKOFF", "STOPPING", "EXITED", "FATAL", "UNKNOWN")


class BundleCollector(Collector):
    def __init__(self, sup: Supervisor, bundle: str, restarts: Mapping[str, int],
                 failures: Callable[[], Mapping[str, int]], services: Callable[[], Any]):
        self.sup = sup
        self.bundle = bundle
        self.restarts = restarts    # full process name -> restarts seen by the monitor
        self.failures = failures    # full process name -> failed health probes in a row
        self.services = services    # the service names of bundle.toml

    def collect(self) -> Iterator[Any]:
        labels = ["bundle", "process", "service"]
        state = GaugeMetricFamily("bundler_process_state", "1 for the state the process is in",
                                  labels=[*labels, "state"])
        up = GaugeMetricFamily("bundler_process_up", "1 when the process is RUNNING", labels=labels)
        restarts = CounterMetricFamily("bundler_process_restarts", "Starts after the first one, "
                                       "since the monitor started", labels=labels)
        uptime = GaugeMetricFamily("bundler_process_uptime_seconds", "Seconds in the current run",
                                   labels=labels)
        memory = GaugeMetricFamily("bundler_process_resident_memory_bytes", "Resident memory of "
                                   "the process and its descendants", labels=labels)
        cpu = CounterMetricFamily("bundler_process_cpu_seconds", "CPU time of the process (user "
                                  "and system, with its reaped children)", labels=labels)
        failing = GaugeMetricFamily("bundler_process_health_failures", "Failed health probes in "
                                    "a row", labels=labels)
        failures = self.failures()
        services = self.services()
        for p in self.sup.processes():
            values = [self.bundle, p.full_name, p.service(services)]
            for name in STATES:
                state.add_metric([*values, name], 1.0 if p.state == name else 0.0)
            up.add_metric(values, 1.0 if p.state == RUNNING else 0.0)
            restarts.add_metric(values, float(self.restarts.get(p.full_name, 0)))
            uptime.add_metric(values, float(p.uptime))
            memory.add_metric(values, float(rss(p.pid)) if p.pid else 0.0)
            cpu.add_metric(values, cpu_seconds(p.pid) if p.pid else 0.0)
            failing.add_metric(values, float(failures.get(p.full_name, 0)))
        yield from (state, up, restarts, uptime, memory, cpu, failing)


def serve(listen: Listen, collector: Collector) -> None:
    """Serve /metrics in a background thread."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    start_http_server(listen.port, addr=listen.host, registry=registry)
