"""The reader's judgement of the read script's rows, in process and exactly.

The real-server tests show the read works end to end; these pin what each row becomes:
the state, the reason line, the thresholds (the payload's, or the caller's flags), the
diagnosis (with the store's refusal when there is one), the worker nodes judged on the
right thresholds, a second beat, the fleet's first and second passes, the cluster path.
"""

from __future__ import annotations

import json
import re
from typing import Any, cast

import fakeredis
import orjson
import pytest

from worker.core.names import Keys
from worker.core.payload import MAX_PAYLOAD_BYTES, Payload
from worker.core.states import Diagnosis, State, Thresholds
from worker.read.nodes import NodeReport
from worker.read.reader import (
    HeartbeatReport,
    add_diagnosis,
    component_thresholds,
    judge_rows,
    judge_value,
    judge_values,
    read_heartbeat,
    read_many,
    read_script_args,
    with_components,
)

NOW = 1_800_000_000_000
NO_FLAGS = (None, None)


def _payload(service: str = "svc", age_ms: int = 2000, **over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "schema": 1, "service": service, "status": "ok", "message": "fine", "seq": 3,
        "ts_ms": NOW - age_ms, "timestamp": "2027-01-15T08:00:00.000+00:00",
        "interval_s": 10, "stale_after_s": 30, "checks": {}, "queue_lag_ms": 1,
        "duration_ms": 1, "clock_offset_ms": 0, "worker": {"node": "hb@a", "pid": 1},
    }
    data.update(over)
    return data


