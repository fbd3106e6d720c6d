"""The worker's consumer: back within about one interval of the broker, whatever broke.

* Celery's consumer retries a lost broker connection with kombu's back-off: 2 s, then 4,
  6, 8 ... up to 30 s between attempts, so a worker can come back half a minute after the
  broker did, and the heartbeat stays stale all that while. This consumer retries at
  once, then every half interval (0.5 s to 5 s). A refused connection attempt costs the
  broker next to nothing.
* A Redis broker that refuses writes (at its memory limit under ``noeviction``, or a
  read-only replica) makes Celery's worker exit with "Unrecoverable error" and a
  traceback, at start or when a message arrives (kombu writes each one it delivers to its
  unacked set). This consumer takes that refusal for a lost connection: it says so in one
  line and keeps trying at the same pace, so the worker comes back by itself once memory
  is freed.
* A Redis broker that turns into a replica (``REPLICAOF``, a failover) answers the
  consumer's blocking ``BRPOP`` with ``UNBLOCKED force unblock from blocking operation``:
  a plain ``ResponseError`` that Celery does not count as a connection error, so the
  worker would exit. This consumer turns it into a lost connection too; while the broker
  stays a replica, its writes are refused (``READONLY``) and handled as above.
* A broker lost while a message is received and not yet acknowledged made the worker exit
  with ``AttributeError: 'NoneType' object has no attribute 'hostname'``: Celery collects
  the broken connection (which detaches kombu's transport from its client) and then closes
  it, and closing the channel restores the unacknowledged message through that detached
  transport (``QoS.restore_unacked`` -> ``_connparams``). The same class of bug upstream:
  https://github.com/celery/kombu/issues/582 and https://github.com/celery/kombu/issues/970.
  This consumer lets that close fail quietly (one log line): the message stays in kombu's
  unacked set, which kombu restores after ``visibility_timeout``, exactly as when the
  restore fails on the dead broker itself; a heartbeat message has long expired by then.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from celery.worker.consumer import Consumer

from worker.core.urls import redact

logger = logging.getLogger(__name__)

RETRY_START_S = 0.2
"""The first reconnect attempt comes this soon after the connection is lost."""

RETRY_MAX_S = 5.0
"""The longest wait between two reconnect attempts, whatever the interval."""

RETRY_MIN_S = 0.5
"""The shortest wait between two reconnect attempts after the first."""

DEFAULT_CONSUMER = "celery.worker.consumer:Consumer"
"""Celery's own consumer class: only that one is replaced, never a user's own."""


def retry_max_s(interval_s: float) -> float:
    """The longest wait between reconnect attempts: half the interval, within bounds."""
    return min(max(interval_s / 2, RETRY_MIN_S), RETRY_MAX_S)


class HeartbeatConsumer(Consumer):  # type: ignore[misc]
    """Celery's consumer with a reconnect back-off bounded by the heartbeat interval."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Retrying every half interval, Celery would log every attempt: once a while is
        # enough to say the broker is still unreachable.
        celery_logger = logging.getLogger("celery.worker.consumer.consumer")
        if not any(isinstance(f, RepeatedConnectErrors) for f in celery_logger.filters):
            celery_logger.addFilter(RepeatedConnectErrors())
        # A broker refusing writes is recovered from like a lost connection, not fatal.
        known: tuple[type[BaseException], ...] = tuple(self.conninfo.connection_errors)
        self.connection_errors = (*known, *refusal_errors())
        self.loop = _state_changes_as_lost_connection(self.loop)  # type: ignore[has-type]

    def _retry_max_s(self) -> float:
        from worker.publish.install import heartbeat_settings  # install imports this module

        settings = heartbeat_settings(self.app)
        return retry_max_s(settings.interval_s if settings is not None else 10.0)

    def ensure_connected(self, conn: Any) -> Any:
        """Celery's ``ensure_connected`` with the back-off of ``retry_max_s``."""
        conn.ensure_connection = functools.partial(
            conn.ensure_connection, interval_start=RETRY_START_S, interval_step=RETRY_MIN_S,
            interval_max=self._retry_max_s())
        return super().ensure_connected(conn)

    def on_connection_error_after_connected(self, exc: BaseException) -> None:
        """Celery's handler, with a close of the broken connection that can't kill the worker."""
        connection = self.connection
        if connection is not None:
            connection.close = _detached_close(connection.close)
        super().on_connection_error_after_connected(exc)

    def connect(self) -> Any:
        """Celery's ``connect``, waiting (one log line) while the broker refuses writes."""
        refused = False
        while True:
            conn = self.connection_for_read(heartbeat=self.amqheartbeat)
            try:
                if self.hub:
                    conn.transport.register_with_event_loop(conn.connection, self.hub)
            except Exception as exc:
                conn.release()
                if not refuses_writes(exc):
                    raise
                if not refused:
                    logger.error("the broker refuses writes (%s); the worker waits and "
                                 "retries every %gs", redact(str(exc))[:200],
                                 self._retry_max_s())
                refused = True
                time.sleep(self._retry_max_s())
                continue
            if refused:
                logger.warning("the broker accepts writes again; the worker consumes")
            return conn


