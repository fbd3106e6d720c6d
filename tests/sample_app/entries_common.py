"""What the sample apps with beat entries share (``entries_app``, ``entries_redbeat_app``,
``entries_django_app``): their Celery settings and their ``noop`` task."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported by the Django app after ``django.setup()``: no Celery here
    from celery import Celery
    from celery.app.task import Task

SETTINGS: dict[str, Any] = {
    "task_serializer": "json",
    "accept_content": ["json"],
    "worker_prefetch_multiplier": 1,
    "task_ignore_result": True,
    "beat_max_loop_interval": 1,  # beat looks at its schedule every second
}
"""The apps' common Celery settings (``app.conf.update(**SETTINGS, ...)``)."""


def add_noop(app: Celery) -> Task:
    """The app's task ``<app's main name>.noop``: does nothing, successfully."""

    @app.task(name=f"{app.main}.noop")
    def noop() -> None:
        """Does nothing, successfully."""

    return noop
