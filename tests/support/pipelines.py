"""fakeredis that records how each pipeline is asked for.

The heartbeat queue's backlog (``tests/test_backlog_units.py``) and beat's bound on it
(``tests/test_queue_bound_units.py``) read and trim the same kombu priority lists, and both
pin whether their commands go in a transaction; one recorder keeps that check the same in
both.
"""

from __future__ import annotations

from typing import Any

import fakeredis


class Pipelines(fakeredis.FakeRedis):
    """fakeredis that records how each pipeline is asked for."""

    asked: list[dict[str, Any]]

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        self.asked.append({"transaction": transaction, "shard_hint": shard_hint})
        return super().pipeline(transaction=transaction, shard_hint=shard_hint)


def fresh_pipelines() -> Pipelines:
    """A new server with nothing asked yet (a fixture's whole body)."""
    fake = Pipelines()
    fake.asked = []
    return fake
