"""The bodies posted to webhooks, exactly: which outbox entries are refused and each
refusal's whole line (``event_problem``), the chat escape (``slack_escape``), the JSON body
field by field (``event_body``), the chat line of each kind (``text_line``) and the format
chosen (``render``). Pure functions, no store."""

from __future__ import annotations

import json
from typing import Any

import fakeredis
import pytest

from worker.core.names import Keys
from worker.core.webhook_urls import parse_webhooks
from worker.observe.delivery import Delivery
from worker.observe.webhooks import (
    _iso,
    _shown,
    event_body,
    event_problem,
    render,
    slack_escape,
    text_line,
)

GOOD: dict[str, Any] = {
    "kind": "transition", "service": "billing", "old_state": "unknown", "new_state": "stale",
    "diagnosis": "no_consumer", "old_diagnosis": "", "reason": "why", "age_s": "31.500",
    "seq": "4711", "since_ms": 1795784701120, "seen_ms": 1795784701120, "incident": ""}
"""A service notification as ``record.lua`` writes it."""

ENTRY: dict[str, Any] = {
    "kind": "transition", "service": "billing", "entry": "nightly export",
    "old_state": "unknown", "new_state": "failed", "diagnosis": "task_failed",
    "reason": "raised", "since_ms": 1, "seen_ms": 2, "incident": "1-0"}
"""An entry notification as ``entry_record.lua`` writes it."""


# -- what the monitors write passes ----------------------------------------------------------


@pytest.mark.parametrize("change", [
    {},
    {"kind": "diagnosis", "old_state": "stale", "old_diagnosis": "beat_or_broker",
     "diagnosis": "broker_down"},
    {"old_state": "fresh", "new_state": "late"},
    {"diagnosis": "", "old_diagnosis": ""},
    {"diagnosis": None},
    {"reason": "x" * 300},
    {"reason": None},
    {"age_s": 31.5, "since_ms": 5, "seen_ms": 5.5},
    {"age_s": "", "seq": "", "since_ms": "", "seen_ms": ""},
    {"age_s": None, "seq": None, "since_ms": None, "seen_ms": None},
    {"age_s": "-1.25", "seq": 7, "since_ms": "17", "seen_ms": "-3"},
    {"incident": "1795784701120-12"},
    {"incident": None},
])
def test_a_service_notification_the_monitors_write_has_no_problem(
        change: dict[str, Any]) -> None:
    """Every value ``record.lua`` can write (numbers as text or as numbers, empty fields,
    absent fields) passes the check."""
    assert event_problem({**GOOD, **change}) is None


def test_a_notification_without_kind_or_optional_fields_has_no_problem() -> None:
    """Notifications queued before ``kind`` existed are transitions; only the service and
    the states are required."""
    assert event_problem({"service": "s", "new_state": "fresh", "old_state": "stale"}) is None
    assert event_problem({"service": "s", "entry": "e", "new_state": "ok",
                          "old_state": "unknown"}) is None


@pytest.mark.parametrize("change", [
    {},
    {"old_state": "ok", "new_state": "retrying", "diagnosis": "task_retrying"},
    {"old_state": "failed", "new_state": "ok", "diagnosis": ""},
    {"diagnosis": "beat_or_scheduler", "new_state": "missed"},
], ids=["as-written", "retrying", "ok", "missed"])
def test_an_entry_notification_takes_entry_states_and_diagnoses(change: dict[str, Any]) -> None:
    """A notification with ``entry`` is checked against the entries' states and diagnoses."""
    assert event_problem({**ENTRY, **change}) is None


# -- what they don't write is refused, in one line -------------------------------------------


