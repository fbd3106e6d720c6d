"""A user's Celery app with six beat entries, each of which the watch must judge:

| entry | schedule | what it does | expected |
|---|---|---|---|
| ``every second`` | every 1 s | nothing | ``ok`` |
| ``weekdays by name`` | crontab every minute, ``day_of_week`` by names | nothing | ``ok`` |
| ``raises`` | every 2 s (``PETSAGE_RAISES_EVERY_S``) | raises ``ValueError`` | ``failed`` |
| ``retries twice`` | every 10 s | retries twice, then succeeds | ``retrying``, then ``ok`` |
| ``sleeps too long`` | every 20 s | sleeps 30 s; max runtime 2 s | ``overrun`` |
| ``nobody consumes`` | every 1 s | routed to queue ``nobody`` | ``not_started`` |

Its worker runs ``-Q celery,heartbeat.petsage -c 3``. The broker comes from
``PETSAGE_APP_BROKER``; the heartbeat's settings from ``HEARTBEAT_*``. A test that must
see ``raises`` pending before it first fails sets a longer period in
``PETSAGE_RAISES_EVERY_S`` (Celery runs a new interval entry one period after beat starts).
Celery's default ``PersistentScheduler`` keeps its schedule file in the working directory.
"""

from __future__ import annotations

import os
import time

from celery import Celery
from celery.schedules import crontab
from entries_common import SETTINGS, add_noop

from worker.publish.install import install_heartbeat

BROKER = os.environ["PETSAGE_APP_BROKER"]
FAST = {"heartbeat": {"grace_s": 2}}
RAISES_EVERY_S = float(os.environ.get("PETSAGE_RAISES_EVERY_S", "2"))

app = Celery("entries_app", broker=BROKER)
app.conf.update(
    **SETTINGS,
    beat_schedule={
        "every second": {"task": "entries_app.noop", "schedule": 1.0, "options": FAST},
        "weekdays by name": {
            "task": "entries_app.noop",
            "schedule": crontab(minute="*", day_of_week="mon,tue,wed,thu,fri,sat,sun"),
            "options": {"heartbeat": {"grace_s": 5}}},
        "raises": {"task": "entries_app.raises", "schedule": RAISES_EVERY_S, "options": FAST},
        "retries twice": {"task": "entries_app.retries", "schedule": 10.0,
                          "options": {"heartbeat": {"grace_s": 3}}},
        "sleeps too long": {"task": "entries_app.sleeps", "schedule": 20.0,
                            "options": {"heartbeat": {"grace_s": 3, "max_runtime_s": 2}}},
        "nobody consumes": {"task": "entries_app.noop", "schedule": 1.0,
                            "options": {"queue": "nobody", **FAST}},
    },
)

noop = add_noop(app)


@app.task(name="entries_app.raises")
def raises() -> None:
    """Fails every run."""
    raise ValueError("the nightly export failed: password=hunter2 at db.example")


@app.task(name="entries_app.retries", bind=True, max_retries=3)
def retries(self: object) -> str:
    """Raises twice, retried after 1 s each time, then succeeds."""
    request = self.request  # type: ignore[attr-defined]
    if request.retries < 2:
        raise self.retry(exc=ConnectionError("upstream busy"), countdown=1)  # type: ignore[attr-defined]
    return "done"


@app.task(name="entries_app.sleeps")
def sleeps() -> None:
    """Runs for 30 s, far past its 2 s max runtime (0.1 s in a worker started with
    ``ENTRIES_APP_QUICK=1``: the one that takes over after a worker is killed mid-run)."""
    time.sleep(0.1 if os.environ.get("ENTRIES_APP_QUICK") == "1" else 30)


install_heartbeat(app)
