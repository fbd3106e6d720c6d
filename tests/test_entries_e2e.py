"""Every beat entry watched, on real processes: the sample app's six entries each reach the
state they should, naming the right hop; beat killed, two beats, a worker killed mid-run.

Real redis-server, real ``celery beat`` (Celery's default ``PersistentScheduler``) and
``celery worker`` of ``tests/sample_app/entries_app.py``.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tests.support.entries_app import (
    HEADROOM_S,
    SAMPLE_APP,
    SIX,
    STARTUP_S,
    app_env,
    entries,
    reaches,
    start_beat,
    start_worker,
)
from tests.support.helpers import Proc, RedisServer, wait_for
from worker.core.entries import EntryState

pytestmark = pytest.mark.e2e


def _watching(client: redis.Redis) -> Callable[[], bool]:
    return lambda: len(entries(client)) == 6


def test_the_six_entries_each_reach_their_state_with_the_right_hop(
        own_redis: RedisServer, procs: list[Proc], tmp_path: Path) -> None:
    env = app_env(own_redis.url)
    client = own_redis.client()
    procs += [start_beat(env, tmp_path), start_worker(env, tmp_path)]
    wait_for(_watching(client), STARTUP_S, what="six entries watched")
    watched = entries(client)
    assert set(watched) == SIX
    assert watched["weekdays by name"].record["schedule"] == (
        "crontab * * * * mon,tue,wed,thu,fri,sat,sun")
    assert watched["every second"].record["schedule"] == "every 1s"
    assert watched["every second"].record["queue"] == "celery"
    assert watched["nobody consumes"].record["queue"] == "nobody"

    ok = reaches(client, "every second", EntryState.OK, 2 + 1 + HEADROOM_S)
    assert ok.record["last_queue_wait_ms"] is not None and ok.record["last_duration_ms"] >= 0
    failed = reaches(client, "raises", EntryState.FAILED, 2 + 2 + HEADROOM_S, "task_failed")
    run = failed.record["run"]
    assert run["error_type"] == "ValueError"
    assert run["error"] == "the nightly export failed: password=*** at db.example"
    reaches(client, "nobody consumes", EntryState.NOT_STARTED, 2 + 1 + HEADROOM_S,
            "no_consumer")
    # The first run of a 10 s entry comes 10 s after beat starts (Celery's own scheduler).
    reaches(client, "retries twice", EntryState.RETRYING, 10 + 3 + HEADROOM_S,
            "task_retrying")
    retried = reaches(client, "retries twice", EntryState.OK, 2 + 3 + HEADROOM_S)
    assert retried.record["run"]["attempts"] == 3
    assert retried.record["counts"]["retrying"] == 2
    overrun = reaches(client, "sleeps too long", EntryState.OVERRUN, 20 + 2 + HEADROOM_S,
                      "task_hung")
    assert overrun.record["max_runtime_s"] == 2
    reaches(client, "weekdays by name", EntryState.OK, 60 + 5 + HEADROOM_S)
    # The same task sent by .delay() from elsewhere is not a run of the entry.
    before = entries(client)["every second"].record["counts"]
    sys.path.insert(0, str(SAMPLE_APP))
    try:
        from celery import Celery

        sender = Celery("sender", broker=own_redis.url)
        sender.conf.update(task_serializer="json")
        sender.send_task("entries_app.raises", queue="celery")
    finally:
        sys.path.remove(str(SAMPLE_APP))
    time.sleep(1.5)
    assert entries(client)["every second"].record["counts"].get("failed") == before.get("failed")
    assert "Traceback" not in procs[0].output()


def test_beat_killed_makes_every_due_entry_missed_with_beat_down(
        own_redis: RedisServer, procs: list[Proc], tmp_path: Path) -> None:
    env = app_env(own_redis.url)
    client = own_redis.client()
    beat = start_beat(env, tmp_path)
    procs += [beat, start_worker(env, tmp_path)]
    reaches(client, "every second", EntryState.OK, STARTUP_S)
    beat.stop(signal.SIGKILL)
    for name in ("every second", "raises", "nobody consumes"):
        missed = reaches(client, name, EntryState.MISSED, 3 * 1 + 2 + 2 + HEADROOM_S,
                         "beat_down")
        assert "beat last published" in missed.reason


def test_two_beats_make_an_entry_duplicate(own_redis: RedisServer, procs: list[Proc],
                                           tmp_path: Path) -> None:
    env = app_env(own_redis.url)
    client = own_redis.client()
    procs += [start_beat(env, tmp_path, "beat-1"), start_worker(env, tmp_path)]
    reaches(client, "every second", EntryState.OK, STARTUP_S)
    assert entries(client)["every second"].state is EntryState.OK
    procs.append(start_beat(env, tmp_path, "beat-2"))
    dup = reaches(client, "every second", EntryState.DUPLICATE, STARTUP_S, "two_beats")
    assert "two beats" in dup.reason


def test_a_worker_killed_mid_run_is_overrun_then_ok_after_the_next_run(
        own_redis: RedisServer, procs: list[Proc], tmp_path: Path) -> None:
    env = app_env(own_redis.url)
    client = own_redis.client()
    worker = start_worker(env, tmp_path, "first")
    procs += [start_beat(env, tmp_path), worker]
    reaches(client, "sleeps too long", EntryState.RUNNING, STARTUP_S)
    worker.stop(signal.SIGKILL)
    lost = reaches(client, "sleeps too long", EntryState.OVERRUN, 2 + 3 * 1 + HEADROOM_S + 10,
                   "worker_lost")
    assert "first@" in lost.reason
    procs.append(start_worker({**env, "ENTRIES_APP_QUICK": "1"}, tmp_path, "second"))
    # The next run is due 20 s after the killed one; on the new worker it takes 0.1 s.
    done = reaches(client, "sleeps too long", EntryState.OK, 20 + 3 + HEADROOM_S + 10)
    assert done.record["run"]["node"].startswith("second@")
