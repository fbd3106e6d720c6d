"""The component probes' verdicts (``worker.read.liveness``), in process and exactly.

``tests/test_liveness.py`` shows ``check --liveness`` against real processes; these pin
what each verdict is made of: the exit code, the whole line and every JSON field of a node
and of beat, with and without ``--liveness``, each side of every threshold; the store's
evidence from ``INFO`` (a replica and its link, a store loading or full); and each reason a
liveness probe gives for not blaming its component (the store can't take writes, it
restarted within the threshold, the record absent for too short a time, no state file).
"""

from __future__ import annotations

from typing import Any

import pytest

from worker.core.states import State, Thresholds
from worker.read.absence import Absence
from worker.read.liveness import (
    StoreEvidence,
    Verdict,
    _cannot_tell,
    beat_verdict,
    name_part_only,
    node_verdict,
    store_evidence,
)
from worker.read.nodes import NodeReport
from worker.read.reader import HeartbeatReport, unreachable

NOW = 1_800_000_000_000
THRESHOLDS = Thresholds(15, 30)
NORMAL = StoreEvidence(None, 3600.0, "run-1", False)
"""A store that takes writes and has run for an hour."""

REPLICA = "the store is a read-only replica of m:6379 (link down)"


def _marker(age_s: float | None = 1.0, **extra: Any) -> dict[str, Any]:
    """Beat's marker: published ``age_s`` ago (None: never), every 10 s, for 600 s."""
    marker: dict[str, Any] = {"next_due_ms": NOW + 9000, "seq": 5, "interval_s": 10.0,
                              "stale_after_s": 30.0}
    if age_s is not None:
        published = NOW - round(age_s * 1000)
        marker.update(published_at_ms=published, since_ms=published - 600_000)
    marker.update(extra)
    return marker


def _report(beat: dict[str, Any] | None = None, nodes: tuple[NodeReport, ...] = (), *,
            state: State = State.FRESH, now_ms: int | None = NOW,
            second_beat: str | None = None) -> HeartbeatReport:
    return HeartbeatReport("petsage", state, "last heartbeat 1.0s ago", age_s=1.0,
                           thresholds=THRESHOLDS, now_ms=now_ms, beat=beat, nodes=nodes,
                           second_beat=second_beat)


def _node(name: str, age_s: float, state: State = State.FRESH) -> NodeReport:
    """A node as the reader gave it; its state is judged again by the probe's thresholds."""
    return NodeReport(name, state, age_s, NOW - round(age_s * 1000))


def _node_fields(nodes: list[tuple[str, str, float]], age_s: float | None, state: str,
                 reason: str, late: float = 15, stale: float = 30) -> dict[str, Any]:
    return {"node": "pod-a",
            "nodes": [{"node": n, "state": s, "age_s": a} for n, s, a in nodes],
            "age_s": age_s, "late_after_s": late, "stale_after_s": stale, "state": state,
            "reason": reason}


def _beat_fields(age_s: float | None, state: str, reason: str, *, seq: Any = 5,
                 second: str | None = None, late: float = 15, stale: float = 30,
                 **extra: Any) -> dict[str, Any]:
    return {"age_s": age_s, "late_after_s": late, "stale_after_s": stale,
            "second_beat": second, "seq": seq, **extra, "state": state, "reason": reason}


# -- the store's evidence ----------------------------------------------------------------------


