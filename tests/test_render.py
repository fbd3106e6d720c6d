"""What people and machines read, exactly: every rendering of a report, called in process.

The CLI tests run these through real processes; here each function's whole output is
pinned for known reports (fresh, late, stale with and without a payload, unreachable,
with nodes, a second beat, a refused publish, a silence and outages), so that a changed
word, unit, rounding or field is a failing test, not a changed probe line nobody sees.
"""

from __future__ import annotations

import time
from typing import Any, cast

import pytest

from worker.core.payload import Payload
from worker.core.states import Diagnosis, State, Thresholds
from worker.read.incidents import IncidentSummary, Outage, Silence
from worker.read.nodes import NodeReport
from worker.read.reader import HeartbeatReport
from worker.read.render import (
    NAGIOS_LABELS,
    TABLE_COLUMNS,
    beat_summary,
    heartbeat_line,
    incident_lines,
    nagios_line,
    render_table,
    silence_note,
    summary,
    table_row,
    transition_event,
    transition_line,
)

NOW_MS = 1_700_000_010_000
TH = Thresholds(7.5, 15.0)


def _payload(**over: Any) -> Payload:
    body: dict[str, Any] = {
        "service": "petsage", "status": "ok", "message": "all checks passed",
        "timestamp": "2023-11-14T22:13:28.000Z", "ts_ms": NOW_MS - 2100, "seq": 42,
        "worker": {"node": "heartbeat@pod-7", "pid": 12},
        "queue_lag_ms": 3, "duration_ms": 12.4, "clock_offset_ms": -5, "backlog": 0,
    }
    body.update(over)
    return cast(Payload, body)


def _fresh(**over: Any) -> HeartbeatReport:
    base = HeartbeatReport("petsage", State.FRESH, "heartbeat 2.1s old", 2.1, TH, _payload(),
                           NOW_MS)
    return base._replace(**over)


def _stale_no_payload() -> HeartbeatReport:
    return HeartbeatReport("petsage", State.MISSING, "no heartbeat stored", None, TH, None,
                           NOW_MS, Diagnosis.NEVER_SEEN)


NODES = (
    NodeReport("heartbeat@pod-7", State.FRESH, 1.2345, NOW_MS - 1234),
    NodeReport("heartbeat@pod-8", State.STALE, 40.0, NOW_MS - 40_000),
)


def test_nagios_labels_are_the_plugin_words() -> None:
    assert NAGIOS_LABELS == {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}


def test_nagios_line_of_a_fresh_heartbeat() -> None:
    assert nagios_line(_fresh()) == (
        "OK - petsage heartbeat 2.1s old, seq 42 | age=2.100s;7.5;15;0 seq=42c "
        "lag=3ms;;;0 duration=12ms;;;0")


def test_nagios_line_of_a_late_heartbeat_with_its_diagnosis_and_a_note() -> None:
    report = _fresh(state=State.LATE, reason="heartbeat 9.0s old (late after 7.5s)",
                    age_s=9.0, diagnosis=Diagnosis.WORKER_SLOW)
    assert nagios_line(report, "silenced for 5m 0s: deploy") == (
        "WARNING - petsage heartbeat late: heartbeat 9.0s old (late after 7.5s), seq 42 "
        "[worker_slow] (silenced for 5m 0s: deploy) | age=9.000s;7.5;15;0 seq=42c "
        "lag=3ms;;;0 duration=12ms;;;0")


def test_nagios_line_without_lag_or_duration_has_no_such_perf_data() -> None:
    report = _fresh(payload=_payload(queue_lag_ms=None, duration_ms="12"))
    assert nagios_line(report) == (
        "OK - petsage heartbeat 2.1s old, seq 42 | age=2.100s;7.5;15;0 seq=42c")


def test_nagios_line_without_a_payload_has_no_perf_data() -> None:
    assert nagios_line(_stale_no_payload()) == (
        "CRITICAL - petsage heartbeat missing: no heartbeat stored [never_seen]")


