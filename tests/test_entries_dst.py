"""Daylight saving: the watch expects exactly the runs Celery makes, on the scheduler's own
clock (``crontab(nowfun=...)``), not ``faketime``.

``crontab(hour=2, minute=30)`` in ``Europe/Berlin`` across both changes of 2026: a fake clock
steps forward in UTC (minute by minute, or from event to event as beat sleeps), and at each
step beat's own loop runs: ``is_due``, then the dispatch and ``last_run_at = now``
(``next(entry)``, as ``Scheduler.reserve`` does). The real ``EntryWatch`` is attached to that
scheduler (its ``tick`` and ``apply_async``) and writes to a store that builds the records as
``entries.lua`` does, stamped with the fake clock; the real judgement
(``worker.read.entry_judge.judge``) reads them at every step.

What Celery 5.7 does (docs/entries.md, "Daylight saving"):

* 29 March 2026 (02:00 CET -> 03:00 CEST; 02:30 does not exist): one run, at 03:30 CEST
  (01:30 UTC), 24 hours after the previous one; not skipped, not run twice.
* 25 October 2026 (03:00 CEST -> 02:00 CET; 02:30 happens twice): one run, at the first
  02:30 (CEST, 00:30 UTC); none in the repeated hour; the next at 02:30 CET, 25 hours later.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from celery import Celery
from celery.beat import ScheduleEntry
from celery.schedules import crontab

import worker.publish.entry_beat as entry_beat
from worker.core.entries import EntryState
from worker.publish.entry_beat import EntryWatch, selector
from worker.publish.entry_schedule import due_in_s
from worker.publish.entry_store import EntrySpec
from worker.read.entry_judge import Evidence, judge

BERLIN = ZoneInfo("Europe/Berlin")
NAME = "nightly export"
MAX_INTERVAL_S = 300.0
"""Beat's default ``beat_max_loop_interval``: it never sleeps longer between ticks."""


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


SPRING = _utc(2026, 3, 27, 12)
AUTUMN = _utc(2026, 10, 23, 12)
CELERY_RUNS = {
    # 28 March 02:30 CET; 29 March 03:30 CEST (02:30 does not exist); then 02:30 CEST.
    SPRING: [_utc(2026, 3, 28, 1, 30), _utc(2026, 3, 29, 1, 30), _utc(2026, 3, 30, 0, 30)],
    # 24 October 02:30 CEST; 25 October the first 02:30 (CEST) only; then 02:30 CET.
    AUTUMN: [_utc(2026, 10, 24, 0, 30), _utc(2026, 10, 25, 0, 30), _utc(2026, 10, 26, 1, 30)],
}
DAYS = 3


class Clock:
    """The fake clock: UTC underneath, Berlin time for the schedule (as ``app.now()``)."""

    def __init__(self, start: datetime) -> None:
        self.utc = start

    def now(self) -> datetime:
        return self.utc.astimezone(BERLIN)

    def ms(self) -> int:
        return round(self.utc.timestamp() * 1000)

    def monotonic(self) -> float:
        return self.utc.timestamp()


class LuaLikeStore:
    """The records ``entries.lua`` writes, on the fake clock (the fields the judge reads)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.records: dict[str, dict[str, Any]] = {}
        self.expected: set[int] = set()  #: every next due time the records ever held

    def _next_due(self, rec: dict[str, Any], next_due_ms: int) -> None:
        rec["next_due_ms"] = next_due_ms
        self.expected.add(next_due_ms)

    def sync(self, specs: Sequence[EntrySpec]) -> int:
        now = self.clock.ms()
        for spec in specs:
            rec = self.records.setdefault(spec.name, {"name": spec.name, "counts": {},
                                                      "added_ms": now})
            rec.update(task=spec.task, schedule=spec.schedule, kind=spec.kind, tz=spec.tz,
                       grace_s=spec.grace_s, max_runtime_s=spec.max_runtime_s,
                       period_s=spec.period_s, synced_ms=now)
            self._next_due(rec, now + spec.next_due_in_ms)
        for name, rec in self.records.items():
            if name not in {s.name for s in specs}:
                rec.setdefault("removed_ms", now)
        return now

    def dispatched(self, name: str, task_id: str, *, due_in_ms: int, next_due_in_ms: int,
                   beat_id: str, depth: int | None) -> int:
        now = self.clock.ms()
        rec = self.records.setdefault(name, {"name": name, "counts": {}, "added_ms": now})
        prev = rec.get("run")
        period = rec["period_s"] * 1000 if rec.get("period_s") else next_due_in_ms
        if prev and period > 0 and (now - prev["dispatched_ms"]) * 2 < period:
            rec["duplicate_ms"] = now
        if prev and prev.get("outcome"):
            rec["last_outcome"] = prev["outcome"]
        rec["run"] = {"id": task_id, "due_ms": now + due_in_ms, "dispatched_ms": now,
                      "waiting_since_ms": now, "beat": beat_id, "depth": depth}
        self._next_due(rec, now + next_due_in_ms)
        rec["counts"]["dispatched"] = rec["counts"].get("dispatched", 0) + 1
        return now

    def ran(self, name: str, task_id: str) -> None:
        """The worker's check-ins: started and succeeded at once."""
        now = self.clock.ms()
        run = self.records[name]["run"]
        assert run["id"] == task_id
        run.update(started_ms=now, queue_wait_ms=now - run["dispatched_ms"], finished_ms=now,
                   outcome="succeeded", duration_ms=0)
        self.records[name]["last_success_ms"] = now


