"""Every beat entry watched, on real processes: the sample app's six entries each reach the
state they should, naming the right hop; beat killed, two beats, a worker killed mid-run.

Real redis-server, real ``celery beat`` (Celery's default ``PersistentScheduler``) and
``celery worker`` of ``tests/sample_app/entries_app.py``.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tests.support.helpers import Proc, RedisServer, heartbeat_env, wait_for
from worker.core.entries import EntryState
from worker.read.entries import EntryReport, read_entries

pytestmark = pytest.mark.e2e
SAMPLE_APP = Path(__file__).parent / "sample_app"
REPO = Path(__file__).resolve().parents[1]
STARTUP_S = 120
"""Beat and worker up and through their first dispatches, on a busy machine."""

HEADROOM_S = 10.0
"""Added to each promise (grace plus one period) for a busy machine."""


def _env(url: str) -> dict[str, str]:
    env = heartbeat_env(url, PETSAGE_APP_BROKER=url, HEARTBEAT_INTERVAL_S="1")
    del env["CELERY_BROKER_URL"], env["HEARTBEAT_REDIS_URL"]  # from the app's own config
    env["PYTHONPATH"] = os.pathsep.join([str(SAMPLE_APP), str(REPO)])
    return env


def _beat(env: dict[str, str], cwd: Path, name: str = "beat") -> Proc:
    argv = [sys.executable, "-m", "celery", "-A", "entries_app", "beat", "--loglevel", "INFO",
            "--schedule", str(cwd / f"{name}-schedule")]
    return Proc(argv, env, cwd, name)


def _worker(env: dict[str, str], cwd: Path, name: str = "worker") -> Proc:
    """The app's worker: its own queue and the heartbeat's, three processes (one sleeps)."""
    argv = [sys.executable, "-m", "celery", "-A", "entries_app", "worker", "--loglevel", "INFO",
            "-Q", "celery,heartbeat.petsage", "--concurrency", "3", "--without-mingle",
            "--without-gossip", "--hostname", f"{name}@%h"]
    return Proc(argv, env, cwd, name)


def _entries(client: redis.Redis) -> dict[str, EntryReport]:
    report = read_entries(client, "petsage")
    assert report.error is None, report.error
    return {entry.name: entry for entry in report.entries}


def _reaches(client: redis.Redis, name: str, state: EntryState, timeout_s: float,
             diagnosis: str | None = None) -> EntryReport:
    def there() -> EntryReport | None:
        entry = _entries(client).get(name)
        if entry is not None and entry.state is state and (
                diagnosis is None or entry.diagnosis == diagnosis):
            return entry
        return None

    found: EntryReport = wait_for(there, timeout_s, interval_s=0.1,
                                  what=f"{name!r} {state.value} ({diagnosis})")
    return found


def _watching(client: redis.Redis) -> Callable[[], bool]:
    return lambda: len(_entries(client)) == 6


def test_the_six_entries_each_reach_their_state_with_the_right_hop(
        own_redis: RedisServer, procs: list[Proc], tmp_path: Path) -> None:
    env = _env(own_redis.url)
    client = own_redis.client()
    procs += [_beat(env, tmp_path), _worker(env, tmp_path)]
    wait_for(_watching(client), STARTUP_S, what="six entries watched")
    entries = _entries(client)
    assert set(entries) == {"every second", "weekdays by name", "raises", "retries twice",
                            "sleeps too long", "nobody consumes"}
    assert entries["weekdays by name"].record["schedule"] == (
        "crontab * * * * mon,tue,wed,thu,fri,sat,sun")
    assert entries["every second"].record["schedule"] == "every 1s"
    assert entries["every second"].record["queue"] == "celery"
    assert entries["nobody consumes"].record["queue"] == "nobody"

    ok = _reaches(client, "every second", EntryState.OK, 2 + 1 + HEADROOM_S)
    assert ok.record["last_queue_wait_ms"] is not None and ok.record["last_duration_ms"] >= 0
    failed = _reaches(client, "raises", EntryState.FAILED, 2 + 2 + HEADROOM_S, "task_failed")
    run = failed.record["run"]
    assert run["error_type"] == "ValueError"
    assert run["error"] == "the nightly export failed: password=** at db.example"
    _reaches(client, "nobody consumes", EntryState.NOT_STARTED, 2 + 1 + HEADROOM_S,
             "no_consumer")
    # The first run of a 10 s entry comes 10 s after beat starts (Celery's own scheduler).
    _reaches(client, "retries twice", EntryState.RETRYING, 10 + 3 + HEADROOM_S,
             "task_retrying")
    retried = _reaches(client, "retries twice", EntryState.OK, 2 + 3 + HEADROOM_S)
    assert retried.record["run"]["attempts"] == 3
    assert retried.record["counts"]["retrying"] == 2
    overrun = _reaches(client, "sleeps too long", EntryState.OVERRUN, 20 + 2 + HEADROOM_S,
                       "task_hung")
    assert overrun.record["max_runtime_s"] == 2
    _reaches(client, "weekdays by name", EntryState.OK, 60 + 5 + HEADROOM_S)
    # The same task sent by .delay() from elsewhere is not a run of the entry.
    before = _entries(client)["every second"].record["counts"]
    sys.path.insert(0, str(SAMPLE_APP))
    try:
        from celery import Celery

        sender = Celery("sender", broker=own_redis.url)
        sender.conf.update(task_serializer="json")
        sender.send_task("entries_app.raises", queue="celery")
    finally:
        sys.path.remove(str(SAMPLE_APP))
    time.sleep(1.5)
    assert _entries(client)["every second"].record["counts"].get("failed") == before.get("failed")
    assert "Traceback" not in procs[0].output()


def test_beat_killed_makes_every_due_entry_missed_with_beat_down(
        own_redis: RedisServer, procs: list[Proc], tmp_path: Path) -> None:
    env = _env(own_redis.url)
    client = own_redis.client()
    beat = _beat(env, tmp_path)
    procs += [beat, _worker(env, tmp_path)]
    _reaches(client, "every second", EntryState.OK, STARTUP_S)
    beat.stop(signal.SIGKILL)
    for name in ("every second", "raises", "nobody consumes"):
        missed = _reaches(client, name, EntryState.MISSED, 3 * 1 + 2 + 2 + HEADROOM_S,
                          "beat_down")
        assert "beat last published" in missed.reason


def test_two_beats_make_an_entry_duplicate(own_redis: RedisServer, procs: list[Proc],
                                           tmp_path: Path) -> None:
    env = _env(own_redis.url)
    client = own_redis.client()
    procs += [_beat(env, tmp_path, "beat-1"), _worker(env, tmp_path)]
    _reaches(client, "every second", EntryState.OK, STARTUP_S)
    assert _entries(client)["every second"].state is EntryState.OK
    procs.append(_beat(env, tmp_path, "beat-2"))
    dup = _reaches(client, "every second", EntryState.DUPLICATE, STARTUP_S, "two_beats")
    assert "two beats" in dup.reason


def test_a_worker_killed_mid_run_is_overrun_then_ok_after_the_next_run(
        own_redis: RedisServer, procs: list[Proc], tmp_path: Path) -> None:
    env = _env(own_redis.url)
    client = own_redis.client()
    worker = _worker(env, tmp_path, "first")
    procs += [_beat(env, tmp_path), worker]
    _reaches(client, "sleeps too long", EntryState.RUNNING, STARTUP_S)
    worker.stop(signal.SIGKILL)
    lost = _reaches(client, "sleeps too long", EntryState.OVERRUN, 2 + 3 * 1 + HEADROOM_S + 10,
                    "worker_lost")
    assert "first@" in lost.reason
    procs.append(_worker({**env, "ENTRIES_APP_QUICK": "1"}, tmp_path, "second"))
    # The next run is due 20 s after the killed one; on the new worker it takes 0.1 s.
    done = _reaches(client, "sleeps too long", EntryState.OK, 20 + 3 + HEADROOM_S + 10)
    assert done.record["run"]["node"].startswith("second@")
