"""PetSage heartbeat: a Celery beat schedule publishes a health payload to Redis; readers judge it.

The public API is the reader and the check registry; importing it does not import Celery.
The Celery app lives in ``worker.celery`` (``celery -A worker ...`` finds it there).
Names are imported on first use, so that ``petsage-heartbeat check``, which imports this
package, pays only for what it uses.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from worker.version import __version__

if TYPE_CHECKING:
    from worker.checks import check, register_check
    from worker.errors import ConfigError, HeartbeatError, PayloadTooLargeError
    from worker.keys import Keys
    from worker.payload import Payload
    from worker.reader import HeartbeatReport, read_heartbeat
    from worker.settings import Settings
    from worker.states import State, Thresholds

_EXPORTS = {
    "check": "worker.checks",
    "register_check": "worker.checks",
    "ConfigError": "worker.errors",
    "HeartbeatError": "worker.errors",
    "PayloadTooLargeError": "worker.errors",
    "Keys": "worker.keys",
    "Payload": "worker.payload",
    "HeartbeatReport": "worker.reader",
    "read_heartbeat": "worker.reader",
    "Settings": "worker.settings",
    "State": "worker.states",
    "Thresholds": "worker.states",
}

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


def __getattr__(name: str) -> Any:
    """Import an exported name on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'worker' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
