"""States at and beside every threshold, judged from crafted replies (no I/O, exact clock)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from worker.core.payload import DEFAULT_MESSAGE
from worker.core.states import FUTURE_TOLERANCE_MS, State, Thresholds, state_for
from worker.read.reader import HeartbeatReport, judge_value

NOW_MS = 1_800_000_000_000


def payload(ts_ms: int = NOW_MS, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "seq": 7, "ts_ms": ts_ms, "timestamp": "2027-01-15T08:00:00.000+00:00", "schema": 1,
        "service": "petsage", "status": "ok", "message": DEFAULT_MESSAGE, "interval_s": 10,
        "stale_after_s": 30, "checks": {"redis": {"status": "ok", "latency_ms": 0.2}},
    }
    data.update(changes)
    return data


def replies(value: Any, now_ms: int = NOW_MS, kind: str = "string") -> list[Any]:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return [now_ms, kind.encode(), len(raw), raw[:16384]]


def judge(service: str, r: list[Any], **thresholds: float) -> HeartbeatReport:
    """The reader's verdict on crafted replies, at an exact Redis clock reading."""
    return judge_value(service, r[0], r[1], r[2], r[3], **thresholds)


@pytest.mark.parametrize(
    ("age_ms", "state"),
    [
        (0, State.FRESH), (14_999, State.FRESH), (15_000, State.FRESH), (15_001, State.LATE),
        (29_999, State.LATE), (30_000, State.LATE), (30_001, State.STALE), (10**9, State.STALE),
    ],
)
def test_state_exactly_at_and_beside_each_threshold(age_ms: int, state: State) -> None:
    report = judge("petsage", replies(payload(NOW_MS - age_ms)))
    assert report.state is state
    assert report.age_s == age_ms / 1000
    assert report.thresholds == Thresholds(15, 30)


def test_thresholds_come_from_the_payload_unless_overridden() -> None:
    p = payload(NOW_MS - 2_000, interval_s=1, stale_after_s=5)
    assert judge("petsage", replies(p)).state is State.LATE  # late after 1.5 s
    assert judge("petsage", replies(p), late_after_s=2).state is State.FRESH
    assert judge("petsage", replies(p), stale_after_s=1.9).state is State.STALE
    report = judge("petsage", replies(p), late_after_s=9, stale_after_s=3)
    assert report.thresholds == Thresholds(3, 3)  # late never above stale


def test_status_degraded_is_late_and_error_is_stale_even_when_new() -> None:
    degraded = payload(status="degraded",
                       checks={"db": {"status": "degraded", "latency_ms": 1.0}})
    report = judge("petsage", replies(degraded))
    assert report.state is State.LATE and "db" in report.reason
    assert judge("petsage", replies(payload(status="error"))).state is State.STALE


def test_missing_and_wrong_type() -> None:
    assert judge("petsage", replies(b"", kind="none")).state is State.MISSING
    report = judge("petsage", replies(b"", kind="hash"))
    assert report.state is State.INVALID and "hash" in report.reason


def test_future_timestamps_within_tolerance_read_as_now_beyond_as_invalid() -> None:
    assert judge("petsage", replies(payload(NOW_MS + FUTURE_TOLERANCE_MS))).age_s == 0
    ahead = payload(NOW_MS + FUTURE_TOLERANCE_MS + 1)
    assert judge("petsage", replies(ahead)).state is State.INVALID


@pytest.mark.parametrize(
    "value",
    [
        b"\xff\xfe", b"not json", b"[1,2]", b"null", b'{"seq": NaN}',
        json.dumps(payload(seq="7")).encode(), json.dumps(payload(ts_ms=1e308)).encode(),
        json.dumps(payload(ts_ms=-5)).encode(), json.dumps(payload(status="fine")).encode(),
        json.dumps(payload(service="other")).encode(), json.dumps(payload(schema=2)).encode(),
        json.dumps(payload(interval_s=True)).encode(),
        json.dumps({k: v for k, v in payload().items() if k != "ts_ms"}).encode(),
    ],
)
def test_unreadable_values_are_invalid(value: bytes) -> None:
    report = judge("petsage", replies(value))
    assert report.state is State.INVALID and report.reason


def test_oversized_values_are_invalid_without_reading_them() -> None:
    r = replies(payload())
    r[2] = 10 * 1024 * 1024
    assert judge("petsage", r).state is State.INVALID


def test_error_replies_are_invalid_never_raised() -> None:
    r = replies(payload())
    assert judge("petsage", [*r[:3], redis.ResponseError("WRONGTYPE")]).state is State.INVALID


def test_exit_and_http_codes() -> None:
    assert [s.exit_code for s in State] == [0, 1, 2, 2, 3, 3]
    assert [s.http_status for s in State] == [200, 200, 503, 503, 503, 503]
    assert state_for(0, "ok", Thresholds(1, 2)) is State.FRESH


def test_the_one_threshold_rule_with_and_without_given_thresholds() -> None:
    assert Thresholds.for_interval(10) == Thresholds(15, 30)
    assert Thresholds.for_interval(10, stale_after_s=20) == Thresholds(15, 20)
    assert Thresholds.for_interval(10, late_after_s=5) == Thresholds(5, 30)
    assert Thresholds.for_interval(10, stale_after_s=12, late_after_s=20) == Thresholds(12, 12)
    assert Thresholds(15, 30).overridden() == Thresholds(15, 30)
    assert Thresholds(15, 30).overridden(late_after_s=40) == Thresholds(30, 30)
    assert Thresholds(15, 30).overridden(stale_after_s=10) == Thresholds(10, 10)