@pytest.mark.parametrize(("info", "size", "evidence"), [
    ({"role": "replica", "master_host": "10.0.0.9", "master_port": "6380",
      "master_link_status": "up", "master_sync_in_progress": "0", "uptime_in_seconds": "12.5",
      "run_id": "r" * 65, "loading": "1"}, 3,
     StoreEvidence("the store is a read-only replica of 10.0.0.9:6380 (link up)", 12.5,
                   "r" * 64, False)),
    ({"role": "slave", "master_link_status": "down", "master_sync_in_progress": "1",
      "run_id": "r" * 64}, 0,
     StoreEvidence("the store is a read-only replica of ?:? (link down, resyncing)", None,
                   "r" * 64, True)),
    ({"role": "slave"}, None,
     StoreEvidence("the store is a read-only replica of ?:? (link ?)", None, "", False)),
    ({"role": "master", "loading": "1", "uptime_in_seconds": "5"}, None,
     StoreEvidence("the store is loading its data set", 5.0, "", False)),
    ({"role": "master", "loading": "0", "maxmemory": "1000", "used_memory": "980",
      "maxmemory_policy": "noeviction", "uptime_in_seconds": "60", "run_id": "abc"}, 2,
     StoreEvidence("the store is at its memory limit (980 of maxmemory 1000 bytes, policy "
                   "noeviction): free memory or raise maxmemory", 60.0, "abc", False)),
    ({"role": "master", "loading": "0", "maxmemory": "1000", "used_memory": "979",
      "maxmemory_policy": "noeviction", "uptime_in_seconds": "x", "run_id": "abc"}, 0,
     StoreEvidence(None, None, "abc", True)),
    ({}, None, StoreEvidence(None, None, "", False)),
], ids=["replica", "slave-resyncing", "slave-unsaid", "loading", "full", "master", "nothing"])
def test_the_store_s_evidence_from_info_and_the_fleet_index(
        info: dict[str, str], size: int | None, evidence: StoreEvidence) -> None:
    # A replica names its master and link (each '?' when INFO doesn't say), even while
    # loading; the run id is cut to 64 characters; an empty index says "restarted empty".
    assert store_evidence(info, size) == evidence


# -- why a liveness probe can't tell -----------------------------------------------------------


def test_a_store_that_cannot_take_writes_is_said_first() -> None:
    store = StoreEvidence(REPLICA, 1.0, "r", True)
    for absent in (True, False):
        assert _cannot_tell(store, Absence(999.0, ""), THRESHOLDS, absent=absent) == (
            f"cannot tell: {REPLICA}, so no component can write its record there")


@pytest.mark.parametrize(("uptime_s", "empty", "said"), [
    (30.0, False, "cannot tell yet: the store (re)started 30s ago, within the 30s threshold"),
    (0.5, True, "cannot tell yet: the store (re)started 0.5s ago, empty, within the 30s "
                "threshold"),
    (30.001, False, None), (None, True, None),
])
def test_a_store_restarted_within_the_threshold_cannot_tell_yet(
        uptime_s: float | None, empty: bool, said: str | None) -> None:
    store = StoreEvidence(None, uptime_s, "r", empty)
    assert _cannot_tell(store, Absence(999.0, ""), THRESHOLDS, absent=False) == said
    assert _cannot_tell(store, None, THRESHOLDS, absent=False) == said


def test_an_old_record_on_a_store_that_takes_writes_is_the_component_s() -> None:
    assert _cannot_tell(NORMAL, None, THRESHOLDS, absent=False) is None
    assert _cannot_tell(None, None, THRESHOLDS, absent=False) is None  # INFO denied


@pytest.mark.parametrize(("store", "absence", "said"), [
    (NORMAL, None, "cannot tell: no liveness state file"),
    (None, Absence(None, ""), "cannot tell: no liveness state file"),
    (NORMAL, Absence(None, "liveness state file /tmp/x corrupt"),
     "cannot tell: liveness state file /tmp/x corrupt"),
    (NORMAL, Absence(30.0, ""), "cannot tell yet: absent for 30.0s since this probe first "
                                "found it so, within the 30s threshold"),
    (None, Absence(0.04, ""), "cannot tell yet: absent for 0.0s since this probe first found "
                              "it so, within the 30s threshold"),
    (StoreEvidence(None, 3600.0, "r", True), Absence(12.25, ""),
     "cannot tell yet: absent (the store holds no heartbeat: restarted empty?) for 12.2s since "
     "this probe first found it so, within the 30s threshold"),
    (NORMAL, Absence(30.001, ""), None),
    (StoreEvidence(None, 3600.0, "r", True), Absence(31.0, ""), None),
], ids=["no-file", "no-file-no-info", "corrupt", "at-threshold", "no-info", "empty",
        "over", "over-empty"])
def test_an_absent_record_cannot_tell_until_absent_over_the_threshold(
        store: StoreEvidence | None, absence: Absence | None, said: str | None) -> None:
    assert _cannot_tell(store, absence, THRESHOLDS, absent=True) == said


