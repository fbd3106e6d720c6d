"""A dict-based store that answers the entries' readers on a fixed Redis clock, and the
records of a run that succeeded and one that failed: the in-process tests of the entries'
commands share them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from worker.core.names import Keys

KEYS = Keys()
NOW_MS = 1_700_000_000_000
URL = "redis://store.invalid:6379/0"


class DictStore:
    """The commands the entries' readers send, answered from dicts on a fixed clock."""

    def __init__(self, now_ms: int = NOW_MS) -> None:
        self.now_ms = now_ms
        self.entries: dict[str, dict[str, Any]] = {}  # service -> name -> record
        self.markers: dict[str, dict[str, Any]] = {}
        self.silences: dict[str, dict[str, Any]] = {}  # service -> name -> stored silence
        self.down: str | None = None  # an error message: every call raises it
        self.round_trips = 0

    def put(self, service: str, name: str, **record: Any) -> None:
        base = {"task": "reports.export", "schedule": "every 10s", "kind": "interval",
                "queue": "celery", "grace_s": 5, "period_s": 10,
                "next_due_ms": self.now_ms + 4200}
        self.entries.setdefault(service, {})[name] = {**base, **record}
        self.markers.setdefault(service, {"published_at_ms": self.now_ms - 500,
                                          "interval_s": 1})

    def execute_many(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        if self.down is not None:
            raise ConnectionError(self.down)
        self.round_trips += 1
        return [self._answer(c) for c in commands]

    def _answer(self, command: tuple[Any, ...]) -> Any:
        verb, key = command[0], command[1] if len(command) > 1 else None
        services = sorted(self.entries)
        if verb == "TIME":
            return [str(self.now_ms // 1000), str(self.now_ms % 1000 * 1000)]
        if verb == "ZCARD":
            return len(services)
        if verb == "ZRANGE":
            return [s.encode() for s in services[command[2]:command[3] + 1]]
        for service in services:
            if verb == "HGETALL" and key == KEYS.entries(service):
                return {n.encode(): json.dumps(r).encode()
                        for n, r in self.entries[service].items()}
            if verb == "EVAL" and command[3] == KEYS.entry_silence(service):
                # The bounded read of the entries' silences: a flat list of names, values.
                return [x for n, v in self.silences.get(service, {}).items()
                        for x in (n.encode(), json.dumps(v).encode())]
            if verb == "GETRANGE" and key == KEYS.beat(service):
                return json.dumps(self.markers[service]).encode()
        return [] if verb == "ZREVRANGE" else {} if verb == "HGETALL" else b""

    def close(self) -> None:
        pass


def succeeded(store: DictStore, ago_ms: int = 3100) -> dict[str, Any]:
    done = store.now_ms - ago_ms
    return {"last_success_ms": done, "last_duration_ms": 1200, "last_queue_wait_ms": 4,
            "last_outcome": "succeeded",
            "run": {"id": "r1", "dispatched_ms": done - 1300, "started_ms": done - 1200,
                    "finished_ms": done, "outcome": "succeeded"}}


def failed(store: DictStore, error: str = "could not connect to server") -> dict[str, Any]:
    done = store.now_ms - 41_200
    return {"run": {"id": "r2", "dispatched_ms": done - 200, "started_ms": done - 100,
                    "finished_ms": done, "outcome": "failed",
                    "error_type": "OperationalError", "error": error}}
