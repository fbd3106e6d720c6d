"""Uptime, outages, MTTR, "since" and silences, rebuilt from the incident streams: the
arithmetic on a fixed clock (``summarize``), and the read (``read_incidents`` through
``incidents.lua`` on fakeredis): oldest first, only the longest window, each service its
own record, however many services a call."""

from __future__ import annotations

import json
from typing import Any

import fakeredis
import pytest

from tests.support.incidents import NOW, D, H
from tests.support.incidents import transition as _t
from worker.core.names import Keys
from worker.core.redis_io import redis_time_ms
from worker.read.incidents import (
    CALLS_PER_TRIP,
    DOWN_STATES,
    ENTRIES_PER_CALL,
    INCIDENTS_SCRIPT,
    MAX_FIELD_CHARS,
    MAX_INCIDENTS_READ,
    MAX_SILENCE_BYTES,
    SERVICES_PER_CALL,
    TIMELINE_OUTAGES,
    WINDOWS,
    Outage,
    Silence,
    Transition,
    _fields,
    _int,
    _record,
    _transitions,
    parse_silence,
    read_incidents,
    summarize,
)
from worker.read.silence import silence_commands, silence_from_replies

KEYS = Keys()


def test_the_constants() -> None:
    assert WINDOWS == (("24h", D), ("7d", 7 * D), ("30d", 30 * D))
    assert sorted(DOWN_STATES) == ["invalid", "missing", "stale"]
    assert (TIMELINE_OUTAGES, SERVICES_PER_CALL, CALLS_PER_TRIP) == (10, 333, 64)


def test_uptime_outages_and_mttr_over_each_window() -> None:
    record = {"state": "fresh", "first_ms": str(NOW - 10 * D), "at_ms": str(NOW - 2 * H),
              "diagnosis": ""}
    transitions = [
        _t(NOW - 9 * D, "fresh", "stale", "no_consumer", "worker gone"),  # 1 day down
        _t(NOW - 8 * D, "stale", "fresh"),
        _t(NOW - 3 * D, "fresh", "late"),  # late is up
        _t(NOW - 3 * D + H, "late", "missing", "beat_down", "no beat"),  # 2 h down
        _t(NOW - 3 * D + 3 * H, "missing", "stale"),  # still the same outage
        _t(NOW - 3 * D + 4 * H, "stale", "fresh"),
        _t(NOW - 4 * H, "fresh", "invalid", "bad_payload", "x"),  # 2 h down
        _t(NOW - 2 * H, "invalid", "fresh"),
    ]
    s = summarize("svc", record, transitions, None, NOW)
    assert s.service == "svc" and s.monitored and s.state == "fresh"
    assert s.since_ms == NOW - 2 * H
    assert s.first_ms == NOW - 10 * D
    assert s.covered_s == {"24h": 86_400.0, "7d": 604_800.0, "30d": 864_000.0}
    assert s.uptime == {"24h": round(22 / 24, 6), "7d": round(1 - 5 / 168, 6),
                        "30d": round(1 - 29 / 240, 6)}
    assert s.outages == {"24h": 1, "7d": 2, "30d": 3}
    assert s.mttr_s == {"24h": 7200.0, "7d": 9000.0, "30d": round((24 + 3 + 2) * 3600 / 3, 3)}
    assert s.recent == (
        Outage(NOW - 4 * H, NOW - 2 * H, "bad_payload", "x"),
        Outage(NOW - 3 * D + H, NOW - 3 * D + 4 * H, "beat_down", "no beat"),
        Outage(NOW - 9 * D, NOW - 8 * D, "no_consumer", "worker gone"))


def test_an_ongoing_outage_counts_until_now_and_has_no_mttr() -> None:
    record = {"state": "stale", "first_ms": str(NOW - 2 * D), "at_ms": str(NOW - H)}
    s = summarize("svc", record, [_t(NOW - H, "fresh", "stale", "beat_down", "r")], None, NOW)
    assert s.uptime["24h"] == round(23 / 24, 6) and s.uptime["30d"] == 0.979167
    assert s.outages == {"24h": 1, "7d": 1, "30d": 1}
    assert s.mttr_s == {"24h": None, "7d": None, "30d": None}
    assert s.recent == (Outage(NOW - H, None, "beat_down", "r"),)
    js = s.as_json(NOW)
    assert js["outages"] == [{"started_ms": NOW - H, "ended_ms": None, "duration_s": 3600.0,
                              "diagnosis": "beat_down", "reason": "r"}]


