"""bundle.toml's production keys: [supervisor], [metrics], [alerts], health and max_rss."""

from __future__ import annotations

import pytest

from tests.unit.test_spec import error_of, line_of, parse

SERVICE = '[services.api]\ncommand = "python -m api"\ncode = "v1"\n'


def test_health_memory_alerts_metrics_and_supervisor_settings_load() -> None:
    spec = parse(SERVICE + 'health = { http = "http://127.0.0.1:8080/health", every = 2, '
                 'failures = 2 }\nmax_rss = "512MB"\n'
                 '[supervisor]\nuser = "svc"\nsocket_group = "ops"\n'
                 '[supervisor.http]\nport = 9001\n'
                 '[metrics]\nport = 9464\n'
                 '[alerts]\nwebhook = "http://127.0.0.1:9/hook"\non = ["fatal", "health"]\n')
    api = spec.services["api"]
    assert api.health is not None and api.health.probe == "http"
    assert (api.health.every, api.health.timeout, api.health.failures) == (2.0, 3.0, 2)
    assert api.max_rss == 512 * 1024 * 1024
    assert spec.supervisor.user == "svc" and spec.supervisor.socket_group == "ops"
    assert spec.supervisor.http is not None and spec.supervisor.http.host == "127.0.0.1"
    assert spec.metrics is not None and spec.metrics.port == 9464
    assert spec.alerts is not None and spec.alerts.on == ("fatal", "health")
    assert spec.alerts.retries == 3 and spec.monitored


def test_a_plain_bundle_has_no_monitor_and_no_web_server() -> None:
    spec = parse(SERVICE)
    assert not spec.monitored
    assert spec.supervisor.http is None and spec.supervisor.user is None


@pytest.mark.parametrize("body, needle, message", [
    ('[metrics]\nport = 9464\nhost = "0.0.0.0"\n', "0.0.0.0",
     "[metrics] host '0.0.0.0' opens the port to other machines: add allow_remote = true"),
    ('[supervisor.http]\nport = 9001\nhost = "10.1.2.3"\n', "10.1.2.3",
     "[supervisor.http] host '10.1.2.3' opens the port to other machines"),
    ('[supervisor.http]\nport = 90001\n', "90001", "port 90001 is not a TCP port"),
    (SERVICE + 'health = { http = "http://x/h", tcp = "x:1" }\n', "health",
     "health needs exactly one of http = URL"),
    (SERVICE + 'health = { tcp = "nowhere" }\n', "health", "health tcp 'nowhere' must be HOST:PORT"),
    (SERVICE + 'health = { http = "127.0.0.1:80" }\n', "health", "must be an http:// or https:// URL"),
    (SERVICE + 'health = { command = "true", every = 0 }\n', "health",
     "every must be a number more than 0, not 0"),
    (SERVICE + 'max_rss = "lots"\n', "max_rss", "max_rss 'lots' is not a size like \"512MB\""),
    (SERVICE + 'numprocs = 2\nhealth = { tcp = "h:1" }\n', "health", "health checks need numprocs = 1"),
    (SERVICE + 'user = "bob"\n[supervisor]\nuser = "svc"\n', 'user = "bob"',
     "user 'bob': supervisord runs as 'svc' ([supervisor] user)"),
    ('[alerts]\nretries = 2\n', "[alerts]", "needs webhook = URL, command = CMD or both"),
    ('[alerts]\ncommand = "mail"\non = ["fatl"]\n', "fatl", "on names 'fatl', which is not one of "
     "fatal, exit, health, memory, log (did you mean 'fatal'?)"),
    ('[supervisor]\nusr = "x"\n', "usr", "unknown key 'usr' (did you mean 'user'?)"),
])
def test_production_mistakes_name_the_key_and_the_line(body: str, needle: str, message: str) -> None:
    error = error_of(body)
    from tests.unit.test_spec import HEAD
    assert f"bundle.toml:{line_of(HEAD + body, needle)}:" in error
    assert message in error


def test_remote_addresses_are_accepted_when_asked_for() -> None:
    spec = parse('[metrics]\nport = 9464\nhost = "0.0.0.0"\nallow_remote = true\n')
    assert spec.metrics is not None and spec.metrics.host == "0.0.0.0"


@pytest.mark.parametrize("text, size", [("512MB", 512 << 20), ("1.5GiB", 3 << 29), ("200k", 204800),
                                        ("4096", 4096)])
def test_sizes(text: str, size: int) -> None:
    from bundler.spec.load import parse_size
    assert parse_size(text) == size
