"""Beat's bound on a Redis broker's heartbeat queue, and its depth after each publish.

kombu's Redis transport has no queue length limit or message TTL: a queue that no worker
consumes (a worker started with the wrong ``-Q``, or none at all) would grow by one
message per interval for ever. After each publish, beat trims the queue's lists to the
newest ``QUEUE_MAX_MESSAGES`` (kombu pushes on the left and workers pop on the right, so
the oldest go) and reads the depth for its marker. RabbitMQ bounds the queue itself with
queue arguments (``core.names.queue_arguments``).
"""

from __future__ import annotations

import logging

import redis

from worker.core.names import QUEUE_MAX_MESSAGES, queue_lists
from worker.core.redis_io import lua_script
from worker.core.urls import redact

logger = logging.getLogger(__name__)

TRIM_SCRIPT = lua_script(__package__, "queue_bound.lua")


class QueueBound:
    """Trims one heartbeat queue on a Redis broker; failures are logged once, never raised."""

    def __init__(self, client: redis.Redis, queue: str,
                 max_messages: int = QUEUE_MAX_MESSAGES) -> None:
        self._client = client
        self._script = client.register_script(TRIM_SCRIPT)
        self._keys = queue_lists(queue)
        self._max = max_messages
        self._failing = False

    def trim(self) -> int | None:
        """Drop all but the newest messages; the depth left, or None if the broker failed."""
        try:
            depth = int(self._script(keys=self._keys, args=[self._max]))
        except Exception as exc:  # the broker's failure is the publish's to report
            if not self._failing:
                logger.warning("heartbeat queue not trimmed: %s",
                               redact(f"{type(exc).__name__}: {exc}")[:200])
            self._failing = True
            return None
        self._failing = False
        return depth

    def depth(self, queue: str) -> int | None:
        """The messages waiting in another queue of the same broker (an entry's own queue),
        or None if the broker failed: one round trip, never raised."""
        try:
            pipe = self._client.pipeline(transaction=False)
            for name in queue_lists(queue):
                pipe.llen(name)
            return sum(int(n) for n in pipe.execute())
        except Exception:  # an unknown depth is said as such
            return None
