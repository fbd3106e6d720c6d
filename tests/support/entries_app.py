"""The sample apps with beat entries on real processes: ``tests/sample_app/entries_app.py``
(six entries, Celery's own scheduler), ``entries_redbeat_app.py`` and
``entries_django_app.py``. Their environment, ``celery beat`` and ``celery worker`` of
them, and the entries the heartbeat records for service ``petsage``, read back.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import redis

from tests.support.helpers import REPO, Proc, heartbeat_env, wait_for
from worker.core.entries import EntryState
from worker.read.entries import EntryReport, read_entries

SAMPLE_APP = REPO / "tests" / "sample_app"
"""The folder of the sample apps, first on their processes' ``PYTHONPATH``."""

STARTUP_S = 120
"""Beat and worker up and through their first dispatches, on a busy machine (load 10 on two
cores): no promise, only a bound on how long a broken start keeps the run waiting."""

HEADROOM_S = 20.0
"""Added to each promise (grace plus one period) for a busy machine, where every hop from
beat to broker to worker to store to reader waits its turn for a core."""

SIX = frozenset({"every second", "weekdays by name", "raises", "retries twice",
                 "sleeps too long", "nobody consumes"})
"""The names of the six entries of ``entries_app.py``."""


def app_env(url: str, **extra: str) -> dict[str, str]:
    """Environment of a sample app's processes: broker and heartbeat store from the app's own
    config (``PETSAGE_APP_BROKER``), a 1 s heartbeat interval, the sample apps importable;
    ``extra`` added or overriding."""
    env = heartbeat_env(url, **{"PETSAGE_APP_BROKER": url, "HEARTBEAT_INTERVAL_S": "1",
                                **extra})
    del env["CELERY_BROKER_URL"], env["HEARTBEAT_REDIS_URL"]  # from the app's own config
    env["PYTHONPATH"] = os.pathsep.join([str(SAMPLE_APP), str(REPO)])
    return env


def start_beat(env: dict[str, str], cwd: Path, name: str = "beat", *, app: str = "entries_app",
         scheduler: str | None = None) -> Proc:
    """``celery beat`` of ``app``, its schedule file ``NAME-schedule`` in ``cwd``; with
    ``scheduler``, run with ``-S scheduler``."""
    chosen = ["-S", scheduler] if scheduler else []
    argv = [sys.executable, "-m", "celery", "-A", app, "beat", "--loglevel", "INFO", *chosen,
            "--schedule", str(cwd / f"{name}-schedule")]
    return Proc(argv, env, cwd, name)


def start_worker(env: dict[str, str], cwd: Path, name: str = "worker", *, app: str = "entries_app",
           concurrency: int = 3) -> Proc:
    """``celery worker`` of ``app``, node ``NAME@host``: its own queue and the heartbeat's,
    ``concurrency`` processes (``entries_app``'s three: one sleeps)."""
    argv = [sys.executable, "-m", "celery", "-A", app, "worker", "--loglevel", "INFO",
            "-Q", "celery,heartbeat.petsage", "--concurrency", str(concurrency),
            "--without-mingle", "--without-gossip", "--hostname", f"{name}@%h"]
    return Proc(argv, env, cwd, name)


def entries(client: redis.Redis) -> dict[str, EntryReport]:
    """Service ``petsage``'s entries by name, read as the CLI reads them (read without error)."""
    report = read_entries(client, "petsage")
    assert report.error is None, report.error
    return {entry.name: entry for entry in report.entries}


def reaches(client: redis.Redis, name: str, state: EntryState, timeout_s: float,
            diagnosis: str | None = None) -> EntryReport:
    """Wait up to ``timeout_s`` for entry ``name`` to read ``state`` (and ``diagnosis`` when
    given); the entry then."""
    def there() -> EntryReport | None:
        entry = entries(client).get(name)
        if entry is not None and entry.state is state and (
                diagnosis is None or entry.diagnosis == diagnosis):
            return entry
        return None

    what = f"{name!r} {state.value}" + ("" if diagnosis is None else f" ({diagnosis})")
    found: EntryReport = wait_for(there, timeout_s, interval_s=0.1, what=what)
    return found
