"""Beat's scheduler: in memory, first heartbeat at once, and a publish stamp on each message.

Celery's default ``PersistentScheduler`` keeps a shelve file in the working directory that
a killed beat can leave corrupt; a fixed-interval heartbeat has nothing worth persisting.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from celery.beat import Scheduler
from celery.signals import before_task_publish

HEALTH_TASK = "health"
"""Name of the heartbeat task."""

PUBLISHED_AT_HEADER = "published_at_ms"
"""Message header beat stamps with the publish time (epoch ms)."""


def _stamp_publish(sender: str | None = None, headers: dict[str, Any] | None = None,
                   **_: Any) -> None:
    """Add the publish time to the heartbeat task's headers (runs in beat only)."""
    if sender == HEALTH_TASK and headers is not None:
        headers[PUBLISHED_AT_HEADER] = round(time.time() * 1000, 3)


class HeartbeatScheduler(Scheduler):  # type: ignore[misc]
    """In-memory scheduler whose entries are due at once on start."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        before_task_publish.connect(_stamp_publish, weak=False)
        super().__init__(*args, **kwargs)

    def setup_schedule(self) -> None:
        """Load the configured schedule; make every entry due now rather than one run later."""
        super().setup_schedule()
        now = self.app.now()
        for entry in self.schedule.values():
            run_every = getattr(entry.schedule, "run_every", None)
            if isinstance(run_every, timedelta):
                entry.last_run_at = now - run_every
