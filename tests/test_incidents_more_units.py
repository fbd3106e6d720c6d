"""More of the incident summaries in process: the read's commands on a fixed Redis clock
(calls, round trips, pages, a Redis Cluster's one call a service and its error replies),
an outage's diagnosis amended while it lasts (``kind`` ``diagnosis``), the windows' edges,
roundings and the replies a read accepts.

The client here is the probe's own kind (it has ``execute_many``): it answers ``TIME``
with a fixed clock, runs everything else on fakeredis and records each round trip.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import fakeredis
import pytest

from tests.support.incidents import NOW, D, H
from tests.support.incidents import transition as _t
from worker.core.names import Keys
from worker.read import incidents
from worker.read.incidents import (
    INCIDENTS_SCRIPT,
    MAX_FIELD_CHARS,
    MAX_INCIDENTS_READ,
    MAX_SILENCE_BYTES,
    IncidentSummary,
    Outage,
    Silence,
    Transition,
    _before,
    _page,
    _Read,
    _record,
    _transitions,
    parse_silence,
    read_incidents,
    summarize,
)
from worker.read.silence import silence_commands, silence_from_replies

KEYS = Keys()
TOP = 2 ** 64 - 1


def _amended(at_ms: int, state: str, diagnosis: str, reason: str) -> Transition:
    """A diagnosis entry as the monitors write it: the same state, its hop now known."""
    return _t(at_ms, state, state, diagnosis, reason, kind="diagnosis")


class _Client:
    """fakeredis behind the probe client's interface: ``TIME`` is ``now_ms``; ``EVAL_RO``
    runs as ``EVAL``; ``fail`` names a command whose replies are errors; ``after`` runs
    after each round trip. ``cluster``: looks like redis-py's cluster client."""

    def __init__(self, server: fakeredis.FakeRedis, now_ms: int, *, cluster: bool = False,
                 fail: str | None = None, after: Callable[[int], None] | None = None) -> None:
        self.server = server
        self.now_ms = now_ms
        self.fail = fail
        self.after = after
        self.trips: list[list[tuple[Any, ...]]] = []
        if cluster:
            self.nodes_manager = object()

    def execute_many(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        self.trips.append([tuple(c) for c in commands])
        replies: list[Any] = []
        for command in commands:
            if command[0] == self.fail:
                replies.append(RuntimeError(f"refused {command[0]}"))
            elif command[0] == "TIME":
                replies.append([str(self.now_ms // 1000).encode(),
                                str(self.now_ms % 1000 * 1000).encode()])
            else:
                name = "EVAL" if command[0] == "EVAL_RO" else command[0]
                replies.append(self.server.execute_command(  # type: ignore[no-untyped-call]
                    name, *command[1:]))
        if self.after is not None:
            self.after(len(self.trips))
        return replies

    def calls(self) -> list[list[tuple[Any, ...]]]:
        """Each round trip's script calls as (command, services, then the pages: start id
        and count of each service); the script and the fixed arguments checked once."""
        out = []
        for trip in self.trips:
            shown = []
            for command in trip:
                if command[0] == "TIME":
                    shown.append(("TIME",))
                    continue
                numkeys = command[2]
                services = [key.split("{")[1].split("}")[0] for key in command[3:3 + numkeys:3]]
                assert command[1] == INCIDENTS_SCRIPT
                assert list(command[3:3 + numkeys]) == KEYS.monitor_keys(services)
                assert command[3 + numkeys:7 + numkeys] == (
                    f"{self.now_ms - 30 * D}-0", MAX_FIELD_CHARS, MAX_SILENCE_BYTES,
                    incidents.ENTRIES_PER_CALL)
                shown.append((command[0], *services, *command[7 + numkeys:]))
            out.append(shown)
        return out


def _flap(server: fakeredis.FakeRedis, service: str, first_ms: int, count: int) -> None:
    """``count`` transitions a second apart from ``first_ms`` on: fresh/stale in turn."""
    for i in range(count):
        at = first_ms + i * 1000
        old, new = ("fresh", "stale") if i % 2 == 0 else ("stale", "fresh")
        server.xadd(KEYS.incidents(service), {"from": old, "to": new, "at_ms": at,
                                              "diagnosis": f"d{i}", "reason": f"r{i}"},
                    id=f"{at}-0")


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages of four entries, ten at most a stream, two services a call, three calls a
    round trip (the bounds are constants of the module)."""
    monkeypatch.setattr(incidents, "ENTRIES_PER_CALL", 4)
    monkeypatch.setattr(incidents, "MAX_INCIDENTS_READ", 10)
    monkeypatch.setattr(incidents, "SERVICES_PER_CALL", 2)
    monkeypatch.setattr(incidents, "CALLS_PER_TRIP", 3)


@pytest.mark.usefixtures("small_pages")
def test_calls_round_trips_and_pages() -> None:
    """Seven services: two a call, three calls a round trip, then the round's last call.
    A stream longer than a page is read on a page a round, one call a service, each page
    starting below the last id read, to the most a read takes (then ``truncated``); a
    service whose page would pass a call's budget is asked again in the next round."""
    server = fakeredis.FakeRedis()
    now = NOW
    _flap(server, "a", now - 60_000, 12)  # more than the most read: 4 + 4 + 2, truncated
    _flap(server, "b", now - 60_000, 3)  # would pass the budget after a's four: next round
    _flap(server, "e", now - 60_000, 4)  # exactly a page: asked again, none left
    for service in "abcdefg":
        server.hset(KEYS.observed(service), mapping={"state": "fresh",
                                                      "first_ms": now - 2 * 60_000})
    client = _Client(server, now)
    read_now, found = read_incidents(client, KEYS, list("abcdefg"))
    assert read_now == now
    assert list(found) == list("abcdefg")
    assert client.calls() == [
        [("TIME",)],
        [("EVAL_RO", "a", "b", "+", 4, "+", 4), ("EVAL_RO", "c", "d", "+", 4, "+", 4),
         ("EVAL_RO", "e", "f", "+", 4, "+", 4)],
        [("EVAL_RO", "g", "+", 4)],
        [("EVAL_RO", "a", f"{now - 52_001}-{TOP}", 4), ("EVAL_RO", "b", "+", 4),
         ("EVAL_RO", "e", f"{now - 60_001}-{TOP}", 4)],
        [("EVAL_RO", "a", f"{now - 56_001}-{TOP}", 2)]]
    assert found["a"].truncated and found["a"].outages["24h"] == 5
    assert found["a"].covered_s["24h"] == 60 - 2
    assert (found["a"].recent[0].started_ms, found["a"].recent[0].reason) == (
        now - 60_000 + 10_000, "r10")
    assert not found["b"].truncated and found["b"].outages["24h"] == 2
    assert not found["e"].truncated and found["e"].outages["24h"] == 2
    assert [found[s].outages["24h"] for s in "cdfg"] == [0] * 4


def test_a_redis_cluster_gets_one_eval_a_service() -> None:
    """On a cluster, one ``EVAL`` a service (its three keys share a slot; redis-py routes
    ``EVAL`` by its keys); the summaries are the same."""
    server = fakeredis.FakeRedis()
    _flap(server, "a", NOW - 10_000, 2)
    server.hset(KEYS.observed("a"), mapping={"state": "fresh", "first_ms": NOW - 20_000})
    server.set(KEYS.silence("b"), json.dumps({"until_ms": NOW + H, "reason": "db"}))
    client = _Client(server, NOW, cluster=True)
    read_now, found = read_incidents(client, KEYS, ["a", "b", "c"])
    assert read_now == NOW
    assert client.calls() == [[("TIME",)], [("EVAL", "a", "+", 128), ("EVAL", "b", "+", 128),
                                             ("EVAL", "c", "+", 128)]]
    assert found["a"].recent == (Outage(NOW - 10_000, NOW - 9000, "d0", "r0"),)
    assert found["a"].uptime["24h"] == 0.95
    assert found["b"].silence == Silence(NOW + H, "db", 0) and not found["b"].monitored
    assert found["c"] == summarize("c", {}, [], None, NOW)


@pytest.mark.parametrize("on_cluster", [True, False])
def test_an_error_reply_raises(on_cluster: bool) -> None:
    """A store error is the caller's to report (``read_incidents`` raises)."""
    server = fakeredis.FakeRedis()
    command = "EVAL" if on_cluster else "EVAL_RO"
    client = _Client(server, NOW, cluster=on_cluster, fail=command)
    with pytest.raises(RuntimeError, match=f"^refused {command}$"):
        read_incidents(client, KEYS, ["a", "b"])


def test_the_oldest_id_is_never_below_zero() -> None:
    """A clock under thirty days (a fresh test server, a clock never set) reads from 0-0."""
    client = _Client(fakeredis.FakeRedis(), 5000)
    read_incidents(client, KEYS, ["a"])
    assert client.trips[1][0][3 + 3:7 + 3] == ("0-0", MAX_FIELD_CHARS, MAX_SILENCE_BYTES, 128)


@pytest.mark.usefixtures("small_pages")
def test_the_record_and_silence_are_those_read_with_the_newest_entries() -> None:
    """A record written between two pages is not mixed in: the summary's record and
    silence are the first page's, read with the newest entries in one script call."""
    server = fakeredis.FakeRedis()
    _flap(server, "a", NOW - 60_000, 6)
    server.hset(KEYS.observed("a"), mapping={"state": "fresh", "first_ms": NOW - 2 * 60_000,
                                             "at_ms": NOW - 55_000})
    server.set(KEYS.silence("a"), json.dumps({"until_ms": NOW + H, "reason": "first"}))

    def rewrite(trip: int) -> None:
        if trip == 2:
            server.hset(KEYS.observed("a"), mapping={"state": "stale", "at_ms": NOW - 1})
            server.set(KEYS.silence("a"), json.dumps({"until_ms": NOW + H, "reason": "later"}))

    client = _Client(server, NOW, after=rewrite)
    s = read_incidents(client, KEYS, ["a"])[1]["a"]
    assert len(client.trips) == 3
    assert (s.state, s.since_ms, s.silence) == ("fresh", NOW - 55_000,
                                                Silence(NOW + H, "first", 0))


def test_a_page_of_a_read() -> None:
    """What one page adds: the record and silence of the first page only, entries to what
    was asked, the next page's start below the last id read, done when a page is short,
    the read full, or no id is below."""
    read = _Read()
    _page(read, [b"fresh"], None, b"s")  # not read: asked again
    assert (read.record, read.silence, read.entries, read.start, read.done) == (
        None, None, [], "+", False)
    page = [(f"{900 - i}-0".encode(), [b"at_ms", b"1"]) for i in range(130)]
    _page(read, [b"fresh"], page, b"s")  # more than asked: only what was asked is kept
    assert (read.record, read.silence, len(read.entries)) == ([b"fresh"], b"s", 128)
    assert (read.start, read.done) == (f"772-{TOP}", False)
    _page(read, [b"stale"], page[128:], b"t")
    assert (read.record, read.silence, len(read.entries)) == ([b"fresh"], b"s", 130)
    assert (read.start, read.done) == (f"770-{TOP}", True)
    exact = _Read()
    _page(exact, None, page[:128], None)
    assert (exact.start, exact.done) == (f"772-{TOP}", False)
    empty = _Read()
    _page(empty, [b"fresh"], [], None)
    assert (empty.record, empty.entries, empty.start, empty.done) == ([b"fresh"], [], "+", True)
    bottom = _Read()
    _page(bottom, None, [(b"0-0", [])] * 128, None)  # nothing below 0-0: done, start kept
    assert (bottom.start, bottom.done) == ("+", True)
    full = _Read()
    full.start, full.entries = "5-0", [(b"9-0", [])] * (MAX_INCIDENTS_READ - 1)
    _page(full, [b"x"], [(b"4-0", []), (b"3-0", [])], None)  # asked one: the newer one
    assert (len(full.entries), full.entries[-1], full.start, full.done, full.record) == (
        MAX_INCIDENTS_READ, (b"4-0", []), f"3-{TOP}", True, None)


def test_the_id_below() -> None:
    assert _before("5") == f"4-{TOP}" and _before("1-0") == f"0-{TOP}"
    assert _before("1-1") == "1-0" and _before("0-1") == "0-0" and _before("7-x") is None


# An outage's diagnosis, amended while it lasts.


def test_a_diagnosis_entry_names_the_hop_of_the_outage_it_falls_in() -> None:
    record = {"state": "fresh", "first_ms": str(NOW - 10 * H)}
    s = summarize("svc", record, [
        _t(NOW - 9 * H, "fresh", "missing", "beat_or_broker", "overdue"),
        _amended(NOW - 9 * H, "missing", "broker_down", "refused"),  # at its start: in it
        _t(NOW - 8 * H, "missing", "fresh"),
        _amended(NOW - 8 * H, "missing", "beat_down", "at its end"),  # at its end: not
        _t(NOW - 6 * H, "fresh", "stale", "no_consumer", "queue"),
        _amended(NOW - 5 * H, "stale", "worker_slow", "slow"),
        _t(NOW - 4 * H, "stale", "fresh"),
        _amended(NOW - 3 * H, "stale", "beat_down", "between"),  # in no outage
        _t(NOW - 2 * H, "fresh", "stale", "beat_or_broker", "overdue"),
        _amended(NOW - H, "stale", "beat_down", "gone"),  # in the ongoing one
    ], None, NOW)
    assert s.recent == (Outage(NOW - 2 * H, None, "beat_down", "gone"),
                        Outage(NOW - 6 * H, NOW - 4 * H, "worker_slow", "slow"),
                        Outage(NOW - 9 * H, NOW - 8 * H, "broker_down", "refused"))
    # Diagnosis entries are no transitions: the windows are the transitions' alone.
    assert s.outages["24h"] == 3 and s.uptime["24h"] == 0.5
    assert s.covered_s["24h"] == 10 * 3600.0 and s.mttr_s["24h"] == 5400.0


def test_a_vague_diagnosis_never_replaces_a_named_one() -> None:
    record = {"state": "stale", "first_ms": str(NOW - 10 * H)}
    start = _t(NOW - 9 * H, "fresh", "stale", "beat_down", "named")
    s = summarize("svc", record, [start, _amended(NOW - 8 * H, "stale", "beat_or_broker", "x"),
                                  _amended(NOW - 7 * H, "stale", "", "nothing"),
                                  _amended(NOW - 6 * H, "stale", "beat_down", "same hop")],
                  None, NOW)
    assert s.recent == (Outage(NOW - 9 * H, None, "beat_down", "named"),)
    # ... but names one where nothing was named, and a named one replaces it in turn.
    vague = _t(NOW - 9 * H, "fresh", "stale", "", "unknown")
    s = summarize("svc", record, [vague, _amended(NOW - 8 * H, "stale", "beat_or_broker", "b"),
                                  _amended(NOW - 7 * H, "stale", "no_consumer", "c")], None, NOW)
    assert s.recent == (Outage(NOW - 9 * H, None, "no_consumer", "c"),)
    s = summarize("svc", record, [vague, _amended(NOW - 8 * H, "stale", "beat_or_broker", "b")],
                  None, NOW)
    assert s.recent == (Outage(NOW - 9 * H, None, "beat_or_broker", "b"),)
    # An entry of an up state (late, amended) names no outage's hop.
    s = summarize("svc", record, [vague, _amended(NOW - 8 * H, "late", "worker_slow", "l")],
                  None, NOW)
    assert s.recent == (Outage(NOW - 9 * H, None, "", "unknown"),)


def test_a_move_between_down_states_names_the_hop_too() -> None:
    """Stale, then missing, is one outage; the move names its hop like a diagnosis entry."""
    record = {"state": "missing", "first_ms": str(NOW - 10 * H)}
    s = summarize("svc", record, [_t(NOW - 9 * H, "fresh", "stale", "no_consumer", "a"),
                                  _t(NOW - 8 * H, "stale", "missing", "beat_down", "b"),
                                  _t(NOW - 7 * H, "missing", "invalid", "", "c")], None, NOW)
    assert s.recent == (Outage(NOW - 9 * H, None, "beat_down", "b"),)
    assert s.outages == {"24h": 1, "7d": 1, "30d": 1}


def test_a_cut_read_of_only_diagnoses() -> None:
    """No transition read, only diagnosis entries: the steady state from the later of the
    record's start and the oldest entry read; unknown where no record says since when."""
    entries = [_amended(NOW - 2 * H, "stale", "beat_down", "r"),
               _amended(NOW - H, "stale", "broker_down", "r")]
    later = summarize("svc", {"state": "stale", "first_ms": str(NOW - H // 2)}, entries, None,
                      NOW, truncated=True)
    assert later.truncated and later.covered_s["24h"] == 1800.0
    assert later.recent == (Outage(NOW - H // 2, None, "", ""),)
    earlier = summarize("svc", {"state": "stale", "first_ms": str(NOW - 5 * H)}, entries, None,
                        NOW, truncated=True)
    assert earlier.covered_s["24h"] == 7200.0
    unknown = summarize("svc", {"state": "stale"}, entries, None, NOW, truncated=True)
    assert unknown.truncated and unknown.covered_s["24h"] == 0.0 and unknown.recent == ()
    assert unknown.uptime["24h"] is None and unknown.outages["24h"] == 0
    nothing = summarize("svc", {"state": "stale", "first_ms": "1"}, [], None, NOW,
                        truncated=True)
    assert not nothing.truncated  # nothing read: nothing was cut


def test_a_cut_read_starting_with_a_recovery_has_no_outage_of_no_length() -> None:
    """The oldest entry read is a move from down to up: the down state before it lasted
    no time that was read; the later transitions keep their own causes."""
    record = {"state": "missing", "first_ms": str(NOW - 10 * D), "diagnosis": "beat_down"}
    transitions = [_t(NOW - 3 * H, "stale", "fresh", "", "up"),
                   _t(NOW - 2 * H, "fresh", "missing", "beat_down", "gone")]
    s = summarize("svc", record, transitions, None, NOW, truncated=True)
    assert s.recent == (Outage(NOW - 2 * H, None, "beat_down", "gone"),)
    assert s.outages == {"24h": 1, "7d": 1, "30d": 1} and s.covered_s["30d"] == 3 * 3600.0
    assert s.uptime["24h"] == round(1 / 3, 6)
    # The same entries read whole: the record starts the timeline, down from its start.
    whole = summarize("svc", record, transitions, None, NOW)
    assert whole.recent == (Outage(NOW - 2 * H, None, "beat_down", "gone"),
                            Outage(NOW - 10 * D, NOW - 3 * H, "beat_down", ""))
    # A cut read whose oldest entry is a diagnosis entry starts there.
    amend = _amended(NOW - 4 * H, "stale", "broker_down", "refused")
    s = summarize("svc", record, [amend, *transitions], None, NOW, truncated=True)
    assert s.recent == (Outage(NOW - 2 * H, None, "beat_down", "gone"),
                        Outage(NOW - 4 * H, NOW - 3 * H, "broker_down", "refused"))
    assert s.covered_s["24h"] == 4 * 3600.0


def test_down_at_both_ends_is_two_outages() -> None:
    """Down from the record's start (its diagnosis, else none) and down again now."""
    for record, diagnosis in (({"state": "missing", "first_ms": str(NOW - 5 * H),
                                "diagnosis": "no_consumer"}, "no_consumer"),
                              ({"state": "missing", "first_ms": str(NOW - 5 * H)}, "")):
        s = summarize("svc", record, [_t(NOW - 4 * H, "stale", "fresh"),
                                      _t(NOW - H, "fresh", "missing", "beat_down", "r")],
                      None, NOW)
        assert s.recent == (Outage(NOW - H, None, "beat_down", "r"),
                            Outage(NOW - 5 * H, NOW - 4 * H, diagnosis, ""))
        assert s.outages["24h"] == 2 and s.uptime["24h"] == 0.6
        assert s.as_json(NOW)["outages"][1]["diagnosis"] == (diagnosis or None)


def test_a_millisecond_counts() -> None:
    record = {"state": "fresh", "first_ms": str(NOW - 10)}
    s = summarize("svc", record, [_t(NOW - 5, "fresh", "stale"), _t(NOW - 4, "stale", "fresh")],
                  None, NOW)
    assert s.uptime["24h"] == 0.9 and s.covered_s["24h"] == 0.01 and s.mttr_s["24h"] == 0.001


def test_an_outage_ending_at_a_windows_start_is_not_in_it() -> None:
    record = {"state": "fresh", "first_ms": str(NOW - 3 * D)}
    for end, count in ((NOW - D, 0), (NOW - D + 1, 1)):
        s = summarize("svc", record, [_t(NOW - 2 * D, "fresh", "stale"),
                                      _t(end, "stale", "fresh")], None, NOW)
        assert s.outages["24h"] == count and s.outages["7d"] == 1
        assert s.mttr_s["24h"] == (None if count == 0 else (end - (NOW - 2 * D)) / 1000)


def test_time_after_now_is_not_counted() -> None:
    """A transition stamped after the reader's clock (another node's clock, ahead): its
    state has not begun yet, and the one before it lasts until now."""
    record = {"state": "fresh", "first_ms": str(NOW - 2 * H)}
    s = summarize("svc", record, [_t(NOW - H, "fresh", "stale"), _t(NOW + H, "stale", "fresh")],
                  None, NOW)
    assert s.covered_s["24h"] == 7200.0 and s.uptime["24h"] == 0.5
    ahead = summarize("svc", {"state": "stale", "first_ms": str(NOW)},
                      [_t(NOW + H, "fresh", "stale")], None, NOW)
    assert ahead.uptime["24h"] is None and ahead.covered_s["24h"] == 0.0
    assert ahead.mttr_s["24h"] is None


def test_roundings() -> None:
    """Uptime to six digits, seconds to the millisecond."""
    record = {"state": "fresh", "first_ms": str(NOW - 3000)}
    s = summarize("svc", record, [_t(NOW - 2000, "fresh", "stale"),
                                  _t(NOW - 1999, "stale", "fresh"),
                                  _t(NOW - 1000, "fresh", "stale"),
                                  _t(NOW - 998, "stale", "fresh"),
                                  _t(NOW - 500, "fresh", "stale"),
                                  _t(NOW - 498, "stale", "fresh")], None, NOW)
    assert s.uptime["24h"] == 0.998333 and s.mttr_s["24h"] == 0.002
    s = summarize("svc", record, [_t(NOW - 2000, "fresh", "stale"),
                                  _t(NOW - 1999, "stale", "fresh"),
                                  _t(NOW - 1000, "fresh", "stale"),
                                  _t(NOW - 998, "stale", "fresh")], None, NOW)
    assert s.mttr_s["24h"] == 0.002  # 1.5 ms
    js = summarize("svc", {"state": "stale", "first_ms": "1"}, [_t(NOW - 1500, "fresh", "stale")],
                   Silence(NOW + 2500, "r", 0), NOW).as_json(NOW)
    assert js["outages"][0]["duration_s"] == 1.5
    assert js["silence"]["remaining_s"] == 2.5


def test_a_silence_past_reads_no_time_remaining() -> None:
    """``as_json`` of a summary holding a silence that has ended by its clock."""
    steady = summarize("svc", {}, [], None, NOW)
    s = IncidentSummary(**{**steady._asdict(), "silence": Silence(NOW - 1000, "r", 0)})
    assert s.as_json(NOW)["silence"] == {"until_ms": NOW - 1000, "reason": "r",
                                         "remaining_s": 0.0}
    fields = steady._asdict()
    del fields["truncated"]
    assert IncidentSummary(**fields).truncated is False  # a summary says when it was cut


def test_a_steady_service_down_since_no_known_time() -> None:
    s = summarize("svc", {"state": "stale", "diagnosis": "beat_down"}, [], None, NOW)
    assert s.monitored and s.recent == () and s.outages["24h"] == 0
    assert s.uptime["24h"] is None and s.covered_s["24h"] == 0.0
    down = summarize("svc", {"state": "stale", "first_ms": str(NOW - H)}, [], None, NOW)
    assert down.recent == (Outage(NOW - H, None, "", ""),)


# The replies a read accepts.


def test_entries_as_transitions() -> None:
    assert Transition("1-0", "a", "b", "", "", 1).kind == "transition"
    entries = [(b"2-0", [b"at_ms", b"2", b"kind", b"diagnosis", b"to", b"stale"]),
               (b"1-0", [b"at_ms", b"1", b"kind", b""]),
               ("i" * 400, [b"at_ms", b"0"])]
    assert _transitions(entries) == [Transition("i" * MAX_FIELD_CHARS, "", "", "", "", 0),
                                     Transition("1-0", "", "", "", "", 1),
                                     Transition("2-0", "", "stale", "", "", 2, "diagnosis")]
    many = [(f"{i}-0".encode(), [b"at_ms", str(i).encode()]) for i in range(2005, 0, -1)]
    read = _transitions(many)
    assert len(read) == MAX_INCIDENTS_READ  # the newest of them
    assert (read[0].at_ms, read[-1].at_ms) == (6, 2005)


def test_records_of_odd_and_long_replies() -> None:
    assert _record([b"a", b"1", b"b"]) == {"a": "1"}
    long = "k" * 400
    assert _record({long.encode(): b"v"}) == {"k" * MAX_FIELD_CHARS: "v"}
    assert _record([long, long]) == {"k" * MAX_FIELD_CHARS: "k" * MAX_FIELD_CHARS}


def test_silences_at_their_bounds() -> None:
    def value(size: int) -> bytes:
        body = json.dumps({"until_ms": 5, "reason": "r"}).encode()
        return body + b" " * (size - len(body))

    assert parse_silence(value(MAX_SILENCE_BYTES)) == Silence(5, "r", 0)
    assert parse_silence(value(MAX_SILENCE_BYTES + 1)) is None
    assert parse_silence(b'{"until_ms": 1e400}') is None  # no int: OverflowError
    assert parse_silence(b"[" * 3000) is None  # RecursionError
    assert parse_silence(b'{"until_ms": null}') is None
    assert parse_silence(b'"text"') is None
    assert silence_commands(KEYS, "svc") == [
        ("STRLEN", KEYS.silence("svc")), ("GETRANGE", KEYS.silence("svc"), 0, 4095)]
    good = value(40)
    assert silence_from_replies(40, good) == Silence(5, "r", 0)
    assert silence_from_replies(1, good) == Silence(5, "r", 0)
    assert silence_from_replies(MAX_SILENCE_BYTES, good) == Silence(5, "r", 0)
    assert silence_from_replies(MAX_SILENCE_BYTES + 1, good) is None
    assert silence_from_replies(40, ValueError("x")) is None
    assert silence_from_replies("40", good) is None
    assert silence_from_replies(None, None) is None
