"""Beat's side of watching the app's entries (``worker.publish.entry_beat``), in process:
a stub scheduler holding Celery's own entries on a fixed clock, a recorder for the store,
``time.monotonic`` replaced: which entries are watched and each one's exact spec, the line
for each entry left out, what a sync writes at each step (changes only, a hundred a
script, every minute all, the names alone for removals), each dispatch's header and
record, and one log line per outage of the store.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from celery import Celery
from celery.beat import ScheduleEntry
from celery.schedules import crontab, schedule
from kombu import Queue

from worker.core.entries import ENTRY_HEADER
from worker.publish import entry_beat
from worker.publish.entry_beat import (
    MAX_ENTRIES,
    REFRESH_S,
    SYNC_CHUNK,
    Dispatch,
    EntryWatch,
    selector,
)
from worker.publish.entry_sources import Listed
from worker.publish.entry_store import EntrySpec

LOGGER = "worker.publish.entry_beat"
NOON = datetime(2026, 6, 10, 12, tzinfo=UTC)
EPOCH = NOON
DOWN = ("beat could not record its entries' runs in the store (it keeps trying): "
        "ConnectionError: Error connecting to redis://:***@h:6379/0")
AGAIN = "beat records its entries' runs again"


def _app() -> Celery:
    app = Celery("entry_beat", set_as_current=False)
    app.conf.timezone = "Europe/Berlin"
    app.conf.task_routes = {"t.routed": {"queue": "routed"}}
    return app


def _every(app: Celery, seconds: float = 60) -> schedule:
    return schedule(timedelta(seconds=seconds), app=app, nowfun=lambda: NOON)


def _entry(app: Celery, name: str, *, task: str = "t.export", seconds: float = 60,
           ago_s: float = 10, **options: Any) -> ScheduleEntry:
    return ScheduleEntry(name=name, task=task, schedule=_every(app, seconds), app=app,
                         last_run_at=NOON - timedelta(seconds=ago_s), options=options)


class Store:
    """The store's writes, noted by name; a name in ``refuse`` (an entry's, ``prune`` or
    ``dispatched``) makes its write raise after it is noted."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.refuse: set[str] = set()
        self.error = ConnectionError("Error connecting to redis://:hunter2@h:6379/0")

    def sync(self, specs: list[EntrySpec]) -> None:
        names = [spec.name for spec in specs]
        self.calls.append(("sync", names))
        if self.refuse & set(names):
            raise self.error

    def prune(self, names: list[str]) -> None:
        self.calls.append(("prune", names))
        if "prune" in self.refuse:
            raise self.error

    def dispatched(self, name: str, task_id: str, **kwargs: Any) -> None:
        self.calls.append(("dispatched", name, task_id, kwargs))
        if "dispatched" in self.refuse:
            raise self.error

    def taken(self) -> list[tuple[Any, ...]]:
        calls, self.calls = self.calls, []
        return calls


class Beat:
    """A scheduler as the watch sees one: its schedule, ``tick`` and ``apply_async``, which
    publishes a message (``before_task_publish`` calls the watch's ``stamp``)."""

    def __init__(self, app: Any, *entries: Any) -> None:
        self.app = app
        self.schedule = {entry.name: entry for entry in entries}
        self.ticks: list[tuple[Any, ...]] = []
        self.sent: list[tuple[Any, ...]] = []
        self.watch: EntryWatch | None = None

    def tick(self, *args: Any, **kwargs: Any) -> float:
        self.ticks.append((args, kwargs))
        return 2.5

    def apply_async(self, entry: Any, *args: Any, **kwargs: Any) -> str:
        headers = {"id": kwargs.get("task_id", "id-1")}
        assert self.watch is not None
        self.watch.stamp(headers)
        self.sent.append((getattr(entry, "name", None), args, kwargs, headers))
        return "sent"


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Beat's monotonic clock, set by the test."""
    fixed = Clock()
    monkeypatch.setattr(entry_beat, "time", fixed)
    return fixed