def _beat(clock: Clock, store: LuaLikeStore) -> tuple[Any, list[datetime]]:
    """A scheduler running beat's loop for one entry, with the real ``EntryWatch`` attached."""
    app = Celery("dst", set_as_current=False)
    app.conf.timezone = "Europe/Berlin"
    schedule = crontab(hour=2, minute=30, nowfun=clock.now, app=app)
    entry = ScheduleEntry(name=NAME, task="reports.export", schedule=schedule,
                          last_run_at=clock.now(), app=app)
    sent: list[datetime] = []
    watch = EntryWatch(store, skip=lambda name: False, watch=selector(None),  # type: ignore[arg-type]
                       beat_id="beat-1", sync_every_s=5.0)
    scheduler = SimpleNamespace(app=app, schedule={NAME: entry})

    def apply_async(entry: Any, *args: Any, **kwargs: Any) -> str:
        task_id = str(uuid.uuid4())
        watch.stamp({"id": task_id})  # before_task_publish
        sent.append(clock.utc)
        store.ran(entry.name, task_id)
        return task_id

    def tick() -> float:
        """One of beat's ticks: the entry dispatched when due, ``last_run_at = now``."""
        current = scheduler.schedule[NAME]
        is_due, next_s = current.is_due()
        if is_due:
            scheduler.schedule[NAME] = next(current)  # Scheduler.reserve
            scheduler.apply_async(current)
            next_s = scheduler.schedule[NAME].is_due()[1]
        return float(next_s)

    scheduler.apply_async = apply_async
    scheduler.tick = tick
    watch.attach(scheduler)
    return scheduler, sent


@pytest.mark.parametrize("start", [SPRING, AUTUMN], ids=["29-march", "25-october"])
@pytest.mark.parametrize("stepping", ["minute", "minute+37s", "event"])
def test_celery_dst_runs_and_the_watch_expects_exactly_those(
        start: datetime, stepping: str, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(start + (timedelta(seconds=37) if stepping == "minute+37s" else timedelta()))
    monkeypatch.setattr(entry_beat, "time", SimpleNamespace(monotonic=clock.monotonic))
    store = LuaLikeStore(clock)
    scheduler, sent = _beat(clock, store)
    end = start + timedelta(days=DAYS)
    states: set[EntryState] = set()
    while clock.utc < end:
        next_s = scheduler.tick()
        rec = store.records[NAME]
        beat_alive = Evidence(now_ms=clock.ms(), beat_published_ms=clock.ms(),
                              beat_interval_s=5.0, publish_failed_ms=None, publish_error=None,
                              nodes={}, node_stale_after_ms=15_000)
        judged = judge(rec, beat_alive)
        assert judged.state is not EntryState.MISSED, (clock.now(), judged, rec)
        assert judged.state is not EntryState.DUPLICATE, (clock.now(), judged, rec)
        states.add(judged.state)
        step = 60.0 if stepping.startswith("minute") else min(max(next_s, 0.001),
                                                               MAX_INTERVAL_S)
        clock.utc += timedelta(seconds=step)

    late = timedelta(seconds=37) if stepping == "minute+37s" else timedelta()
    # What Celery does on the day: one run, at these times, never a second in the
    # repeated hour, never skipped.
    assert sent == [run + late for run in CELERY_RUNS[start]]
    # The watch never expected a run Celery does not make: every next due time its records
    # ever held is one of Celery's runs (the one after the window included).
    runs_ms = {round(run.timestamp() * 1000) for run in CELERY_RUNS[start]}
    after = scheduler.schedule[NAME]
    runs_ms.add(round((clock.utc + timedelta(
        seconds=due_in_s(after.schedule, after.last_run_at))).timestamp() * 1000))
    assert store.expected <= runs_ms, sorted(
        datetime.fromtimestamp(ms / 1000, UTC).isoformat() for ms in store.expected - runs_ms)
    assert states <= {EntryState.PENDING, EntryState.OK}
    assert store.records[NAME]["counts"]["dispatched"] == len(CELERY_RUNS[start])


def test_the_due_times_on_the_dst_days_in_local_time() -> None:
    """Celery's own due times from the evening before each change, as beat sees them."""
    app = Celery("dst", set_as_current=False)
    app.conf.timezone = "Europe/Berlin"
    cases = [
        # the evening before, the last run -> the next due time, in Berlin time
        (datetime(2026, 3, 28, 2, 30, tzinfo=BERLIN), "2026-03-29T03:30:00+02:00"),
        (datetime(2026, 3, 29, 3, 30, tzinfo=BERLIN), "2026-03-30T02:30:00+02:00"),
        (datetime(2026, 10, 24, 2, 30, tzinfo=BERLIN), "2026-10-25T02:30:00+02:00"),
        (datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN), "2026-10-26T02:30:00+01:00"),
    ]
    for last, expected in cases:
        now = last + timedelta(minutes=1)
        schedule = crontab(hour=2, minute=30, nowfun=lambda now=now: now, app=app)
        due = now.astimezone(UTC) + timedelta(seconds=due_in_s(schedule, last))
        assert due.astimezone(BERLIN).isoformat() == expected, (last, due)