def test_an_outage_that_ended_before_a_window_is_not_in_it() -> None:
    record = {"state": "fresh", "first_ms": str(NOW - 5 * D), "at_ms": str(NOW - 2 * D)}
    s = summarize("svc", record, [_t(NOW - 3 * D, "fresh", "stale"),
                                  _t(NOW - 2 * D, "stale", "fresh")], None, NOW)
    assert s.outages == {"24h": 0, "7d": 1, "30d": 1}
    assert s.mttr_s["24h"] is None and s.mttr_s["7d"] == 86_400.0
    assert s.uptime["24h"] == 1.0 and s.uptime["7d"] == 0.8


def test_time_before_the_first_judgement_is_not_counted() -> None:
    record = {"state": "fresh", "first_ms": str(NOW - 6 * H), "at_ms": str(NOW - 3 * H)}
    s = summarize("svc", record, [_t(NOW - 4 * H, "fresh", "stale"),
                                  _t(NOW - 3 * H, "stale", "fresh")], None, NOW)
    assert s.covered_s == {"24h": 21_600.0, "7d": 21_600.0, "30d": 21_600.0}
    assert s.uptime["24h"] == round(5 / 6, 6)
    # A first transition before the record's start (an older monitor's): from it on.
    s = summarize("svc", {"state": "fresh", "first_ms": str(NOW - H)},
                  [_t(NOW - 2 * H, "stale", "fresh")], None, NOW)
    assert s.covered_s["24h"] == 7200.0 and s.uptime["24h"] == 1.0
    # No record start at all: from the first transition.
    s = summarize("svc", {"state": "fresh"}, [_t(NOW - 2 * H, "stale", "fresh")], None, NOW)
    assert s.first_ms is None and s.covered_s["24h"] == 7200.0


def test_a_service_down_from_the_start_has_its_outage_from_the_start() -> None:
    record = {"state": "fresh", "first_ms": str(NOW - 3 * H), "diagnosis": "no_consumer"}
    s = summarize("svc", record, [_t(NOW - H, "stale", "fresh", "x", "y")], None, NOW)
    assert s.recent == (Outage(NOW - 3 * H, NOW - H, "no_consumer", ""),)
    assert s.uptime["24h"] == round(1 / 3, 6)


def test_a_steady_service() -> None:
    up = summarize("svc", {"state": "late", "first_ms": str(NOW - 2 * D),
                           "at_ms": str(NOW - 2 * D)}, [], None, NOW)
    assert up.uptime == {"24h": 1.0, "7d": 1.0, "30d": 1.0}
    assert up.covered_s == {"24h": 86_400.0, "7d": 172_800.0, "30d": 172_800.0}
    assert up.outages == {"24h": 0, "7d": 0, "30d": 0} and up.recent == ()
    assert up.since_ms == NOW - 2 * D and up.state == "late" and up.monitored
    assert up.service == "svc"
    down = summarize("svc", {"state": "missing", "first_ms": str(NOW - H), "at_ms": str(NOW - H),
                             "diagnosis": "beat_down"}, [], None, NOW)
    assert down.uptime == {"24h": 0.0, "7d": 0.0, "30d": 0.0}
    assert down.outages == {"24h": 1, "7d": 1, "30d": 1}
    assert down.recent == (Outage(NOW - H, None, "beat_down", ""),)
    assert down.mttr_s == {"24h": None, "7d": None, "30d": None}
    never = summarize("svc", {}, [], None, NOW)
    assert not never.monitored and never.state is None and never.since_ms is None
    assert never.uptime == {"24h": None, "7d": None, "30d": None}
    assert never.covered_s == {"24h": 0.0, "7d": 0.0, "30d": 0.0}
    assert never.outages == {"24h": 0, "7d": 0, "30d": 0} and never.recent == ()
    future = summarize("svc", {"state": "stale", "first_ms": str(NOW + H)}, [], None, NOW)
    assert future.uptime["24h"] is None and future.outages["24h"] == 0


