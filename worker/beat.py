"""Beat's scheduler: in memory, first heartbeat at once, publish stamps and the beat marker.

Celery's default ``PersistentScheduler`` keeps a shelve file in the working directory that
a killed beat can leave corrupt; a fixed-interval heartbeat has nothing worth persisting.

Each heartbeat message carries two headers: ``published_at_ms`` (the publish time on the
Redis clock, as beat estimates it) and ``heartbeat_expires_ms`` (one interval). The task
judges expiry on the Redis clock with them, where Celery's own ``expires`` compares beat's
clock with the worker's and silently drops every heartbeat when they disagree.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery.beat import Scheduler
from celery.signals import after_task_publish, before_task_publish

from worker.beat_marker import MARKER_TIMEOUT_S, BeatMarker, queue_lists
from worker.clients import make_client
from worker.protocol import EXPIRES_HEADER, HEALTH_TASK, HEARTBEAT_QUEUE, PUBLISHED_AT_HEADER
from worker.settings import Settings


def make_marker(settings: Settings) -> BeatMarker:
    """The beat marker writer for these settings (queue depth only if broker = store)."""
    client = make_client(settings.redis_url, timeout_s=MARKER_TIMEOUT_S, retries=0)
    same_redis = settings.broker_url == settings.redis_url
    return BeatMarker(client, settings.keys, settings.service, interval_s=settings.interval_s,
                      retention_s=settings.retention_s,
                      queue_keys=queue_lists(HEARTBEAT_QUEUE) if same_redis else None)


class HeartbeatScheduler(Scheduler):  # type: ignore[misc]
    """In-memory scheduler whose entries are due at once on start, with publish stamps."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        app = kwargs.get("app") or args[0]
        settings: Settings = app.conf.heartbeat_settings
        self.marker = make_marker(settings)
        self.marker.measure_offset()
        self._expires_ms = round(settings.interval_s * 1000)
        before_task_publish.connect(self._stamp, weak=False)
        after_task_publish.connect(self._record, weak=False)
        super().__init__(*args, **kwargs)

    def _stamp(self, sender: str | None = None, headers: dict[str, Any] | None = None,
               **_: Any) -> None:
        if sender == HEALTH_TASK and headers is not None:
            headers[PUBLISHED_AT_HEADER] = round(self.marker.redis_now_ms(), 3)
            headers[EXPIRES_HEADER] = self._expires_ms

    def _record(self, sender: str | None = None, **_: Any) -> None:
        if sender == HEALTH_TASK:
            self.marker.record_publish()

    def setup_schedule(self) -> None:
        """Load the configured schedule; make every entry due now rather than one run later."""
        super().setup_schedule()
        now = self.app.now()
        for entry in self.schedule.values():
            run_every = getattr(entry.schedule, "run_every", None)
            if isinstance(run_every, timedelta):
                entry.last_run_at = now - run_every