def _raw(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()


def _marker(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"published_at_ms": NOW - 1000, "next_due_ms": NOW + 1000, "seq": 5,
                            "queue_depth": 2, "interval_s": 2, "stale_after_s": 5,
                            "beat_id": "beat-1"}
    data.update(over)
    return data


SECOND = {"other_beat": {"seen_at_ms": NOW - 500, "beat_id": "beat-2"}}
TWO_BEATS = 'two beats publish for this service ("beat-1" and "beat-2"): run exactly one'
NODES = [b"hb@a", str(NOW - 1000).encode(), b"hb@b", str(NOW - 4000).encode(),
         b"hb@c", str(NOW - 5500).encode()]


def _json_error(raw: bytes) -> str:
    """The reason for a value that is not JSON, in the parser's own words (they may change
    between its versions)."""
    try:
        orjson.loads(raw)
    except ValueError as exc:
        return f"stored value is not JSON: {exc}"
    raise AssertionError(f"{raw!r} is JSON")


def _row(value: Any, marker: dict[str, Any] | None = None, discard: Any = b"",
         nodes: Any = None) -> list[Any]:
    return [value, b"" if marker is None else json.dumps(marker).encode(),
            discard if isinstance(discard, bytes) else json.dumps(discard).encode(),
            [] if nodes is None else nodes]


def test_a_fresh_row_keeps_the_whole_payload() -> None:
    data = _payload()
    (report,) = judge_rows(["svc"], NOW, _row(_raw(data)), NO_FLAGS)
    assert report == HeartbeatReport("svc", State.FRESH, "last heartbeat 2.0s ago", 2.0,
                                     Thresholds(15, 30), cast(Payload, data), NOW)


def test_the_callers_flags_replace_the_payloads_thresholds() -> None:
    (report,) = judge_rows(["svc"], NOW, _row(_raw(_payload(age_ms=1500))), (1.0, 2.0))
    assert (report.state, report.thresholds) == (State.LATE, Thresholds(1.0, 2.0))
    assert report.reason.startswith("last heartbeat 1.5s ago, over 1s")
    (stale,) = judge_rows(["svc"], NOW, _row(_raw(_payload(age_ms=2500))), (None, 2.0))
    assert (stale.state, stale.thresholds) == (State.STALE, Thresholds(2.0, 2.0))


def test_rows_follow_the_services_in_order() -> None:
    rows = (_row(_raw(_payload("a", 1000)))
            + _row([b"none", 0], _marker())
            + _row(_raw(_payload("c", 20_000)), None, b"", NODES))
    a, b, c = judge_rows(["a", "b", "c"], NOW, rows, NO_FLAGS)
    assert (a.service, a.state, a.age_s) == ("a", State.FRESH, 1.0)
    assert (b.service, b.state, b.diagnosis, b.beat) == ("b", State.MISSING, "no_consumer",
                                                         _marker())
    assert (c.service, c.state, c.age_s) == ("c", State.LATE, 20.0)
    assert [n.node for n in c.nodes] == ["hb@a", "hb@b", "hb@c"]
    with pytest.raises(ValueError):  # a reply that does not match the services is an error
        judge_rows(["a", "b"], NOW, rows, NO_FLAGS)


def test_a_missing_service_with_beats_marker_nodes_and_a_second_beat() -> None:
    marker = {**_marker(), **SECOND}
    (report,) = judge_rows(["svc"], NOW, _row([b"none", 0], marker, b"", NODES), NO_FLAGS)
    assert report == HeartbeatReport(
        "svc", State.MISSING,
        "no heartbeat stored for this service; no_consumer: beat published 1.0s ago, "
        "2 heartbeat(s) queued, but no heartbeat was ever written; " + TWO_BEATS,
        now_ms=NOW, diagnosis=Diagnosis.NO_CONSUMER, beat=marker,
        # No payload: the nodes are judged on beat's interval (2 s: late after 3) and
        # stale threshold (5 s), not the default 10 s.
        nodes=(NodeReport("hb@a", State.FRESH, 1.0, NOW - 1000),
               NodeReport("hb@b", State.LATE, 4.0, NOW - 4000),
               NodeReport("hb@c", State.STALE, 5.5, NOW - 5500)),
        second_beat="beat-2")


def test_a_marker_alone_is_kept_on_the_report() -> None:
    (report,) = judge_rows(["svc"], NOW, _row(_raw(_payload(age_ms=40_000)), _marker()),
                           NO_FLAGS)
    assert report.beat == _marker()
    assert report.diagnosis == "no_consumer"
    assert report.nodes == () and report.second_beat is None


def test_a_store_refusing_writes_is_named() -> None:
    (report,) = judge_rows(["svc"], NOW, _row([b"none", 0], _marker()), NO_FLAGS,
                           refusal="the store refuses writes: MISCONF")
    assert (report.diagnosis, report.reason) == (
        "store_refuses_writes",
        "no heartbeat stored for this service; store_refuses_writes: the store refuses "
        "writes: MISCONF")


def test_without_notes_there_is_no_diagnosis_yet() -> None:
    (report,) = judge_rows(["svc"], NOW, _row([b"none", 0], _marker(), {"published_at_ms": 1,
                                                                       "lag_ms": 5}),
                           NO_FLAGS, notes=False)
    assert report == HeartbeatReport("svc", State.MISSING,
                                     "no heartbeat stored for this service", now_ms=NOW)


@pytest.mark.parametrize(("row", "state", "reason"), [
    ([b"none", 0], State.MISSING, "no heartbeat stored for this service; never_seen: no "
                                  "heartbeat and no publish by beat were ever recorded"),
    ([b"hash", 0], State.INVALID, "the key holds a hash, not a string"),
    (["string", MAX_PAYLOAD_BYTES + 1], State.INVALID,
     f"stored value is {MAX_PAYLOAD_BYTES + 1} bytes, over the {MAX_PAYLOAD_BYTES} limit"),
    (b"not json", State.INVALID, _json_error(b"not json")),
    (_raw(_payload(service="other")), State.INVALID,
     "payload is for service 'other', not 'svc'"),
    (_raw(_payload(age_ms=-2001)), State.INVALID,
     "heartbeat ts_ms is 2.0s ahead of the Redis clock"),
])
def test_each_row_that_is_not_a_heartbeat(row: Any, state: State, reason: str) -> None:
    (report,) = judge_rows(["svc"], NOW, _row(row), NO_FLAGS)
    assert (report.service, report.state, report.reason, report.now_ms) == (
        "svc", state, reason, NOW)
    assert report.diagnosis == (Diagnosis.NEVER_SEEN if state is State.MISSING else None)


def test_a_value_of_exactly_the_cap_is_judged_and_one_byte_more_is_not() -> None:
    data = _payload()
    data["pad"] = ""
    data["pad"] = "x" * (MAX_PAYLOAD_BYTES - len(_raw(data)))
    raw = _raw(data)
    assert len(raw) == MAX_PAYLOAD_BYTES
    assert judge_value("svc", NOW, b"string", len(raw), raw).state is State.FRESH
    over = judge_value("svc", NOW, b"string", len(raw) + 1, raw + b" ")
    assert over.state is State.INVALID


def test_unreadable_replies_are_invalid() -> None:
    for strlen, value in ((ValueError("x"), b""), (10, ValueError("x"))):
        report = judge_value("svc", NOW, b"string", strlen, value)
        assert (report.service, report.state, report.reason, report.now_ms) == (
            "svc", State.INVALID, "the stored value could not be read", NOW)


def test_judge_value_diagnoses_unless_told_not_to() -> None:
    marker = _marker()
    assert judge_value("svc", NOW, "none", 0, b"", marker=marker).diagnosis == "no_consumer"
    assert judge_value("svc", NOW, "none", 0, b"", marker=marker,
                       diagnosed=False).diagnosis is None
    refused = judge_value("svc", NOW, "none", 0, b"", marker=marker, refusal="MISCONF")
    assert refused.diagnosis == "store_refuses_writes"


@pytest.mark.parametrize(("status", "checks", "age_ms", "reason"), [
    ("degraded", {"db": {"status": "error"}, "cache": {"status": "ok"}, "x": "junk"}, 16_000,
     "status degraded: check db"),
    ("error", {"db": {"status": "error"}, "mq": {"status": "degraded"}}, 30_000,
     "status error: check db, mq"),  # at the stale threshold: still the checks
    ("error", {"db": {"status": "error"}}, 30_001,
     "last heartbeat 30.0s ago, over 30s"),  # past it: the age says more
    ("degraded", {}, 16_000, "last heartbeat 16.0s ago, over 15s"),  # no check named
    ("degraded", {"c": {"status": "OK"}}, 16_000, "status degraded: check c"),
    ("degraded", {"n" * 150: {"status": "error"}, "m" * 150: {"status": "error"}}, 16_000,
     f"status degraded: check {('n' * 150 + ', ' + 'm' * 150)[:200]}"),
])
def test_a_failing_check_is_named_in_the_reason(status: str, checks: dict[str, Any],
                                                age_ms: int, reason: str) -> None:
    data = _payload(status=status, checks=checks, age_ms=age_ms)
    (report,) = judge_rows(["svc"], NOW, _row(_raw(data)), NO_FLAGS, notes=False)
    assert report.reason == reason


def test_the_read_arguments_say_whether_to_read_the_notes() -> None:
    with_notes = read_script_args(["a"], Keys(), nodes_limit=7)
    without = read_script_args(["a"], Keys(), notes=False, nodes_limit=7)
    assert with_notes[1:] == (4, *Keys().read_keys(["a"]), MAX_PAYLOAD_BYTES, 4096, 1, 7)
    assert without[-2:] == (0, 7)


def test_a_fleets_first_pass_slims_and_applies_the_flags() -> None:
    rows = [_raw(_payload("a", 1500)), _raw(_payload("b", 1500)).decode(), [b"none", 0],
            [b"list", 0]]
    a, b, c, d = judge_values(["a", "b", "c", "d"], NOW, rows, [None, NODES, None, None],
                              (1.0, 2.0))
    assert (a.state, a.thresholds, b.state, b.thresholds) == (
        State.LATE, Thresholds(1.0, 2.0), State.LATE, Thresholds(1.0, 2.0))
    assert "schema" not in a.payload and "schema" not in b.payload  # type: ignore[operator]
    # The nodes too are judged on the flags: 1 s old is fresh, 4 s and 5.5 s are stale.
    assert [n.state for n in b.nodes] == [State.FRESH, State.STALE, State.STALE]
    assert c == HeartbeatReport("c", State.MISSING, "no heartbeat stored for this service",
                                now_ms=NOW)
    assert (d.service, d.state, d.reason) == ("d", State.INVALID,
                                              "the key holds a list, not a string")
    with pytest.raises(ValueError):
        judge_values(["a"], NOW, rows, [None] * 4, NO_FLAGS)


def test_a_fleets_second_pass_adds_the_diagnosis_nodes_and_second_beat() -> None:
    marker = {**_marker(), **SECOND}
    (missing,) = judge_values(["svc"], NOW, [[b"none", 0]], [None], NO_FLAGS)
    report = add_diagnosis(missing, marker, None, raw_nodes=NODES)
    assert report.diagnosis == "no_consumer" and report.beat == marker
    assert [n.state for n in report.nodes] == [State.FRESH, State.LATE, State.STALE]
    assert report.second_beat == "beat-2" and report.reason.endswith(TWO_BEATS)
    # With a payload its nodes were judged in the first pass, on its own thresholds.
    (late,) = judge_values(["svc"], NOW, [_raw(_payload(age_ms=20_000))], [NODES], NO_FLAGS)
    again = add_diagnosis(late, _marker(), None, raw_nodes=NODES)
    assert again.nodes == late.nodes
    assert [n.state for n in again.nodes] == [State.FRESH, State.FRESH, State.FRESH]
    # No nodes read, or no clock: only the diagnosis.
    plain = add_diagnosis(missing, marker, None)
    assert (plain.nodes, plain.second_beat, plain.beat) == ((), None, marker)
    assert not plain.reason.endswith(TWO_BEATS)
    clockless = add_diagnosis(missing._replace(now_ms=None), marker, None, raw_nodes=NODES)
    assert clockless.nodes == ()


def test_the_diagnosis_uses_the_reports_thresholds_with_the_callers_flags() -> None:
    data = _payload(status="degraded", checks={"db": {"status": "error"}}, age_ms=5000)
    (report,) = judge_rows(["svc"], NOW, _row(_raw(data), _marker(published_at_ms=NOW - 100)),
                           (1.0, 20.0))
    # Late by the flags (over 1 s): not a check failing within its interval (15 s).
    assert (report.state, report.diagnosis) == (State.LATE, "no_consumer")
    fresh_or_invalid = judge_rows(["svc"], NOW, _row(b"{"), NO_FLAGS)[0]
    assert add_diagnosis(fresh_or_invalid, _marker(), None, raw_nodes=NODES) is fresh_or_invalid


@pytest.mark.parametrize(("report_thresholds", "marker", "expected"), [
    (Thresholds(1, 2), _marker(), Thresholds(1, 2)),
    (None, None, Thresholds(15, 30)),
    (None, _marker(), Thresholds(3, 5)),
    (None, _marker(stale_after_s=None), Thresholds(3, 6)),
    (None, _marker(interval_s="x", stale_after_s=None), Thresholds(15, 30)),
    (None, _marker(interval_s=4, stale_after_s=5), Thresholds(5, 5)),
])
def test_nodes_are_judged_on_the_heartbeats_then_beats_then_default_thresholds(
        report_thresholds: Thresholds | None, marker: dict[str, Any] | None,
        expected: Thresholds) -> None:
    report = HeartbeatReport("svc", State.MISSING, "r", thresholds=report_thresholds)
    assert component_thresholds(report, marker) == expected


def test_with_components_returns_the_same_report_when_nothing_is_added() -> None:
    report = HeartbeatReport("svc", State.FRESH, "r", now_ms=NOW)
    assert with_components(report, NOW, None, []) is report


def test_with_components_sets_the_marker_it_is_given() -> None:
    report = HeartbeatReport("svc", State.FRESH, "r", now_ms=NOW)
    with_beat = report._replace(beat=_marker())
    assert with_components(with_beat, NOW, None, []).beat is None  # the marker passed wins
    kept = with_components(report, NOW, _marker(), [])
    assert kept.beat == _marker() and kept.reason == "r"


class _Cluster:
    """A cluster client's shape (``nodes_manager``) over one fakeredis server."""

    nodes_manager = None

    def __init__(self, server: fakeredis.FakeServer, broken: set[str]) -> None:
        self._client = fakeredis.FakeRedis(server=server)
        self._broken = broken

    def execute_many(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        out: list[Any] = []
        for command in commands:
            service = next((s for s in self._broken if f"{{{s}}}" in str(command)), None)
            if service is not None:
                out.append(ConnectionError(f"node of {service} is down: redis://:pw@n:1 "
                                           + "x" * 300))
            else:
                out.append(self._client.execute_command(*command))  # type: ignore[no-untyped-call]
        return out


def test_a_cluster_read_asks_each_service_on_its_own_and_reports_a_broken_node() -> None:
    server = fakeredis.FakeServer()
    plain = fakeredis.FakeRedis(server=server)
    keys = Keys()
    now_ms = int(plain.time()[0]) * 1000
    data = _payload("a", 0, ts_ms=now_ms)
    plain.set(keys.latest("a"), json.dumps(data))
    a, b, c = read_many(_Cluster(server, {"b"}), ["a", "b", "c"], keys, late_after_s=0.001,
                        stale_after_s=1000)
    assert (a.service, a.payload, a.thresholds) == ("a", data, Thresholds(0.001, 1000))
    assert (b.service, b.state, b.diagnosis) == ("b", State.UNREACHABLE, "store_unreachable")
    detail = ("node of b is down: redis://:***@n:1 " + "x" * 300)[:200]
    assert b.reason == f"Redis refused the read: {detail}"
    assert (c.service, c.state) == ("c", State.MISSING)


def test_read_heartbeat_and_read_many_through_the_script() -> None:
    client = fakeredis.FakeRedis()
    keys = Keys("acme:hb")
    now_ms = int(client.time()[0]) * 1000
    client.set(keys.latest("a"), json.dumps(_payload("a", 0, ts_ms=now_ms)))
    report = read_heartbeat(client, "a", keys=keys, late_after_s=7, stale_after_s=9)
    assert (report.service, report.thresholds) == ("a", Thresholds(7, 9))
    assert read_heartbeat(client, "a").state is State.MISSING  # another prefix
    assert read_many(client, [], keys) == []
    assert [r.service for r in read_many(client, ["b", "a"], keys)] == ["b", "a"]


class _Recording(fakeredis.FakeRedis):
    """fakeredis that records each command's name, runs ``EVAL_RO`` as ``EVAL`` (fakeredis
    lacks it) or refuses it as an older Redis does, and can answer ``INFO`` as a
    read-only replica."""

    def __init__(self, *, no_eval_ro: bool = False, replica: bool = False) -> None:
        super().__init__()
        self.sent: list[str] = []
        self._no_eval_ro = no_eval_ro
        self._replica = replica

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.sent.append(str(args[0]))
        if args[0] == "EVAL_RO" and self._no_eval_ro:
            import redis

            raise redis.ResponseError("unknown command 'EVAL_RO', with args beginning with: ")
        if args[0] == "EVAL_RO":
            args = ("EVAL", *args[1:])
        if args[0] == "INFO" and self._replica:
            return {"role": "slave", "master_host": "primary", "master_port": 6379}
        return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]


def _store_payload(client: fakeredis.FakeRedis, service: str, **over: Any) -> dict[str, Any]:
    now_ms = int(client.time()[0]) * 1000
    data = _payload(service, 0, ts_ms=now_ms, **over)
    client.set(Keys().latest(service), json.dumps(data))
    return data


def test_a_read_is_one_eval_ro_and_falls_back_to_eval_on_an_older_redis() -> None:
    client = _Recording()
    # A payload that mentions an unknown command must not make the reader ask again.
    _store_payload(client, "a", message="unknown command in a check")
    client.sent.clear()
    assert read_heartbeat(client, "a").state is State.FRESH
    assert client.sent == ["EVAL_RO"]
    old = _Recording(no_eval_ro=True)
    _store_payload(old, "a")
    old.sent.clear()
    assert read_heartbeat(old, "a").state is State.FRESH
    assert old.sent == ["EVAL_RO", "EVAL"]


def test_a_store_that_refuses_writes_is_asked_only_when_keys_alone_suspect_it() -> None:
    client = _Recording(replica=True)
    _store_payload(client, "a")
    marker_key = Keys().beat("b")
    now_ms = int(client.time()[0]) * 1000
    client.set(marker_key, json.dumps({**_marker(), "published_at_ms": now_ms}))
    client.sent.clear()
    a, b = read_many(client, ["a", "b"], Keys())
    assert client.sent == ["EVAL_RO", "INFO"]
    assert (a.state, a.diagnosis) == (State.FRESH, None)
    assert (b.state, b.diagnosis) == (State.MISSING, "store_refuses_writes")
    assert b.reason == ("no heartbeat stored for this service; store_refuses_writes: the store "
                        "is a read-only replica (of primary:6379): point beat and the workers "
                        "at the primary")
    fine = _Recording()
    _store_payload(fine, "a")
    fine.sent.clear()
    read_many(fine, ["a"], Keys())
    assert fine.sent == ["EVAL_RO"]


def test_nodes_are_read_up_to_the_limit_asked_for() -> None:
    client = fakeredis.FakeRedis()
    now_ms = int(client.time()[0]) * 1000
    _store_payload(client, "a")
    client.zadd(Keys().nodes("a"), {f"hb@{i}": now_ms - i for i in range(5)})
    assert len(read_heartbeat(client, "a", nodes_limit=2).nodes) == 2
    assert len(read_many(client, ["a"], Keys(), nodes_limit=3)[0].nodes) == 3
    server = fakeredis.FakeServer()
    on_cluster = fakeredis.FakeRedis(server=server)
    _store_payload(on_cluster, "a")
    on_cluster.zadd(Keys().nodes("a"), {f"hb@{i}": now_ms - i for i in range(5)})
    (report,) = read_many(_Cluster(server, set()), ["a"], Keys(), nodes_limit=4)
    assert len(report.nodes) == 4


def test_a_value_that_is_not_utf8_for_a_decoding_client_is_invalid() -> None:
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server, decode_responses=True)
    raw = fakeredis.FakeRedis(server=server)
    raw.set(Keys().latest("a"), b"\xff\xfe")
    assert read_heartbeat(client, "a") == HeartbeatReport(
        "a", State.INVALID, "stored value is not UTF-8 (and the client decodes replies)")


