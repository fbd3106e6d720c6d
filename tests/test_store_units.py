"""The write, exactly: the stored bytes, each history entry's fields, the size limit to the
byte, the refusals, and the fleet index on a cluster (written apart, only ever forward).

fakeredis runs the real ``publish.lua``; the real-server tests show the same on Redis.
"""

from __future__ import annotations

import json
from typing import Any

import fakeredis
import pytest

from worker.core.errors import PayloadTooLargeError
from worker.core.names import Keys
from worker.core.payload import MAX_PAYLOAD_BYTES
from worker.publish.store import STAMP_RESERVE_BYTES, HeartbeatStore, encode_body

KEYS = Keys()


class _ClusterShaped(fakeredis.FakeRedis):
    """A client with a cluster client's shape: the store then writes the index apart."""

    nodes_manager = None


def _store(client: fakeredis.FakeRedis) -> HeartbeatStore:
    return HeartbeatStore(client, KEYS, retention_s=60, history_len=10)


def _history(client: fakeredis.FakeRedis, service: str = "svc") -> dict[bytes, bytes]:
    entries: Any = client.xrange(KEYS.history(service))
    ((_, fields),) = entries
    return dict(fields)


def test_the_stored_value_is_the_stamp_then_the_compact_body() -> None:
    client = fakeredis.FakeRedis()
    result = _store(client).publish("svc", {"status": "ok", "message": "café ✓", "n": 1.5})
    stored: Any = client.get(KEYS.latest("svc"))
    assert isinstance(stored, bytes)
    stamp = json.loads(stored)
    assert stored.decode().endswith('"status":"ok","message":"café ✓","n":1.5}')
    assert stored.startswith(f'{{"seq":1,"ts_ms":{result.ts_ms},"timestamp":"'.encode())
    assert (stamp["seq"], result.seq, result.accepted) == (1, 1, True)


def test_each_history_entry_carries_status_lag_duration_and_depth() -> None:
    client = fakeredis.FakeRedis()
    result = _store(client).publish("svc", {"status": "degraded", "queue_lag_ms": 12.34567,
                                            "duration_ms": 2.5, "backlog": {"depth": 3}})
    assert _history(client) == {b"ts_ms": str(result.ts_ms).encode(), b"seq": b"1",
                                b"status": b"degraded", b"lag_ms": b"12.346",
                                b"duration_ms": b"2.500", b"queue_depth": b"3"}


def test_unknown_fields_in_the_history_are_empty_and_a_missing_status_is_ok() -> None:
    client = fakeredis.FakeRedis()
    _store(client).publish("svc", {"message": "m", "backlog": None})
    fields = _history(client)
    assert (fields[b"status"], fields[b"lag_ms"], fields[b"duration_ms"],
            fields[b"queue_depth"]) == (b"ok", b"", b"0.000", b"")


def test_the_size_limit_to_the_byte() -> None:
    limit = MAX_PAYLOAD_BYTES - STAMP_RESERVE_BYTES
    body: dict[str, Any] = {"message": ""}
    body["message"] = "x" * (limit - len(encode_body(body)))
    assert len(encode_body(body).encode()) == limit
    body["message"] += "x"
    with pytest.raises(PayloadTooLargeError) as info:
        encode_body(body)
    assert str(info.value) == (f"heartbeat payload is {limit + 1} bytes; the limit is {limit} "
                               "(trim check messages)")


def test_refused_bodies() -> None:
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        encode_body({"duration_ms": float("nan")})
    with pytest.raises(ValueError) as info:
        _store(fakeredis.FakeRedis()).publish("svc", {})
    assert str(info.value) == "a heartbeat body needs at least one field"


def test_the_index_is_written_by_the_script_or_apart_on_a_cluster() -> None:
    plain = fakeredis.FakeRedis()
    result = _store(plain).publish("svc", {"status": "ok"})
    assert plain.zscore(KEYS.index, "svc") == result.ts_ms
    cluster = _ClusterShaped()
    result = _store(cluster).publish("svc", {"status": "ok"})
    assert cluster.zscore(KEYS.index, "svc") == result.ts_ms
    # Apart, the index only moves forward: a later entry is never lowered.
    cluster.zadd(KEYS.index, {"svc": result.ts_ms + 10_000})
    _store(cluster).publish("svc", {"status": "ok"})
    assert cluster.zscore(KEYS.index, "svc") == result.ts_ms + 10_000