def test_the_thresholds_are_said_as_given() -> None:
    thresholds = Thresholds(1.5, 2.5)
    assert _cannot_tell(StoreEvidence(None, 2.5, "r", False), None, thresholds,
                        absent=False) == ("cannot tell yet: the store (re)started 2.5s ago, "
                                          "within the 2.5s threshold")
    assert _cannot_tell(None, Absence(2.5, ""), thresholds, absent=True) == (
        "cannot tell yet: absent for 2.5s since this probe first found it so, within the "
        "2.5s threshold")
    assert _cannot_tell(None, Absence(2.501, ""), thresholds, absent=True) is None


# -- an unreachable store ----------------------------------------------------------------------


@pytest.mark.parametrize("report", [
    unreachable("petsage", "Redis could not be asked: refused"),
    _report(_marker(), state=State.UNREACHABLE)._replace(reason="Redis could not be asked: "
                                                                "refused"),
    _report(_marker(), state=State.STALE, now_ms=None)._replace(reason="Redis could not be "
                                                                       "asked: refused"),
], ids=["unreachable", "unreachable-with-clock", "no-clock"])
def test_an_unreachable_store_is_unknown_and_tolerated_by_liveness(
        report: HeartbeatReport) -> None:
    fields = {"state": "unreachable", "reason": "Redis could not be asked: refused"}
    assert node_verdict(report, "pod-a", liveness=False) == Verdict(
        3, "petsage node pod-a unreachable: Redis could not be asked: refused", fields)
    assert beat_verdict(report, liveness=False) == Verdict(
        3, "petsage beat unreachable: Redis could not be asked: refused", fields)
    tolerated = ("store unreachable, tolerated by liveness (a store fault is not this "
                 "component's): Redis could not be asked: refused")
    assert node_verdict(report, "pod-a", liveness=True, store=NORMAL,
                        absence=Absence(99.0, "")) == Verdict(
        0, f"petsage node pod-a: {tolerated}", fields)
    assert beat_verdict(report, liveness=True) == Verdict(0, f"petsage beat: {tolerated}",
                                                          fields)


# -- a node named by its name part -------------------------------------------------------------


def test_a_name_part_is_refused_with_the_accepted_forms() -> None:
    one = _report(_marker(), (_node("n1@host-a", 1),))
    line = ("petsage-heartbeat: --node n1 is the name part of n1@host-a, which names no one "
            "node; accepted: the full node name (n1@host-a) or its host part (host-a)")
    assert name_part_only(one, "n1") == line
    for liveness in (True, False):
        assert node_verdict(one, "n1", liveness=liveness, store=NORMAL) == Verdict(
            3, line, {"node": "n1", "state": None, "reason": line})
    three = _report(_marker(), (_node("hb@pod-a", 1), _node("hb@pod-b", 1),
                                _node("hb@pod-c", 1)))
    assert name_part_only(three, "hb") == (
        "petsage-heartbeat: --node hb is the name part of hb@pod-a and 2 other node(s), "
        "which names no one node; accepted: the full node name (hb@pod-a) or its host part "
        "(pod-a)")
    # The host part is everything after the first '@' (as ``matches`` reads it).
    deep = _report(_marker(), (_node("hb@pod-7@ns", 1),))
    assert name_part_only(deep, "hb") == (
        "petsage-heartbeat: --node hb is the name part of hb@pod-7@ns, which names no one "
        "node; accepted: the full node name (hb@pod-7@ns) or its host part (pod-7@ns)")


def test_a_name_that_matches_a_node_is_never_refused() -> None:
    # ``pod-a`` is one node's host part and another's name part: it names the first node.
    both = _report(_marker(), (_node("hb@pod-a", 1), _node("pod-a@other", 1)))
    assert name_part_only(both, "pod-a") is None
    assert name_part_only(both, "hb@pod-a") is None
    assert name_part_only(both, "pod-a@other") is None
    assert name_part_only(both, "nobody") is None
    assert name_part_only(both, "hb@pod-b") is None