class _Broken:
    def execute_command(self, *args: Any) -> Any:
        raise ConnectionError("refused by redis://:secret@h:6379/0 " + "x" * 300)


def test_a_failing_client_is_unreachable_with_the_error_redacted_and_cut() -> None:
    report = read_heartbeat(_Broken(), "a")
    detail = ("refused by redis://:***@h:6379/0 " + "x" * 300)[:200]
    assert (report.service, report.state, report.diagnosis) == (
        "a", State.UNREACHABLE, Diagnosis.STORE_UNREACHABLE)
    # The wait is measured, so a loaded machine may show 0.1s: under ten seconds, here.
    assert re.fullmatch(r"Redis could not be asked \(ConnectionError after \d\.\ds\): (.*)",
                        report.reason, re.DOTALL)
    assert report.reason.endswith(f"): {detail}")


def test_an_empty_string_value_is_invalid_in_both_passes() -> None:
    reason = _json_error(b"")
    (row,) = judge_rows(["a"], NOW, _row([b"string", 0]), NO_FLAGS, notes=False)
    (value,) = judge_values(["a"], NOW, [[b"string", 0]], [None], NO_FLAGS)
    assert (row.state, row.reason) == (value.state, value.reason) == (State.INVALID, reason)
    (big,) = judge_values(["a"], NOW, [[b"string", MAX_PAYLOAD_BYTES + 5]], [None], NO_FLAGS)
    assert big.reason == (f"stored value is {MAX_PAYLOAD_BYTES + 5} bytes, over the "
                          f"{MAX_PAYLOAD_BYTES} limit")


def test_a_heartbeat_from_the_future_keeps_its_payload_and_says_how_far() -> None:
    data = _payload(age_ms=-100_000)
    (report,) = judge_rows(["svc"], NOW, _row(_raw(data)), NO_FLAGS)
    assert (report.state, report.payload) == (State.INVALID, data)
    assert report.reason == "heartbeat ts_ms is 100.0s ahead of the Redis clock"


def test_the_payloads_own_stale_threshold_is_used() -> None:
    (report,) = judge_rows(["svc"], NOW, _row(_raw(_payload(stale_after_s=20))), NO_FLAGS)
    assert report.thresholds == Thresholds(15, 20)
