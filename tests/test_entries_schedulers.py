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

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tests.support.helpers import Proc, RedisServer, heartbeat_env, wait_for
from tests.support.processes import run
from worker.core.entries import EntryState
from worker.read.entries import EntryReport, read_entries

pytestmark = pytest.mark.e2e
SAMPLE_APP = Path(__file__).parent / "sample_app"
REPO = Path(__file__).resolve().parents[1]
STARTUP_S = 120
"""Beat and worker up and through their first dispatches, on a busy machine."""

SYNC_S = 1.0
"""One sync: the watch reads the live schedule every heartbeat interval (1 s here)."""

HEADROOM_S = 10.0
"""Added to each promise for a busy machine."""

GRACE_S = 5.0
"""The default grace of a 1 s entry (half its period, at least 5 s)."""

STATIC = {"every second", "to be removed", "daily, hours away"}


def _env(url: str, **extra: str) -> dict[str, str]:
    env = heartbeat_env(url, PETSAGE_APP_BROKER=url, HEARTBEAT_INTERVAL_S=str(SYNC_S), **extra)
    del env["CELERY_BROKER_URL"], env["HEARTBEAT_REDIS_URL"]  # from the app's own config
    env["PYTHONPATH"] = os.pathsep.join([str(SAMPLE_APP), str(REPO)])
    return env


def _beat(env: dict[str, str], cwd: Path, app: str, scheduler: str) -> Proc:
    argv = [sys.executable, "-m", "celery", "-A", app, "beat", "--loglevel", "INFO",
            "-S", scheduler, "--schedule", str(cwd / "beat-schedule")]
    return Proc(argv, env, cwd, "beat")


def _worker(env: dict[str, str], cwd: Path, app: str) -> Proc:
    argv = [sys.executable, "-m", "celery", "-A", app, "worker", "--loglevel", "INFO",
            "-Q", "celery,heartbeat.petsage", "--concurrency", "2", "--without-mingle",
            "--without-gossip", "--hostname", "worker@%h"]
    return Proc(argv, env, cwd, "worker")


def _entries(client: redis.Redis) -> dict[str, EntryReport]:
    report = read_entries(client, "petsage")
    assert report.error is None, report.error
    return {entry.name: entry for entry in report.entries}


def _reaches(client: redis.Redis, name: str, state: EntryState,
             timeout_s: float) -> EntryReport:
    def there() -> EntryReport | None:
        entry = _entries(client).get(name)
        return entry if entry is not None and entry.state is state else None

    found: EntryReport = wait_for(there, timeout_s, interval_s=0.1,
                                  what=f"{name!r} {state.value}")
    return found


def _watching(client: redis.Redis, names: set[str]) -> Callable[[], bool]:
    return lambda: set(_entries(client)) == names


def _check_statics(client: redis.Redis, beat: Proc) -> None:
    """The statics watched and running; the daily one watched, pending, never removed,
    across several syncs (its scheduler's ``schedule`` leaves it out)."""
    wait_for(_watching(client, STATIC), STARTUP_S, what="the static entries watched")
    _reaches(client, "every second", EntryState.OK, STARTUP_S)
    _reaches(client, "to be removed", EntryState.OK, STARTUP_S)
    for _ in range(int(5 * SYNC_S / 0.25)):
        daily = _entries(client)["daily, hours away"]
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
    removed = _reaches(client, "to be removed", EntryState.REMOVED, SYNC_S + HEADROOM_S)
    assert removed.diagnosis == "removed"
    added: EntryReport = wait_for(lambda: _entries(client).get("added at run time"),
                                  SYNC_S + HEADROOM_S, what="'added at run time' recorded")
    assert added.record["schedule"] == "every 1s"
    assert added.state is not EntryState.REMOVED
    assert time.monotonic() - changed_at <= SYNC_S + HEADROOM_S
    # It runs: its first due time is at most one period after it was added.
    _reaches(client, "added at run time", EntryState.OK, SYNC_S + 1 + GRACE_S + HEADROOM_S)
    # The removed one stays removed, the daily one stays watched.
    time.sleep(3 * SYNC_S)
    entries = _entries(client)
    assert entries["to be removed"].state is EntryState.REMOVED
    assert entries["daily, hours away"].state is EntryState.PENDING
    assert entries["every second"].state is EntryState.OK
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
    beat = _beat(env, tmp_path, app, "redbeat.RedBeatScheduler")
    procs += [beat, _worker(env, tmp_path, app)]
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
    beat = _beat(env, tmp_path, app, "django_celery_beat.schedulers:DatabaseScheduler")
    procs += [beat, _worker(env, tmp_path, app)]
    _check_statics(client, beat)

    run([sys.executable, "-c", "import entries_django_app; entries_django_app.add_and_remove()"],
        env=env, cwd=tmp_path, check=True, timeout=STARTUP_S)
    changed_at = time.monotonic()
    _check_changes(client, changed_at, beat)
