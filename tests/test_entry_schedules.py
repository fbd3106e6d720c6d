"""Schedules a cron string can't say, described and timed from Celery's own objects, in
process on a fixed clock (``nowfun``): ``solar`` (needs ``ephem``), intervals under 60 s,
``day_of_week`` by names and ranges. Each goes through ``EntryWatch.specs`` as beat's
sync does, so the description, the next due time and the period are what the store gets.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from celery import Celery
from celery.beat import ScheduleEntry
from celery.schedules import crontab, schedule, solar

from worker.publish.entry_beat import EntryWatch, selector
from worker.publish.entry_schedule import describe, due_in_s, kind_of, period_s
from worker.publish.entry_store import EntrySpec

BERLIN = ZoneInfo("Europe/Berlin")
NOON = datetime(2026, 6, 10, 12, 0, tzinfo=BERLIN)  # a Wednesday, far from DST changes
HOUR = 3600.0
DAY = 24 * HOUR


def _app() -> Celery:
    app = Celery("schedules", set_as_current=False)
    app.conf.timezone = "Europe/Berlin"
    return app


def _spec(app: Celery, sched: Any, last_run_at: datetime) -> EntrySpec:
    """The spec beat's sync writes for one entry with this schedule and last run."""
    entry = ScheduleEntry(name="entry", task="reports.export", schedule=sched,
                          last_run_at=last_run_at, app=app)
    watch = EntryWatch(None,  # type: ignore[arg-type]  # specs() never writes
                       skip=lambda name: False, watch=selector(None), beat_id="beat",
                       sync_every_s=5.0)
    specs = watch.specs(SimpleNamespace(app=app, schedule={"entry": entry}))
    return specs["entry"]


def test_solar_sunset_is_described_with_a_next_due_and_a_period_of_about_a_day() -> None:
    pytest.importorskip("ephem")
    app = _app()
    sunset = solar("sunset", 52.5, 13.4, app=app, nowfun=lambda: NOON)
    spec = _spec(app, sunset, NOON)
    assert spec.schedule == "solar sunset 52.5,13.4"
    assert spec.kind == "solar" == kind_of(sunset)
    # Sunset in Berlin on 10 June 2026 is at about 21:28 CEST: 9.5 hours after noon.
    due = NOON + timedelta(milliseconds=spec.next_due_in_ms)
    assert datetime(2026, 6, 10, 21, 15, tzinfo=BERLIN) < due < datetime(
        2026, 6, 10, 21, 45, tzinfo=BERLIN), due
    # About a day to the next sunset (it moves by minutes a day).
    assert spec.period_s is not None and abs(spec.period_s - DAY) < 10 * 60, spec.period_s
    # The default grace: half the period, at most 5 minutes.
    assert spec.grace_s == 300


@pytest.mark.parametrize(("every_s", "text"), [(0.5, "every 0.5s"), (1.0, "every 1s"),
                                               (15.0, "every 15s"), (59.5, "every 59.5s")])
def test_intervals_under_a_minute_are_described_and_timed_to_the_second(
        every_s: float, text: str) -> None:
    app = _app()
    interval = schedule(timedelta(seconds=every_s), app=app, nowfun=lambda: NOON)
    last = NOON - timedelta(seconds=every_s / 4)
    spec = _spec(app, interval, last)
    assert spec.schedule == text
    assert spec.kind == "interval"
    assert spec.period_s == every_s
    assert spec.next_due_in_ms == round(every_s * 3 / 4 * 1000)
    assert spec.grace_s == max(every_s / 2, 5)  # half the period, at least 5 s
    # Overdue: the time beat is late by, negative.
    assert due_in_s(interval, NOON - timedelta(seconds=every_s + 2)) == pytest.approx(-2)


@pytest.mark.parametrize(("now", "last", "due", "period_h"), [
    # Friday 10:00, ran at 09:00: next Monday 09:00; from there a day to Tuesday.
    (datetime(2026, 6, 12, 10, tzinfo=BERLIN), datetime(2026, 6, 12, 9, tzinfo=BERLIN),
     datetime(2026, 6, 15, 9, tzinfo=BERLIN), 24),
    # Friday 08:00, ran Thursday 09:00: due at 09:00 today; then three days to Monday.
    (datetime(2026, 6, 12, 8, tzinfo=BERLIN), datetime(2026, 6, 11, 9, tzinfo=BERLIN),
     datetime(2026, 6, 12, 9, tzinfo=BERLIN), 72),
    # Saturday noon, ran at 09:00 Friday: Monday 09:00.
    (datetime(2026, 6, 13, 12, tzinfo=BERLIN), datetime(2026, 6, 12, 9, tzinfo=BERLIN),
     datetime(2026, 6, 15, 9, tzinfo=BERLIN), 24),
])
def test_weekdays_by_range_skip_the_weekend(now: datetime, last: datetime, due: datetime,
                                            period_h: int) -> None:
    app = _app()
    weekdays = crontab(hour=9, minute=0, day_of_week="mon-fri", app=app, nowfun=lambda: now)
    spec = _spec(app, weekdays, last)
    assert spec.schedule == "crontab 0 9 * * mon-fri"
    assert spec.kind == "crontab"
    assert spec.tz == "Europe/Berlin"
    assert now + timedelta(milliseconds=spec.next_due_in_ms) == due
    assert spec.period_s == period_h * HOUR


def test_saturday_only_is_due_on_saturday_and_weekly() -> None:
    app = _app()
    saturdays = crontab(hour=6, minute=0, day_of_week="sat", app=app, nowfun=lambda: NOON)
    spec = _spec(app, saturdays, NOON - timedelta(days=3))
    assert spec.schedule == "crontab 0 6 * * sat"
    due = NOON + timedelta(milliseconds=spec.next_due_in_ms)
    assert due == datetime(2026, 6, 13, 6, tzinfo=BERLIN)
    assert due.strftime("%A") == "Saturday"
    assert spec.period_s == 7 * DAY
    assert describe(saturdays) == spec.schedule
    assert period_s(saturdays) == 7 * DAY


def test_a_schedule_in_its_own_time_zone_is_timed_and_named_there() -> None:
    """A crontab with a time zone of its own (django-celery-beat's has one): 09:00 in New
    York is 15:00 in Berlin; the zone named is the one its fields match in."""
    app = _app()
    ny = ZoneInfo("America/New_York")

    class NewYorkCrontab(crontab):
        @property
        def tz(self) -> ZoneInfo:
            return ny

    now = NOON.astimezone(UTC)  # 06:00 in New York
    sched = NewYorkCrontab(hour=9, minute=0, app=app, nowfun=lambda: now)
    spec = _spec(app, sched, now - timedelta(hours=1))
    assert spec.tz == "America/New_York"
    assert now + timedelta(milliseconds=spec.next_due_in_ms) == datetime(
        2026, 6, 10, 15, tzinfo=BERLIN)
    # The app's crontab answering on a UTC clock still matches its fields in Berlin time.
    berlin = crontab(hour=9, minute=0, app=app, nowfun=lambda: now)
    spec = _spec(app, berlin, now - timedelta(hours=1))
    assert spec.tz == "Europe/Berlin"
    assert now + timedelta(milliseconds=spec.next_due_in_ms) == datetime(
        2026, 6, 11, 9, tzinfo=BERLIN)