# -- a worker node, without --liveness ---------------------------------------------------------


def test_a_node_s_verdict_is_its_state_by_the_probe_s_thresholds() -> None:
    # The oldest matching node is judged (not the last by name); the others are listed.
    nodes = (_node("hb@pod-a", 3.2146, State.STALE), _node("zz@pod-a", 1.0),
             _node("hb@pod-b", 900.0, State.STALE))
    report = _report(_marker(), nodes)
    fresh = "petsage node pod-a (hb@pod-a) fresh: last node heartbeat 3.2s ago"
    assert node_verdict(report, "pod-a", liveness=False) == Verdict(0, fresh, _node_fields(
        [("hb@pod-a", "fresh", 3.215), ("zz@pod-a", "fresh", 1.0)], 3.215, "fresh", fresh))
    late = "petsage node pod-a (hb@pod-a) late: last node heartbeat 3.2s ago, over 2s"
    assert node_verdict(report, "pod-a", liveness=False, late_after_s=2) == Verdict(
        1, late, _node_fields([("hb@pod-a", "late", 3.215), ("zz@pod-a", "fresh", 1.0)],
                              3.215, "late", late, late=2))
    stale = "petsage node pod-a (hb@pod-a) stale: last node heartbeat 3.2s ago, over 3s"
    assert node_verdict(report, "pod-a", liveness=False, stale_after_s=3) == Verdict(
        2, stale, _node_fields([("hb@pod-a", "stale", 3.215), ("zz@pod-a", "fresh", 1.0)],
                               3.215, "stale", stale, late=3, stale=3))


@pytest.mark.parametrize(("age_s", "state", "code", "tail"), [
    (15.0, "fresh", 0, ""), (15.001, "late", 1, ", over 15s"),
    (30.0, "late", 1, ", over 15s"), (30.001, "stale", 2, ", over 30s"),
])
def test_a_node_s_states_at_their_bounds(age_s: float, state: str, code: int,
                                         tail: str) -> None:
    report = _report(_marker(), (_node("hb@pod-a", age_s),))
    text = f"petsage node pod-a (hb@pod-a) {state}: last node heartbeat {age_s:.1f}s ago{tail}"
    assert node_verdict(report, "pod-a", liveness=False) == Verdict(
        code, text, _node_fields([("hb@pod-a", state, age_s)], age_s, state, text))


def test_a_node_without_a_record_is_missing() -> None:
    report = _report(_marker(), (_node("hb@pod-b", 1.0),))
    text = "petsage node pod-a missing: no node heartbeat recorded for it"
    assert node_verdict(report, "pod-a", liveness=False, store=NORMAL,
                        absence=Absence(0.0, "")) == Verdict(
        2, text, _node_fields([], None, "missing", text))


# -- a worker node, with --liveness ------------------------------------------------------------

STALE_NODE = "petsage node pod-a (hb@pod-a) stale: last node heartbeat 700.0s ago, over 30s"


def _stale_node(beat: dict[str, Any] | None) -> HeartbeatReport:
    return _report(beat, (_node("hb@pod-a", 700.0),))


def _stale_fields(reason: str) -> dict[str, Any]:
    return _node_fields([("hb@pod-a", "stale", 700.0)], 700.0, "stale", reason)


@pytest.mark.parametrize(("beat", "said"), [
    (None, "has recorded no publish"),
    (_marker(None, publish_failed_at_ms=NOW - 1000, publish_error="refused"),
     "has recorded no publish"),
    (_marker(15.001), "last published 15.0s ago"),
    (_marker(3.5, interval_s=2), "last published 3.5s ago"),  # beat's own interval: 2 s
    (_marker(15.001, interval_s="2"), "last published 15.0s ago"),  # not a number: 10 s
], ids=["no-marker", "refusals-only", "late", "late-for-its-interval", "interval-unsaid"])
def test_a_node_is_not_blamed_while_beat_is_late(beat: dict[str, Any], said: str) -> None:
    text = f"{STALE_NODE}; beat {said}: not this worker's fault"
    assert node_verdict(_stale_node(beat), "pod-a", liveness=True, store=NORMAL) == Verdict(
        0, text, _stale_fields(text))