def test_nagios_line_of_a_fresh_state_without_an_age_says_why() -> None:
    report = _fresh(age_s=None)
    assert nagios_line(report) == (
        "OK - petsage heartbeat fresh: heartbeat 2.1s old, seq 42")


def test_nagios_line_without_thresholds_has_no_perf_data() -> None:
    assert nagios_line(_fresh(thresholds=None)) == "OK - petsage heartbeat 2.1s old, seq 42"


def test_nagios_line_of_an_unreachable_store() -> None:
    report = HeartbeatReport("petsage", State.UNREACHABLE, "connection refused",
                             diagnosis=Diagnosis.STORE_UNREACHABLE)
    assert nagios_line(report) == (
        "UNKNOWN - petsage heartbeat unreachable: connection refused [store_unreachable]")


def test_summary_of_a_fresh_report_has_every_field() -> None:
    report = _fresh(age_s=2.12345, nodes=NODES, second_beat="beat@b publishes too",
                    beat={"published_at_ms": NOW_MS - 2500, "seq": 42, "queue_depth": 1})
    assert summary(report) == {
        "service": "petsage", "state": "fresh", "exit_code": 0, "age_s": 2.123,
        "late_after_s": 7.5, "stale_after_s": 15.0, "reason": "heartbeat 2.1s old",
        "diagnosis": None, "clock_offset_ms": -5,
        "nodes": [{"node": "heartbeat@pod-7", "state": "fresh", "age_s": 1.234},
                  {"node": "heartbeat@pod-8", "state": "stale", "age_s": 40.0}],
        "second_beat": "beat@b publishes too",
        "beat": {"published_age_s": 2.5, "seq": 42, "queue_depth": 1,
                 "publish_failed_age_s": None, "publish_error": None},
        "heartbeat": {"seq": 42, "ts_ms": NOW_MS - 2100,
                      "timestamp": "2023-11-14T22:13:28.000Z", "status": "ok",
                      "message": "all checks passed", "worker": "heartbeat@pod-7",
                      "queue_lag_ms": 3, "duration_ms": 12.4, "backlog": 0},
    }


def test_summary_of_a_report_without_payload_thresholds_or_beat() -> None:
    report = HeartbeatReport("petsage", State.UNREACHABLE, "connection refused",
                             diagnosis=Diagnosis.STORE_UNREACHABLE)
    assert summary(report) == {
        "service": "petsage", "state": "unreachable", "exit_code": 3, "age_s": None,
        "late_after_s": None, "stale_after_s": None, "reason": "connection refused",
        "diagnosis": "store_unreachable", "clock_offset_ms": None, "nodes": [],
        "second_beat": None, "beat": None, "heartbeat": None,
    }


def test_summary_of_a_payload_whose_worker_is_not_an_object() -> None:
    heartbeat = summary(_fresh(payload=_payload(worker="pod-7")))["heartbeat"]
    assert heartbeat["worker"] is None
    assert summary(_fresh(payload=_payload(worker=None)))["heartbeat"]["worker"] is None


def test_beat_summary_with_a_refused_publish() -> None:
    marker = {"published_at_ms": NOW_MS - 9000, "seq": 7, "queue_depth": 0,
              "publish_failed_at_ms": NOW_MS - 1500, "publish_error": "connection refused"}
    assert beat_summary(marker, NOW_MS) == {
        "published_age_s": 9.0, "seq": 7, "queue_depth": 0,
        "publish_failed_age_s": 1.5, "publish_error": "connection refused"}


def test_beat_summary_ages_need_a_clock_and_integer_times() -> None:
    marker = {"published_at_ms": NOW_MS + 500, "publish_failed_at_ms": NOW_MS + 900}
    assert beat_summary(marker, NOW_MS)["published_age_s"] == 0.0  # never negative
    assert beat_summary(marker, NOW_MS)["publish_failed_age_s"] == 0.0
    assert beat_summary(marker, None)["published_age_s"] is None
    assert beat_summary({"published_at_ms": "123"}, NOW_MS)["published_age_s"] is None
    assert beat_summary({"published_at_ms": 1.5e12}, NOW_MS)["published_age_s"] is None
    assert beat_summary({"published_at_ms": NOW_MS - 1234}, NOW_MS)["published_age_s"] == 1.234


