"""Beat's side of watching the app's own entries: the live schedule, and each dispatch.

Attached to whatever scheduler beat runs (Celery's ``PersistentScheduler``, RedBeat,
django-celery-beat's ``DatabaseScheduler``) through the two methods every scheduler has:

* ``tick``: at most every ``sync_every_s`` the watched entries are read from the
  scheduler's whole live schedule (``entry_sources``: RedBeat's and django-celery-beat's
  ``schedule`` hold only some entries) and, when anything changed (or once a minute), written as
  the whole watched set, so an entry added, changed or removed while beat runs is seen
  within one sync, and a removed one is marked ``removed``, never dropped in silence;
* ``apply_async``: each dispatch of a watched entry carries a message header naming the
  entry (so the worker knows a run of the entry from the same task sent by ``.delay()``)
  and is recorded with its task id, due time and next due time, on the Redis clock, as
  the message is published (``before_task_publish``).

Nothing here may stop beat: a store that fails is one log line per outage.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, NamedTuple

from worker.core.entries import (
    ENTRY_HEADER,
    ENTRY_TEXT_MAX,
    entry_name_problem,
    tolerances,
)
from worker.core.errors import ConfigError
from worker.core.urls import redact
from worker.publish.entry_schedule import describe, due_in_s, kind_of, period_s, time_zone
from worker.publish.entry_sources import EntrySource, Listed, source_for
from worker.publish.entry_store import EntrySpec, EntryStore

logger = logging.getLogger(__name__)

REFRESH_S = 60.0
"""An unchanged schedule is written again this often (next due times, a flushed store)."""

SYNC_CHUNK = 100
"""Entries written by one sync script: a few milliseconds of Redis each."""

MAX_ENTRIES = 1000
"""At most this many entries of one app are watched; the rest are named in one line."""

Selector = Callable[[str], bool]


class Dispatch(NamedTuple):
    """The entry whose message is being published, with its due and next due times."""

    name: str
    due_in_s: float  #: <= 0: how late beat sends it
    next_due_in_s: float


def selector(entries: Iterable[str] | str | re.Pattern[str] | None) -> Selector:
    """Which entry names to watch: every one (None), these names, or a regular expression."""
    if entries is None:
        return lambda name: True
    if isinstance(entries, str | re.Pattern):
        pattern = re.compile(entries) if isinstance(entries, str) else entries
        return lambda name: pattern.fullmatch(name) is not None
    names = frozenset(entries)
    return names.__contains__


class EntryWatch:
    """Watches the entries of one beat's scheduler (see the module's docstring)."""

    def __init__(self, store: EntryStore, *, skip: Callable[[str], bool], watch: Selector,
                 beat_id: str, sync_every_s: float,
                 depth_of: Callable[[str], int | None] | None = None) -> None:
        self._store = store
        self._skip = skip
        self._watch = watch
        self._beat_id = beat_id
        self._sync_every_s = sync_every_s
        self._depth_of = depth_of
        self._current: contextvars.ContextVar[Dispatch | None] = contextvars.ContextVar(
            "petsage_entry", default=None)
        self._last_sync = -float("inf")
        self._last_write = -float("inf")
        self._written: dict[str, tuple[Any, ...]] = {}  #: name -> what the store holds
        self._warned: set[str] = set()
        self._failing = False
        self._source: EntrySource | None = None
        self.watched: dict[str, EntrySpec] = {}

    def attach(self, scheduler: Any) -> None:
        """Wrap ``scheduler``'s ``tick`` and ``apply_async``."""
        source = self._source = source_for(scheduler)
        tick = scheduler.tick
        apply_async = scheduler.apply_async

        def watched_tick(*args: Any, **kwargs: Any) -> Any:
            self.maybe_sync(scheduler)
            return tick(*args, **kwargs)

        def watched_apply_async(entry: Any, *args: Any, **kwargs: Any) -> Any:
            name = getattr(entry, "name", None)
            if not isinstance(name, str) or name not in self.watched:
                return apply_async(entry, *args, **kwargs)
            try:
                last = source.last_run_at(entry)
                due_in = 0.0 if last is None else min(due_in_s(entry.schedule, last), 0.0)
                next_in = due_in_s(entry.schedule, entry.default_now())
            except Exception:  # the schedule said it was due a moment ago: say "now"
                due_in = next_in = 0.0
            token = self._current.set(Dispatch(name, due_in, next_in))
            try:
                return apply_async(entry, *args, **kwargs)
            finally:
                self._current.reset(token)

        scheduler.tick = watched_tick
        scheduler.apply_async = watched_apply_async

    def stamp(self, headers: dict[str, Any] | None) -> None:
        """Name the entry in the headers of the message being published for it, and record
        the dispatch under the message's task id.

        Recorded before the message leaves, so that a worker's check-in of its start can
        never arrive before beat's of its dispatch.
        """
        dispatch = self._current.get()
        if dispatch is None or headers is None:
            return
        headers[ENTRY_HEADER] = dispatch.name
        task_id = headers.get("id")
        if isinstance(task_id, str):
            self._dispatched(dispatch, task_id)

    def specs(self, scheduler: Any) -> dict[str, EntrySpec]:
        """The watched entries of ``scheduler``'s whole live schedule, each described."""
        source = self._source if self._source is not None else source_for(scheduler)
        out: dict[str, EntrySpec] = {}
        for entry in source.entries():
            name = entry.name
            if self._skip(name) or not self._watch(name) or name in out:
                continue
            spec = self._spec(scheduler, entry)
            if spec is None:
                continue
            if len(out) >= MAX_ENTRIES:
                self._warn("too-many", f"beat has over {MAX_ENTRIES} entries to watch; "
                                       f"{name!r} and later ones are not watched")
                break
            out[name] = spec
        return out

    def _spec(self, scheduler: Any, entry: Listed) -> EntrySpec | None:
        name = entry.name
        problem = entry_name_problem(name)
        if problem is not None:
            self._warn(name, f"beat entry {name[:60]!r} is not watched: {problem}")
            return None
        schedule = entry.schedule
        try:
            period = period_s(schedule)
            tolerance = tolerances(entry.options, period, name)
            next_in = _next_due_in_s(entry)
        except ConfigError as exc:
            self._warn(name, f"{exc}; the entry is not watched")
            return None
        except Exception as exc:  # a schedule that can't say when it is due
            self._warn(name, f"beat entry {name!r} is not watched: its schedule can't say "
                             f"when it is due ({type(exc).__name__})")
            return None
        if tolerance is None:
            return None
        return EntrySpec(
            name=name, task=str(entry.task)[:ENTRY_TEXT_MAX], schedule=describe(schedule),
            kind=kind_of(schedule), tz=time_zone(schedule),
            queue=_queue(scheduler, entry.task, entry.options),
            grace_s=tolerance.grace_s, max_runtime_s=tolerance.max_runtime_s,
            period_s=None if period is None else round(period, 3),
            next_due_in_ms=round(next_in * 1000))

    def maybe_sync(self, scheduler: Any) -> None:
        """Write what changed in the watched set (all of it once a minute); never raises.

        Changed entries go in chunks of ``SYNC_CHUNK`` a script, so no call holds Redis
        for long at 1,000 entries; the names alone then mark what left the schedule.
        """
        now = time.monotonic()
        if now - self._last_sync < self._sync_every_s:
            return
        self._last_sync = now
        try:
            specs = self.specs(scheduler)
        except Exception as exc:  # a scheduler whose schedule can't be read this time
            self._warn("schedule", f"beat's schedule could not be read ({type(exc).__name__})")
            return
        self.watched = specs
        refresh = now - self._last_write >= REFRESH_S
        changed = [spec for name, spec in specs.items()
                   if refresh or self._written.get(name) != _identity(spec)]
        for start in range(0, len(changed), SYNC_CHUNK):
            chunk = changed[start:start + SYNC_CHUNK]
            if not self._write(functools.partial(self._store.sync, chunk)):
                return
            self._written.update((spec.name, _identity(spec)) for spec in chunk)
        if refresh or set(self._written) != set(specs):
            if not self._write(lambda: self._store.prune(list(specs))):
                return
            self._written = {name: self._written[name] for name in specs
                             if name in self._written}
        if refresh:
            self._last_write = now

    def _dispatched(self, dispatch: Dispatch, task_id: str) -> None:
        queue = self.watched[dispatch.name].queue if dispatch.name in self.watched else None
        depth = None if self._depth_of is None or queue is None else self._depth_of(queue)
        self._write(lambda: self._store.dispatched(
            dispatch.name, task_id[:ENTRY_TEXT_MAX], due_in_ms=round(dispatch.due_in_s * 1000),
            next_due_in_ms=round(dispatch.next_due_in_s * 1000), beat_id=self._beat_id,
            depth=depth))

    def _write(self, write: Callable[[], Any]) -> bool:
        try:
            write()
        except Exception as exc:  # the store down: beat goes on
            if not self._failing:
                logger.error("beat could not record its entries' runs in the store (it keeps "
                             "trying): %s", redact(f"{type(exc).__name__}: {exc}")[:200])
            self._failing = True
            return False
        if self._failing:
            logger.warning("beat records its entries' runs again")
        self._failing = False
        return True

    def _warn(self, key: str, text: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning("%s", text)


def _identity(spec: EntrySpec) -> tuple[Any, ...]:
    """What a sync writes of an entry, but its next due time (set by each dispatch)."""
    return (spec.task, spec.schedule, spec.kind, spec.tz, spec.queue, spec.grace_s,
            spec.max_runtime_s, spec.period_s)


def _next_due_in_s(entry: Listed) -> float:
    """Seconds until beat runs ``entry`` next: 0 for one that never ran and runs at once
    (RedBeat), never before a start time its scheduler holds it back to."""
    next_in = 0.0 if entry.last_run_at is None else due_in_s(entry.schedule, entry.last_run_at)
    if entry.not_before is not None:
        now = datetime.now(entry.not_before.tzinfo)
        next_in = max(next_in, (entry.not_before - now).total_seconds())
    return next_in


def _queue(scheduler: Any, task: str, options: Mapping[str, Any]) -> str | None:
    """The queue a dispatch of ``task`` with ``options`` goes to, as the app's router says."""
    queue = options.get("queue")
    if queue is None:
        try:
            route = scheduler.app.amqp.router.route(dict(options), task)
            queue = route.get("queue")
        except Exception:  # no route is no harm: the depth stays unknown
            queue = None
    name = getattr(queue, "name", queue)
    return name[:ENTRY_TEXT_MAX] if isinstance(name, str) else None
