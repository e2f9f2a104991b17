"""Alerts: POST a JSON document to a webhook and/or run a command with it on stdin.

Fire-and-forget: `send` only queues (a bounded queue; the oldest news is what gets dropped when
it is full), one worker thread delivers, retrying each alert a bounded number of times with a
growing pause. Nothing here ever blocks the monitor or supervisord.
"""

from __future__ import annotations

import json
import os
import queue
import shlex
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from bundler.redact import redact
from bundler.runner import call
from bundler.server.monitor.probes import OPENER, request_for
from bundler.spec.model import Alerts

QUEUE_SIZE = 100


def webhook(url: str, body: bytes, timeout: float) -> None:
    request = request_for(url, data=body, method="POST",
                          headers={"Content-Type": "application/json"})
    with OPENER.open(request, timeout=timeout) as response:
        response.read()  # urllib raises HTTPError on 4xx and 5xx


@dataclass(frozen=True)
class Alert:
    """One alert: what happened to which process, and the document's other keys (the event's
    own, the bundle's, the host and the time)."""

    event: str
    process: str
    message: str
    fields: Mapping[str, object]

    def body(self) -> bytes:
        """The JSON document a webhook receives and a command reads on stdin."""
        return json.dumps({"event": self.event, "process": self.process,
                           "message": self.message, **self.fields}).encode()


def command(line: str, timeout: float, alert: Alert, cwd: Path) -> None:
    env = dict(os.environ, BUNDLER_ALERT_EVENT=alert.event, BUNDLER_ALERT_PROCESS=alert.process,
               BUNDLER_ALERT_MESSAGE=alert.message)
    done = call(shlex.split(line), what="alert command", stdin=alert.body(), env=env, cwd=cwd,
                timeout=timeout, merge=False)
    if done.returncode != 0:
        said = done.errors.strip()
        raise OSError(f"exit {done.returncode}" + (f": {said[-200:]}" if said else ""))


class Alerter:
    """Delivers alerts for one bundle in the background."""

    def __init__(self, config: Alerts, about: dict[str, str], cwd: Path,
                 log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
                 pause: float = 1.0):
        self.config = config
        self.about = about  # bundle, version, root: in every alert
        self.cwd = cwd
        self.log: Callable[[str], None] = lambda line: log(redact(line))  # a webhook's token
        self.pause = pause
        self.queue: queue.Queue[Alert] = queue.Queue(QUEUE_SIZE)
        threading.Thread(target=self._work, name="alerts", daemon=True).start()

    def send(self, event: str, process: str, message: str, **extra: object) -> bool:
        """Queue an alert (when the spec asks for this kind); False when it is not sent."""
        if event not in self.config.on:
            return False
        alert = Alert(event, process, message, {
            **extra, **self.about, "host": socket.gethostname(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        while True:
            try:
                self.queue.put_nowait(alert)
                return True
            except queue.Full:
                dropped = self.queue.get_nowait()
                self.log(f"alert queue full: dropped {dropped.event} {dropped.process}")

    def _work(self) -> None:
        while True:
            alert = self.queue.get()
            c = self.config
            if c.webhook:
                self._deliver(c.webhook, partial(webhook, c.webhook, alert.body(), c.timeout),
                              alert)
            if c.command:
                self._deliver(c.command, partial(command, c.command, c.timeout, alert, self.cwd),
                              alert)
            self.queue.task_done()

    def _deliver(self, name: str, deliver: Callable[[], None], alert: Alert) -> None:
        for attempt in range(self.config.retries + 1):
            try:
                deliver()
                self.log(f"alert {alert.event} {alert.process} -> {name}")
                return
            except Exception as exc:  # the network, a dead receiver, a failing command
                error = exc
            if attempt < self.config.retries:
                time.sleep(min(self.pause * 2 ** attempt, 30.0))
        self.log(f"alert {alert.event} {alert.process} not delivered to {name} after "
                 f"{self.config.retries + 1} attempts: {error}")