def test_the_timeline_lists_the_last_ten_outages_newest_first() -> None:
    transitions = []
    for i in range(12):
        transitions += [_t(NOW - (30 - i) * H, "fresh", "stale", reason=str(i)),
                        _t(NOW - (30 - i) * H + 1000, "stale", "fresh")]
    s = summarize("svc", {"state": "fresh", "first_ms": str(NOW - 40 * H)}, transitions,
                  None, NOW)
    assert [o.reason for o in s.recent] == [str(i) for i in range(11, 1, -1)]
    assert s.outages["24h"] == 6 and s.outages["7d"] == 12


@pytest.mark.parametrize("silence_ms", [NOW + 1, NOW])
def test_a_silence_shows_until_it_ends(silence_ms: int) -> None:
    silence = Silence(silence_ms, "db upgrade", NOW - H)
    for transitions in ([], [_t(NOW - H, "fresh", "stale")]):
        s = summarize("svc", {"state": "stale", "first_ms": "1"}, transitions, silence, NOW)
        assert s.silence == (silence if silence_ms > NOW else None)
    js = summarize("svc", {}, [], Silence(NOW + 1500, "r", 0), NOW).as_json(NOW)
    assert js["silence"] == {"until_ms": NOW + 1500, "reason": "r", "remaining_s": 1.5}


def test_the_summary_as_json() -> None:
    s = summarize("svc", {"state": "fresh", "first_ms": str(NOW - 2 * H), "at_ms": str(NOW - H)},
                  [_t(NOW - 1.5 * H, "fresh", "stale", "", "r"),  # type: ignore[arg-type]
                   _t(NOW - H, "stale", "fresh")], None, NOW)
    assert s.as_json(NOW) == {
        "monitored": True, "state": "fresh", "since_ms": NOW - H, "first_ms": NOW - 2 * H,
        "truncated": False,
        "windows": {label: {"uptime": 0.75, "covered_s": 7200.0, "outages": 1,
                            "mttr_s": 1800.0} for label, _ in WINDOWS},
        "outages": [{"started_ms": NOW - 1.5 * H, "ended_ms": NOW - H, "duration_s": 1800.0,
                     "diagnosis": None, "reason": "r"}],
        "silence": None}


@pytest.mark.parametrize(("raw", "parsed"), [
    (None, None), (b"", None), (b"not json", None), (b"[1]", None), (b"{}", None),
    (b'{"until_ms": "x"}', None), (b'{"until_ms": 5}', Silence(5, "", 0)),
    (json.dumps({"until_ms": 5, "reason": "r" * 400, "since_ms": 2}).encode(),
     Silence(5, "r" * 300, 2))])
def test_parse_silence(raw: Any, parsed: Silence | None) -> None:
    assert parse_silence(raw) == parsed


def test_replies_as_fields_and_transitions() -> None:
    assert _record([b"a", b"1", b"b", b"2"]) == {"a": "1", "b": "2"}
    assert _record({b"a": b"1"}) == {"a": "1"} and _record(None) == {}
    assert _fields([b"stale", None, b"5", b"x"]) == {"state": "stale", "at_ms": "5",
                                                      "diagnosis": "x"}
    assert _fields(None) == {}
    assert _int("12") == 12 and _int("") is None and _int(None) is None and _int("x") is None
    entries = [(b"1-0", [b"from", b"fresh", b"to", b"stale", b"at_ms", b"7"]),
               (b"2-0", [b"from", b"fresh", b"to", b"stale"]),  # not the monitors'
               (b"3-0", [b"at_ms", b"x"]),
               (b"4-0", {b"to": b"fresh", b"at_ms": b"9", b"diagnosis": b"d", b"reason": b"r"})]
    # The script's reply is newest first (XREVRANGE); the transitions are oldest first.
    assert _transitions(entries[::-1]) == [Transition("1-0", "fresh", "stale", "", "", 7),
                                     Transition("4-0", "", "fresh", "d", "r", 9)]
    assert _transitions(None) == []


def _write(client: fakeredis.FakeRedis, service: str, record: dict[str, Any],
           transitions: list[tuple[int, str, str]]) -> None:
    if record:
        client.hset(KEYS.observed(service), mapping=record)
    for at_ms, old, new in transitions:
        client.xadd(KEYS.incidents(service), {"from": old, "to": new, "at_ms": at_ms,
                                              "diagnosis": "d", "reason": "r"},
                    id=f"{at_ms}-0")


