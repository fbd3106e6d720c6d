"""A sample of the user's own Celery app, with its own task, queue, route and schedule,
and the heartbeat installed by the documented call. Its worker runs
``-Q celery,heartbeat.petsage``. The broker comes from ``PETSAGE_APP_BROKER``.
"""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

from worker.publish.install import install_heartbeat

BROKER = os.environ["PETSAGE_APP_BROKER"]

app = Celery("petsage_app", broker=BROKER)
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_routes={"petsage_app.work": {"queue": "celery"}},
    beat_schedule={"app-own-tick": {"task": "petsage_app.tick", "schedule": 3600.0}},
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
)


@app.task(name="petsage_app.work")
def work(seconds: float, mark: str) -> None:
    """The app's own job: busy for ``seconds``, then leaves a mark in Redis."""
    time.sleep(seconds)
    redis.Redis.from_url(BROKER).set(f"petsage_app:done:{mark}", "1")


@app.task(name="petsage_app.tick")
def tick() -> None:
    """The app's own scheduled task."""


install_heartbeat(app)
