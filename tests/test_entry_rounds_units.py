"""Which services the monitor asks about their entries each round (``EntryRounds.watched``)."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest

from worker.core.names import Keys, summary_shard
from worker.observe import entry_record as module
from worker.observe.entry_record import EntryRounds

KEYS = Keys()


def test_the_known_and_the_new_each_round_the_rest_in_their_slice(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(module, "EXISTS_SLICES", 3)
    client = fakeredis.FakeRedis()
    asked: list[list[str]] = []
    real = module.services_with_entries

    def recording(client: Any, keys: Keys, services: list[str]) -> list[str]:
        asked.append(list(services))
        return real(client, keys, services)

    monkeypatch.setattr(module, "services_with_entries", recording)
    names = [f"s{i}" for i in range(12)]
    client.hset(KEYS.entries("s1"), "e", "{}")
    rounds = EntryRounds(client, KEYS, monitor_id="m", incidents_len=10, ttl_ms=1000)
    assert rounds.watched(names) == ["s1"]
    assert asked[-1] == names  # the first round asks every service
    client.hset(KEYS.entries("s2"), "e", "{}")
    found_at = None
    for turn in range(1, 4):
        known = {"s1"} if found_at is None else {"s1", "s2"}
        watched = rounds.watched(names)
        assert asked[-1] == [n for n in names if n in known or summary_shard(n) % 3 == turn % 3]
        if "s2" in watched and found_at is None:
            found_at = turn
    assert found_at is not None  # within EXISTS_SLICES rounds
    client.delete(KEYS.entries("s1"))
    assert "s1" not in rounds.watched(names)  # a known one is asked every round
    assert rounds.watched([*names, "new"]) == ["s2"] and "new" in asked[-1]
