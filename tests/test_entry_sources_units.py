"""Each scheduler's whole live schedule (``worker.publish.entry_sources``), in process,
with RedBeat and django-celery-beat stood in for by stubs of the few names the sources use
(RedBeat's client on fakeredis): every entry listed with its options and the last run beat
hands its schedule, what is left out and the one line it costs, RedBeat's schedule read in
pipelines of 500, django-celery-beat's times made aware in the app's zone.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime, timedelta
from types import ModuleType, SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import fakeredis
import pytest
from celery import Celery
from celery.beat import ScheduleEntry
from celery.schedules import schedule

from worker.publish.entry_sources import (
    DJANGO,
    REDBEAT,
    REDBEAT_CHUNK,
    CelerySource,
    DjangoSource,
    Listed,
    RedBeatSource,
)

LOGGER = "worker.publish.entry_sources"
BERLIN = ZoneInfo("Europe/Berlin")
NOON = datetime(2026, 6, 10, 12, tzinfo=UTC)


def _lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]


def test_the_schedulers_are_known_by_module_and_class_name() -> None:
    assert REDBEAT == "redbeat.schedulers.RedBeatScheduler"
    assert DJANGO == "django_celery_beat.schedulers.DatabaseScheduler"
    assert (CelerySource.kind, RedBeatSource.kind, DjangoSource.kind) == (
        "celery", "redbeat", "django")
    assert Listed("n", "t", None, {}, None).not_before is None


def test_celery_s_schedule_is_listed_whole_with_text_names_only() -> None:
    app = Celery("sources", set_as_current=False)
    every = schedule(timedelta(seconds=30), app=app, nowfun=lambda: NOON)
    ran = ScheduleEntry(name="ran", task="t.ran", schedule=every, app=app,
                        last_run_at=NOON - timedelta(seconds=10), options={"queue": "q"})
    fresh = ScheduleEntry(name="fresh", task="t.fresh", schedule=every, app=app)
    fresh.last_run_at = None  # as a scheduler may hold it: beat's clock stands in
    bare = SimpleNamespace(task="t.bare", schedule=every, last_run_at=NOON, options=None)
    plain = SimpleNamespace(task="t.plain", schedule=every, last_run_at=NOON)
    scheduler = SimpleNamespace(schedule={"ran": ran, "fresh": fresh, 5: ran, "bare": bare,
                                          "plain": plain})
    source = CelerySource(scheduler)
    assert source.entries() == [
        Listed("ran", "t.ran", every, {"queue": "q"}, NOON - timedelta(seconds=10)),
        Listed("fresh", "t.fresh", every, {}, NOON),
        Listed("bare", "t.bare", every, {}, NOON),
        Listed("plain", "t.plain", every, {}, NOON),
    ]
    assert source.last_run_at(fresh) == NOON


class RedBeatEntry:
    """RedBeat's entry class, as the source uses it: JSON fields, an optional ``enabled``."""

    def __init__(self, app: Any, name: str, task: str, schedule: float,
                 options: dict[str, Any] | None = None, **more: Any) -> None:
        self.key = app.redbeat_conf.schedule_key  # an entry needs its app
        self.name, self.task, self.options = name, task, options
        self.schedule = ("every", schedule)
        self.last_run_at = more.pop("last_run_at", None)
        for key, value in more.items():
            setattr(self, key, value)

    @staticmethod
    def decode_definition(raw: str) -> dict[str, Any]:
        fields: dict[str, Any] = json.loads(raw)
        return fields

    @staticmethod
    def decode_meta(raw: str | None) -> dict[str, Any]:
        meta: dict[str, Any] = {} if raw is None else json.loads(raw)
        if "last_run_at" in meta:
            meta["last_run_at"] = datetime.fromisoformat(meta["last_run_at"])
        return meta


class Counting:
    """RedBeat's client: a fakeredis one whose pipelines are counted."""

    def __init__(self) -> None:
        self.redis = fakeredis.FakeRedis(decode_responses=True)
        self.pipelines = 0

    def zrange(self, key: str, start: int, end: int) -> Any:
        return self.redis.zrange(key, start, end)

    def pipeline(self) -> Any:
        self.pipelines += 1
        return self.redis.pipeline()


