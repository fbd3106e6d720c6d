"""PetSage heartbeat: a Celery beat schedule publishes a health payload to Redis; readers judge it.

The public API is the reader and the check registry; importing it does not import Celery.
The Celery app lives in ``worker.celery`` (``celery -A worker ...`` finds it there).
Names are imported on first use, so that ``petsage-heartbeat check``, which imports this
package, pays only for what it uses.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from worker.core.version import __version__

if TYPE_CHECKING:
    from worker.core.errors import ConfigError, HeartbeatError, PayloadTooLargeError
    from worker.core.names import Keys
    from worker.core.payload import Payload
    from worker.core.settings import Settings
    from worker.core.states import Diagnosis, State, Thresholds
    from worker.publish.health_checks import check, register_check
    from worker.publish.install import install_heartbeat
    from worker.read.reader import HeartbeatReport, read_heartbeat

_EXPORTS = {
    "check": "worker.publish.health_checks",
    "register_check": "worker.publish.health_checks",
    "install_heartbeat": "worker.publish.install",
    "ConfigError": "worker.core.errors",
    "HeartbeatError": "worker.core.errors",
    "PayloadTooLargeError": "worker.core.errors",
    "Keys": "worker.core.names",
    "Payload": "worker.core.payload",
    "HeartbeatReport": "worker.read.reader",
    "read_heartbeat": "worker.read.reader",
    "Settings": "worker.core.settings",
    "Diagnosis": "worker.core.states",
    "State": "worker.core.states",
    "Thresholds": "worker.core.states",
}

__all__ = [
    "ConfigError",
    "Diagnosis",
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
    "install_heartbeat",
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