def _without_interval() -> dict[str, Any]:
    beat = _marker(15.0)
    del beat["interval_s"]
    return beat


def _stuck(waited_s: str, queue: str = "heartbeat.petsage") -> str:
    return (f"{STALE_NODE}; beat has published for {waited_s}s since, over 30s: this worker "
            f"is stuck, dead or not consuming queue {queue}")


@pytest.mark.parametrize(("beat", "text"), [
    (_marker(15.0), _stuck("615.0")),  # on time at 1.5 of its interval
    (_marker(3.0, interval_s=2), _stuck("603.0")),
    (_without_interval(), _stuck("615.0")),  # beat's interval unsaid: the default 10 s
    (_marker(1.0, queue="custom.q"), _stuck("601.0", "custom.q")),
], ids=["on-time", "own-interval", "default-interval", "queue"])
def test_a_node_is_blamed_once_beat_published_over_the_threshold_since(
        beat: dict[str, Any], text: str) -> None:
    assert node_verdict(_stale_node(beat), "pod-a", liveness=True, store=NORMAL) == Verdict(
        2, text, _stale_fields(text))


def test_a_beat_back_from_a_gap_gives_the_node_a_whole_threshold() -> None:
    def since(waited_ms: int, **extra: Any) -> HeartbeatReport:
        return _stale_node(_marker(1.0, since_ms=NOW - waited_ms, **extra))

    assert node_verdict(since(30_000), "pod-a", liveness=True) == Verdict(
        0, STALE_NODE, _stale_fields(STALE_NODE))
    text = _stuck("30.0")
    assert node_verdict(since(30_001), "pod-a", liveness=True) == Verdict(
        2, text, _stale_fields(text))
    # A marker without since_ms: counted from its last publish.
    beat = _marker(1.0)
    del beat["since_ms"]
    assert node_verdict(_stale_node(beat), "pod-a", liveness=True).exit_code == 0
    beat = _marker(30.001, interval_s=30)  # on time for its own 30 s interval
    del beat["since_ms"]
    assert node_verdict(_stale_node(beat), "pod-a", liveness=True) == Verdict(
        2, _stuck("30.0"), _stale_fields(_stuck("30.0")))


def test_a_node_that_heartbeat_after_beat_came_back_is_counted_from_its_heartbeat() -> None:
    report = _report(_marker(1.0), (_node("hb@pod-a", 40.0),))
    text = ("petsage node pod-a (hb@pod-a) stale: last node heartbeat 40.0s ago, over 30s; "
            "beat has published for 40.0s since, over 30s: this worker is stuck, dead or not "
            "consuming queue heartbeat.petsage")
    assert node_verdict(report, "pod-a", liveness=True) == Verdict(2, text, _node_fields(
        [("hb@pod-a", "stale", 40.0)], 40.0, "stale", text))


def test_a_fresh_node_passes_liveness_with_its_state() -> None:
    report = _report(_marker(1.0), (_node("hb@pod-a", 20.0),))
    text = "petsage node pod-a (hb@pod-a) late: last node heartbeat 20.0s ago, over 15s"
    assert node_verdict(report, "pod-a", liveness=True) == Verdict(0, text, _node_fields(
        [("hb@pod-a", "late", 20.0)], 20.0, "late", text))


def test_a_node_is_not_blamed_for_a_record_the_store_cannot_take() -> None:
    replica = StoreEvidence(REPLICA, 3600.0, "r", False)
    # The line says the state and why it can't tell, not the blame it would have given.
    text = (f"{STALE_NODE}; cannot tell: {REPLICA}, so no component can write its record "
            "there: tolerated by liveness")
    assert node_verdict(_stale_node(_marker(1.0)), "pod-a", liveness=True, store=replica,
                        absence=Absence(999.0, "")) == Verdict(0, text, _stale_fields(text))
    missing = _report(_marker(1.0), (_node("hb@pod-b", 1.0),))
    head = ("petsage node pod-a missing: no node heartbeat recorded for it; beat has published "
            "for 601.0s since, over 30s: this worker is stuck, dead or not consuming queue "
            "heartbeat.petsage")
    within = ("petsage node pod-a missing: no node heartbeat recorded for it; cannot tell "
              "yet: absent for 30.0s since this probe first found it so, "
              "within the 30s threshold: tolerated by liveness")
    assert node_verdict(missing, "pod-a", liveness=True, store=NORMAL,
                        absence=Absence(30.0, "")) == Verdict(
        0, within, _node_fields([], None, "missing", within))
    assert node_verdict(missing, "pod-a", liveness=True, store=NORMAL,
                        absence=Absence(30.001, "")) == Verdict(
        2, head, _node_fields([], None, "missing", head))


