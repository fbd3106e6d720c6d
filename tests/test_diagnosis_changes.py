"""The first diagnosis is right or says it doesn't know yet, and the record follows the hop as
it becomes known.

Rule boundaries of ``beat_or_broker``, of how long a refused publish counts, of asking the
store whether it refuses writes; and the monitors' record (``record.lua``) amending an
ongoing outage's diagnosis once, with one notification of kind ``diagnosis``.
"""

from __future__ import annotations

import json
from typing import Any, cast

import fakeredis
import pytest

from worker.core.names import Keys
from worker.core.states import Diagnosis, State, Thresholds
from worker.observe.record import record
from worker.read.diagnosis import REFUSAL_NOTE_S, WRITE_SUSPECTS, diagnose, refusal_window_s
from worker.read.incidents import Transition, summarize
from worker.read.reader import HeartbeatReport
from worker.read.store_writes import oom_refusals, parse_info, refusal

NOW = 1_800_000_000_000
FAST = Thresholds(0.75, 1.5)
"""The thresholds of a 0.5 s interval."""


def _marker(age_s: float, interval_s: float = 0.5, **extra: Any) -> dict[str, Any]:
    published = NOW - round(age_s * 1000)
    return {"published_at_ms": published, "next_due_ms": published + round(interval_s * 1000),
            "seq": 9, "queue_depth": 1, "interval_s": interval_s, **extra}


def _refused(marker: dict[str, Any], age_s: float) -> dict[str, Any]:
    return {**marker, "publish_failed_at_ms": NOW - round(age_s * 1000),
            "publish_error": "OperationalError: Error 111 connecting to 127.0.0.1:6390."}


def _payload(age_s: float, interval_s: float = 0.5) -> dict[str, Any]:
    return {"status": "ok", "interval_s": interval_s, "ts_ms": NOW - round(age_s * 1000),
            "queue_lag_ms": 3.0, "duration_ms": 2.0}


def _diagnose(state: State, age_s: float | None, marker: dict[str, Any] | None,
              thresholds: Thresholds = FAST, interval_s: float = 0.5) -> tuple[Any, str]:
    payload = None if age_s is None else _payload(age_s, interval_s)
    return diagnose(state, now_ms=NOW, age_s=age_s, payload=payload, marker=marker,
                    thresholds=thresholds)


# -- beat_or_broker -------------------------------------------------------------------------

@pytest.mark.parametrize(("beat_age_s", "expected"), [
    (0.75, "no_consumer"),  # beat on time (within its late threshold)
    (0.751, "beat_or_broker"),  # late, and overdue by less than a refusal takes to be noted
    (0.5 + REFUSAL_NOTE_S, "beat_or_broker"),  # overdue by exactly that: still can't tell
    (0.5 + REFUSAL_NOTE_S + 0.001, "beat_down"),  # no note came: beat itself stopped
])
def test_an_overdue_beat_is_beat_or_broker_until_a_refusal_would_have_been_noted(
        beat_age_s: float, expected: str) -> None:
    diagnosis, why = _diagnose(State.STALE, 2.0, _marker(beat_age_s))
    assert diagnosis == expected
    if expected == "beat_or_broker":
        assert why.startswith(f"beat last published {beat_age_s:.1f}s ago, ")
        assert why.endswith(f"within the {REFUSAL_NOTE_S:g}s a refused publish takes to be "
                            "noted: beat stopped, or the broker refuses its publishes")
    assert _diagnose(State.MISSING, None, _marker(beat_age_s))[0] == expected
    assert _diagnose(State.LATE, 1.0, _marker(beat_age_s))[0] == expected


def test_at_the_default_interval_an_overdue_beat_is_never_ambiguous() -> None:
    # Late at 15 s is 5 s past due: any refusal would have been noted by then.
    assert _diagnose(State.LATE, 20, _marker(15.001, 10.0), Thresholds(15, 30), 10.0)[0] == (
        "beat_down")


def test_a_refusal_noted_long_ago_says_beat_stopped_noting_not_beat_or_broker() -> None:
    window = refusal_window_s(0.5, FAST)
    assert window == 0.5 + REFUSAL_NOTE_S  # over the stale threshold at short intervals
    marker = _refused(_marker(5.0), window + 0.001)
    assert _diagnose(State.STALE, 5.0, marker)[0] == "beat_down"


