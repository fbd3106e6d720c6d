"""Expected runs from Celery's own schedule objects, never from a cron string.

SaaS monitors turn a Celery schedule into a cron expression and lose what it can't say
(``day_of_week='sat'``, intervals under a minute or not whole hours, solar events, the
time zone). Here every due time comes from the schedule object beat itself uses,
``remaining_estimate(last_run_at)``, so the expected run is Celery's own by construction,
daylight-saving days included: whatever Celery does there (see docs/entries.md), the
watch expects exactly that and no more.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any

from worker.core.entries import ENTRY_TEXT_MAX


def kind_of(schedule: Any) -> str:
    """``interval``, ``crontab``, ``solar`` or ``other`` (a schedule class of the user's)."""
    from celery.schedules import crontab, solar
    from celery.schedules import schedule as interval

    if isinstance(schedule, crontab):
        return "crontab"
    if isinstance(schedule, solar):
        return "solar"
    if type(schedule) is interval:
        return "interval"
    return "other"


def describe(schedule: Any) -> str:
    """Celery's own description of ``schedule``, cut to the stored length."""
    kind = kind_of(schedule)
    if kind == "interval":
        text = f"every {schedule.run_every.total_seconds():g}s"
    elif kind == "crontab":
        text = (f"crontab {schedule._orig_minute} {schedule._orig_hour} "
                f"{schedule._orig_day_of_month} {schedule._orig_month_of_year} "
                f"{schedule._orig_day_of_week}")
    elif kind == "solar":
        text = f"solar {schedule.event} {schedule.lat:g},{schedule.lon:g}"
    else:
        text = repr(schedule)
    return " ".join(text.split())[:ENTRY_TEXT_MAX]


def time_zone(schedule: Any) -> str | None:
    """The time zone the schedule is evaluated in: its ``tz`` (the app's, or the schedule's
    own, as django-celery-beat's crontab has), in which a crontab matches its fields, not
    the zone its clock happens to answer in; else the zone of its clock."""
    try:
        zone = getattr(schedule, "tz", None)
        if zone is None:
            zone = schedule.now().tzinfo
    except Exception:  # a user's schedule class without an app
        return None
    return None if zone is None else str(zone)[:64]


def seconds(delta: timedelta | float) -> float:
    """A ``remaining_estimate`` reply (a timedelta, or seconds for some schedules) in seconds."""
    return delta.total_seconds() if isinstance(delta, timedelta) else float(delta)


def due_in_s(schedule: Any, last_run_at: datetime) -> float:
    """Seconds from now until ``schedule`` is due after a run at ``last_run_at``.

    Negative when the run is overdue: beat dispatches it at its next tick.
    """
    return seconds(schedule.remaining_estimate(last_run_at))


def period_s(schedule: Any) -> float | None:
    """The time between two due times from now on, as the schedule object computes them.

    An interval says it; a crontab or solar schedule is asked twice, the second time with
    its clock set to the first due time. None when the schedule can't tell (no due time,
    or a schedule class of the user's that fails).
    """
    if kind_of(schedule) == "interval":
        return float(schedule.run_every.total_seconds())
    try:
        now = schedule.now()
        # Beat marks a run at the moment it sends it, a little after the due time: ask as
        # of one second after the first due time, as if it had just run then.
        after = now + timedelta(seconds=max(due_in_s(schedule, now), 0) + 1)
        clone = copy.copy(schedule)
        clone.nowfun = lambda: after
        gap = due_in_s(clone, after) + 1
    except Exception:  # a user's schedule class: no period is no harm
        return None
    return gap if gap > 0 else None