@pytest.mark.parametrize(("change", "problem"), [
    ({"service": "pay\nments"}, "service 'pay\\nments' is not a service name"),
    ({"service": 5}, "service 5 is not a service name"),
    ({"service": None}, "service None is not a service name"),
    ({"service": ["x" * 50]}, "service ['xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx is not a "
                              "service name"),
    ({"service": "a" * 65}, "service 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...' is not a "
                            "service name"),
    ({"kind": "page"}, "kind 'page' is unknown"),
    ({"kind": None}, "kind None is unknown"),
    ({"kind": "k" * 40}, "kind 'kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk' is unknown"),
    ({"kind": "k" * 41}, "kind 'kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk...' is unknown"),
    ({"kind": "Transition"}, "kind 'Transition' is unknown"),
    ({"new_state": "pwned"}, "new_state 'pwned' is not a state"),
    ({"new_state": "unknown"}, "new_state 'unknown' is not a state"),
    ({"new_state": None}, "new_state None is not a state"),
    ({"new_state": "failed"}, "new_state 'failed' is not a state"),
    ({"old_state": "ok"}, "old_state 'ok' is not a state"),
    ({"old_state": None}, "old_state None is not a state"),
    ({"diagnosis": "re-login"}, "diagnosis 're-login' is not a diagnosis"),
    ({"diagnosis": "task_failed"}, "diagnosis 'task_failed' is not a diagnosis"),
    ({"old_diagnosis": "x"}, "old_diagnosis 'x' is not a diagnosis"),
    ({"reason": "x" * 301}, "reason is not text of at most 300 characters"),
    ({"reason": ["x"]}, "reason is not text of at most 300 characters"),
    ({"age_s": {}}, "age_s {} is not a number"),
    ({"age_s": "1e3"}, "age_s '1e3' is not a number"),
    ({"seq": "1; rm"}, "seq '1; rm' is not a number"),
    ({"seq": 1.5}, "seq 1.5 is not a number"),
    ({"since_ms": True}, "since_ms True is not a number"),
    ({"since_ms": "x"}, "since_ms 'x' is not a number"),
    ({"seen_ms": "1.2.3"}, "seen_ms '1.2.3' is not a number"),
    ({"age_s": 31.5, "seen_ms": [1]}, "seen_ms [1] is not a number"),
    ({"seen_ms": "1" * 21}, "seen_ms '111111111111111111111' is not a number"),
    ({"incident": "x"}, "incident 'x' is not a stream id"),
    ({"incident": 5}, "incident 5 is not a stream id"),
    ({"incident": "1-0-0"}, "incident '1-0-0' is not a stream id"),
    ({"incident": "\x1b[31m"}, "incident '\\x1b[31m' is not a stream id"),
    ({"entry": "a\nb", "new_state": "failed", "old_state": "ok"},
     "entry 'a\\nb': an entry name can't hold control characters (newlines, tabs, escapes)"),
    ({"entry": 7}, "entry 7: an entry name is text, not int"),
    ({"entry": "nightly"}, "new_state 'stale' is not a state"),
    ({"entry": "nightly", "new_state": "ok", "old_state": "stale"},
     "old_state 'stale' is not a state"),
    ({"entry": "nightly", "new_state": "ok", "old_state": "ok", "diagnosis": "check_failed"},
     "diagnosis 'check_failed' is not a diagnosis"),
])
def test_an_entry_a_monitor_would_not_write_has_its_whole_problem(change: dict[str, Any],
                                                                  problem: str) -> None:
    """Each refusal names the field and shows its value escaped and cut to 40 characters,
    checked in order: service, kind, entry, states, diagnoses, reason, numbers, incident."""
    assert event_problem({**GOOD, **change}) == problem


def test_the_first_problem_is_the_one_said() -> None:
    """Fields are checked in the order of the notification; each check goes on to the next
    when its field is fine."""
    assert event_problem({**GOOD, "kind": "x", "new_state": "x"}) == "kind 'x' is unknown"
    assert event_problem({**GOOD, "new_state": "x", "old_state": "x"}) == (
        "new_state 'x' is not a state")
    assert event_problem({**GOOD, "diagnosis": "x", "old_diagnosis": "y"}) == (
        "diagnosis 'x' is not a diagnosis")
    assert event_problem({**GOOD, "age_s": "x", "seq": "y"}) == "age_s 'x' is not a number"
    assert event_problem({**GOOD, "age_s": None, "seq": "y"}) == "seq 'y' is not a number"
    assert event_problem({**GOOD, "seq": 7, "since_ms": "y"}) == "since_ms 'y' is not a number"
    assert event_problem({**GOOD, "since_ms": 5, "seen_ms": "y"}) == (
        "seen_ms 'y' is not a number")
    assert event_problem({**GOOD, "seen_ms": "", "incident": "y"}) == (
        "incident 'y' is not a stream id")


def test_shown_values_are_reprs_cut_to_40_characters() -> None:
    """Text is cut at 40 characters with ``...`` inside its quotes; other values are their
    repr cut at 40."""
    assert _shown("a" * 40) == "'" + "a" * 40 + "'"
    assert _shown("a" * 41) == "'" + "a" * 40 + "...'"
    assert _shown(list(range(30))) == repr(list(range(30)))[:40]
    assert _shown(None) == "None"


# -- the chat escape -------------------------------------------------------------------------