def test_table_row_of_a_fresh_report_with_nodes() -> None:
    assert table_row(_fresh(nodes=NODES)) == (
        "petsage", "fresh", "-", "2.1s", "42", "heartbeat@pod-7",
        "1/2 (heartbeat@pod-8 not fresh)", "3ms", "ok", "heartbeat 2.1s old")


def test_table_row_of_a_report_without_payload() -> None:
    assert table_row(_stale_no_payload()) == (
        "petsage", "missing", "never_seen", "-", "-", "-", "-", "-", "-",
        "no heartbeat stored")


def test_table_row_of_a_payload_with_odd_fields() -> None:
    report = _fresh(payload=_payload(worker="pod-7", queue_lag_ms=2.6), age_s=0.04)
    row = table_row(report)
    assert row[3] == "0.0s"
    assert row[5] == "-"
    assert row[7] == "3ms"
    assert table_row(_fresh(payload=_payload(queue_lag_ms="3")))[7] == "-"


def test_render_table_aligns_every_column_but_the_last() -> None:
    rows = [table_row(_fresh()), table_row(_stale_no_payload())]
    assert render_table(rows).splitlines() == [
        "SERVICE  STATE    DIAGNOSIS   AGE   SEQ  WORKER           NODES  LAG  STATUS  REASON",
        "petsage  fresh    -           2.1s  42   heartbeat@pod-7  -      3ms  ok      "
        "heartbeat 2.1s old",
        "petsage  missing  never_seen  -     -    -                -      -    -       "
        "no heartbeat stored",
    ]
    assert TABLE_COLUMNS[-1] == "REASON"


def test_render_table_of_no_rows_is_the_header() -> None:
    assert render_table([]) == "  ".join(TABLE_COLUMNS)


def test_heartbeat_line_as_run_prints_it() -> None:
    assert heartbeat_line(_fresh(age_s=2.105)) == (
        "heartbeat petsage seq=42 fresh age=2.10s lag=3ms duration=12ms status=ok")
    report = _fresh(age_s=None, payload=_payload(queue_lag_ms=None, duration_ms=None))
    report = report._replace(payload=cast(Payload, {
        k: v for k, v in cast(dict[str, Any], report.payload).items()
        if k not in ("queue_lag_ms", "duration_ms")}))
    assert heartbeat_line(report) == (
        "heartbeat petsage seq=42 fresh age=? lag=? duration=? status=ok")
    # null (a sound payload may say it) reads as absent, not as a crash.
    nulls = _fresh(payload=_payload(queue_lag_ms=None, duration_ms=None))
    assert heartbeat_line(nulls) == (
        "heartbeat petsage seq=42 fresh age=2.10s lag=? duration=? status=ok")
    assert heartbeat_line(_stale_no_payload()) == (
        "heartbeat petsage: missing (no heartbeat stored)")


def test_transition_event_and_line() -> None:
    report = _fresh(state=State.STALE, reason="heartbeat 20.0s old", age_s=20.12349,
                    diagnosis=Diagnosis.NO_CONSUMER)
    event = transition_event(State.LATE, report)
    time = event.pop("time")
    assert time.endswith("+00:00") and len(time) == len("2026-11-27T10:00:00.123+00:00")
    assert event == {"service": "petsage", "old_state": "late", "new_state": "stale",
                     "age_s": 20.123, "seq": 42, "reason": "heartbeat 20.0s old",
                     "diagnosis": "no_consumer", "exit_code": 2}
    first = transition_event(None, _stale_no_payload())
    assert (first["old_state"], first["age_s"], first["seq"]) == ("unknown", None, None)
    assert transition_line({**event, "time": "T"}) == (
        "T petsage late -> stale (heartbeat 20.0s old)")


