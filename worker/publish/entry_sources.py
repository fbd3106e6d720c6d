"""Every entry of a beat scheduler's live schedule, not only the ones it is about to run.

The watch needs the whole schedule at each sync: an entry missing from one reading is
marked ``removed``. Celery's own schedulers (``PersistentScheduler``, ``Scheduler``) hold
it in ``scheduler.schedule``; two widely used ones don't, and get a source of their own,
chosen by the scheduler's class (by name, so neither library is imported here):

* RedBeat (``celery-redbeat``): its ``schedule`` property returns only the entries due now
  and the next one due within ``max_interval``. Every entry's key is in a sorted set
  (``<redbeat_key_prefix>:schedule``, by default ``redbeat::schedule``), its definition and
  its last run in a hash at that key; the source reads them all in one pipeline. A
  disabled entry (``enabled: false``) never runs and is not listed.
* django-celery-beat's ``DatabaseScheduler``: its ``schedule`` leaves out crontab rows whose
  hour is more than two hours from now and clocked rows more than five minutes ahead, and
  reading it consumes the scheduler's own change flag. The source reads the enabled
  ``PeriodicTask`` rows; an entry's last run is the later of its row's and that of the
  entry beat holds in memory (beat writes the rows only at its sync, every few minutes).

A source also says which ``last_run_at`` its scheduler hands the schedule object, so that
due times are the ones beat itself computes.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple, Protocol

logger = logging.getLogger(__name__)

REDBEAT = "redbeat.schedulers.RedBeatScheduler"
DJANGO = "django_celery_beat.schedulers.DatabaseScheduler"

REDBEAT_CHUNK = 500
"""Entries of a RedBeat schedule read per pipeline."""


class Listed(NamedTuple):
    """One entry of a live schedule, as the watch needs it."""

    name: str
    task: str
    schedule: Any  #: the schedule object beat uses (``remaining_estimate``)
    options: Mapping[str, Any]
    last_run_at: datetime | None  #: as beat hands it to the schedule; None: never ran, due now
    not_before: datetime | None = None  #: beat holds the entry back until then (a start time)


class EntrySource(Protocol):
    """Lists a scheduler's whole live schedule."""

    kind: str

    def entries(self) -> list[Listed]:
        """Every entry of the live schedule, due or not."""

    def last_run_at(self, entry: Any) -> datetime | None:
        """The ``last_run_at`` beat hands ``entry``'s schedule (None: never ran)."""


def _class_names(scheduler: Any) -> set[str]:
    return {f"{cls.__module__}.{cls.__qualname__}" for cls in type(scheduler).__mro__}


def source_for(scheduler: Any) -> EntrySource:
    """The source that lists ``scheduler``'s whole schedule, by its class."""
    names = _class_names(scheduler)
    if REDBEAT in names:
        return RedBeatSource(scheduler)
    if DJANGO in names:
        return DjangoSource(scheduler)
    return CelerySource(scheduler)


class CelerySource:
    """Celery's own schedulers, and any other: ``scheduler.schedule`` is the whole schedule."""

    kind = "celery"

    def __init__(self, scheduler: Any) -> None:
        self._scheduler = scheduler

    def entries(self) -> list[Listed]:
        out = []
        for name, entry in list(self._scheduler.schedule.items()):
            if isinstance(name, str):
                out.append(Listed(name, str(entry.task), entry.schedule,
                                  getattr(entry, "options", None) or {},
                                  self.last_run_at(entry)))
        return out

    def last_run_at(self, entry: Any) -> datetime | None:
        last: datetime | None = entry.last_run_at or entry.default_now()
        return last


class RedBeatSource:
    """RedBeat: every key of its schedule's sorted set, each entry's hash read in a pipeline."""

    kind = "redbeat"

    def __init__(self, scheduler: Any) -> None:
        self._scheduler = scheduler

    def entries(self) -> list[Listed]:
        app = self._scheduler.app
        entry_class = self._scheduler.Entry
        # RedBeat's own client (its URL, options and retries), as its scheduler reads.
        client = importlib.import_module("redbeat.schedulers").get_redis(app)
        keys = client.zrange(app.redbeat_conf.schedule_key, 0, -1)
        out = []
        for start in range(0, len(keys), REDBEAT_CHUNK):
            chunk = keys[start:start + REDBEAT_CHUNK]
            with client.pipeline() as pipe:
                for key in chunk:
                    pipe.hget(key, "definition")
                    pipe.hget(key, "meta")
                replies = pipe.execute()
            for i, key in enumerate(chunk):
                definition, meta = replies[2 * i], replies[2 * i + 1]
                if not definition:  # a key without its hash: RedBeat drops it when due
                    continue
                try:
                    fields = entry_class.decode_definition(definition)
                    last = entry_class.decode_meta(meta).get("last_run_at")
                    entry = entry_class(app=app, **fields)
                except Exception as exc:  # an entry RedBeat can't load can't run either
                    logger.warning("RedBeat entry %r can't be read (%s); it is not in the "
                                   "schedule", str(key)[:80], type(exc).__name__)
                    continue
                if not getattr(entry, "enabled", True):
                    continue
                out.append(Listed(str(entry.name), str(entry.task), entry.schedule,
                                  entry.options or {}, last))
        return out

    def last_run_at(self, entry: Any) -> datetime | None:
        # RedBeat runs an entry that never ran at once (``is_due`` from year 1).
        last: datetime | None = entry.last_run_at
        return last


class DjangoSource:
    """django-celery-beat: every enabled ``PeriodicTask`` row, with beat's in-memory last runs."""

    kind = "django"

    def __init__(self, scheduler: Any) -> None:
        self._scheduler = scheduler

    def entries(self) -> list[Listed]:
        scheduler = self._scheduler
        # A connection the database closed meanwhile is replaced, as the scheduler does.
        importlib.import_module("django.db").close_old_connections()
        live = getattr(scheduler, "_schedule", None)
        live = live if isinstance(live, dict) else {}
        out = []
        for model in scheduler.Model.objects.enabled():
            try:
                entry = scheduler.Entry(model, app=scheduler.app)
                schedule = entry.schedule
            except Exception as exc:  # a row beat can't load can't run either
                logger.warning("periodic task %r can't be read (%s); it is not in the "
                               "schedule", str(model.name)[:80], type(exc).__name__)
                continue
            if not model.enabled:  # the entry disabled itself (a broken row)
                continue
            last = self.last_run_at(entry)
            held = live.get(model.name)
            if held is not None and getattr(getattr(held, "model", None), "pk", None) == model.pk:
                held_last = self.last_run_at(held)
                if last is None or (held_last is not None and held_last > last):
                    last = held_last
            start = getattr(model, "start_time", None)
            out.append(Listed(str(model.name), str(entry.task), schedule,
                              getattr(entry, "options", None) or {}, last,
                              None if start is None else self._aware(start)))
        return out

    def _aware(self, moment: datetime) -> datetime:
        from celery.utils.time import maybe_make_aware

        aware: datetime = maybe_make_aware(moment).astimezone(self._scheduler.app.timezone)
        return aware

    def last_run_at(self, entry: Any) -> datetime | None:
        # As ``ModelEntry.is_due`` hands it to the schedule: aware, in the app's time zone.
        last = entry.last_run_at
        return None if last is None else self._aware(last)