@pytest.fixture
def redbeat(monkeypatch: pytest.MonkeyPatch) -> tuple[SimpleNamespace, Counting]:
    """A RedBeat scheduler's ``app`` and ``Entry``, and ``redbeat.schedulers.get_redis``."""
    client = Counting()
    app = SimpleNamespace(redbeat_conf=SimpleNamespace(schedule_key="rb::schedule"))
    module = ModuleType("redbeat.schedulers")
    module.get_redis = lambda of: client if of is app else None  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "redbeat.schedulers", module)
    return SimpleNamespace(app=app, Entry=RedBeatEntry), client


def _save(client: Counting, key: str, score: float, definition: Any,
          meta: dict[str, Any] | None = None) -> None:
    client.redis.zadd("rb::schedule", {key: score})
    if definition is not None:
        text = definition if isinstance(definition, str) else json.dumps(definition)
        client.redis.hset(key, "definition", text)
    if meta is not None:
        client.redis.hset(key, "meta", json.dumps(meta))


def test_redbeat_s_whole_schedule_is_listed_in_its_order(
        redbeat: tuple[SimpleNamespace, Counting], caplog: pytest.LogCaptureFixture) -> None:
    scheduler, client = redbeat
    caplog.set_level(logging.WARNING, logger=LOGGER)
    daily = {"name": "daily", "task": "t.daily", "schedule": 86400.0,
             "options": {"queue": "reports"}}
    _save(client, "rb:daily", 1, daily, {"last_run_at": "2026-06-10T03:00:00+00:00"})
    _save(client, "rb:first", 0, {"name": "first", "task": "t.first", "schedule": 1.0})
    _save(client, "rb:off", 2, {"name": "off", "task": "t", "schedule": 1.0, "enabled": False})
    _save(client, "rb:on", 3, {"name": "on", "task": "t", "schedule": 1.0, "enabled": True},
          {"other": 1})
    _save(client, "rb:gone", 4, None)  # a key without its hash: RedBeat drops it when due
    _save(client, "rb:broken", 5, "{not json")
    _save(client, "rb:" + "x" * 100, 6, "{not json")
    _save(client, "rb:last", 7, {"name": "last", "task": "t.last", "schedule": 5.0,
                                 "options": None})
    source = RedBeatSource(scheduler)
    assert source.entries() == [
        Listed("first", "t.first", ("every", 1.0), {}, None),
        Listed("daily", "t.daily", ("every", 86400.0), {"queue": "reports"},
               datetime(2026, 6, 10, 3, tzinfo=UTC)),
        Listed("on", "t", ("every", 1.0), {}, None),
        Listed("last", "t.last", ("every", 5.0), {}, None),
    ]
    assert _lines(caplog) == [
        (logging.WARNING, "RedBeat entry 'rb:broken' can't be read (JSONDecodeError); it is "
                          "not in the schedule"),
        (logging.WARNING, f"RedBeat entry {'rb:' + 'x' * 77!r} can't be read "
                          "(JSONDecodeError); it is not in the schedule"),
    ]
    assert client.pipelines == 1
    entry = RedBeatEntry(scheduler.app, "e", "t", 1.0)
    assert source.last_run_at(entry) is None
    entry.last_run_at = NOON
    assert source.last_run_at(entry) == NOON


def test_redbeat_s_schedule_is_read_500_entries_a_pipeline(
        redbeat: tuple[SimpleNamespace, Counting]) -> None:
    scheduler, client = redbeat
    assert REDBEAT_CHUNK == 500
    names = [f"e{i:04d}" for i in range(REDBEAT_CHUNK + 1)]
    for i, name in enumerate(names):
        _save(client, "rb:" + name, i, {"name": name, "task": "t", "schedule": 1.0})
    assert [entry.name for entry in RedBeatSource(scheduler).entries()] == names
    assert client.pipelines == 2
    client.redis.zremrangebyrank("rb::schedule", 0, 0)
    client.pipelines = 0
    assert [entry.name for entry in RedBeatSource(scheduler).entries()] == names[1:]
    assert client.pipelines == 1


class Model(SimpleNamespace):
    """A ``PeriodicTask`` row, as the source reads it."""


class DjangoEntry:
    """django-celery-beat's ``ModelEntry``: built from a row; a broken row raises, or
    disables itself."""

    def __init__(self, model: Model, app: Any) -> None:
        if model.name.startswith("broken"):
            raise ValueError("bad crontab")
        if model.name == "disables":
            model.enabled = False
        self.model, self.zone = model, app.timezone  # an entry needs its app
        self.task = model.task
        self.schedule = ("every", 60)
        self.last_run_at = model.last_run_at
        if hasattr(model, "options"):
            self.options = model.options


