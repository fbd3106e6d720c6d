"""``petsage-heartbeat watch``: report state transitions as they happen, and run a hook.

Driven by two things: the pub/sub channel (a heartbeat landed: re-read that one service,
never the whole fleet) and its own timer (nothing landed: ages grow, so fresh turns late
and late turns stale with no message at all; the timer re-reads everything watched). A
Redis outage is a transition to ``unreachable``; the watcher keeps reconnecting and
resumes when Redis is back.

``--exec`` hooks are debounced (``Hooks``): one runs at a time, at most one starts per
``HOOK_MIN_INTERVAL_S``, and the transitions seen meanwhile are coalesced, one per
service, into the latest state; a hook gets a minimal environment (``hook_env``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
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

HOOK_MIN_INTERVAL_S = 1.0
"""A hook starts at most once per this many seconds (and never while one runs)."""

HOOK_ENV_KEPT = ("PATH", "HOME", "LANG")
"""What a hook keeps of watch's own environment, besides the ``PETSAGE_*`` variables:
never ``HEARTBEAT_REDIS_URL``, a broker URL or any other secret."""


_SECRET_NAME = re.compile(r"URL|PASSWORD|SECRET|TOKEN|KEY|CREDENTIAL", re.IGNORECASE)
"""A ``PETSAGE_*`` variable named like a secret (``PETSAGE_READER_URL``) stays out too."""


def hook_env(event: dict[str, Any], environ: dict[str, str] | None = None) -> dict[str, str]:
    """A hook's environment: ``PATH``, ``HOME``, ``LANG`` and the ``PETSAGE_*`` variables of
    watch's environment (but none named like a secret: ``..._URL``, ``..._TOKEN``), then
    the event's (``PETSAGE_SERVICE``, ...; ``PETSAGE_ENTRY`` empty unless the event has
    one: one hook serves ``watch`` and ``watch --entries``)."""
    source = os.environ if environ is None else environ
    env = {key: value for key, value in source.items()
           if key in HOOK_ENV_KEPT or (key.startswith("PETSAGE_")
                                       and not _SECRET_NAME.search(key))}
    env.setdefault("PATH", os.defpath)
    env["PETSAGE_ENTRY"] = ""
    for key, value in event.items():
        env["PETSAGE_" + key.upper()] = "" if value is None else str(value)
    return env


class Hooks:
    """The ``--exec`` hooks of one watch: at most one running, at most one started per
    ``min_interval_s``; transitions that arrive meanwhile wait, one per key (a service, or
    a service's entry), the latest replacing the earlier with its ``old_state`` kept (the
    state the hook was last told of), so 100 flips run a handful of hooks and the last one
    always tells the state now. A flip and back again while waiting runs nothing."""

    def __init__(self, command: str, *, min_interval_s: float = HOOK_MIN_INTERVAL_S,
                 spawn: Callable[[str, dict[str, str]], Any] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.command = command
        self.min_interval_s = min_interval_s
        self.spawn = spawn or _spawn
        self.clock = clock
        self.waiting: dict[Any, dict[str, Any]] = {}
        self.running: Any = None
        self.started = 0  #: hooks started
        self._last_start: float | None = None

    def add(self, key: Any, event: dict[str, Any]) -> None:
        """Queue ``event`` for ``key``'s hook (coalescing) and start one if it may."""
        earlier = self.waiting.pop(key, None)
        if earlier is not None:
            event = {**event, "old_state": earlier["old_state"]}
        if event.get("old_state") != event.get("new_state"):
            self.waiting[key] = event
        self.pump()

    def pump(self) -> None:
        """Start the oldest waiting hook if none runs and the interval has passed."""
        if not self.waiting:
            return
        if self.running is not None and self.running.poll() is None:
            return
        now = self.clock()
        if self._last_start is not None and now - self._last_start < self.min_interval_s:
            return
        key = next(iter(self.waiting))
        event = self.waiting.pop(key)
        self.running = self.spawn(self.command, hook_env(event))
        self._last_start = now
        self.started += 1


def _spawn(command: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    # The command is the operator's own flag, run like cron would run it.
    return subprocess.Popen(command, shell=True, env=env)  # noqa: S602


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
        self.hooks = Hooks(exec_cmd) if exec_cmd else None
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
        if self.hooks is not None:
            self.hooks.pump()  # a hook that waited for the last one or the interval
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
        if self.hooks is not None:
            self.hooks.add(report.service, event)

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
