"""The heartbeat tasks: ``health`` (some worker of the service) and ``health.node`` (each one).

``health`` travels on the service's own queue: whichever worker takes it runs the checks
and writes the service heartbeat. ``health.node`` is broadcast through a fanout exchange,
so every worker consuming the service's queue runs it and renews its own node record:
proof that *this* node consumes, which a timer inside the worker would not give.

Both are registered on an app by ``register_tasks`` (called by ``install_heartbeat``), so
they run in the standalone ``celery -A worker`` app and inside the user's own app alike.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import redis

from worker.core.names import (
    EXPIRES_HEADER,
    HEALTH_TASK,
    NODE_TASK,
    PUBLISHED_AT_HEADER,
    SERVICE_HEADER,
)
from worker.core.redis_clients import make_client
from worker.core.settings import Settings
from worker.core.urls import REDIS_SCHEMES, redact
from worker.publish.backlog import Backlog, amqp_backlog, redis_backlog
from worker.publish.health import Discarded, run_health
from worker.publish.store import HeartbeatStore

logger = logging.getLogger(__name__)


def time_limit_s(settings: Settings) -> float:
    """Hard bound on one heartbeat: the store's timeouts and the checks' fit well inside it."""
    return max(10.0, 3 * settings.interval_s)


def _header(request: Any, name: str) -> float | None:
    value = getattr(request, name, None)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class HeartbeatRuntime:
    """One app's heartbeat in one process: clients (made after the pool forks) and outcomes."""

    def __init__(self, app: Any, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self._pid = -1
        self._client: redis.Redis | None = None
        self._store: HeartbeatStore | None = None
        self._broker_client: redis.Redis | None = None
        self._last_problem: str | None = None
        self._node_problem: str | None = None
        #: Expired heartbeats discarded since the last one published (a backlog being drained).
        self.discarded = 0
        self._discarded_max_lag_ms = 0.0
        self._foreign_warned = False

    def store(self) -> tuple[redis.Redis, HeartbeatStore]:
        """This process's store client (a forked pool child makes its own)."""
        if self._pid != os.getpid() or self._client is None or self._store is None:
            settings = self.settings
            client = make_client(settings.redis_url, timeout_s=settings.redis_timeout_s)
            self._client = client
            self._store = HeartbeatStore(client, settings.keys, retention_s=settings.retention_s,
                                         history_len=settings.history_len)
            self._broker_client = None
            if settings.broker_url.split("://", 1)[0] in REDIS_SCHEMES:
                self._broker_client = (
                    client if settings.broker_url == settings.redis_url
                    else make_client(settings.broker_url, timeout_s=settings.redis_timeout_s))
            self._pid = os.getpid()
        return self._client, self._store

    def _backlog(self, now_ms: float) -> Backlog:
        if self._broker_client is not None:
            return redis_backlog(self._broker_client, self.settings.queue, now_ms)
        return amqp_backlog(self.app, self.settings.queue)

    def _ours(self, request: Any) -> bool:
        """False for a message another service's beat published (a misrouted queue)."""
        service = getattr(request, SERVICE_HEADER, None)
        if service is None or service == self.settings.service:
            return True
        if not self._foreign_warned:
            logger.warning("dropping a heartbeat of service %r: this worker publishes %r "
                           "(each service needs its own queue; see HEARTBEAT_QUEUE)",
                           str(service)[:64], self.settings.service)
            self._foreign_warned = True
        return False

    def _note(self, problem: str | None) -> None:
        """Log when the outcome changes (failing, or recovered), not on every tick."""
        if problem != self._last_problem:
            if problem is None:
                logger.warning("heartbeat published again")
            else:
                logger.error("heartbeat not published: %s", problem)
            self._last_problem = problem

    def health(self, request: Any) -> None:
        """Publish one service heartbeat; store failures are logged, not raised."""
        if not self._ours(request):
            return
        try:
            client, store = self.store()
            result = run_health(
                client, store, self.settings, node=request.hostname or "unknown",
                published_at_ms=_header(request, PUBLISHED_AT_HEADER),
                expires_ms=_header(request, EXPIRES_HEADER), backlog=self._backlog,
            )
        except Exception as exc:  # store down, time limit, oversized payload: log once, go on
            self._note(redact(f"{type(exc).__name__}: {exc}"))
            return
        if isinstance(result, Discarded):
            self._discard(result.lag_ms)
            return
        if self.discarded:
            logger.warning("discarded %d expired heartbeat(s) (backlog after an outage; the "
                           "oldest waited %.1fs in the queue); heartbeats are published again",
                           self.discarded, self._discarded_max_lag_ms / 1000)
            self.discarded, self._discarded_max_lag_ms = 0, 0.0
        self._note(None if result.accepted else
                   f"a newer heartbeat (seq {result.seq}) is already stored; this one was dropped")

    def _discard(self, lag_ms: float) -> None:
        """Count a heartbeat discarded as expired: expected after an outage, so a warning.

        Logged when the first of a run is discarded and, with the count, when the next one
        is published: two lines per backlog, however long it was.
        """
        if not self.discarded:
            logger.warning("discarding expired heartbeats (backlog after an outage): this one "
                           "waited %.1fs in the queue, over the %gs interval",
                           lag_ms / 1000, self.settings.interval_s)
        self.discarded += 1
        self._discarded_max_lag_ms = max(self._discarded_max_lag_ms, lag_ms)

    def node(self, request: Any) -> None:
        """Renew this worker node's record; failures are logged once, never raised."""
        if not self._ours(request):
            return
        try:
            _, store = self.store()
            store.record_node(self.settings.service, request.hostname or "unknown",
                              retention_s=self.settings.node_retention_s,
                              published_at_ms=_header(request, PUBLISHED_AT_HEADER),
                              expires_ms=_header(request, EXPIRES_HEADER))
            problem = None
        except Exception as exc:  # the node heartbeat must never fail the worker
            problem = redact(f"{type(exc).__name__}: {exc}")
        if problem != self._node_problem:
            if problem is None:
                logger.warning("node heartbeat written again")
            else:
                logger.error("node heartbeat not written: %s", problem)
            self._node_problem = problem

    def forget_node(self, node: str) -> None:
        """Remove ``node``'s record at a clean shutdown, so a rollout leaves no stale node."""
        try:
            client = make_client(self.settings.redis_url, timeout_s=0.5, retries=0)
            try:
                HeartbeatStore(client, self.settings.keys, retention_s=self.settings.retention_s,
                               history_len=self.settings.history_len,
                               ).forget_node(self.settings.service, node)
            finally:
                client.close()
        except Exception as exc:  # a record left behind is pruned after the retention
            logger.warning("node record of %s not removed (pruned after %ds): %s", node,
                           self.settings.node_retention_s, redact(f"{type(exc).__name__}: {exc}"))


def register_tasks(app: Any, settings: Settings) -> HeartbeatRuntime:
    """Register ``health`` and ``health.node`` on ``app``; JSON whatever the app's serializer."""
    runtime = HeartbeatRuntime(app, settings)
    limit_s = time_limit_s(settings)
    options: dict[str, Any] = {
        "bind": True, "ignore_result": True, "acks_late": False, "serializer": "json",
        "time_limit": limit_s + 2, "soft_time_limit": limit_s, "shared": False,
    }

    @app.task(name=HEALTH_TASK, **options)  # type: ignore[untyped-decorator]
    def health(self: Any) -> None:
        """Publish one heartbeat of the service; store failures are logged, not raised."""
        runtime.health(self.request)

    @app.task(name=NODE_TASK, **options)  # type: ignore[untyped-decorator]
    def health_node(self: Any) -> None:
        """Renew this worker node's record (broadcast: every worker of the service runs it)."""
        runtime.node(self.request)

    return runtime