# -- beat -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("age_s", "state", "code", "tail"), [
    (15.0, "fresh", 0, ""), (15.001, "late", 1, ", over 15s"),
    (30.0, "late", 1, ", over 15s"), (30.001, "stale", 2, ", over 30s"),
])
def test_beat_s_states_at_their_bounds(age_s: float, state: str, code: int,
                                       tail: str) -> None:
    text = f"petsage beat {state}: last published {age_s:.1f}s ago{tail}"
    assert beat_verdict(_report(_marker(age_s)), liveness=False) == Verdict(
        code, text, _beat_fields(age_s, state, text))
    live = 2 if state == "stale" else 0
    assert beat_verdict(_report(_marker(age_s)), liveness=True, store=NORMAL) == Verdict(
        live, text, _beat_fields(age_s, state, text))


def test_beat_s_thresholds_are_the_probe_s_flags() -> None:
    report = _report(_marker(2.3456))
    late = "petsage beat late: last published 2.3s ago, over 2s"
    assert beat_verdict(report, liveness=False, late_after_s=2) == Verdict(
        1, late, _beat_fields(2.346, "late", late, late=2))
    stale = "petsage beat stale: last published 2.3s ago, over 2.2s"
    assert beat_verdict(report, liveness=False, stale_after_s=2.2) == Verdict(
        2, stale, _beat_fields(2.346, "stale", stale, late=2.2, stale=2.2))


def test_a_missing_marker_is_missing_and_liveness_waits_for_the_absence_clock() -> None:
    text = "petsage beat missing: beat has recorded no publish"
    assert beat_verdict(_report(None), liveness=False) == Verdict(
        2, text, _beat_fields(None, "missing", text, seq=None))
    assert beat_verdict(_report(None), liveness=True, store=NORMAL,
                        absence=Absence(30.001, "")) == Verdict(
        2, text, _beat_fields(None, "missing", text, seq=None))
    within = (f"{text}; cannot tell yet: absent for 30.0s since this probe first found it so, "
              "within the 30s threshold: tolerated by liveness")
    assert beat_verdict(_report(None), liveness=True, store=NORMAL,
                        absence=Absence(30.0, "")) == Verdict(
        0, within, _beat_fields(None, "missing", within, seq=None))


def test_an_old_marker_on_a_store_that_cannot_take_writes_is_tolerated() -> None:
    text = ("petsage beat stale: last published 500.0s ago, over 30s; cannot tell: "
            f"{REPLICA}, so no component can write its record there: tolerated by liveness")
    store = StoreEvidence(REPLICA, 3600.0, "r", False)
    assert beat_verdict(_report(_marker(500)), liveness=True, store=store) == Verdict(
        0, text, _beat_fields(500.0, "stale", text))


def test_a_refused_publish_counts_as_beat_s_last_sign_of_life() -> None:
    refusing = _marker(None, publish_failed_at_ms=NOW - 1500, publish_error="Connection refused")
    text = ("petsage beat fresh: running, but the broker refused its last publish 1.5s ago: "
            "Connection refused")
    expected = _beat_fields(1.5, "fresh", text, publish_error="Connection refused")
    assert beat_verdict(_report(refusing), liveness=False) == Verdict(0, text, expected)
    assert beat_verdict(_report(refusing), liveness=True) == Verdict(0, text, expected)
    # Refused after an older publish: the refusal is the later sign of life.
    old = _marker(40.0, publish_failed_at_ms=NOW - 31_000, publish_error="down")
    text = ("petsage beat stale: running, but the broker refused its last publish 31.0s ago: "
            "down, over 30s")
    assert beat_verdict(_report(old), liveness=True, store=NORMAL) == Verdict(
        2, text, _beat_fields(31.0, "stale", text, publish_error="down"))
    # A publish after the refusal: the refusal is over.
    back = _marker(2.0, publish_failed_at_ms=NOW - 3000, publish_error="down")
    text = "petsage beat fresh: last published 2.0s ago"
    assert beat_verdict(_report(back), liveness=False) == Verdict(
        0, text, _beat_fields(2.0, "fresh", text))


