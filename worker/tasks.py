"""The ``health`` task: run the checks and publish one heartbeat to the store."""

from __future__ import annotations

import logging
import os
from typing import Any

import redis

from worker.celery import app
from worker.checks import load_check_specs
from worker.clients import make_client
from worker.errors import ConfigError
from worker.health import run_health
from worker.settings import Settings
from worker.store import HeartbeatStore
from worker.urls import redact

logger = logging.getLogger(__name__)

settings: Settings = app.conf.heartbeat_settings
try:
    load_check_specs(settings.checks)
except ConfigError as exc:
    import sys

    print(f"petsage-heartbeat: {exc}", file=sys.stderr)
    raise SystemExit(2) from None

_TIME_LIMIT_S = max(10.0, 3 * settings.interval_s)
"""Hard bound on one heartbeat: the store's timeouts and the checks' fit well inside it."""


class _State:
    """Per-process client and store (made after the pool forks) and the last outcome."""

    pid: int = -1
    client: redis.Redis | None = None
    store: HeartbeatStore | None = None
    last_problem: str | None = None


def _store() -> tuple[redis.Redis, HeartbeatStore]:
    if _State.pid != os.getpid() or _State.client is None or _State.store is None:
        client = make_client(settings.redis_url, timeout_s=settings.redis_timeout_s)
        _State.client = client
        _State.store = HeartbeatStore(client, settings.keys, retention_s=settings.retention_s,
                                      history_len=settings.history_len)
        _State.pid = os.getpid()
    return _State.client, _State.store


def _note(problem: str | None) -> None:
    """Log when the outcome changes (failing, or recovered), not on every tick."""
    if problem != _State.last_problem:
        if problem is None:
            logger.warning("heartbeat store recovered: publishing again")
        else:
            logger.error("heartbeat not published: %s", problem)
        _State.last_problem = problem


@app.task(  # type: ignore[untyped-decorator]
    name="health", bind=True, ignore_result=True, acks_late=False,
          time_limit=_TIME_LIMIT_S + 2, soft_time_limit=_TIME_LIMIT_S)
def health(self: Any) -> None:
    """Publish one heartbeat of ``settings.service``; store failures are logged, not raised."""
    client, store = _store()
    published_at_ms = getattr(self.request, "published_at_ms", None)
    try:
        result = run_health(
            client, store, settings, node=self.request.hostname or "unknown",
            published_at_ms=float(published_at_ms) if published_at_ms is not None else None,
        )
    except redis.RedisError as exc:
        _note(redact(f"{type(exc).__name__}: {exc}"))
        return
    _note(None if result.accepted else
          f"a newer heartbeat (seq {result.seq}) is already stored; this one was dropped")
