"""Health probes run by the monitor: an HTTP GET, a TCP connect or a command, each bounded by a
timeout. A probe returns None when the service is healthy, else why it is not."""

from __future__ import annotations

import base64
import shlex
import socket
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from bundler.errors import BundlerError
from bundler.redact import redact
from bundler.runner import TimedOut, call
from bundler.spec.model import PYTHON_WORD, Health

# No proxy: a health URL names this host, and an http_proxy in the environment must not apply
# (alerts use it too: the monitor reaches out only where bundle.toml says).
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def run(health: Health, root: Path, python: str, directory: str) -> str | None:
    """None when the service is healthy, else why not: in words the logs, the health record
    and status show, so its URLs without their secrets (bundler/redact.py)."""
    try:
        if health.probe == "http":
            why = _http(health.target, health.timeout)
        elif health.probe == "tcp":
            why = _tcp(health.target, health.timeout)
        else:
            why = _command(health.target, health.timeout, root, python, directory)
    except Exception as exc:  # a probe that breaks is a failed probe, never a dead monitor
        why = f"{type(exc).__name__}: {exc}"
    return None if why is None else redact(why)


def request_for(url: str, **kwargs: Any) -> urllib.request.Request:
    """A Request for `url`. Its userinfo (`user:password@`), which urllib would take for part of
    the host's name (the probe or alert failed, a healthy service was restarted again and
    again), goes as HTTP basic authentication instead."""
    headers = {"User-Agent": "bundler-monitor", **kwargs.pop("headers", {})}
    parts = urllib.parse.urlsplit(url)
    if "@" in parts.netloc:
        userinfo, _, host = parts.netloc.rpartition("@")
        user, _, password = userinfo.partition(":")
        pair = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        url = urllib.parse.urlunsplit(parts._replace(netloc=host))
    return urllib.request.Request(url, headers=headers, **kwargs)


def _http(url: str, timeout: float) -> str | None:
    request = request_for(url)
    try:
        with OPENER.open(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, urllib.error.URLError) as exc:
        return f"GET {url}: {getattr(exc, 'reason', exc)}"
    return None if 200 <= status < 400 else f"GET {url}: HTTP {status}"


def _tcp(target: str, timeout: float) -> str | None:
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return None
    except OSError as exc:
        return f"connect {target}: {exc.strerror or exc}"


def _command(command: str, timeout: float, root: Path, python: str, directory: str) -> str | None:
    words = shlex.split(command)
    if words and PYTHON_WORD.match(words[0]):
        words[0] = str(root / python)
    try:
        done = call(words, what=command, cwd=root / directory, timeout=timeout, merge=False)
    except TimedOut:
        return f"{command}: no answer in {timeout:g} s"
    except BundlerError as exc:  # it cannot be run: no such program, or folder
        return str(exc)
    if done.returncode == 0:
        return None
    said = (done.errors or done.output).strip().splitlines()
    return f"{command}: exit {done.returncode}" + (f": {said[-1]}" if said else "")
