"""The standalone Celery app: ``celery -A worker beat`` and ``celery -A worker worker``.

Workers consume the service's own queue: ``-Q heartbeat.petsage`` (``heartbeat.{service}``,
or ``HEARTBEAT_QUEUE``). Importing ``worker`` alone does not import this module (nor
Celery): Celery finds it as ``worker.celery`` when given ``-A worker``.
"""

from __future__ import annotations

from celery import Celery

import celeryconfig
from worker.core.errors import ConfigError
from worker.core.exits import fail
from worker.publish.install import install_heartbeat

app = Celery("worker")
app.config_from_object(celeryconfig)
try:
    install_heartbeat(app, celeryconfig._heartbeat_settings)
except ConfigError as exc:  # e.g. an unloadable HEARTBEAT_CHECKS entry: one line, exit 2
    raise SystemExit(fail(None, str(exc))) from None

__all__ = ["app"]
