"""How beat entries become text (``worker.read.entry_render``), in process on a fixed Redis
clock: spans at every unit's boundary, ages and due times, the Nagios line's performance
data, a missing or unreachable entry's whole line and JSON, the table with and without the
service, worst first, and a transition with its time. The commands printing them are in
tests/test_entries_cli.py, which has the first cases of each."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from worker.core.entries import EntryState
from worker.read import entry_render
from worker.read.entries import EntriesReport, EntryReport
from worker.read.entry_render import (
    ago,
    due,
    entries_table,
    entry_json,
    entry_line,
    entry_row,
    entry_silence_note,
    entry_transition,
    entry_transition_line,
    missing_line,
    missing_reason,
    nagios_text,
    problem_json,
    quoted,
    span,
    state_exit_code,
    unreachable_line,
    unreachable_row,
    watched_names,
    worst_first,
)
from worker.read.incidents import Silence

NOW_MS = 1_800_000_000_000


def _entry(name: str, state: EntryState = EntryState.OK, diagnosis: str | None = None,
           reason: str = "fine", silence: Silence | None = None, **record: Any) -> EntryReport:
    return EntryReport(name, state, diagnosis, reason, record, silence)


def _service(*names: str) -> EntriesReport:
    return EntriesReport("petsage", NOW_MS, tuple(_entry(n) for n in names), None)


# -- spans, ages and due times ------------------------------------------------------------


@pytest.mark.parametrize(("ms", "text"), [
    (0, "0ms"), (0.4, "0ms"), (-1000, "0ms"), (999.4, "999ms"),
    (1000, "1.0s"), (1049, "1.0s"), (59_949, "59.9s"),
    (60_000, "1m 0s"), (61_500, "1m 2s"), (3_599_400, "59m 59s"),
    (3_600_000, "1h 0m"), (3_659_000, "1h 0m"), (7_200_000, "2h 0m"),
    (3_660_000, "1h 1m"), (86_399_000, "23h 59m"),
    (86_400_000, "1d 0h"), (90_000_000, "1d 1h"), (172_800_000, "2d 0h"), (180_000_000, "2d 2h"),
])
def test_a_span_at_each_unit_s_boundary(ms: float, text: str) -> None:
    assert span(ms) == text


def test_ages_and_due_times_of_numbers_only() -> None:
    """Only an int or a float is a time: ``True`` or text in a record says nothing."""
    assert ago(NOW_MS, NOW_MS) == "0ms ago"
    assert ago(NOW_MS, float(NOW_MS - 61_000)) == "1m 1s ago"
    assert ago(NOW_MS, NOW_MS + 5000) == "0ms ago"  # a success in the future: just now
    assert ago(NOW_MS, True) == ago(NOW_MS, "1") == ago(None, NOW_MS) == "-"
    assert due(NOW_MS, NOW_MS) == "in 0ms"  # due now: not yet passed
    assert due(NOW_MS, NOW_MS - 1) == "1ms ago"
    assert due(NOW_MS, NOW_MS + 1) == "in 1ms"
    assert due(None, NOW_MS) == due(NOW_MS, True) == due(NOW_MS, None) == "-"


# -- check --entry ----------------------------------------------------------------------------


def test_quoting_and_nagios_text() -> None:
    assert quoted('a "b" \\ c\n') == '"a \\"b\\" \\\\ c\\n"'
    assert nagios_text("x|y||\t") == "x\u00a6y\u00a6\u00a6\\t"


def test_the_perf_data_clamps_negative_values_and_needs_the_clock_for_an_age() -> None:
    entry = _entry("e", last_success_ms=NOW_MS + 5000, last_duration_ms=-3,
                   last_queue_wait_ms=2.6)
    assert entry_line("petsage", entry, NOW_MS) == (
        'OK - petsage entry "e" ok: fine | last_success=0.000s;;;0 duration=0ms;;;0 '
        "queue_wait=3ms;;;0")
    assert entry_line("petsage", entry, None) == (
        'OK - petsage entry "e" ok: fine | duration=0ms;;;0 queue_wait=3ms;;;0')
    aged = _entry("e", last_success_ms=NOW_MS - 61_000, last_queue_wait_ms=True)
    assert entry_line("petsage", aged, NOW_MS) == (
        'OK - petsage entry "e" ok: fine | last_success=61.000s;;;0')
    assert entry_line("petsage", _entry("e", last_duration_ms=0), NOW_MS) == (
        'OK - petsage entry "e" ok: fine | duration=0ms;;;0')


@pytest.mark.parametrize(("state", "label"), [
    (EntryState.RETRYING, "WARNING"), (EntryState.DUPLICATE, "WARNING"),
    (EntryState.RUNNING, "OK"), (EntryState.MISSED, "CRITICAL"),
])
def test_the_label_is_the_state_s_exit_code(state: EntryState, label: str) -> None:
    line = entry_line("pet\nsage", _entry("e", state, "beat_down", "why"), NOW_MS)
    assert line == f'{label} - pet\\nsage entry "e" {state.value}: why [beat_down]'


def test_a_silenced_entry_says_so_with_its_reason_escaped() -> None:
    silence = Silence(NOW_MS + 119 * 60_000, "db\nmigration", NOW_MS - 1)
    entry = _entry("e", EntryState.FAILED, None, "raised", silence)
    assert entry_silence_note(entry, NOW_MS) == "silenced for 1h 59m: db\\nmigration"
    assert entry_silence_note(entry, None) is None
    assert entry_silence_note(_entry("e"), NOW_MS) is None
    assert entry_line("petsage", entry, NOW_MS) == (
        'CRITICAL - petsage entry "e" failed: raised (silenced for 1h 59m: db\\nmigration)')
    assert entry_row(entry, NOW_MS)[-1] == "raised (silenced for 1h 59m: db\\nmigration)"
    assert entry_row(entry, None)[-1] == "raised"


def test_the_watched_names_first_five_by_name() -> None:
    assert watched_names(_service()) == ""
    assert watched_names(_service("e", "d", "c", "b", "a")) == '"a", "b", "c", "d", "e"'
    assert watched_names(_service("f", "e", "d", "c", "b", "a")) == (
        '"a", "b", "c", "d", "e" and 1 more')
    assert watched_names(_service("g", "f", "e", "d", "c", "b", "a")) == (
        '"a", "b", "c", "d", "e" and 2 more')
    assert watched_names(_service("c", "b", "a"), limit=2) == '"a", "b" and 1 more'


def test_why_an_entry_is_missing_and_its_line() -> None:
    assert missing_reason(_service(), "x") == (
        "no beat entry is watched for service petsage (is install_heartbeat(app) in beat's "
        "app, and does its schedule have entries?)")
    assert missing_reason(_service("only"), "x") == (
        'no entry of that name is watched for service petsage; 1 entry is: "only"')
    assert missing_reason(_service("b", "a"), "x") == (
        'no entry of that name is watched for service petsage; 2 entries are: "a", "b"')
    assert missing_line("petsage", 'nightly "exprt"', "not | here\n") == (
        'CRITICAL - petsage entry "nightly \\"exprt\\"" missing: not \u00a6 here\\n')
    assert unreachable_line("petsage", "a|b", "Redis could not be asked: x\r") == (
        'UNKNOWN - petsage entry "a\u00a6b" unreachable: Redis could not be asked: x\\r')


# -- JSON ---------------------------------------------------------------------------------


def test_an_entry_s_json_with_its_service_exit_code_and_silence() -> None:
    entry = _entry("e", EntryState.RETRYING, "task_failed", "raised",
                   Silence(NOW_MS + 1500, "deploy", NOW_MS - 1), task="t")
    body = entry_json("petsage", entry, NOW_MS)
    assert body == {"service": "petsage", **entry.as_json(), "exit_code": 1,
                    "silence": {"until_ms": NOW_MS + 1500, "reason": "deploy",
                                "remaining_s": 1.5}}
    assert list(body)[:2] == ["service", "name"] and list(body)[-2:] == ["exit_code", "silence"]
    assert entry_json("petsage", entry, None)["silence"] is None
    assert entry_json("petsage", _entry("e"), NOW_MS)["silence"] is None


def test_the_json_of_what_is_no_entry_report() -> None:
    assert problem_json("petsage", None, "unreachable", "Redis could not be asked", 3) == {
        "service": "petsage", "name": None, "state": "unreachable", "diagnosis": None,
        "reason": "Redis could not be asked", "exit_code": 3, "silence": None}


# -- status --entries -------------------------------------------------------------------------


def test_a_row_of_every_time_and_of_an_entry_that_never_ran() -> None:
    entry = _entry("e", EntryState.OK, None, "fine", last_success_ms=NOW_MS - 2000,
                   next_due_ms=NOW_MS + 3000, last_duration_ms=4000, last_queue_wait_ms=5)
    assert entry_row(entry, NOW_MS) == ("e", "ok", "-", "2.0s ago", "in 3.0s", "4.0s", "5ms",
                                        "fine")
    assert entry_row(entry, None) == ("e", "ok", "-", "-", "-", "4.0s", "5ms", "fine")
    entry = _entry("n\u202e", EntryState.MISSED, "beat_down", "beat\tdown",
                   last_success_ms=None, next_due_ms="soon", last_duration_ms=False,
                   last_queue_wait_ms=61_000.0)
    assert entry_row(entry, NOW_MS) == ("n\\u202e", "missed", "beat_down", "-", "-", "-",
                                        "1m 1s", "beat\\tdown")
    assert unreachable_row("gone\n") == ("*", "unreachable", "-", "-", "-", "-", "-",
                                         "gone\\n")


def test_the_table_with_the_service_pads_every_column_but_the_last() -> None:
    rows = [("billing", "invoices", "failed", "task_failed", "3.1s ago", "in 4.2s", "120ms",
             "4ms", "raised"),
            ("*", *unreachable_row(""))]
    assert entries_table(rows, with_service=True).split("\n") == [
        "SERVICE  ENTRY     STATE        DIAGNOSIS    LAST_SUCCESS  NEXT_DUE  DURATION  "
        "QUEUE_WAIT  REASON",
        "billing  invoices  failed       task_failed  3.1s ago      in 4.2s   120ms     "
        "4ms         raised",
        "*        *         unreachable  -            -             -         -         -",
    ]
    assert entries_table([]) == (
        "ENTRY  STATE  DIAGNOSIS  LAST_SUCCESS  NEXT_DUE  DURATION  QUEUE_WAIT  REASON")


def test_worst_state_first_then_service_then_name() -> None:
    pairs = [("a", _entry("z")), ("b", _entry("a", EntryState.FAILED)),
             ("a", _entry("y")), ("c", _entry("m", EntryState.MISSED)),
             ("a", _entry("b", EntryState.FAILED)), ("a", _entry("x", EntryState.PENDING))]
    assert [(s, e.name) for s, e in worst_first(pairs)] == [
        ("c", "m"), ("a", "b"), ("b", "a"), ("a", "x"), ("a", "y"), ("a", "z")]


# -- watch --entries --------------------------------------------------------------------------


def test_a_transition_with_its_time_in_milliseconds(monkeypatch: pytest.MonkeyPatch) -> None:
    class Fixed(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Fixed:
            assert tz is UTC
            return cls(2026, 12, 2, 10, 0, 0, 123456, tzinfo=UTC)

    monkeypatch.setattr(entry_render, "datetime", Fixed)
    event = entry_transition("petsage", None, "ok", new="unreachable", diagnosis=None,
                             reason="gone", exit_code=3)
    assert event == {"time": "2026-12-02T10:00:00.123+00:00", "service": "petsage",
                     "entry": None, "old_state": "ok", "new_state": "unreachable",
                     "diagnosis": None, "reason": "gone", "exit_code": 3}
    assert entry_transition_line(event) == (
        "2026-12-02T10:00:00.123+00:00 petsage entry * ok -> unreachable (gone)")
    event = entry_transition("petsage", 'say "hi"', "", new="missed", diagnosis="beat_down",
                             reason="due", exit_code=2)
    assert event["old_state"] == "unknown"
    assert entry_transition_line(event) == (
        '2026-12-02T10:00:00.123+00:00 petsage entry "say \\"hi\\"" unknown -> missed '
        "[beat_down] (due)")


def test_every_state_s_exit_code() -> None:
    assert {s.value: state_exit_code(s.value) for s in EntryState} == {
        "ok": 0, "pending": 0, "running": 0, "retrying": 1, "duplicate": 1, "failed": 2,
        "overrun": 2, "not_started": 2, "missed": 2, "removed": 2}
    assert (state_exit_code("missing"), state_exit_code("unreachable")) == (2, 3)
    with pytest.raises(ValueError, match="'gone' is not a valid EntryState"):
        state_exit_code("gone")