def test_a_second_beat_warns_and_never_fails_liveness() -> None:
    two = "; two beats publish (the other is beat-2): run exactly one"
    fresh = _report(_marker(1.0), second_beat="beat-2")
    text = f"petsage beat fresh: last published 1.0s ago{two}"
    expected = _beat_fields(1.0, "fresh", text, second="beat-2")
    assert beat_verdict(fresh, liveness=False) == Verdict(1, text, expected)
    assert beat_verdict(fresh, liveness=True) == Verdict(0, text, expected)
    stale = _report(_marker(31.0), second_beat="beat-2")
    text = f"petsage beat stale: last published 31.0s ago, over 30s{two}"
    expected = _beat_fields(31.0, "stale", text, second="beat-2")
    assert beat_verdict(stale, liveness=False) == Verdict(2, text, expected)
    assert beat_verdict(stale, liveness=True, store=NORMAL) == Verdict(2, text, expected)


def test_a_beat_publishing_on_time_is_never_doubted() -> None:
    # Only a verdict that would fail asks why it can't tell: a fresh or late beat passes as
    # it is, even on a store that restarted a second ago.
    restarted = StoreEvidence(None, 1.0, "r", True)
    for age_s, state in ((1.0, "fresh"), (20.0, "late")):
        text = f"petsage beat {state}: last published {age_s:.1f}s ago"
        if state == "late":
            text += ", over 15s"
        assert beat_verdict(_report(_marker(age_s)), liveness=True, store=restarted,
                            absence=Absence(0.0, "")) == Verdict(
            0, text, _beat_fields(age_s, state, text))


def test_without_the_heartbeat_s_thresholds_beat_s_own_settings_apply() -> None:
    # No readable heartbeat: the thresholds are beat's (interval 2 s, stale after 5 s), else
    # the defaults (interval 10 s: late after 15 s, stale after 30 s).
    own = _report(_marker(4.0, interval_s=2, stale_after_s=5))._replace(thresholds=None)
    text = "petsage beat late: last published 4.0s ago, over 3s"
    assert beat_verdict(own, liveness=False) == Verdict(
        1, text, _beat_fields(4.0, "late", text, late=3, stale=5))
    node = own._replace(nodes=(_node("hb@pod-a", 5.5),))
    text = "petsage node pod-a (hb@pod-a) stale: last node heartbeat 5.5s ago, over 5s"
    assert node_verdict(node, "pod-a", liveness=False) == Verdict(2, text, _node_fields(
        [("hb@pod-a", "stale", 5.5)], 5.5, "stale", text, late=3, stale=5))
    none = _report(None)._replace(thresholds=None)
    text = "petsage beat missing: beat has recorded no publish"
    assert beat_verdict(none, liveness=False) == Verdict(
        2, text, _beat_fields(None, "missing", text, seq=None))


def test_a_node_heartbeat_ahead_of_the_store_s_clock_has_waited_no_time() -> None:
    # A record up to the tolerance ahead of the Redis clock reads as age 0, and beat has
    # published for 0 s since: not over even the smallest threshold the flags take.
    ahead = NodeReport("hb@pod-a", State.FRESH, 0.0, NOW + 1500)
    report = _report(_marker(1.0), (ahead,))
    text = "petsage node pod-a (hb@pod-a) fresh: last node heartbeat 0.0s ago"
    assert node_verdict(report, "pod-a", liveness=True, stale_after_s=0.0005) == Verdict(
        0, text, _node_fields([("hb@pod-a", "fresh", 0.0)], 0.0, "fresh", text, late=0.0005,
                              stale=0.0005))
