"""A user's Celery app whose beat runs django-celery-beat's ``DatabaseScheduler``: the
schedule in ``PeriodicTask`` rows (SQLite, ``entries_django_settings``).

| entry | schedule | expected |
|---|---|---|
| ``every second`` | every 1 s | ``ok`` |
| ``to be removed`` | every 1 s | ``ok``, then ``removed`` once the test deletes its row |
| ``daily, hours away`` | crontab, once a day 12 hours from the app's start | ``pending`` |

The test creates a ``PeriodicTask`` row ``added at run time`` (every 1 s) while beat runs,
which bumps ``PeriodicTasks.changed``. The scheduler's ``schedule`` leaves out crontab rows
whose hour is more than two hours away: the daily one must stay watched all the same.

Beat: ``celery -A entries_django_app beat -S django_celery_beat.schedulers:DatabaseScheduler``.
``ENTRIES_DJANGO_DB`` names the SQLite file (migrated first); the broker comes from
``PETSAGE_APP_BROKER``, the heartbeat's settings from ``HEARTBEAT_*``.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "entries_django_settings")
django.setup()

from celery import Celery  # noqa: E402 - Django first, as django-celery-beat needs
from celery.schedules import crontab  # noqa: E402
from entries_common import SETTINGS, add_noop  # noqa: E402

from worker.publish.install import install_heartbeat  # noqa: E402

BROKER = os.environ["PETSAGE_APP_BROKER"]
HOURS_AWAY = (datetime.now(UTC).hour + 12) % 24

app = Celery("entries_django_app", broker=BROKER)
app.conf.update(
    **SETTINGS,
    beat_schedule={
        "every second": {"task": "entries_django_app.noop", "schedule": 1.0},
        "to be removed": {"task": "entries_django_app.noop", "schedule": 1.0},
        "daily, hours away": {"task": "entries_django_app.noop",
                              "schedule": crontab(minute=0, hour=HOURS_AWAY)},
    },
)

noop = add_noop(app)


def add_and_remove() -> None:
    """While beat runs: a row ``added at run time`` (every 1 s), ``to be removed`` deleted,
    each through the ORM, which bumps ``PeriodicTasks.changed`` as the admin does."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    every, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="added at run time", task="entries_django_app.noop",
                                interval=every)
    PeriodicTask.objects.get(name="to be removed").delete()


install_heartbeat(app)
