"""A user's Celery app whose beat runs RedBeat (``celery-redbeat``): the schedule in Redis.

| entry | schedule | expected |
|---|---|---|
| ``every second`` | every 1 s | ``ok`` |
| ``to be removed`` | every 1 s | ``ok``, then ``removed`` once the test deletes it from Redis |
| ``daily, hours away`` | crontab, once a day 12 hours from the app's start | ``pending`` |

The test adds ``added at run time`` (every 1 s) with ``RedBeatSchedulerEntry(...).save()``
while beat runs. RedBeat's ``schedule`` holds only the entries due now: the daily one is in
it only at its due time, yet it must stay watched, never ``removed``.

Beat: ``celery -A entries_redbeat_app beat -S redbeat.RedBeatScheduler``. The broker and
RedBeat's Redis come from ``PETSAGE_APP_BROKER``; the heartbeat's settings from
``HEARTBEAT_*``.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from celery import Celery
from celery.schedules import crontab
from entries_common import SETTINGS, add_noop

from worker.publish.install import install_heartbeat

BROKER = os.environ["PETSAGE_APP_BROKER"]
HOURS_AWAY = (datetime.now(UTC).hour + 12) % 24

app = Celery("entries_redbeat_app", broker=BROKER)
app.conf.update(
    **SETTINGS,
    redbeat_redis_url=BROKER,
    beat_schedule={
        "every second": {"task": "entries_redbeat_app.noop", "schedule": 1.0},
        "to be removed": {"task": "entries_redbeat_app.noop", "schedule": 1.0},
        "daily, hours away": {"task": "entries_redbeat_app.noop",
                              "schedule": crontab(minute=0, hour=HOURS_AWAY)},
    },
)

noop = add_noop(app)


install_heartbeat(app)