def test_slack_escape_makes_entities_breaks_mentions_and_links_and_escapes_controls() -> None:
    assert slack_escape("a & b < c > d") == "a &amp; b &lt; c &gt; d"
    assert slack_escape("&lt;") == "&amp;lt;"
    assert slack_escape("@here and @@x") == "@\u200bhere and @\u200b@\u200bx"
    assert slack_escape("[x](http://e)") == "[x]\u200b(http://e)"
    assert slack_escape("] (") == "] ("
    assert slack_escape("a\nb\tc\x1b") == "a\\nb\\tc\\x1b"
    assert slack_escape(None) == "" and slack_escape(42) == "42"
    assert slack_escape("plain text") == "plain text"


# -- the JSON body ---------------------------------------------------------------------------


def test_iso_times_are_utc_to_the_millisecond_for_positive_numbers_only() -> None:
    assert _iso(1) == "1970-01-01T00:00:00.001+00:00"
    assert _iso(1_700_000_000_123) == "2023-11-14T22:13:20.123+00:00"
    assert _iso(1500.0) == "1970-01-01T00:00:01.500+00:00"
    assert _iso(0) is None and _iso(-5) is None
    assert _iso("1700000000000") is None and _iso(None) is None


def test_the_json_body_of_a_transition_field_by_field() -> None:
    body = event_body("5-0", GOOD, "https://dash.example.com/")
    assert body == {
        "id": "5-0", "kind": "transition", "service": "billing", "old_state": "unknown",
        "new_state": "stale", "diagnosis": "no_consumer", "reason": "why", "age_s": 31.5,
        "seq": 4711, "since": "2026-11-27T13:05:01.120+00:00", "since_ms": 1795784701120,
        "incident": None, "dashboard_url": "https://dash.example.com/"}
    assert list(body) == ["id", "kind", "service", "old_state", "new_state", "diagnosis",
                          "reason", "age_s", "seq", "since", "since_ms", "incident",
                          "dashboard_url"]


def test_the_json_body_of_a_notification_with_nothing_but_its_states() -> None:
    """Absent, empty and unreadable values are nulls; a kind other than ``diagnosis`` is a
    transition."""
    assert event_body("1-0", {"kind": "page"}, None) == {
        "id": "1-0", "kind": "transition", "service": None, "old_state": None,
        "new_state": None, "diagnosis": None, "reason": None, "age_s": None, "seq": None,
        "since": None, "since_ms": None, "incident": None, "dashboard_url": None}


@pytest.mark.parametrize(("age", "age_s"), [
    ("31.500", 31.5), (2, 2.0), (0.25, 0.25), ("", None), (None, None), ("abc", None),
    ([1], None)])
def test_the_body_age_is_a_float_or_null(age: Any, age_s: float | None) -> None:
    body = event_body("1-0", {"age_s": age}, None)
    assert body["age_s"] == age_s and type(body["age_s"]) is type(age_s)


@pytest.mark.parametrize(("seq", "number"), [
    ("7", 7), ("007", 7), ("", None), ("x", None), ("-1", None), (7, None), (None, None)])
def test_the_body_seq_is_a_whole_number_from_digits_only(seq: Any, number: int | None) -> None:
    assert event_body("1-0", {"seq": seq}, None)["seq"] == number


def test_the_body_of_a_diagnosis_amended_has_the_old_diagnosis() -> None:
    event = {**GOOD, "kind": "diagnosis", "old_state": "stale", "diagnosis": "broker_down",
             "old_diagnosis": "beat_or_broker", "incident": "3-1"}
    body = event_body("6-0", event, None)
    assert body["kind"] == "diagnosis" and body["old_diagnosis"] == "beat_or_broker"
    assert body["incident"] == "3-1" and body["diagnosis"] == "broker_down"
    assert list(body)[-1] == "old_diagnosis"
    assert event_body("6-0", {"kind": "diagnosis", "old_diagnosis": ""},
                      None)["old_diagnosis"] is None
    assert "old_diagnosis" not in event_body("6-0", {**event, "kind": "transition"}, None)


def test_the_body_of_an_entry_names_it_only_when_it_is_text() -> None:
    body = event_body("9-0", ENTRY, None)
    assert body["entry"] == "nightly export" and list(body)[-1] == "entry"
    assert body["since"] == "1970-01-01T00:00:00.001+00:00" and body["incident"] == "1-0"
    assert "entry" not in event_body("9-0", {**ENTRY, "entry": 5}, None)
    assert "entry" not in event_body("9-0", GOOD, None)


# -- the chat line ---------------------------------------------------------------------------


def test_the_chat_line_of_a_transition_with_and_without_diagnosis_and_dashboard() -> None:
    body = event_body("5-0", {**GOOD, "old_state": "fresh"}, "https://dash.example.com/")
    assert text_line(body) == ("PetSage heartbeat: billing fresh -> stale (no_consumer): why "
                               "<https://dash.example.com/|dashboard>")
    plain = event_body("5-0", {**GOOD, "old_state": "stale", "new_state": "fresh",
                               "diagnosis": ""}, None)
    assert text_line(plain) == "PetSage heartbeat: billing stale -> fresh: why"
    assert text_line({**plain, "dashboard_url": ""}) == text_line(plain)


