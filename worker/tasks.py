"""The ``health`` task: run the checks and publish one heartbeat to the store."""

from __future__ import annotations

import logging
import os
from typing import Any

import redis

from worker.backlog import Backlog, amqp_backlog, redis_backlog
from worker.celery import app
from worker.checks import load_check_specs
from worker.clients import make_client
from worker.errors import ConfigError
from worker.health import Discarded, run_health
from worker.protocol import EXPIRES_HEADER, HEARTBEAT_QUEUE, PUBLISHED_AT_HEADER
from worker.settings import Settings
from worker.store import HeartbeatStore
from worker.urls import REDIS_SCHEMES, redact

logger = logging.getLogger(__name__)

settings: Settings = app.conf.heartbeat_settings
try:
    load_check_specs(settings.checks)
except ConfigError as exc:
    from worker.exits import fail

    raise SystemExit(fail(None, str(exc))) from None

_TIME_LIMIT_S = max(10.0, 3 * settings.interval_s)
"""Hard bound on one heartbeat: the store's timeouts and the checks' fit well inside it."""


class _State:
    """Per-process clients and store (made after the pool forks) and the last outcome."""

    pid: int = -1
    client: redis.Redis | None = None
    store: HeartbeatStore | None = None
    broker_client: redis.Redis | None = None
    last_problem: str | None = None
    #: Expired heartbeats discarded since the last one published (a backlog being drained).
    discarded: int = 0
    discarded_max_lag_ms: float = 0.0


def _store() -> tuple[redis.Redis, HeartbeatStore]:
    if _State.pid != os.getpid() or _State.client is None or _State.store is None:
        client = make_client(settings.redis_url, timeout_s=settings.redis_timeout_s)
        _State.client = client
        _State.store = HeartbeatStore(client, settings.keys, retention_s=settings.retention_s,
                                      history_len=settings.history_len)
        _State.broker_client = None
        if settings.broker_url.split("://", 1)[0] in REDIS_SCHEMES:
            _State.broker_client = (
                client if settings.broker_url == settings.redis_url
                else make_client(settings.broker_url, timeout_s=settings.redis_timeout_s,
                                 source="CELERY_BROKER_URL"))
        _State.pid = os.getpid()
    return _State.client, _State.store


def _backlog(now_ms: float) -> Backlog:
    if _State.broker_client is not None:
        return redis_backlog(_State.broker_client, HEARTBEAT_QUEUE, now_ms)
    return amqp_backlog(app, HEARTBEAT_QUEUE)


def _note(problem: str | None) -> None:
    """Log when the outcome changes (failing, or recovered), not on every tick."""
    if problem != _State.last_problem:
        if problem is None:
            logger.warning("heartbeat published again")
        else:
            logger.error("heartbeat not published: %s", problem)
        _State.last_problem = problem


def _header(request: Any, name: str) -> float | None:
    value = getattr(request, name, None)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@app.task(  # type: ignore[untyped-decorator]
    name="health", bind=True, ignore_result=True, acks_late=False,
    time_limit=_TIME_LIMIT_S + 2, soft_time_limit=_TIME_LIMIT_S)
def health(self: Any) -> None:
    """Publish one heartbeat of ``settings.service``; store failures are logged, not raised."""
    try:
        client, store = _store()
        result = run_health(
            client, store, settings, node=self.request.hostname or "unknown",
            published_at_ms=_header(self.request, PUBLISHED_AT_HEADER),
            expires_ms=_header(self.request, EXPIRES_HEADER), backlog=_backlog,
        )
    except Exception as exc:  # store down, time limit, oversized payload: log once, go on
        _note(redact(f"{type(exc).__name__}: {exc}"))
        return
    if isinstance(result, Discarded):
        _discarded(result.lag_ms)
        return
    if _State.discarded:
        logger.warning("discarded %d expired heartbeat(s) (backlog after an outage; the oldest "
                       "waited %.1fs in the queue); heartbeats are published again",
                       _State.discarded, _State.discarded_max_lag_ms / 1000)
        _State.discarded, _State.discarded_max_lag_ms = 0, 0.0
    _note(None if result.accepted else
          f"a newer heartbeat (seq {result.seq}) is already stored; this one was dropped")


def _discarded(lag_ms: float) -> None:
    """Count a heartbeat discarded as expired: expected after an outage, so a warning.

    Logged when the first of a run is discarded and, with the count, when the next one is
    published: two lines per backlog, however long it was.
    """
    if not _State.discarded:
        logger.warning("discarding expired heartbeats (backlog after an outage): this one "
                       "waited %.1fs in the queue, over the %gs interval",
                       lag_ms / 1000, settings.interval_s)
    _State.discarded += 1
    _State.discarded_max_lag_ms = max(_State.discarded_max_lag_ms, lag_ms)
