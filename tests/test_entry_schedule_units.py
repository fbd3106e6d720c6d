"""Expected runs from Celery's own schedule objects (``worker.publish.entry_schedule``), in
process: each schedule's kind and stored description, the zone it is evaluated in, and
the period asked of the schedule object itself, to the second, on schedules of the user's
own whose every answer is known (a grid of due times, or answers given in turn).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from celery import Celery
from celery.schedules import crontab, schedule, solar

from worker.core.entries import ENTRY_TEXT_MAX
from worker.publish.entry_schedule import (
    describe,
    due_in_s,
    kind_of,
    period_s,
    seconds,
    time_zone,
)

EPOCH = datetime(2026, 6, 10, tzinfo=UTC)


def _app(zone: str = "Europe/Berlin") -> Celery:
    app = Celery("entry_schedule", set_as_current=False)
    app.conf.timezone = zone
    return app


class Grid:
    """A schedule class of the user's: due every ``step`` seconds after ``EPOCH``, asked as
    Celery asks its own (``now()`` through ``nowfun``, ``remaining_estimate(last_run_at)``)."""

    def __init__(self, step: float, now_s: float) -> None:
        self.step = step
        self.nowfun = lambda: EPOCH + timedelta(seconds=now_s)

    def now(self) -> datetime:
        return self.nowfun()

    def remaining_estimate(self, last_run_at: datetime) -> timedelta:
        last = (last_run_at - EPOCH).total_seconds()
        due = (math.floor(last / self.step) + 1) * self.step
        return EPOCH + timedelta(seconds=due) - self.now()


class Scripted:
    """A schedule class of the user's that answers ``remaining_estimate`` from a list, in
    turn (the list is shared with its copies), noting each question and its clock."""

    def __init__(self, *answers: float) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[datetime, datetime]] = []
        self.nowfun = lambda: EPOCH

    def now(self) -> datetime:
        return self.nowfun()

    def remaining_estimate(self, last_run_at: datetime) -> float:
        self.asked.append((last_run_at, self.now()))
        return self.answers.pop(0)


def test_the_kind_is_told_by_celery_s_classes_and_an_interval_s_exact_class() -> None:
    app = _app()

    class Mine(schedule):
        """A subclass of the interval may compute its due times otherwise."""

    class Weekly(crontab):
        pass

    assert kind_of(schedule(30, app=app)) == "interval"
    assert kind_of(crontab(minute=0, app=app)) == "crontab"
    assert kind_of(Weekly(minute=0, app=app)) == "crontab"
    assert kind_of(solar("sunrise", 52.5, 13.4, app=app)) == "solar"
    assert kind_of(Mine(30, app=app)) == "other"
    assert kind_of(Grid(60, 0)) == "other"


def test_each_kind_is_described_in_one_line_cut_to_the_stored_length() -> None:
    app = _app()
    assert describe(schedule(90, app=app)) == "every 90s"
    assert describe(schedule(timedelta(milliseconds=250), app=app)) == "every 0.25s"
    assert describe(schedule(1e6, app=app)) == "every 1e+06s"
    assert describe(crontab(minute="*/15", hour="9-17", day_of_week="mon-fri", app=app)) == (
        "crontab */15 9-17 * * mon-fri")
    assert describe(crontab(minute=0, hour=3, day_of_month="1,15", month_of_year="1-6",
                            app=app)) == "crontab 0 3 1,15 1-6 *"
    assert describe(solar("sunrise", 52.52, -0.125, app=app)) == "solar sunrise 52.52,-0.125"

    class Spaced:
        def __repr__(self) -> str:
            return "<every  other\n\tday >"

    assert describe(Spaced()) == "<every other day >"

    class Long:
        def __repr__(self) -> str:
            return "x" * (ENTRY_TEXT_MAX + 1)

    assert describe(Long()) == "x" * ENTRY_TEXT_MAX


def test_the_zone_is_the_schedule_s_own_else_its_clock_s() -> None:
    assert time_zone(crontab(minute=0, app=_app("Europe/Berlin"))) == "Europe/Berlin"
    assert time_zone(schedule(5, app=_app("America/New_York"))) == "America/New_York"

    class Clock:
        """No ``tz`` of its own: the zone its clock answers in."""

        def __init__(self, moment: datetime) -> None:
            self.moment = moment

        def now(self) -> datetime:
            return self.moment

    assert time_zone(Clock(datetime(2026, 6, 10, tzinfo=ZoneInfo("Asia/Tokyo")))) == (
        "Asia/Tokyo")
    assert time_zone(Clock(datetime(2026, 6, 10))) is None  # a naive clock: no zone

    class Named(Clock):
        """A ``tz`` of None: the clock's zone again."""

        tz = None

    assert time_zone(Named(datetime(2026, 6, 10, tzinfo=UTC))) == "UTC"

    class LongZone:
        tz = "Z" * 65

    assert time_zone(LongZone()) == "Z" * 64

    class NoApp:
        def now(self) -> datetime:
            raise RuntimeError("no app")

    assert time_zone(NoApp()) is None
    assert time_zone(object()) is None


def test_a_reply_in_seconds_or_as_a_timedelta_is_seconds() -> None:
    assert seconds(timedelta(minutes=1, milliseconds=500)) == 60.5
    assert seconds(7) == 7.0 and type(seconds(7)) is float
    assert due_in_s(Grid(60, 30), EPOCH) == 30.0
    assert due_in_s(Grid(60, 150), EPOCH) == -90.0  # overdue: negative


def test_an_interval_s_period_is_its_own() -> None:
    got = period_s(schedule(timedelta(seconds=45), app=_app()))
    assert got == 45.0 and type(got) is float


@pytest.mark.parametrize(("step", "now_s"), [(60, 30), (60, 59.5), (3600, 0)])
def test_a_period_is_asked_of_the_schedule_one_second_after_its_first_due_time(
        step: float, now_s: float) -> None:
    """From the first due time plus a second (beat marks a run a moment after it is due),
    the next due time is a period minus that second away: the period, to the second."""
    assert period_s(Grid(step, now_s)) == step


def test_the_period_s_second_question_is_asked_on_a_copy_whose_clock_is_set() -> None:
    sched = Scripted(30, 59)
    assert period_s(sched) == 60
    after = EPOCH + timedelta(seconds=31)
    assert sched.asked == [(EPOCH, EPOCH), (after, after)]
    assert sched.now() == EPOCH  # the schedule itself keeps its clock
    overdue = Scripted(-5, 9)  # due 5 s ago: asked as of one second from now
    assert period_s(overdue) == 10
    assert overdue.asked[1] == (EPOCH + timedelta(seconds=1),) * 2


@pytest.mark.parametrize(("second_answer", "expected"), [(-1, None), (-0.5, 0.5), (-2, None)])
def test_a_period_of_zero_or_less_is_none(second_answer: float,
                                          expected: float | None) -> None:
    assert period_s(Scripted(10, second_answer)) == expected


def test_a_schedule_that_can_not_answer_has_no_period() -> None:
    class Broken(Grid):
        def remaining_estimate(self, last_run_at: datetime) -> Any:
            raise RuntimeError("no due time")

    class NoClock:
        def now(self) -> datetime:
            raise RuntimeError("no app")

    assert period_s(Broken(60, 0)) is None
    assert period_s(NoClock()) is None