REPEAT_EVERY_S = 30.0
"""While the broker stays unreachable, Celery's "Cannot connect" line is let through this often."""


class RepeatedConnectErrors(logging.Filter):
    """Lets the first "Cannot connect" of an outage through, then one every 30 s."""

    def __init__(self) -> None:
        super().__init__()
        self._last = -REPEAT_EVERY_S

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a repeated "Cannot connect" line within ``REPEAT_EVERY_S``."""
        if not str(record.msg).startswith("consumer: Cannot connect"):
            return True
        now = time.monotonic()
        if now - self._last < REPEAT_EVERY_S:
            return False
        self._last = now
        return True


def _detached_close(close: Callable[[], Any]) -> Callable[[], Any]:
    """``close`` that logs, instead of raising, kombu's error on a detached transport."""

    @functools.wraps(close)
    def safe_close() -> Any:
        try:
            return close()
        except AttributeError as exc:  # kombu#582/#970: the transport's client is gone
            logger.warning("the broker connection was lost with a message not yet "
                           "acknowledged; kombu restores it after its visibility timeout "
                           "(%s)", exc)
            return None

    return safe_close


def _state_changes_as_lost_connection(loop: Callable[..., Any]) -> Callable[..., Any]:
    """The consumer's event loop, raising a broker's change of role as a lost connection."""

    @functools.wraps(loop)
    def consume(*args: Any, **kwargs: Any) -> Any:
        try:
            return loop(*args, **kwargs)
        except Exception as exc:
            if not changes_role(exc):
                raise
            raise BrokerRoleChanged(redact(str(exc))[:200]) from exc

    return consume


def changes_role(exc: BaseException) -> bool:
    """True for Redis's answer to a blocked client when the server turns into a replica."""
    return type(exc).__name__ == "ResponseError" and str(exc).startswith("UNBLOCKED")


def _connection_error() -> type[Exception]:
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
    except ImportError:  # an AMQP-only install: the loop never sees a Redis error
        return ConnectionError
    return RedisConnectionError


class BrokerRoleChanged(_connection_error()):  # type: ignore[misc]
    """The Redis broker stopped being a primary under a blocked read: a lost connection."""


def refusal_errors() -> tuple[type[BaseException], ...]:
    """redis-py's errors for a server that refuses writes (none if redis-py is absent)."""
    try:
        from redis.exceptions import OutOfMemoryError, ReadOnlyError
    except ImportError:  # an AMQP-only install: nothing to add
        return ()
    return OutOfMemoryError, ReadOnlyError


def refuses_writes(exc: BaseException) -> bool:
    """True for a Redis error that says it refuses writes: memory limit or read-only replica."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    text = str(exc)
    return bool(names & {"OutOfMemoryError", "ReadOnlyError"}) or "maxmemory" in text or (
        text.startswith("READONLY"))
