"""Every beat entry watched under the schedulers that keep the schedule outside beat, on
real processes: RedBeat (the schedule in Redis) and django-celery-beat's
``DatabaseScheduler`` (``PeriodicTask`` rows in SQLite).

Real redis-server, real ``celery beat -S ...`` and ``celery worker`` of
``tests/sample_app/entries_redbeat_app.py`` and ``entries_django_app.py``. For each: the
static entries are watched, the daily one too although the scheduler's own ``schedule``
leaves it out most of the day; an entry added while beat runs gets a record and runs
(``ok``), one removed while beat runs reads ``removed``, each within one sync plus headroom.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tests.support.entries_app import (
    HEADROOM_S,
    STARTUP_S,
    app_env,
    entries,
    reaches,
    start_beat,
    start_worker,
)
from tests.support.helpers import Proc, RedisServer, wait_for
from tests.support.processes import run
from worker.core.entries import EntryState
from worker.read.entries import EntryReport

pytestmark = pytest.mark.e2e
SYNC_S = 1.0
"""One sync: the watch reads the live schedule every heartbeat interval (1 s here)."""

GRACE_S = 5.0
"""The default grace of a 1 s entry (half its period, at least 5 s)."""

STATIC = {"every second", "to be removed", "daily, hours away"}


def _env(url: str, **extra: str) -> dict[str, str]:
    return app_env(url, HEARTBEAT_INTERVAL_S=str(SYNC_S), **extra)


def _watching(client: redis.Redis, names: set[str]) -> Callable[[], bool]:
    return lambda: set(entries(client)) == names


def _check_statics(client: redis.Redis, beat: Proc) -> None:
    """The statics watched and running; the daily one watched, pending, never removed,
    across several syncs (its scheduler's ``schedule`` leaves it out)."""
    wait_for(_watching(client, STATIC), STARTUP_S, what="the static entries watched")
    reaches(client, "every second", EntryState.OK, STARTUP_S)
    reaches(client, "to be removed", EntryState.OK, STARTUP_S)
    for _ in range(int(5 * SYNC_S / 0.25)):
        daily = entries(client)["daily, hours away"]
        assert daily.state is EntryState.PENDING, daily
        assert daily.record["kind"] == "crontab"
        assert daily.record.get("removed_ms") is None
        time.sleep(0.25)
    assert daily.record["schedule"].startswith("crontab 0 ")
    # Due at the next HOURS_AWAY:00 UTC: about 11-12 hours from now.
    due_in_h = (daily.record["next_due_ms"] - time.time() * 1000) / 3_600_000
    assert 10.9 < due_in_h <= 12.1, due_in_h
    assert beat.alive(), beat.output()


def _check_changes(client: redis.Redis, changed_at: float, beat: Proc) -> None:
    """The added entry recorded and ``ok``, the removed one ``removed``, both in time."""
    removed = reaches(client, "to be removed", EntryState.REMOVED, SYNC_S + HEADROOM_S)
    assert removed.diagnosis == "removed"
    added: EntryReport = wait_for(lambda: entries(client).get("added at run time"),
                                  SYNC_S + HEADROOM_S, what="'added at run time' recorded")
    assert added.record["schedule"] == "every 1s"
    assert added.state is not EntryState.REMOVED
    assert time.monotonic() - changed_at <= SYNC_S + HEADROOM_S
    # It runs: its first due time is at most one period after it was added.
    reaches(client, "added at run time", EntryState.OK, SYNC_S + 1 + GRACE_S + HEADROOM_S)
    # The removed one stays removed, the daily one stays watched.
    time.sleep(3 * SYNC_S)
    now = entries(client)
    assert now["to be removed"].state is EntryState.REMOVED
    assert now["daily, hours away"].state is EntryState.PENDING
    assert now["every second"].state is EntryState.OK
    assert "Traceback" not in beat.output()


def test_redbeat_entries_watched_added_and_removed_at_run_time(
        own_redis: RedisServer, procs: list[Proc], tmp_path: Path) -> None:
    pytest.importorskip("redbeat")
    from celery import Celery
    from celery.schedules import schedule
    from redbeat import RedBeatSchedulerEntry

    env = _env(own_redis.url)
    client = own_redis.client()
    app = "entries_redbeat_app"
    beat = start_beat(env, tmp_path, app=app, scheduler="redbeat.RedBeatScheduler")
    procs += [beat, start_worker(env, tmp_path, app=app, concurrency=2)]
    _check_statics(client, beat)
    # The whole schedule is in RedBeat's sorted set; its `schedule` holds only due entries.
    keys = {k.decode() for k in client.zrange("redbeat::schedule", 0, -1)}
    assert {"redbeat:every second", "redbeat:daily, hours away"} <= keys

    editor = Celery("editor", broker=own_redis.url)
    editor.conf.redbeat_redis_url = own_redis.url
    RedBeatSchedulerEntry("added at run time", "entries_redbeat_app.noop", schedule(1.0),
                          app=editor).save()
    RedBeatSchedulerEntry("to be removed", app=editor).delete()
    changed_at = time.monotonic()
    _check_changes(client, changed_at, beat)


def test_django_database_scheduler_entries_watched_added_and_removed_at_run_time(
        own_redis: RedisServer, procs: list[Proc], tmp_path: Path) -> None:
    pytest.importorskip("django_celery_beat")
    env = _env(own_redis.url, ENTRIES_DJANGO_DB=str(tmp_path / "beat.sqlite3"))
    client = own_redis.client()
    app = "entries_django_app"
    run([sys.executable, "-c", "import entries_django_app; from django.core.management "
         "import call_command; call_command('migrate', verbosity=0)"],
        env=env, cwd=tmp_path, check=True, timeout=STARTUP_S)
    beat = start_beat(env, tmp_path, app=app,
                      scheduler="django_celery_beat.schedulers:DatabaseScheduler")
    procs += [beat, start_worker(env, tmp_path, app=app, concurrency=2)]
    _check_statics(client, beat)

    run([sys.executable, "-c", "import entries_django_app; entries_django_app.add_and_remove()"],
        env=env, cwd=tmp_path, check=True, timeout=STARTUP_S)
    changed_at = time.monotonic()
    _check_changes(client, changed_at, beat)
