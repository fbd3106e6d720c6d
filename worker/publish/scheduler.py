"""Beat's scheduler for the standalone app: in memory, and the first heartbeat at once.

Celery's default ``PersistentScheduler`` keeps a shelve file in the working directory that
a killed beat can leave corrupt; a fixed-interval heartbeat has nothing worth persisting.
Publish stamping and the beat marker are not here: ``install_heartbeat`` connects them on
``beat_init``, once per beat process, so they work with any scheduler (the user's own app
keeps its own).
"""

from __future__ import annotations

from datetime import timedelta

from celery.beat import Scheduler


class HeartbeatScheduler(Scheduler):  # type: ignore[misc]
    """In-memory scheduler whose entries are due at once on start."""

    def setup_schedule(self) -> None:
        """Load the configured schedule; make every entry due now rather than one run later."""
        super().setup_schedule()
        now = self.app.now()
        for entry in self.schedule.values():
            run_every = getattr(entry.schedule, "run_every", None)
            if isinstance(run_every, timedelta):
                entry.last_run_at = now - run_every
