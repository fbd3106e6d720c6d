"""A client shaped as the probe's own (it has ``execute_many``) that keeps every batch it is
sent, and the same shaped as redis-py's ``RedisCluster``.

The monitors' record of services (``tests/test_record_units.py``) and of beat entries
(``tests/test_entry_record_units.py``) both assert on the exact calls sent in each round
trip and on the cluster path, so they share one recorder rather than two copies that could
drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import fakeredis


class Recording:
    """A client with ``execute_many``, as the probe's own client has: keeps every batch
    sent, and answers it through fakeredis, or through ``answer`` (one command at a time)."""

    def __init__(self, server: fakeredis.FakeRedis | None = None,
                 answer: Callable[[tuple[Any, ...]], Any] | None = None) -> None:
        self.server = server if server is not None else fakeredis.FakeRedis()
        self.answer = answer
        self.batches: list[list[tuple[Any, ...]]] = []

    def execute_many(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        self.batches.append([tuple(c) for c in commands])
        if self.answer is not None:
            return [self.answer(tuple(c)) for c in commands]
        pipe = self.server.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(pipe.execute(raise_on_error=False))


class RecordingCluster(Recording):
    """The same, shaped as redis-py's ``RedisCluster`` (it has a ``nodes_manager``)."""

    nodes_manager = None
