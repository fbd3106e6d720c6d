"""An entry's name, its ``options.heartbeat`` tolerances and ``HEARTBEAT_ENTRIES``
(``worker.core.entries``), in process: what is accepted, the defaults at their bounds,
and the exact line of each refusal.
"""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from worker.core.entries import (
    ENTRY_NAME_MAX,
    EntryState,
    Tolerances,
    entry_name_problem,
    parse_entries_filter,
    tolerances,
    validate_entry_name,
)
from worker.core.errors import ConfigError

ACCEPTED = "accepted: a number of seconds above 0, up to a year"


def test_an_entry_name_is_printable_text_up_to_its_bound() -> None:
    assert entry_name_problem("add every 10 seconds") is None
    assert entry_name_problem("x" * ENTRY_NAME_MAX) is None
    assert entry_name_problem("x" * (ENTRY_NAME_MAX + 1)) == (
        f"an entry name has at most {ENTRY_NAME_MAX} characters, not {ENTRY_NAME_MAX + 1}")
    assert entry_name_problem(" ") == "an entry name can't be empty or blank"
    assert entry_name_problem(b"x") == "an entry name is text, not bytes"
    assert entry_name_problem("a\nb") == (
        "an entry name can't hold control characters (newlines, tabs, escapes)")


def test_a_refused_name_is_shown_cut_to_40_characters() -> None:
    tail = f"; accepted: 1-{ENTRY_NAME_MAX} printable characters"
    assert validate_entry_name("ok") == "ok"
    with pytest.raises(ConfigError) as info:
        validate_entry_name("a\tb", source="beat entry")
    assert str(info.value) == (
        "beat entry 'a\\tb' refused: an entry name can't hold control characters "
        f"(newlines, tabs, escapes){tail}")
    with pytest.raises(ConfigError) as info:
        validate_entry_name(5)
    assert str(info.value) == f"entry name 5 refused: an entry name is text, not int{tail}"
    forty = "\t" + "x" * 39
    with pytest.raises(ConfigError) as info:
        validate_entry_name(forty)
    assert str(info.value).startswith(f"entry name {forty!r} refused")
    with pytest.raises(ConfigError) as info:
        validate_entry_name(forty + "y")
    assert str(info.value).startswith(f"entry name {forty + '...'!r} refused")


@pytest.mark.parametrize(("options", "period_s", "expected"), [
    ({}, 60, Tolerances(30.0, None)),  # half the period
    (None, 60, Tolerances(30.0, None)),
    ("not a dict", 60, Tolerances(30.0, None)),
    ({"heartbeat": True}, 4, Tolerances(5.0, None)),  # never under 5 s
    ({"heartbeat": None}, 10_000, Tolerances(300.0, None)),  # nor over 5 minutes
    ({"other": 1}, None, Tolerances(5.0, None)),  # no period (a crontab): 5 s
    ({"heartbeat": {"grace_s": 7}}, 60, Tolerances(7.0, None)),
    ({"heartbeat": {"max_runtime_s": 3600}}, 60, Tolerances(30.0, 3600.0)),
    ({"heartbeat": {"grace_s": 0.5, "max_runtime_s": 366 * 86400}}, None,
     Tolerances(0.5, 366 * 86400.0)),
])
def test_tolerances_from_an_entry_s_options(options: Any, period_s: float | None,
                                            expected: Tolerances) -> None:
    got = tolerances(options, period_s, "e")
    assert got == expected
    assert got is not None and type(got.grace_s) is float


def test_heartbeat_false_opts_an_entry_out() -> None:
    assert tolerances({"heartbeat": False}, 60, "e") is None


@pytest.mark.parametrize("own", [{"grace": 5}, {"grace_s": 5, "GRACE_S": 5}, [1], "yes", 1])
def test_other_heartbeat_options_are_refused(own: Any) -> None:
    with pytest.raises(ConfigError) as info:
        tolerances({"heartbeat": own}, 60, "e")
    assert str(info.value) == (
        f"beat entry 'e': options.heartbeat {own!r} refused; accepted: false, or an object "
        "with grace_s and/or max_runtime_s")


@pytest.mark.parametrize("value", [0, -1, 366 * 86400 + 1, math.inf, math.nan, True, "5"])
@pytest.mark.parametrize("what", ["grace_s", "max_runtime_s"])
def test_a_tolerance_is_seconds_above_zero_up_to_a_year(what: str, value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        tolerances({"heartbeat": {what: value}}, 60, "my entry")
    assert str(info.value) == (
        f"beat entry 'my entry': options.heartbeat.{what} {value!r} refused; {ACCEPTED}")


def test_entries_filter_is_a_regular_expression_or_none() -> None:
    assert parse_entries_filter("  ") is None
    assert parse_entries_filter(" reports\\..*|cleanup ") == "reports\\..*|cleanup"
    tail = ("accepted: a Python regular expression matched against whole entry names, e.g. "
            "'reports\\..*|cleanup'")
    with pytest.raises(ConfigError) as info:
        parse_entries_filter("(", source="--entries")
    assert str(info.value) == (
        f"--entries='(' is not a regular expression ({_error('(')}); {tail}")
    forty = "(" + "x" * 39
    with pytest.raises(ConfigError) as info:
        parse_entries_filter(forty)
    assert str(info.value).startswith(f"HEARTBEAT_ENTRIES={forty!r} is not")
    with pytest.raises(ConfigError) as info:
        parse_entries_filter(forty + "y")
    assert str(info.value).startswith(f"HEARTBEAT_ENTRIES={forty + '...'!r} is not")


def _error(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        return str(exc)
    raise AssertionError(pattern)


def test_entry_states_exit_codes_and_uptime() -> None:
    codes = {state: state.exit_code for state in EntryState}
    assert [s for s, c in codes.items() if c == 0] == [
        EntryState.OK, EntryState.PENDING, EntryState.RUNNING]
    assert [s for s, c in codes.items() if c == 1] == [
        EntryState.RETRYING, EntryState.DUPLICATE]
    assert all(state.is_up == (codes[state] < 2) for state in EntryState)
