"""``petsage-heartbeat watch``: report state transitions as they happen, and run a hook.

Driven by two things: the pub/sub channel (a heartbeat landed: re-read that one service,
never the whole fleet) and its own timer (nothing landed: ages grow, so fresh turns late
and late turns stale with no message at all; the timer re-reads everything watched). A
Redis outage is a transition to ``unreachable``; the watcher keeps reconnecting and
resumes when Redis is back.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import redis

from worker.core.names import SERVICE_PATTERN
from worker.core.redis_clients import make_client
from worker.core.settings import Settings
from worker.core.states import State
from worker.read.fleet import read_fleet
from worker.read.reader import HeartbeatReport, read_heartbeat, unreachable
from worker.read.render import transition_event, transition_line

DEFAULT_POLL_S = 0.5
"""How often the timer re-reads the watched services (``--poll``)."""

RECONNECT_DELAY_S = 0.5
"""Pause between reconnection attempts while Redis is unreachable."""


def follow(client: redis.Redis, channel: str, *, poll_s: float,
           relevant: Callable[[Any], bool], on_read: Callable[[bool], None],
           on_unreachable: Callable[[Exception], None], stopping: Callable[[], bool],
           max_wait_s: float | None = None,
           reconnect_delay_s: float = RECONNECT_DELAY_S) -> None:
    """The watch loop of ``watch`` and ``run``: pub/sub for landings, a timer for ages.

    ``on_read(landed)`` runs when a relevant message arrives (``landed``) and every
    ``poll_s`` without one (ages grow with no message at all). A Redis error calls
    ``on_unreachable`` and resubscribes after ``reconnect_delay_s``. ``max_wait_s`` bounds
    each wait, so ``stopping`` is asked at least that often.
    """
    pubsub: Any = None
    next_poll = 0.0
    while not stopping():
        try:
            if pubsub is None:
                pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
                pubsub.subscribe(channel)
                next_poll = 0.0
            wait_s = max(min(next_poll - time.monotonic(), max_wait_s or poll_s), 0.0)
            message = pubsub.get_message(timeout=wait_s)
            landed = message is not None and relevant(message.get("data"))
            if landed or time.monotonic() >= next_poll:
                on_read(landed)
                next_poll = time.monotonic() + poll_s
        except (redis.RedisError, OSError) as exc:
            pubsub = None
            on_unreachable(exc)
            time.sleep(reconnect_delay_s)


class Watcher:
    """Keeps the last state of each watched service and reports changes."""

    def __init__(self, settings: Settings, *, all_services: bool, exec_cmd: str | None,
                 as_json: bool, timeout_s: float, poll_s: float = DEFAULT_POLL_S,
                 emit: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.all_services = all_services
        self.exec_cmd = exec_cmd
        self.as_json = as_json
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.emit = emit or (lambda line: print(line, flush=True))
        self.states: dict[str, State] = {}
        self.hooks: list[subprocess.Popen[bytes]] = []
        self.stopping = False
        self._landed: str | None = None  #: the service of the last heartbeat message

    def _read(self, client: redis.Redis, landed: bool = False) -> list[HeartbeatReport]:
        if landed and self._landed is not None:  # one heartbeat landed: that service only
            return [read_heartbeat(client, self._landed, keys=self.settings.keys)]
        if not self.all_services:
            return [read_heartbeat(client, self.settings.service, keys=self.settings.keys)]
        fleet = read_fleet(client, self.settings.keys)
        if fleet.store_problem is not None:
            # Every service known so far turns unreachable; before any is known, the
            # transition is reported for "*" (the whole fleet).
            return [unreachable(name, fleet.store_problem) for name in list(self.states) or ["*"]]
        return fleet.reports

    def observe(self, reports: list[HeartbeatReport]) -> None:
        """Compare with the last known states; report and hook each change."""
        for report in reports:
            old = self.states.get(report.service)
            if old is report.state:
                continue
            if report.service != "*":
                self.states.pop("*", None)
            self.states[report.service] = report.state
            self._transition(old, report)

    def _transition(self, old: State | None, report: HeartbeatReport) -> None:
        event = transition_event(old, report)
        self.emit(json.dumps(event) if self.as_json else transition_line(event))
        if self.exec_cmd:
            self._run_hook(event)

    def _run_hook(self, event: dict[str, Any]) -> None:
        # The same variables as ``watch --entries``' hooks, so one hook serves both: no
        # entry here. Set, not left out, so none comes from watch's own environment.
        env = {**os.environ, "PETSAGE_ENTRY": ""}
        for key, value in event.items():
            env["PETSAGE_" + key.upper()] = "" if value is None else str(value)
        self.hooks = [h for h in self.hooks if h.poll() is None]
        # The command is the operator's own flag, run like cron would run it.
        self.hooks.append(subprocess.Popen(self.exec_cmd or "", shell=True, env=env))  # noqa: S602

    def run(self) -> int:
        """Watch until SIGINT or SIGTERM; return 0."""
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        client = make_client(self.settings.redis_url, timeout_s=self.timeout_s)
        with contextlib.suppress(KeyboardInterrupt):
            follow(client, self.settings.keys.events, poll_s=self.poll_s,
                   relevant=self._is_watched,
                   on_read=lambda landed: self.observe(self._read(client, landed)),
                   on_unreachable=lambda _exc: self.observe(self._read(client)),
                   stopping=lambda: self.stopping)
        return 0

    def _is_watched(self, data: Any) -> bool:
        try:
            service = json.loads(data).get("service")
        except (TypeError, ValueError, AttributeError):
            return False
        watched = (isinstance(service, str) and SERVICE_PATTERN.fullmatch(service) is not None
                   and (self.all_services or service == self.settings.service))
        self._landed = service if watched else None
        return watched


def run_watch(settings: Settings, **kwargs: Any) -> int:
    """Entry for the CLI."""
    try:
        return Watcher(settings, **kwargs).run()
    except KeyboardInterrupt:
        print("", file=sys.stderr)
        return 0
    except BrokenPipeError:  # the reader went away (``| head -3``): done, no traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0