def test_the_chat_line_of_an_entry_with_and_without_diagnosis() -> None:
    body = event_body("9-0", {**ENTRY, "old_state": "ok"}, "https://d.example/")
    assert text_line(body) == ("PetSage heartbeat: billing entry 'nightly export' ok -> failed "
                               "(task_failed): raised <https://d.example/|dashboard>")
    up = event_body("9-0", {**ENTRY, "old_state": "failed", "new_state": "ok",
                            "diagnosis": "", "reason": "ran"}, None)
    assert text_line(up) == "PetSage heartbeat: billing entry 'nightly export' failed -> ok: ran"
    hostile = event_body("9-0", {**ENTRY, "entry": "<@U1>\n"}, None)
    assert text_line(hostile).startswith(
        "PetSage heartbeat: billing entry '&lt;@\u200bU1&gt;\\n' unknown -> failed ")


def test_the_chat_line_of_a_diagnosis_amended() -> None:
    body = event_body("6-0", {**GOOD, "kind": "diagnosis", "old_state": "stale",
                              "old_diagnosis": "beat_or_broker", "diagnosis": "broker_down",
                              "reason": "refused <x>"}, "https://d.example/")
    assert text_line(body) == ("PetSage heartbeat: billing still stale, diagnosis "
                               "beat_or_broker -> broker_down: refused &lt;x&gt; "
                               "<https://d.example/|dashboard>")
    unknown = event_body("6-0", {**GOOD, "kind": "diagnosis", "old_diagnosis": "",
                                 "diagnosis": "broker_down"}, None)
    assert text_line(unknown) == ("PetSage heartbeat: billing still stale, diagnosis "
                                  "unknown -> broker_down: why")


def test_render_is_one_chat_line_for_slack_and_the_body_itself_otherwise() -> None:
    body = event_body("5-0", GOOD, None)
    assert render("slack", body) == {
        "text": "PetSage heartbeat: billing unknown -> stale (no_consumer): why"}
    assert render("json", body) is body
    assert render("Slack", body) is body


# -- forged numbers: never an invalid body, never a stuck webhook ----------------------------


@pytest.mark.parametrize(("field", "raw", "shown"), [
    ("age_s", "NaN", "nan"), ("since_ms", "Infinity", "inf"), ("seen_ms", "-Infinity", "-inf")])
def test_a_number_that_is_not_finite_is_refused(field: str, raw: str, shown: str) -> None:
    """``json.loads`` takes ``NaN`` and ``Infinity``; JSON has no such numbers, so a body
    holding one is not JSON to its receiver."""
    event = json.loads(json.dumps(GOOD)[:-1] + f', "{field}": {raw}}}')
    assert event_problem(event) == f"{field} {shown} is not a number"


@pytest.mark.parametrize("since_ms", [10**19, 1e300, 253_402_300_800_000])
def test_a_time_beyond_the_calendar_has_no_since(since_ms: float) -> None:
    """A ``since_ms`` past the year 9999 passes the check (a number where a number goes):
    its body says no ``since`` rather than failing to be made."""
    event = {**GOOD, "since_ms": since_ms}
    assert event_problem(event) is None
    assert _iso(since_ms) is None
    body = event_body("1-0", event, None)
    assert body["since"] is None and body["since_ms"] == since_ms
    assert _iso(253_402_300_799_000) == "9999-12-31T23:59:59.000+00:00"


def test_a_forged_time_neither_stops_the_delivery_nor_holds_back_what_follows() -> None:
    """Before, the body of an entry with ``since_ms`` 10**19 raised in every step: the
    webhook retried it forever and delivered nothing after it."""
    client = fakeredis.FakeRedis()
    sent: list[dict[str, Any]] = []

    def poster(url: str, data: bytes, timeout_s: float) -> int:
        sent.append(json.loads(data))
        return 200

    (hook,) = parse_webhooks("https://hooks.example.com/T")
    delivery = Delivery(client, Keys(), hook, owner="m1", fmt="json", dashboard_url=None,
                        poster=poster)
    delivery.start_cursor()
    for since_ms in (10**19, 1_700_000_000_000):
        client.xadd(Keys().outbox, {"event": json.dumps({**GOOD, "since_ms": since_ms})})
    delivery.step()
    assert [(b["since_ms"], b["since"]) for b in sent] == [
        (10**19, None), (1_700_000_000_000, "2023-11-14T22:13:20.000+00:00")]