class DjangoScheduler:
    Entry = DjangoEntry

    def __init__(self, rows: list[Model], held: Any = None) -> None:
        self.app = SimpleNamespace(timezone=BERLIN)
        self.Model = SimpleNamespace(objects=SimpleNamespace(enabled=lambda: rows))
        if held is not None:
            self._schedule = held


@pytest.fixture
def closed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """``django.db.close_old_connections``, counted."""
    calls: list[int] = []
    module = ModuleType("django.db")
    module.close_old_connections = lambda: calls.append(1)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "django.db", module)
    return calls


def _row(name: str, pk: int, last: datetime | None = None, **more: Any) -> Model:
    return Model(name=name, pk=pk, task="t." + name, enabled=True, last_run_at=last, **more)


def test_django_s_enabled_rows_are_listed_with_times_in_the_app_s_zone(
        closed: list[int], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    naive = datetime(2026, 6, 10, 10)  # a row's time without a zone is UTC
    rows = [
        _row("plain", 1, naive, options={"queue": "q"}, start_time=None),
        _row("broken", 2), _row("broken" + "x" * 100, 3), _row("disables", 4),
        _row("starts", 5, None, options=None, start_time=datetime(2026, 7, 1, 6)),
        _row("bare", 6),
    ]
    source = DjangoSource(DjangoScheduler(rows))
    listed = source.entries()
    assert closed == [1]
    assert listed == [
        Listed("plain", "t.plain", ("every", 60), {"queue": "q"},
               datetime(2026, 6, 10, 12, tzinfo=BERLIN)),
        Listed("starts", "t.starts", ("every", 60), {}, None,
               datetime(2026, 7, 1, 8, tzinfo=BERLIN)),
        Listed("bare", "t.bare", ("every", 60), {}, None),
    ]
    assert [(entry.last_run_at.tzinfo if entry.last_run_at else None) for entry in listed] == [
        BERLIN, None, None]
    assert _lines(caplog) == [
        (logging.WARNING, "periodic task 'broken' can't be read (ValueError); it is not in "
                          "the schedule"),
        (logging.WARNING, f"periodic task {'broken' + 'x' * 74!r} can't be read "
                          "(ValueError); it is not in the schedule"),
    ]
    assert source.last_run_at(SimpleNamespace(last_run_at=None)) is None
    aware = datetime(2026, 6, 10, 10, tzinfo=UTC)
    assert source.last_run_at(SimpleNamespace(last_run_at=aware)) == aware
    assert source.last_run_at(SimpleNamespace(last_run_at=aware)).tzinfo == BERLIN  # type: ignore[union-attr]


def test_django_s_last_run_is_the_later_of_the_row_s_and_beat_s_own(closed: list[int]) -> None:
    """Beat writes the rows only at its sync: a run since is in the entry it holds, if
    that entry is still the same row (the same primary key)."""
    row_time = datetime(2026, 6, 10, 10, tzinfo=UTC)
    later, earlier = row_time + timedelta(minutes=1), row_time - timedelta(minutes=1)
    rows = [_row("later", 1, row_time), _row("earlier", 2, row_time), _row("other row", 3,
            row_time), _row("never held", 4, row_time), _row("held never ran", 5, row_time),
            _row("row never ran", 6, None), _row("no model", 7, row_time),
            _row("both never", 8, None)]

    def held(pk: int, last: datetime | None) -> SimpleNamespace:
        return SimpleNamespace(model=SimpleNamespace(pk=pk), last_run_at=last)

    live = {"later": held(1, later), "earlier": held(2, earlier), "other row": held(99, later),
            "held never ran": held(5, None), "row never ran": held(6, later),
            "no model": SimpleNamespace(last_run_at=later), "both never": held(8, None)}
    lasts = {e.name: e.last_run_at for e in DjangoSource(DjangoScheduler(rows, live)).entries()}
    assert lasts == {"later": later, "earlier": row_time, "other row": row_time,
                     "never held": row_time, "held never ran": row_time,
                     "row never ran": later, "no model": row_time, "both never": None}
    assert closed == [1]
    for odd in (None, ["later"]):  # no schedule held (yet), or not a dict
        lasts = {e.name: e.last_run_at
                 for e in DjangoSource(DjangoScheduler(rows, odd)).entries()}
        assert lasts["later"] == row_time