@pytest.mark.parametrize(("interval_s", "thresholds", "window_s"), [
    (0.5, FAST, 0.5 + REFUSAL_NOTE_S),  # notes come an interval + the retries apart
    (10.0, Thresholds(15, 30), 30.0),  # never less than the stale threshold
])
def test_a_refused_publish_counts_while_the_next_note_may_still_come(
        interval_s: float, thresholds: Thresholds, window_s: float) -> None:
    assert refusal_window_s(interval_s, thresholds) == window_s
    base = _marker(60.0, interval_s)
    within = _refused(base, window_s)
    assert _diagnose(State.STALE, 60.0, within, thresholds, interval_s)[0] == "broker_down"
    after = _refused(base, window_s + 0.001)
    assert _diagnose(State.STALE, 60.0, after, thresholds, interval_s)[0] == "beat_down"


def test_every_keys_only_diagnosis_but_a_failed_check_asks_whether_the_store_refuses_writes(
        ) -> None:
    assert set(Diagnosis) - WRITE_SUSPECTS == {Diagnosis.CHECK_FAILED,
                                               Diagnosis.STORE_REFUSES_WRITES,
                                               Diagnosis.STORE_UNREACHABLE}
    refusing = "the store is at its memory limit"
    for marker in (_marker(1.0), _refused(_marker(9.0), 1.0), _marker(9.0)):
        for state, age in ((State.LATE, 1.0), (State.STALE, 9.0), (State.MISSING, None)):
            diagnosis, why = diagnose(state, now_ms=NOW, age_s=age,
                                      payload=None if age is None else _payload(age),
                                      marker=marker, thresholds=FAST, refusal=refusing)
            assert (diagnosis, why) == ("store_refuses_writes", refusing)


# -- the store at its limit ------------------------------------------------------------------

def test_a_store_swinging_about_its_limit_counts_as_full_once_it_refused_writes() -> None:
    base = {"maxmemory": "1000000", "maxmemory_policy": "noeviction"}
    assert refusal({**base, "used_memory": "980000"}) is not None  # 98 %: full
    assert refusal({**base, "used_memory": "979999"}) is None  # below, nothing refused yet
    refused = {**base, "errorstat_OOM": "count=42"}
    why = refusal({**refused, "used_memory": "900000"})
    assert why == ("the store is at its memory limit (900000 of maxmemory 1000000 bytes, "
                   "policy noeviction) and has refused 42 write(s) for memory since it "
                   "started: free memory or raise maxmemory")
    assert refusal({**refused, "used_memory": "899999"}) is None  # 90 %: the bound
    assert refusal({**refused, "used_memory": "950000",
                    "maxmemory_policy": "allkeys-lru"}) is None  # it evicts instead
    assert oom_refusals(parse_info({"errorstat_OOM": {"count": 3}})) == 3  # redis-py's INFO
    assert oom_refusals(parse_info(b"# Errorstats\r\nerrorstat_OOM:count=7\r\n")) == 7
    assert oom_refusals({"errorstat_OOM": "garbage"}) == 0


# -- the monitors' record ----------------------------------------------------------------------

KEYS = Keys()


def _report(state: State, diagnosis: Diagnosis | None, at_ms: int,
            reason: str = "why") -> HeartbeatReport:
    return HeartbeatReport("petsage", state, reason, age_s=9.0, thresholds=Thresholds(15, 30),
                           payload=cast(Any, {"ts_ms": at_ms - 9000, "seq": 4}),
                           now_ms=at_ms, diagnosis=diagnosis)


def _entries(client: fakeredis.FakeRedis) -> list[tuple[str, str, str, str, str]]:
    return [(f.get(b"kind", b"transition").decode(), f[b"from"].decode(), f[b"to"].decode(),
             f.get(b"old_diagnosis", b"-").decode(), f[b"diagnosis"].decode())
            for _, f in client.xrange(KEYS.incidents("petsage"))]


def _notes(client: fakeredis.FakeRedis) -> list[tuple[str, str, str, str]]:
    return [(e["kind"], e["new_state"], e.get("old_diagnosis", "-"), e["diagnosis"])
            for e in (json.loads(f[b"event"]) for _, f in client.xrange(KEYS.outbox))]


