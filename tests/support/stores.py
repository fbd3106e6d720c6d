"""A store on the test settings, and a skewed clock for one component."""

from __future__ import annotations

import time
from typing import Any

import redis

from worker.core.settings import Settings
from worker.publish.store import HeartbeatStore

SETTINGS = Settings.from_env({"HEARTBEAT_INTERVAL_S": "10", "HEARTBEAT_HISTORY_LEN": "50"})
KEYS = SETTINGS.keys


def make_store(client: redis.Redis, history_len: int = 50) -> HeartbeatStore:
    return HeartbeatStore(client, KEYS, retention_s=SETTINGS.retention_s, history_len=history_len)


class SkewedClock:
    """Stands in for the ``time`` module of one component, with its wall clock off."""

    def __init__(self, offset_s: float) -> None:
        self.offset_s = offset_s

    def time(self) -> float:
        return time.time() + self.offset_s

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)