@pytest.mark.parametrize(("left_s", "text"), [
    (0.4, "0s"), (59.4, "59s"), (60, "1m 0s"), (303, "5m 3s"), (3599, "59m 59s"),
    (3600, "1h 0m"), (7800, "2h 10m"), (86_399, "23h 59m"), (86_400, "1d 0h"),
    (86_400 + 5 * 3600, "1d 5h"),
    (3 * 86_400 + 4 * 3600 + 59, "3d 4h"),
])
def test_silence_note_spans(left_s: float, text: str) -> None:
    silence = Silence(NOW_MS + round(left_s * 1000), "", NOW_MS - 1)
    assert silence_note(silence, NOW_MS) == f"silenced for {text}"


def test_silence_note_with_a_reason_and_past_its_end() -> None:
    assert silence_note(Silence(NOW_MS + 7_140_000, "db migration", 0), NOW_MS) == (
        "silenced for 1h 59m: db migration")
    assert silence_note(Silence(NOW_MS - 5000, "", 0), NOW_MS) == "silenced for 0s"


def _record(**over: Any) -> IncidentSummary:
    base = IncidentSummary(
        service="petsage", monitored=True, state="stale", since_ms=NOW_MS - 90_000,
        first_ms=NOW_MS - 86_400_000,
        uptime={"24h": 0.99875, "7d": None, "30d": 1.0},
        covered_s={"24h": 86_400.0, "7d": 86_400.0, "30d": 86_400.0},
        outages={"24h": 2, "7d": 1, "30d": 0},
        mttr_s={"24h": 95.0, "7d": None, "30d": None},
        recent=(Outage(NOW_MS - 90_000, None, "no_consumer", "heartbeat 20s old"),
                Outage(1_700_000_000_000 - 3_600_000, 1_700_000_000_000 - 3_500_000, "", "x")),
        silence=None)
    return base._replace(**over)


def test_incident_lines_of_a_monitored_service() -> None:
    assert incident_lines(_record(), NOW_MS) == [
        "uptime: 24h 99.875% (2 outages, MTTR 1m 35s); 7d - (1 outage); "
        "30d 100.000% (0 outages); monitored for 1d 0h of 30d",
        "outage 2023-11-14 22:12:00Z 1m 30s ongoing [no_consumer]",
        "outage 2023-11-14 21:13:20Z 1m 40s recovered",
    ]


def test_outage_lengths_and_times_are_utc_whatever_the_local_zone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "IST-5:30")  # POSIX: needs no time zone database
    time.tzset()
    try:
        hour = (Outage(NOW_MS - 3_600_000, NOW_MS, "beat_down", ""),)
        assert incident_lines(_record(recent=hour), NOW_MS)[1] == (
            "outage 2023-11-14 21:13:30Z 1h 0m recovered [beat_down]")
    finally:
        monkeypatch.undo()
        time.tzset()


def test_incident_lines_show_five_outages_at_most() -> None:
    many = tuple(Outage(NOW_MS - i * 60_000, NOW_MS - i * 60_000 + 1000, "beat_down", "")
                 for i in range(1, 8))
    lines = incident_lines(_record(recent=many), NOW_MS)
    assert len(lines) == 6
    assert lines[-1] == "outage 2023-11-14 22:08:30Z 1s recovered [beat_down]"


def test_incident_lines_of_an_unmonitored_silenced_service() -> None:
    record = _record(monitored=False, silence=Silence(NOW_MS + 300_000, "deploy", NOW_MS))
    assert incident_lines(record, NOW_MS) == [
        "silenced for 5m 0s: deploy (notifications held back, alert rules quiet)",
        "uptime: unknown, no monitor has judged this service yet (petsage-heartbeat monitor)",
    ]
    assert incident_lines(_record(monitored=False), NOW_MS) == [
        "uptime: unknown, no monitor has judged this service yet (petsage-heartbeat monitor)"]