def _judge(client: fakeredis.FakeRedis, *reports: HeartbeatReport) -> None:
    for report in reports:
        for monitor in ("m1", "m2"):  # two monitors judge the same reading
            record(client, KEYS, [report], monitor_id=monitor)


def test_an_outage_is_amended_as_its_hop_becomes_known_once_across_monitors() -> None:
    client = fakeredis.FakeRedis()
    t = NOW
    _judge(client,
           _report(State.FRESH, None, t),
           _report(State.STALE, Diagnosis.BEAT_OR_BROKER, t + 1000),
           _report(State.STALE, Diagnosis.BEAT_OR_BROKER, t + 1100),
           _report(State.STALE, Diagnosis.BROKER_DOWN, t + 1200, "the broker refused"),
           _report(State.STALE, Diagnosis.BROKER_DOWN, t + 1300),
           _report(State.STALE, Diagnosis.BEAT_OR_BROKER, t + 1400),  # less known: kept
           _report(State.STALE, Diagnosis.BEAT_DOWN, t + 9000),  # then beat died too
           _report(State.FRESH, None, t + 20_000))
    assert _entries(client) == [
        ("transition", "fresh", "stale", "-", "beat_or_broker"),
        ("diagnosis", "stale", "stale", "beat_or_broker", "broker_down"),
        ("diagnosis", "stale", "stale", "broker_down", "beat_down"),
        ("transition", "stale", "fresh", "-", ""),
    ]
    assert _notes(client) == [("transition", "stale", "-", "beat_or_broker"),
                              ("diagnosis", "stale", "beat_or_broker", "broker_down"),
                              ("diagnosis", "stale", "broker_down", "beat_down"),
                              ("transition", "fresh", "-", "")]
    assert client.hget(KEYS.observed("petsage"), "transitions") == b"2"  # amendments aren't


def test_a_diagnosis_known_during_a_silence_is_recorded_then_notified_once_when_it_ends(
        ) -> None:
    client = fakeredis.FakeRedis()
    t = NOW
    _judge(client, _report(State.FRESH, None, t),
           _report(State.STALE, Diagnosis.BEAT_OR_BROKER, t + 1000))
    client.set(KEYS.silence("petsage"), "{}")
    _judge(client, _report(State.STALE, Diagnosis.BROKER_DOWN, t + 2000))
    assert [e[0] for e in _entries(client)] == ["transition", "diagnosis"]
    assert [n[0] for n in _notes(client)] == ["transition"]  # held back
    client.delete(KEYS.silence("petsage"))
    _judge(client, _report(State.STALE, Diagnosis.BROKER_DOWN, t + 3000),
           _report(State.STALE, Diagnosis.BROKER_DOWN, t + 4000))
    assert _notes(client)[1:] == [("diagnosis", "stale", "beat_or_broker", "broker_down")]
    assert len(_entries(client)) == 2


def test_an_outage_takes_the_last_hop_named_during_it() -> None:
    def entry(at: int, old: str, new: str, diagnosis: str, kind: str = "transition") -> Transition:
        return Transition(f"{at}-0", old, new, diagnosis, f"why {diagnosis}", at, kind)

    hour = 3_600_000
    entries = [
        entry(NOW - 5 * hour, "fresh", "stale", "beat_or_broker"),
        entry(NOW - 5 * hour + 2000, "stale", "stale", "broker_down", "diagnosis"),
        entry(NOW - 4 * hour, "stale", "fresh", ""),
        entry(NOW - 3 * hour, "fresh", "stale", "beat_or_broker"),  # never known better
        entry(NOW - 3 * hour + 5000, "stale", "missing", "broker_down"),  # named on the way
        entry(NOW - 2 * hour, "missing", "fresh", ""),
        entry(NOW - hour, "fresh", "stale", "no_consumer"),
        entry(NOW - hour + 1000, "stale", "stale", "beat_or_broker", "diagnosis"),
    ]
    summary = summarize("petsage", {"state": "stale", "first_ms": str(NOW - 6 * hour)},
                        entries, None, NOW)
    assert [(o.diagnosis, o.reason) for o in summary.recent] == [
        ("no_consumer", "why no_consumer"), ("broker_down", "why broker_down"),
        ("broker_down", "why broker_down")]
    assert summary.outages["24h"] == 3  # amendments are no transitions: three outages
