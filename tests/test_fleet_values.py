"""What a fleet read keeps of each payload, and the small-value cache that keeps it cheap.

A fleet read slims every payload to the fields fleet views show and shares equal small
values (a message, an empty backlog) between payloads. Both are memory savings that must
never change a value: each test here reads back exactly what was stored.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from worker.core.states import State
from worker.read import reader
from worker.read.reader import judge_values

NOW_MS = 1_800_000_000_000


@pytest.fixture(autouse=True)
def _empty_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with an empty cache, whatever ran before it in this process."""
    monkeypatch.setattr(reader, "_SHARED", {})


def _payload(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "schema": 1, "service": "svc", "status": "ok", "message": "all checks passed",
        "seq": 9, "ts_ms": NOW_MS - 1000, "timestamp": "2027-01-15T08:00:00.000+00:00",
        "interval_s": 10, "stale_after_s": 30, "queue_lag_ms": 4, "duration_ms": 2.5,
        "clock_offset_ms": -3, "backlog": {"depth": 0}, "checks": {"db": {"status": "ok"}},
        "worker": {"node": "hb@pod-1", "pid": 7, "hostname": "pod-1"}, "extra": "x" * 100,
    }
    data.update(over)
    return data


def _read(data: dict[str, Any], service: str = "svc") -> Any:
    (report,) = judge_values([service], NOW_MS, [json.dumps(data).encode()], [None],
                             (None, None))
    return report


def test_a_fleet_report_keeps_the_fields_fleet_views_show() -> None:
    report = _read(_payload())
    assert report.state is State.FRESH
    assert report.payload == {
        "status": "ok", "message": "all checks passed", "seq": 9, "ts_ms": NOW_MS - 1000,
        "timestamp": "2027-01-15T08:00:00.000+00:00", "interval_s": 10, "stale_after_s": 30,
        "queue_lag_ms": 4, "duration_ms": 2.5, "clock_offset_ms": -3,
        "backlog": {"depth": 0}, "worker": {"node": "hb@pod-1"}}


def test_a_failing_status_keeps_its_checks_and_a_missing_backlog_stays_missing() -> None:
    checks = {"db": {"status": "error", "detail": "refused"}}
    data = _payload(status="error", checks=checks, message="db: refused", worker="pod-1")
    del data["backlog"]
    payload = _read(data).payload
    assert payload["checks"] == checks
    assert payload["message"] == "db: refused"
    assert "backlog" not in payload and "worker" not in payload


def test_a_str_value_row_reads_like_bytes() -> None:
    (report,) = judge_values(["svc"], NOW_MS, [json.dumps(_payload())], [None], (None, None))
    assert report.payload is not None
    assert report.payload["message"] == "all checks passed"


def test_equal_messages_are_shared_and_different_ones_kept_apart() -> None:
    first = _read(_payload(message="".join(["dis", "tinct one"]))).payload
    second = _read(_payload(message="".join(["distinct ", "one"]))).payload
    third = _read(_payload(message="another")).payload
    assert first["message"] is second["message"]
    assert third["message"] == "another"
    assert _read(_payload(message="distinct one")).payload["message"] == "distinct one"


@pytest.mark.parametrize("values", [
    ["a", "b", "a", "c"],
    [{"depth": 0}, {"depth": 1}, {"depth": 0, "oldest_ms": None}],
    [{"k": {"nested": 1}}, {"k": {"nested": 2}}],  # nested: never shared, never confused
    [{"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}, {"a": 1, "b": 2, "c": 3, "d": 4, "e": 6}],
    [7, 7.5, None, True, [1, 2]],
    # Equal in Python, not in JSON: each comes back as itself.
    [{"d": 0}, {"d": False}, {"d": 0.0}, {"d": 0}, {"d": 12.0}, {"d": 12}],
])
def test_sharing_never_changes_a_value(values: list[Any]) -> None:
    for value in values:
        assert json.dumps(reader._shared(value)) == json.dumps(value)
        assert type(reader._shared(value)) is type(value)


def test_equal_flat_dicts_are_shared() -> None:
    one = reader._shared({"depth": 0, "oldest_ms": 12})
    other = reader._shared({"depth": 0, "oldest_ms": 12})
    assert other is one
    big = {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}
    assert reader._shared(dict(big)) is not reader._shared(dict(big))  # five: not kept
    four = {"a": 1, "b": 2, "c": 3, "d": 4}
    assert reader._shared(dict(four)) is reader._shared(dict(four))


def test_the_cache_holds_4096_values_at_most() -> None:
    for i in range(5000):
        assert reader._shared(f"message {i}") == f"message {i}"
    assert len(reader._SHARED) == 4096
    assert reader._shared("never seen") == "never seen"
    assert ("never seen",) not in reader._SHARED  # full: returned, not kept
    assert len(reader._SHARED) == 4096


def test_an_equal_value_seen_before_the_last_is_still_shared() -> None:
    first = reader._shared("".join(["x", "1"]))
    reader._shared("y")
    assert reader._shared("".join(["x", "1"])) is first


def test_equal_backlogs_are_shared_between_payloads() -> None:
    one = _read(_payload(backlog={"depth": 3})).payload
    two = _read(_payload(backlog={"depth": 3})).payload
    assert one["backlog"] is two["backlog"] and one["backlog"] == {"depth": 3}
