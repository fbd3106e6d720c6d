"""The standalone app's beat scheduler, in process: every fixed-interval entry is due the
moment beat starts (its last run one interval ago); entries on other schedules are left as
Celery sets them. Celery's in-memory app, a clock set by hand, no beat process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from celery import Celery
from celery.schedules import crontab, schedule

from worker.publish.scheduler import HeartbeatScheduler

NOW = datetime(2026, 12, 2, 10, 0, 0, tzinfo=UTC)


class _EveryFive(schedule):  # type: ignore[misc]
    """A schedule whose ``run_every`` is not a timedelta (a user's own kind)."""

    def __init__(self, app: Celery) -> None:
        super().__init__(timedelta(seconds=5), app=app)
        self.run_every = 5


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> Celery:
    the_app = Celery("scheduler-units", broker="memory://")
    monkeypatch.setattr(the_app, "now", lambda: NOW)
    return the_app


def test_every_fixed_interval_entry_is_due_at_once_and_the_others_as_celery_has_them(
        app: Celery) -> None:
    beat_schedule: dict[str, Any] = {
        "seconds": {"task": "t.seconds", "schedule": 10.0},
        "delta": {"task": "t.delta", "schedule": timedelta(minutes=2)},
        "cron": {"task": "t.cron", "schedule": crontab(minute="*/5")},
        "odd": {"task": "t.odd", "schedule": _EveryFive(app)},
    }
    app.conf.beat_schedule = beat_schedule
    scheduler = HeartbeatScheduler(app)
    entries = scheduler.schedule
    assert sorted(entries) == ["cron", "delta", "odd", "seconds"]
    assert entries["seconds"].last_run_at == NOW - timedelta(seconds=10)
    assert entries["delta"].last_run_at == NOW - timedelta(minutes=2)
    assert entries["seconds"].is_due().is_due and entries["delta"].is_due().is_due
    assert entries["cron"].last_run_at == NOW
    assert entries["odd"].last_run_at == NOW


def test_an_empty_schedule_is_fine(app: Celery) -> None:
    assert dict(HeartbeatScheduler(app).schedule) == {}