def _watch(store: Any = None, *, skip: Callable[[str], bool] = lambda name: False,
           watch: Any = None, depth_of: Callable[[str], int | None] | None = None,
           beat: Beat | None = None) -> EntryWatch:
    made = EntryWatch(store, skip=skip, watch=selector(watch), beat_id="beat-1",
                      sync_every_s=5.0, depth_of=depth_of)
    if beat is not None:
        beat.watch = made
        made.attach(beat)
    return made


def _lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]


class Grid:
    """A schedule class of the user's: due every ``step`` s after ``EPOCH``."""

    def __init__(self, step: float, now_s: float) -> None:
        self.step = step
        self.nowfun = lambda: EPOCH + timedelta(seconds=now_s)

    def now(self) -> datetime:
        return self.nowfun()

    def remaining_estimate(self, last_run_at: datetime) -> timedelta:
        last = (last_run_at - EPOCH).total_seconds()
        due = (int(last // self.step) + 1) * self.step
        return EPOCH + timedelta(seconds=due) - self.now()

    def __repr__(self) -> str:
        return f"<grid {self.step}>"


class Uncopyable(Grid):
    """Its due time can be told, its period can't (asking it needs a copy)."""

    def __copy__(self) -> Uncopyable:
        raise TypeError("no copy")


class Broken(Grid):
    def remaining_estimate(self, last_run_at: datetime) -> timedelta:
        raise RuntimeError("no due time")


class Source:
    """A scheduler's live schedule, given as it is listed."""

    kind = "test"

    def __init__(self, *entries: Listed) -> None:
        self.listed = list(entries)

    def entries(self) -> list[Listed]:
        return self.listed

    def last_run_at(self, entry: Any) -> datetime | None:
        return None


def test_the_names_watched_are_all_these_or_a_pattern_s() -> None:
    assert selector(None)("any name") is True
    reports = selector(r"reports\..*")
    assert (reports("reports.daily"), reports("x reports.daily"), reports("reports")) == (
        True, False, False)
    either = selector(re.compile("a|b"))
    assert (either("a"), either("b"), either("ab")) == (True, True, False)
    listed = selector(["a", "b c"])
    assert (listed("a"), listed("b c"), listed("b")) == (True, True, False)
    assert (MAX_ENTRIES, SYNC_CHUNK, REFRESH_S) == (1000, 100, 60.0)


def test_each_watched_entry_is_described_as_the_store_gets_it() -> None:
    app = _app()
    beat = Beat(app,
                _entry(app, "export", queue="reports", heartbeat={"max_runtime_s": 600}),
                _entry(app, "routed", task="t.routed", seconds=4, ago_s=1.5),
                _entry(app, "default", task="t.other", seconds=3600, ago_s=0.0004),
                _entry(app, "long task", task="t." + "x" * 300, queue=Queue("kombu q")),
                _entry(app, "long queue", queue="q" * 250),
                _entry(app, "queue number", queue=5),
                _entry(app, "queue none", task="t.routed", queue=None),
                _entry(app, "opted out", heartbeat=False),
                _entry(app, "skipped"), _entry(app, "not chosen"))
    names = {"export", "routed", "default", "long task", "long queue", "queue number",
             "queue none", "opted out", "skipped"}
    watch = _watch(skip=lambda name: name == "skipped", watch=names)
    base = dict(task="t.export", schedule="every 60s", kind="interval", tz="Europe/Berlin",
                queue=None, grace_s=30.0, max_runtime_s=None, period_s=60.0,
                next_due_in_ms=50_000)
    assert watch.specs(beat) == {
        "export": EntrySpec(name="export", **{**base, "queue": "reports",
                                                "max_runtime_s": 600.0}),
        "routed": EntrySpec(name="routed", **{**base, "task": "t.routed", "queue": "routed",
                                                "schedule": "every 4s", "grace_s": 5.0,
                                                "period_s": 4.0, "next_due_in_ms": 2500}),
        "default": EntrySpec(name="default", **{**base, "task": "t.other", "queue": "celery",
                                                  "schedule": "every 3600s", "grace_s": 300.0,
                                                  "period_s": 3600.0,
                                                  "next_due_in_ms": 3_600_000}),
        "long task": EntrySpec(name="long task", **{**base, "task": "t." + "x" * 198,
                                                      "queue": "kombu q"}),
        "long queue": EntrySpec(name="long queue", **{**base, "queue": "q" * 200}),
        "queue number": EntrySpec(name="queue number", **base),
        "queue none": EntrySpec(name="queue none", **{**base, "task": "t.routed",
                                                        "queue": "routed"}),
    }


def test_a_queue_the_router_can_not_tell_is_unknown() -> None:
    app = _app()
    no_app = SimpleNamespace(schedule={"e": _entry(app, "e")})
    assert _watch().specs(no_app)["e"].queue is None


def test_a_schedule_of_the_user_s_is_timed_to_the_millisecond() -> None:
    watch = _watch()
    watch._source = Source(
        Listed("grid", "t", Grid(10.12345, 2.5), {}, EPOCH),
        Listed("no period", "t", Uncopyable(20, 7.4567), {}, EPOCH),
        Listed("crontab", "t", crontab(minute="*", app=_app(), nowfun=lambda: NOON), {}, None),
    )
    specs = watch.specs(None)
    grid = specs["grid"]
    assert (grid.schedule, grid.kind, grid.tz, grid.period_s, grid.grace_s,
            grid.next_due_in_ms) == ("<grid 10.12345>", "other", "UTC", 10.123, 5.062, 7623)
    no_period = specs["no period"]
    assert (no_period.period_s, no_period.grace_s, no_period.next_due_in_ms) == (
        None, 5.0, 12543)
    assert specs["crontab"].period_s == 60.0 and specs["crontab"].next_due_in_ms == 0


def test_an_entry_that_can_not_be_watched_is_named_once_in_beat_s_log(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    watch = _watch()
    watch._source = Source(
        Listed("a\nb", "t", Grid(60, 0), {}, None),
        Listed("x" * 201, "t", Grid(60, 0), {}, None),
        Listed("bad grace", "t", Grid(60, 0), {"heartbeat": {"grace_s": 0}}, None),
        Listed("broken", "t", Broken(60, 0), {}, EPOCH),
        Listed("fine", "t", Grid(60, 0), {}, None),
    )
    assert list(watch.specs(None)) == ["fine"]
    assert list(watch.specs(None)) == ["fine"]
    assert _lines(caplog) == [
        (logging.WARNING, "beat entry 'a\\nb' is not watched: an entry name can't hold control "
                          "characters (newlines, tabs, escapes)"),
        (logging.WARNING, f"beat entry {'x' * 60!r} is not watched: an entry name has at most "
                          "200 characters, not 201"),
        (logging.WARNING, "beat entry 'bad grace': options.heartbeat.grace_s 0 refused; "
                          "accepted: a number of seconds above 0, up to a year; the entry is "
                          "not watched"),
        (logging.WARNING, "beat entry 'broken' is not watched: its schedule can't say when it "
                          "is due (RuntimeError)"),
    ]


def test_an_entry_that_never_ran_or_waits_for_its_start_time() -> None:
    watch = _watch()
    now = datetime.now(UTC)
    watch._source = Source(
        Listed("never ran", "t", Grid(60, 30), {}, None),
        Listed("ran", "t", Grid(60, 30), {}, EPOCH),
        Listed("held", "t", Grid(60, 30), {}, EPOCH, now + timedelta(hours=1)),
        Listed("started", "t", Grid(60, 30), {}, EPOCH, now - timedelta(hours=1)),
    )
    specs = watch.specs(None)
    assert specs["never ran"].next_due_in_ms == 0
    assert specs["ran"].next_due_in_ms == 30_000 == specs["started"].next_due_in_ms
    assert 3_599_000 <= specs["held"].next_due_in_ms <= 3_600_000


def test_over_a_thousand_entries_the_rest_are_named_in_one_line(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    every = Grid(60, 0)
    listed = [Listed(f"off{i}", "t", every, {"heartbeat": False}, None) for i in range(2)]
    listed += [Listed(f"e{i:04d}", "t", every, {}, None) for i in range(MAX_ENTRIES + 1)]
    listed += [Listed("a\nb", "t", every, {}, None), Listed("e0000", "t", every, {}, None)]
    watch = _watch()
    watch._source = Source(*listed)
    specs = watch.specs(None)
    assert list(specs) == [f"e{i:04d}" for i in range(MAX_ENTRIES)]
    watch.specs(None)
    assert _lines(caplog) == [(logging.WARNING, "beat has over 1000 entries to watch; "
                                                "'e1000' and later ones are not watched")]


def test_a_sync_writes_what_changed_and_everything_once_a_minute(clock: Clock) -> None:
    app = _app()
    store = Store()
    beat = Beat(app, _entry(app, "a"), _entry(app, "b"))
    watch = _watch(store, beat=beat)
    assert beat.tick("arg", key=1) == 2.5
    assert beat.ticks == [(("arg",), {"key": 1})]
    assert store.taken() == [("sync", ["a", "b"]), ("prune", ["a", "b"])]
    assert list(watch.watched) == ["a", "b"]
    beat.schedule["c"] = _entry(app, "c")
    clock.now = 1004.999  # within sync_every_s of the last sync: the schedule isn't read
    beat.tick()
    assert store.taken() == [] and list(watch.watched) == ["a", "b"]
    clock.now = 1005.0
    beat.tick()
    assert store.taken() == [("sync", ["c"])]
    clock.now = 1010.0  # only the next due times moved: nothing to write
    for entry in beat.schedule.values():
        entry.last_run_at -= timedelta(seconds=3)
    beat.tick()
    assert store.taken() == []
    clock.now = 1015.0
    beat.schedule["b"] = _entry(app, "b", task="t.other")
    beat.tick()
    assert store.taken() == [("sync", ["b"])]
    clock.now = 1020.0
    del beat.schedule["a"]
    beat.tick()
    assert store.taken() == [("prune", ["b", "c"])]
    assert list(watch.watched) == ["b", "c"]
    clock.now = 1025.0
    beat.tick()
    assert store.taken() == []
    clock.now = 1055.0
    beat.tick()
    assert store.taken() == []
    clock.now = 1000.0 + REFRESH_S  # a minute after the last whole write
    beat.tick()
    assert store.taken() == [("sync", ["b", "c"]), ("prune", ["b", "c"])]
    clock.now = 1065.0
    beat.tick()
    assert store.taken() == []
    assert len(beat.ticks) == 10


def test_a_sync_writes_a_hundred_entries_a_script_and_resumes_where_it_failed(
        clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    app = _app()
    store = Store()
    names = [f"e{i:03d}" for i in range(250)]
    beat = Beat(app, *(_entry(app, name) for name in names))
    watch = _watch(store, beat=beat)
    watch.maybe_sync(beat)
    assert store.taken() == [("sync", names[:100]), ("sync", names[100:200]),
                             ("sync", names[200:]), ("prune", names)]
    for name in names:
        beat.schedule[name] = _entry(app, name, task="t.changed")
    store.refuse = {"e150"}
    clock.now = 1005.0
    watch.maybe_sync(beat)
    assert store.taken() == [("sync", names[:100]), ("sync", names[100:200])]
    store.refuse = set()
    clock.now = 1010.0
    watch.maybe_sync(beat)
    assert store.taken() == [("sync", names[100:200]), ("sync", names[200:])]
    assert _lines(caplog) == [(logging.ERROR, DOWN), (logging.WARNING, AGAIN)]


def test_a_failed_removal_or_refresh_is_done_again_at_the_next_sync(
        clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    app = _app()
    store = Store()
    beat = Beat(app, _entry(app, "a"), _entry(app, "b"))
    watch = _watch(store, beat=beat)
    store.refuse = {"prune"}
    watch.maybe_sync(beat)
    assert store.taken() == [("sync", ["a", "b"]), ("prune", ["a", "b"])]
    clock.now = 1005.0  # the whole write failed: it is done again
    watch.maybe_sync(beat)
    assert store.taken() == [("sync", ["a", "b"]), ("prune", ["a", "b"])]
    store.refuse = set()
    clock.now = 1010.0
    watch.maybe_sync(beat)
    assert store.taken() == [("sync", ["a", "b"]), ("prune", ["a", "b"])]
    clock.now = 1015.0
    del beat.schedule["a"]
    store.refuse = {"prune"}
    watch.maybe_sync(beat)
    clock.now = 1020.0
    watch.maybe_sync(beat)
    store.refuse = set()
    clock.now = 1025.0
    watch.maybe_sync(beat)
    clock.now = 1030.0
    watch.maybe_sync(beat)
    assert store.taken() == [("prune", ["b"])] * 3
    # A line each time the store fails after a write that went through.
    assert _lines(caplog) == [(logging.ERROR, DOWN), (logging.WARNING, AGAIN)] * 3


def test_a_schedule_that_can_not_be_read_is_one_line_and_no_write(
        clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)

    class Unreadable(Beat):
        @property  # type: ignore[override]
        def schedule(self) -> dict[str, Any]:
            raise RuntimeError("database gone")

        @schedule.setter
        def schedule(self, value: dict[str, Any]) -> None:
            pass

    store = Store()
    beat = Unreadable(_app())
    watch = _watch(store, beat=beat)
    watch.watched = {"kept": EntrySpec("kept", "t", "every 1s", "interval", None, None, 5.0,
                                       None, 1.0, 0)}
    assert beat.tick() == 2.5
    clock.now = 1005.0
    beat.tick()
    assert store.taken() == [] and list(watch.watched) == ["kept"]
    assert _lines(caplog) == [(logging.WARNING,
                               "beat's schedule could not be read (RuntimeError)")]


def test_a_dispatch_of_a_watched_entry_is_named_in_its_header_and_recorded(
        clock: Clock) -> None:
    app = _app()
    store = Store()
    late = _entry(app, "late", ago_s=90, queue="reports")
    early = _entry(app, "early", ago_s=10.0004)
    plain = _entry(app, "plain")
    beat = Beat(app, late, early, plain)
    asked: list[str] = []
    watch = _watch(store, watch=["late", "early"], beat=beat,
                   depth_of=lambda queue: asked.append(queue) or 7)
    beat.tick()
    store.taken()
    assert beat.apply_async(late, ("arg",), task_id="id-1") == "sent"
    assert beat.apply_async(early, task_id="i" * 201) == "sent"
    assert beat.apply_async(plain, task_id="id-3") == "sent"
    assert beat.apply_async(SimpleNamespace(task="t.nameless"), task_id="id-4") == "sent"
    assert [sent[3] for sent in beat.sent] == [
        {"id": "id-1", ENTRY_HEADER: "late"}, {"id": "i" * 201, ENTRY_HEADER: "early"},
        {"id": "id-3"}, {"id": "id-4"}]
    assert beat.sent[0][1:3] == ((("arg",),), {"task_id": "id-1"})
    assert store.taken() == [
        ("dispatched", "late", "id-1", {"due_in_ms": -30_000, "next_due_in_ms": 60_000,
                                        "beat_id": "beat-1", "depth": 7}),
        ("dispatched", "early", "i" * 200, {"due_in_ms": 0, "next_due_in_ms": 60_000,
                                            "beat_id": "beat-1", "depth": 7}),
    ]
    assert asked == ["reports", "celery"]  # the queue each goes to, as the router says
    headers = {"id": "id-5"}
    watch.stamp(headers)  # a message published outside a dispatch of an entry
    assert headers == {"id": "id-5"} and store.taken() == []


def test_stamp_names_the_entry_even_without_a_task_id() -> None:
    store = Store()
    watch = _watch(store)
    watch.stamp(None)
    token = watch._current.set(Dispatch("late", -1.5, 60.0))
    try:
        watch.stamp(None)
        headers: dict[str, Any] = {}
        watch.stamp(headers)
        assert headers == {ENTRY_HEADER: "late"}
        numbered: dict[str, Any] = {"id": 5}
        watch.stamp(numbered)
        assert numbered == {"id": 5, ENTRY_HEADER: "late"}
        watch.stamp({"id": "id-1"})  # not watched (any more): no queue, no depth
    finally:
        watch._current.reset(token)
    assert store.taken() == [("dispatched", "late", "id-1", {
        "due_in_ms": -1500, "next_due_in_ms": 60_000, "beat_id": "beat-1", "depth": None})]


def _spec(name: str, queue: str | None) -> EntrySpec:
    return EntrySpec(name, "t", "every 60s", "interval", None, queue, 30.0, None, 60.0, 0)


def test_a_schedule_that_fails_at_dispatch_is_due_now(clock: Clock) -> None:
    app = _app()
    store = Store()
    beat = Beat(app)
    watch = _watch(store, beat=beat, depth_of=lambda queue: 3)
    watch.watched = {"broken": _spec("broken", None)}
    broken = SimpleNamespace(name="broken", schedule=Broken(60, 0), last_run_at=NOON,
                             default_now=lambda: NOON)
    assert beat.apply_async(broken, task_id="id-1") == "sent"
    assert store.taken() == [("dispatched", "broken", "id-1", {
        "due_in_ms": 0, "next_due_in_ms": 0, "beat_id": "beat-1", "depth": None})]


def test_an_entry_that_never_ran_is_dispatched_on_time() -> None:
    """RedBeat hands a schedule no last run for an entry that never ran: due now."""
    app = _app()
    store = Store()
    cls = type("RedBeatScheduler", (Beat,), {})
    cls.__module__ = "redbeat.schedulers"
    beat = cls(app)
    watch = _watch(store, beat=beat)
    watch.watched = {"fresh": _spec("fresh", "q")}
    fresh = SimpleNamespace(name="fresh", schedule=_every(app), last_run_at=None,
                            default_now=lambda: NOON)
    beat.apply_async(fresh, task_id="id-1")
    assert store.taken() == [("dispatched", "fresh", "id-1", {
        "due_in_ms": 0, "next_due_in_ms": 60_000, "beat_id": "beat-1", "depth": None})]


def test_a_store_down_at_dispatch_is_one_line_and_the_message_still_goes(
        clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    app = _app()
    store = Store()
    entry = _entry(app, "late")
    beat = Beat(app, entry)
    _watch(store, beat=beat)
    beat.tick()
    store.refuse = {"dispatched"}
    assert beat.apply_async(entry, task_id="id-1") == "sent"
    assert beat.apply_async(entry, task_id="id-2") == "sent"
    store.error = ConnectionError("x" * 300)
    assert beat.apply_async(entry, task_id="id-3") == "sent"
    store.refuse = set()
    beat.apply_async(entry, task_id="id-4")
    beat.apply_async(entry, task_id="id-5")
    assert [call[2] for call in store.taken() if call[0] == "dispatched"] == [
        "id-1", "id-2", "id-3", "id-4", "id-5"]
    assert _lines(caplog) == [(logging.ERROR, DOWN), (logging.WARNING, AGAIN)]
    store.refuse = {"dispatched"}
    beat.apply_async(entry, task_id="id-6")
    assert _lines(caplog)[-1] == (logging.ERROR, (
        "beat could not record its entries' runs in the store (it keeps trying): "
        "ConnectionError: " + "x" * 183))


def test_a_failed_publish_leaves_no_entry_named_for_the_next_message(clock: Clock) -> None:
    app = _app()
    store = Store()
    entry = _entry(app, "late")

    class Refusing(Beat):
        def apply_async(self, entry: Any, *args: Any, **kwargs: Any) -> str:
            raise ConnectionError("broker down")

    beat = Refusing(app, entry)
    watch = _watch(store, beat=beat)
    beat.tick()
    with pytest.raises(ConnectionError):
        beat.apply_async(entry)
    headers = {"id": "id-2"}
    watch.stamp(headers)
    assert headers == {"id": "id-2"}