def test_read_incidents_reads_oldest_first_within_thirty_days() -> None:
    client = fakeredis.FakeRedis()
    now = redis_time_ms(client.time())
    _write(client, "svc", {"state": "fresh", "first_ms": now - 40 * D, "at_ms": now - H,
                           "diagnosis": ""},
           [(now - 40 * D, "fresh", "stale"), (now - 39 * D, "stale", "fresh"),  # too old
            (now - 2 * H, "fresh", "stale"), (now - H, "stale", "fresh")])
    read_now, found = read_incidents(client, KEYS, ["svc"])
    assert now <= read_now < now + 5000
    s = found["svc"]
    assert s.recent == (Outage(now - 2 * H, now - H, "d", "r"),)  # not the 40-day-old one
    assert s.outages == {"24h": 1, "7d": 1, "30d": 1} and s.since_ms == now - H
    assert s.mttr_s["24h"] == 3600.0 and s.state == "fresh" and s.first_ms == now - 40 * D
    assert s.uptime["24h"] == pytest.approx(23 / 24, abs=1e-4)


def test_read_incidents_gives_each_service_its_own_record_over_several_calls() -> None:
    client = fakeredis.FakeRedis()
    now = redis_time_ms(client.time())
    services = [f"s{i}" for i in range(SERVICES_PER_CALL + 40)]
    for i, service in enumerate(services):
        if i % 3:
            _write(client, service, {"state": "stale", "first_ms": now - D, "at_ms": now - i},
                   [(now - i, "fresh", "stale")])
    client.set(KEYS.silence("s2"), json.dumps({"until_ms": now + H, "reason": "two"}))
    _, found = read_incidents(client, KEYS, services)
    assert list(found) == services
    assert all(found[name].service == name for name in services)
    for i, service in enumerate(services):
        s = found[service]
        if i % 3:
            assert s.since_ms == now - i and s.recent[0].started_ms == now - i, service
        else:
            assert not s.monitored and s.recent == (), service
    assert found["s2"].silence == Silence(now + H, "two", 0)
    assert found["s1"].silence is None
    assert read_incidents(client, KEYS, [])[1] == {}


# The bounds: however much was written, a read is short (docs/incidents.md, "Bounds").


def _flap(client: fakeredis.FakeRedis, service: str, now: int, count: int,
          **extra: Any) -> None:
    """``count`` transitions a second apart, ending a second ago: fresh/stale in turn."""
    pipe = client.pipeline(transaction=False)
    for i in range(count):
        at = now - (count - i) * 1000
        old, new = ("fresh", "stale") if i % 2 == 0 else ("stale", "fresh")
        fields: dict[Any, Any] = {"from": old, "to": new, "at_ms": at, "diagnosis": "d",
                                  "reason": "r", **extra}
        pipe.xadd(KEYS.incidents(service), fields, id=f"{at}-0")
    pipe.execute()


def _script(client: fakeredis.FakeRedis, services: list[str], now: int,
            count: int = ENTRIES_PER_CALL, start: str = "+") -> list[Any]:
    pages = [x for _ in services for x in (start, count)]
    return client.eval(INCIDENTS_SCRIPT, 3 * len(services),  # type: ignore[no-any-return]
                       *KEYS.monitor_keys(services), f"{now - 30 * D}-0", MAX_FIELD_CHARS,
                       MAX_SILENCE_BYTES, ENTRIES_PER_CALL, *pages)


def test_the_bounds() -> None:
    # A stream the monitors cap at 1,000 (MAXLEN ~ leaves up to ~100 more) is read whole.
    assert MAX_INCIDENTS_READ == 2000 and ENTRIES_PER_CALL == 128
    assert (MAX_FIELD_CHARS, MAX_SILENCE_BYTES) == (300, 4096)


