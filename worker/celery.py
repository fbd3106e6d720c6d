"""The Celery app: ``celery -A worker beat`` and ``celery -A worker worker -Q heartbeat``.

Importing ``worker`` alone does not import this module (nor Celery): Celery finds it as
``worker.celery`` when given ``-A worker``.
"""

from __future__ import annotations

from celery import Celery

app = Celery("worker", include=["worker.tasks"])
app.config_from_object("celeryconfig")

__all__ = ["app"]
