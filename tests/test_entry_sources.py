"""The whole live schedule of each scheduler, in process: the source chosen by the
scheduler's class; RedBeat's entries read from its sorted set (on fakeredis), due or not,
disabled and unreadable ones left out; due times of entries that never ran or wait for a
start time. The real-process tests are in ``test_entries_schedulers.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import fakeredis
import pytest
from celery import Celery
from celery.schedules import crontab, schedule

from worker.publish.entry_beat import EntryWatch, selector
from worker.publish.entry_sources import (
    CelerySource,
    DjangoSource,
    Listed,
    RedBeatSource,
    source_for,
)


def _scheduler_of(module: str, name: str) -> Any:
    cls = type(name, (), {})
    cls.__module__ = module
    sub = type("Custom" + name, (cls,), {})  # a subclass of the user's is read the same way
    return sub()


def test_the_source_is_chosen_by_the_schedulers_class() -> None:
    assert isinstance(source_for(_scheduler_of("redbeat.schedulers", "RedBeatScheduler")),
                      RedBeatSource)
    assert isinstance(source_for(_scheduler_of("django_celery_beat.schedulers",
                                               "DatabaseScheduler")), DjangoSource)
    assert isinstance(source_for(_scheduler_of("celery.beat", "PersistentScheduler")),
                      CelerySource)
    assert isinstance(source_for(SimpleNamespace(schedule={})), CelerySource)


@pytest.fixture
def redbeat_app() -> Celery:
    pytest.importorskip("redbeat")
    app = Celery("redbeat_source", set_as_current=False)
    app.conf.redbeat_redis_url = "redis://127.0.0.1:1/0"  # never dialled: fakeredis below
    app.redbeat_redis = fakeredis.FakeRedis(decode_responses=True)  # type: ignore[attr-defined]
    return app


def test_redbeat_lists_every_entry_not_only_the_due_ones(redbeat_app: Celery) -> None:
    from redbeat import RedBeatScheduler, RedBeatSchedulerEntry

    app = redbeat_app
    RedBeatSchedulerEntry("every second", "t.noop", schedule(1.0), app=app).save()
    daily = RedBeatSchedulerEntry("daily", "t.noop", crontab(minute=0, hour=3), app=app,
                                  options={"queue": "reports"})
    daily.last_run_at = datetime.now(UTC) - timedelta(minutes=5)
    daily.save()
    RedBeatSchedulerEntry("switched off", "t.noop", schedule(1.0), app=app,
                          enabled=False).save()
    client = app.redbeat_redis  # type: ignore[attr-defined]
    # An entry saved without its last run (written by other means): RedBeat runs it at once.
    client.hdel("redbeat:every second", "meta")
    client.hset("redbeat:broken", "definition", "{not json")
    client.zadd("redbeat::schedule", {"redbeat:broken": 0, "redbeat:gone": 0})

    scheduler = SimpleNamespace(app=app, Entry=RedBeatSchedulerEntry)
    listed = {entry.name: entry for entry in RedBeatSource(scheduler).entries()}
    assert set(listed) == {"every second", "daily"}
    assert listed["every second"].last_run_at is None
    assert listed["daily"].options == {"queue": "reports"}
    assert listed["daily"].last_run_at == daily.last_run_at
    assert isinstance(listed["daily"].schedule, crontab)
    # The installed RedBeat is where the source is chosen by (module and class name).
    assert isinstance(source_for(RedBeatScheduler.__new__(RedBeatScheduler)), RedBeatSource)


def _watch() -> EntryWatch:
    return EntryWatch(None,  # type: ignore[arg-type]  # specs() never writes
                      skip=lambda name: False, watch=selector(None), beat_id="beat",
                      sync_every_s=5.0)


class _Source:
    kind = "test"

    def __init__(self, *entries: Listed) -> None:
        self._entries = list(entries)

    def entries(self) -> list[Listed]:
        return self._entries

    def last_run_at(self, entry: Any) -> datetime | None:
        return None


def test_an_entry_that_never_ran_is_due_now_and_a_start_time_holds_it_back() -> None:
    app = Celery("sources", set_as_current=False)
    now = datetime.now(UTC)
    every = schedule(timedelta(seconds=30), app=app)
    watch = _watch()
    watch._source = _Source(
        Listed("never ran", "t.noop", every, {}, None),
        Listed("ran 10s ago", "t.noop", every, {}, now - timedelta(seconds=10)),
        Listed("starts in an hour", "t.noop", every, {}, None, now + timedelta(hours=1)),
        Listed("started", "t.noop", every, {}, None, now - timedelta(hours=1)),
    )
    specs = watch.specs(SimpleNamespace(app=app))
    assert specs["never ran"].next_due_in_ms == 0
    assert 19_000 <= specs["ran 10s ago"].next_due_in_ms <= 20_000
    assert 3_590_000 <= specs["starts in an hour"].next_due_in_ms <= 3_600_000
    assert specs["started"].next_due_in_ms == 0


def test_a_name_listed_twice_is_watched_once() -> None:
    app = Celery("sources", set_as_current=False)
    every = schedule(timedelta(seconds=30), app=app)
    watch = _watch()
    watch._source = _Source(Listed("twice", "t.first", every, {}, None),
                            Listed("twice", "t.second", every, {}, None))
    specs = watch.specs(SimpleNamespace(app=app))
    assert list(specs) == ["twice"] and specs["twice"].task == "t.first"
