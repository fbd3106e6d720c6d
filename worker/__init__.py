"""PetSage heartbeat: a Celery beat schedule publishes a health payload to Redis; readers judge it.

The public API is the reader and the check registry; importing it does not import Celery.
The Celery app lives in ``worker.celery`` (``celery -A worker ...`` finds it there).
"""

from __future__ import annotations

from worker.checks import check, register_check
from worker.errors import ConfigError, HeartbeatError, PayloadTooLargeError
from worker.keys import Keys
from worker.payload import Payload
from worker.reader import HeartbeatReport, read_heartbeat
from worker.settings import Settings
from worker.states import State, Thresholds
from worker.version import __version__

__all__ = [
    "ConfigError",
    "HeartbeatError",
    "HeartbeatReport",
    "Keys",
    "Payload",
    "PayloadTooLargeError",
    "Settings",
    "State",
    "Thresholds",
    "__version__",
    "check",
    "read_heartbeat",
    "register_check",
]