def test_a_stream_written_past_the_cap_is_read_to_the_cap_newest_first() -> None:
    client = fakeredis.FakeRedis()
    now = redis_time_ms(client.time())
    client.hset(KEYS.observed("svc"), mapping={"state": "stale", "first_ms": now - 20 * D,
                                               "at_ms": now - 1000})
    total = MAX_INCIDENTS_READ + 500
    _flap(client, "svc", now, total)
    entries = _script(client, ["svc"], now)[1]
    assert len(entries) == ENTRIES_PER_CALL  # a page, never the whole stream
    assert entries[0][0] == f"{now - 1000}-0".encode()  # the newest first
    # The next page starts below the last entry read (the first page's start is "+").
    after = _script(client, ["svc"], now, start=f"{now - ENTRIES_PER_CALL * 1000}-99")[1]
    assert after[0][0] == f"{now - ENTRIES_PER_CALL * 1000}-0".encode()
    _, found = read_incidents(client, KEYS, ["svc"])
    s = found["svc"]
    assert s.truncated and s.as_json(now)["truncated"] is True
    oldest_read = now - MAX_INCIDENTS_READ * 1000
    # The windows start at the oldest entry read, not 20 days ago where the record starts.
    assert s.covered_s["30d"] == pytest.approx((now - oldest_read) / 1000, abs=10)
    assert s.covered_s["24h"] == s.covered_s["30d"]
    # Half of the span read was down: 1,000 outages of a second each, the newest first.
    assert s.uptime["30d"] == pytest.approx(0.5, abs=0.01)
    assert s.outages["30d"] == MAX_INCIDENTS_READ // 2 and s.mttr_s["30d"] == 1.0
    assert s.recent[0] == Outage(now - 2000, now - 1000, "d", "r")


def test_a_stream_within_the_cap_is_read_whole_and_not_truncated() -> None:
    client = fakeredis.FakeRedis()
    now = redis_time_ms(client.time())
    client.hset(KEYS.observed("svc"), mapping={"state": "fresh", "first_ms": now - 5 * D,
                                               "at_ms": now - 1000})
    _flap(client, "svc", now, 1100)  # the default cap, and what MAXLEN ~ may leave over it
    s = read_incidents(client, KEYS, ["svc"])[1]["svc"]
    assert not s.truncated and s.outages["30d"] == 550
    assert s.covered_s["30d"] == pytest.approx(5 * 86_400, abs=10)  # since the record began


def test_a_cut_read_of_diagnoses_only_starts_its_windows_at_the_oldest_read() -> None:
    at = [NOW - (MAX_INCIDENTS_READ - i) * 1000 for i in range(MAX_INCIDENTS_READ)]
    entries = [Transition(f"{a}-0", "stale", "stale", "d", "r", a, "diagnosis") for a in at]
    record = {"state": "stale", "first_ms": str(NOW - 20 * D), "at_ms": str(NOW - 20 * D)}
    s = summarize("svc", record, entries, None, NOW, truncated=True)
    assert s.truncated and s.covered_s["30d"] == MAX_INCIDENTS_READ
    assert s.recent[0].started_ms == at[0]
    whole = summarize("svc", record, entries, None, NOW)
    assert not whole.truncated and whole.covered_s["30d"] == 20 * 86_400


def test_long_fields_are_cut_and_only_the_summarys_fields_come_back() -> None:
    client = fakeredis.FakeRedis()
    now = redis_time_ms(client.time())
    long = "x" * 100_000
    client.hset(KEYS.observed("svc"), mapping={"state": "stale", "first_ms": now - D,
                                               "at_ms": now - 2000, "diagnosis": long})
    _flap(client, "svc", now, 2, reason=long, diagnosis=long, monitor=long, extra=long)
    record, entries, _ = _script(client, ["svc"], now)
    assert [len(v) for v in record] == [5, len(str(now - D)), len(str(now - 2000)),
                                        MAX_FIELD_CHARS]
    for _, fields in entries:
        names = fields[0::2]
        assert sorted(names) == [b"at_ms", b"diagnosis", b"from", b"reason", b"to"]
        assert max(len(v) for v in fields[1::2]) == MAX_FIELD_CHARS
    s = read_incidents(client, KEYS, ["svc"])[1]["svc"]
    assert s.recent[0].reason == "x" * MAX_FIELD_CHARS
    assert s.recent[0].diagnosis == "x" * MAX_FIELD_CHARS
    # A reply that was not cut (another reader's) is cut here all the same.
    (t,) = _transitions([(b"1-0", [b"at_ms", b"7", b"reason", long.encode(), b"to", long])])
    assert len(t.reason) == len(t.to_state) == MAX_FIELD_CHARS
    assert _fields([long.encode()]) == {"state": "x" * MAX_FIELD_CHARS}


