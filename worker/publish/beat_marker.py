"""Beat's publish marker in Redis, and beat's estimate of the Redis clock.

Beat records each publish of the heartbeat task at ``{prefix}:{service}:beat``: when (on
the Redis clock), when the next is due, a counter, and the queue depth right after the
publish when the broker is a Redis (``queue_bound``). Readers compare it with the heartbeat to tell
"beat is down" from "beat publishes but nothing consumes".

A marker write must never delay or stop beat: it has a short timeout, and after a failure
it is not tried again for a while (the failure is logged once, and recovery once).
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import socket
import time
from typing import Any

import redis

from worker.core.names import Keys, default_queue
from worker.core.redis_io import lua_script, redis_time_ms
from worker.core.states import Thresholds
from worker.core.urls import redact
from worker.core.version import __version__

logger = logging.getLogger(__name__)

MARKER_SCRIPT = lua_script(__package__, "beat_marker.lua")

MARKER_TIMEOUT_S = 0.5
"""Connect/read timeout of a marker write: beat must not wait on the store."""

RETRY_AFTER_FAILURE_S = 5.0
"""After a failed marker write, beat skips marker writes for this long."""


_UNSAFE = re.compile(r'[^ !#-\[\]-~]')
"""Anything but printable ASCII, quotes and backslashes: the marker's script writes the
error into JSON as it is."""

SECOND_BEAT_WINDOW_INTERVALS = 10
"""A second beat stays flagged in the marker for this many intervals after it was last seen."""


def beat_identity() -> str:
    """This beat process's id in the marker: host, pid and a random part (a restart differs)."""
    host = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())[:64] or "host"
    return f"{host}:{os.getpid()}:{secrets.token_hex(3)}"


class BeatMarker:
    """Writes beat's marker and keeps beat's offset to the Redis clock."""

    def __init__(self, client: redis.Redis, keys: Keys, service: str, *, interval_s: float,
                 retention_s: int, stale_after_s: float | None = None,
                 queue: str | None = None) -> None:
        self._client = client
        self._script = client.register_script(MARKER_SCRIPT)
        self._marker_key = keys.beat(service)
        self._interval_ms = int(interval_s * 1000)
        self._retention_ms = retention_s * 1000
        self._second_beat_window_ms = self._interval_ms * SECOND_BEAT_WINDOW_INTERVALS
        self.beat_id = beat_identity()
        self._last_publish_ms = 0  #: this beat's previous marker write (Redis clock)
        self._fields = json.dumps({
            "service": service, "interval_s": interval_s,
            "stale_after_s": Thresholds.for_interval(interval_s, stale_after_s).stale_after_s,
            "queue": queue or default_queue(service), "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "version": __version__,
        }, separators=(",", ":"))
        self.offset_ms: float | None = None  #: Redis clock minus beat's clock, last measured
        self._skip_until = 0.0
        self._failing = False

    def redis_now_ms(self) -> float:
        """Beat's best estimate of the Redis clock now (its own clock if never measured)."""
        return time.time() * 1000 + (self.offset_ms or 0.0)

    def measure_offset(self) -> None:
        """Read the Redis clock once (at start) so the first publish is stamped right."""
        self._guarded(lambda: self._offset_from(self._client.time()))

    def record_publish(self, queue_depth: int | None = None) -> None:
        """Write the marker for a publish that just happened (never raises)."""
        self._guarded(lambda: self._write("", queue_depth))

    def record_failure(self, error: str) -> None:
        """Note in the marker that the broker refused a publish just now (never raises).

        The last successful publish stays recorded; readers see beat alive but unable to
        publish (``broker_down``) rather than beat gone.
        """
        self._guarded(lambda: self._write(_UNSAFE.sub("?", error)[:200] or "unknown error"))

    def _write(self, failure: str, queue_depth: int | None = None) -> None:
        reply = self._script(keys=[self._marker_key],
                             args=[self._interval_ms, self._retention_ms, self._fields,
                                   self.beat_id, self._last_publish_ms,
                                   self._second_beat_window_ms, failure,
                                   -1 if queue_depth is None else queue_depth])
        if not failure:
            self._last_publish_ms = int(reply[0])
        self._offset_from([int(reply[0]) // 1000, (int(reply[0]) % 1000) * 1000])

    def _offset_from(self, time_reply: Any) -> None:
        self.offset_ms = redis_time_ms(time_reply) - time.time() * 1000

    def _guarded(self, action: Any) -> None:
        now = time.monotonic()
        if now < self._skip_until:
            return
        try:
            action()
        except Exception as exc:  # redis, cluster or socket errors alike: beat goes on
            self._skip_until = now + RETRY_AFTER_FAILURE_S
            if not self._failing:
                logger.warning("beat marker not written (beat keeps publishing): %s",
                               redact(f"{type(exc).__name__}: {exc}"))
            self._failing = True
            return
        if self._failing:
            logger.warning("beat marker written again")
        self._failing = False