def test_a_silence_longer_than_the_bound_is_never_read() -> None:
    client = fakeredis.FakeRedis()
    now = redis_time_ms(client.time())
    good = json.dumps({"until_ms": now + H, "reason": "r" * 300, "since_ms": now})
    padded = json.dumps({"until_ms": now + H, "reason": "r"}) + " " * MAX_SILENCE_BYTES
    for service, value in (("good", good), ("big", padded)):
        client.set(KEYS.silence(service), value)
    replies = {s: _script(client, [s], now)[2] for s in ("good", "big")}
    assert replies == {"good": good.encode(), "big": None}
    _, found = read_incidents(client, KEYS, ["good", "big"])
    assert found["good"].silence == Silence(now + H, "r" * 300, now)
    assert found["big"].silence is None  # valid JSON with padding, but no silence writes that
    # check's read: the length and the first bytes only.
    for service, expect in (("good", Silence(now + H, "r" * 300, now)), ("big", None)):
        commands = silence_commands(KEYS, service)
        assert [c[0] for c in commands] == ["STRLEN", "GETRANGE"]
        pipe = client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)  # type: ignore[no-untyped-call]
        assert silence_from_replies(*pipe.execute()) == expect
    assert silence_from_replies(0, b"") is None and silence_from_replies(ValueError(), b"") is None
    assert parse_silence("x" * (MAX_SILENCE_BYTES + 1)) is None


def test_one_call_reads_at_most_its_budget_and_the_rest_again_one_a_call() -> None:
    client = fakeredis.FakeRedis()
    now = redis_time_ms(client.time())
    services = ["a", "b", "c"]
    for service in services:
        client.hset(KEYS.observed(service), mapping={"state": "fresh", "first_ms": now - D})
        _flap(client, service, now, ENTRIES_PER_CALL * 3 // 4)
    reply = _script(client, services, now)
    assert len(reply[1]) == ENTRIES_PER_CALL * 3 // 4  # the first is always read
    assert reply[3:] == [None] * 6  # the others would pass the budget: asked again
    client.delete(KEYS.incidents("b"))
    reply = _script(client, services, now)  # an empty stream costs nothing
    assert reply[4] == [] and reply[6:] == [None] * 3
    _, found = read_incidents(client, KEYS, services)
    assert all(found[s].outages["24h"] == ENTRIES_PER_CALL * 3 // 8 for s in ("a", "c"))
    assert found["b"].outages["24h"] == 0 and found["b"].state == "fresh"
    assert not any(found[s].truncated for s in services)


def test_a_page_starts_below_the_last_id_read() -> None:
    from worker.read.incidents import _before

    assert _before("5-3") == "5-2" and _before("5-0") == f"4-{2 ** 64 - 1}"
    assert _before("0-0") is None and _before("x-1") is None


def test_an_entry_silence_longer_than_the_bound_is_never_read() -> None:
    from worker.read.entry_silence import (
        MAX_ENTRY_SILENCES,
        entry_silences_command,
        read_entry_silence,
        read_entry_silences,
    )

    client = fakeredis.FakeRedis()
    now = redis_time_ms(client.time())
    key = KEYS.entry_silence("svc")
    good = json.dumps({"until_ms": now + H, "reason": "r", "since_ms": now})
    client.hset(key, mapping={"nightly": good, "big": good + " " * MAX_SILENCE_BYTES,
                              "n" * 801: good, "empty": ""})
    raw = client.execute_command(  # type: ignore[no-untyped-call]
        *entry_silences_command(KEYS, "svc"))
    assert raw == [b"nightly", good.encode()]  # the others' values are never sent
    assert set(read_entry_silences(client, "svc")) == {"nightly"}
    assert read_entry_silence(client, "svc", "nightly") == Silence(now + H, "r", now)
    assert read_entry_silence(client, "svc", "big") is None
    assert read_entry_silence(client, "svc", "absent") is None
    # More fields than any beat app has entries: no silence at all (a hostile hash).
    client.hset(key, mapping={f"e{i}": good for i in range(MAX_ENTRY_SILENCES)})
    assert read_entry_silences(client, "svc") == {}
