"""The beat entries on the command line, in process: ``check --entry``, ``status --entries``
and ``watch --entries`` against a dict-based store on a fixed Redis clock, so every line is
pinned exactly; names, errors and nodes with control characters stay one line.

The same commands as real processes against real beat and worker processes are in
tests/test_entries_cli_e2e.py.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

import pytest

from tests.support.entry_store_stub import NOW_MS, URL, DictStore, failed, succeeded
from tests.support.processes import run as run_process
from worker.cli import entries as entries_cmd
from worker.cli.main import main
from worker.core.entries import EntryState
from worker.core.names import Keys
from worker.read.entries import EntriesReport, EntryReport, read_entries
from worker.read.entry_fleet import read_entries_of
from worker.read.entry_render import (
    ENTRY_COLUMNS,
    ago,
    due,
    entries_table,
    entry_json,
    entry_line,
    entry_row,
    entry_transition,
    entry_transition_line,
    escape,
    nagios_text,
    quoted,
    span,
    state_exit_code,
)
from worker.read.incidents import Silence

KEYS = Keys()
_succeeded, _failed = succeeded, failed


def _retrying(store: DictStore) -> dict[str, Any]:
    return {"run": {"id": "r3", "dispatched_ms": store.now_ms - 900,
                    "started_ms": store.now_ms - 800, "finished_ms": store.now_ms - 700,
                    "outcome": "retrying", "attempts": 2, "error_type": "ConnectionError",
                    "error": "upstream busy"}}


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> DictStore:
    """The store every command here reads, whatever URL it was told."""
    for name in ("HEARTBEAT_REDIS_URL", "HEARTBEAT_KEY_PREFIX", "HEARTBEAT_SERVICE",
                 "CELERY_BROKER_URL", "HEARTBEAT_ENTRIES"):
        monkeypatch.delenv(name, raising=False)
    fake = DictStore()
    monkeypatch.setattr(entries_cmd, "reader_client", lambda url, timeout_s: fake)
    return fake


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main([*argv, "--redis", URL])
    captured = capsys.readouterr()
    assert captured.err == "", captured.err
    return code, captured.out


# --- rendering ------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "shown"), [
    ("nightly export", "nightly export"),
    ("a\nb", "a\\nb"),
    ("tab\there", "tab\\there"),
    ("\x1b[31mred", "\\x1b[31mred"),
    ("bidi \u202eevil", "bidi \\u202eevil"),
    ("caf\u00e9 \u65e5\u672c", "caf\u00e9 \u65e5\u672c"),
])
def test_escape_keeps_printable_text_and_escapes_every_control(text: str, shown: str) -> None:
    assert escape(text) == shown
    assert escape(text).isprintable()


def test_names_are_quoted_and_pipes_never_start_perf_data() -> None:
    assert quoted('say "hi" \\ bye') == '"say \\"hi\\" \\\\ bye"'
    assert nagios_text("a | b\nc") == "a \u00a6 b\\nc"


@pytest.mark.parametrize(("ms", "text"), [
    (0, "0ms"), (4, "4ms"), (999, "999ms"), (1000, "1.0s"), (3100, "3.1s"),
    (59_940, "59.9s"), (60_000, "1m 0s"), (303_000, "5m 3s"), (7_800_000, "2h 10m"),
    (273_600_000, "3d 4h"), (-5, "0ms"),
])
def test_spans(ms: float, text: str) -> None:
    assert span(ms) == text


def test_ages_and_due_times_on_the_redis_clock() -> None:
    assert ago(NOW_MS, NOW_MS - 3100) == "3.1s ago"
    assert ago(None, NOW_MS) == ago(NOW_MS, None) == ago(NOW_MS, "yesterday") == "-"
    assert due(NOW_MS, NOW_MS + 4200) == "in 4.2s"
    assert due(NOW_MS, NOW_MS - 12_000) == "12.0s ago"
    assert due(NOW_MS, None) == "-"


def _report(name: str, state: EntryState, diagnosis: str | None, reason: str,
            **record: Any) -> EntryReport:
    return EntryReport(name, state, diagnosis, reason, record)


def test_the_nagios_line_of_an_entry_with_and_without_perf_data() -> None:
    ok = _report("nightly export", EntryState.OK, None, "the last run succeeded 3.1s ago",
                 last_success_ms=NOW_MS - 3100, last_duration_ms=1200.4,
                 last_queue_wait_ms=4)
    assert entry_line("petsage", ok, NOW_MS) == (
        'OK - petsage entry "nightly export" ok: the last run succeeded 3.1s ago | '
        "last_success=3.100s;;;0 duration=1200ms;;;0 queue_wait=4ms;;;0")
    pending = _report("new|one", EntryState.PENDING, None, "watched; its first run is not due")
    assert entry_line("petsage", pending, NOW_MS) == (
        'OK - petsage entry "new\u00a6one" pending: watched; its first run is not due')
    failed = _report("x", EntryState.FAILED, "task_failed", "raised: a\nb | c")
    assert entry_line("billing", failed, None) == (
        'CRITICAL - billing entry "x" failed: raised: a\\nb \u00a6 c [task_failed]')


def test_a_silenced_entry_s_line_row_and_json() -> None:
    silence = Silence(NOW_MS + 300_000, "deploy", NOW_MS - 1000)
    failed = EntryReport("x", EntryState.FAILED, "task_failed", "raised", {}, silence)
    assert entry_line("petsage", failed, NOW_MS) == (
        'CRITICAL - petsage entry "x" failed: raised [task_failed] (silenced for 5m 0s: deploy)')
    assert entry_row(failed, NOW_MS)[-1] == "raised (silenced for 5m 0s: deploy)"
    assert entry_json("petsage", failed, NOW_MS)["silence"] == {
        "until_ms": NOW_MS + 300_000, "reason": "deploy", "remaining_s": 300.0}
    # Without the Redis clock, nothing is said of it (no clock, no remaining time).
    assert entry_line("petsage", failed, None).endswith("raised [task_failed]")
    assert entry_json("petsage", failed, None)["silence"] is None


def test_the_table_rows_and_transition_lines() -> None:
    ok = _report("n\x1b", EntryState.OK, None, "fine", last_success_ms=NOW_MS - 3100,
                 next_due_ms=NOW_MS + 61_000, last_duration_ms=120, last_queue_wait_ms=4)
    assert entry_row(ok, NOW_MS) == ("n\\x1b", "ok", "-", "3.1s ago", "in 1m 1s", "120ms",
                                     "4ms", "fine")
    assert entries_table([entry_row(ok, NOW_MS)]).splitlines() == [
        "ENTRY  STATE  DIAGNOSIS  LAST_SUCCESS  NEXT_DUE  DURATION  QUEUE_WAIT  REASON",
        "n\\x1b  ok     -          3.1s ago      in 1m 1s  120ms     4ms         fine"]
    assert ENTRY_COLUMNS[0] == "ENTRY" and ENTRY_COLUMNS[-1] == "REASON"
    event = entry_transition("petsage", "a\nb", None, new="failed", diagnosis="task_failed",
                             reason="raised\r", exit_code=2)
    assert event["old_state"] == "unknown" and event["entry"] == "a\nb"
    line = entry_transition_line({**event, "time": "T"})
    assert line == 'T petsage entry "a\\nb" unknown -> failed [task_failed] (raised\\r)'
    assert [state_exit_code(s) for s in ("ok", "retrying", "missed", "missing",
                                         "unreachable")] == [0, 1, 2, 2, 3]


# --- check --entry --------------------------------------------------------------------------

def test_check_entry_ok_failed_retrying_each_one_line_and_its_exit_code(
        store: DictStore, capsys: pytest.CaptureFixture[str]) -> None:
    store.put("petsage", "nightly export", **_succeeded(store))
    store.put("petsage", "raises", **_failed(store))
    store.put("petsage", "retries", **_retrying(store))
    assert _run(capsys, "check", "--entry", "nightly export") == (0, (
        'OK - petsage entry "nightly export" ok: the last run succeeded 3.1s ago | '
        "last_success=3.100s;;;0 duration=1200ms;;;0 queue_wait=4ms;;;0\n"))
    assert _run(capsys, "check", "--entry", "raises") == (2, (
        'CRITICAL - petsage entry "raises" failed: the last run raised 41.2s ago: '
        "OperationalError could not connect to server [task_failed]\n"))
    assert _run(capsys, "check", "--entry", "retries") == (1, (
        'WARNING - petsage entry "retries" retrying: the last run raised and is retried '
        "(attempt 2): ConnectionError upstream busy [task_retrying]\n"))


def test_check_entry_of_another_service_and_prefix(
        store: DictStore, capsys: pytest.CaptureFixture[str]) -> None:
    store.put("billing", "invoices", **_succeeded(store))
    code, out = _run(capsys, "check", "--entry", "invoices", "--service", "billing")
    assert code == 0 and out.startswith('OK - billing entry "invoices" ok:')
    code, out = _run(capsys, "check", "--entry", "invoices", "--service", "billing",
                     "--prefix", "other")
    assert code == 2 and "no beat entry is watched for service billing" in out


def test_check_entry_json_is_the_report_with_service_and_exit_code(
        store: DictStore, capsys: pytest.CaptureFixture[str]) -> None:
    store.put("petsage", "raises", **_failed(store))
    code, out = _run(capsys, "check", "--entry", "raises", "--json")
    data = json.loads(out)
    assert code == 2 and out.count("\n") == 1
    assert data["service"] == "petsage" and data["name"] == "raises"
    assert (data["state"], data["diagnosis"], data["exit_code"]) == ("failed", "task_failed", 2)
    assert data["run"]["error_type"] == "OperationalError"
    assert data["silence"] is None  # as ``check --json`` says of a service not silenced
    report = read_entries(store, "petsage")
    assert {k: v for k, v in data.items() if k not in ("service", "exit_code", "silence")} == (
        report.entries[0].as_json())


def test_an_unknown_entry_is_missing_and_names_the_first_entries_that_exist(
        store: DictStore, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(capsys, "check", "--entry", "nightly export") == (2, (
        'CRITICAL - petsage entry "nightly export" missing: no beat entry is watched for '
        "service petsage (is install_heartbeat(app) in beat's app, and does its schedule "
        "have entries?)\n"))
    for name in ("g", "f", "e", "d", "c", "b", "a"):
        store.put("petsage", name, **_succeeded(store))
    assert _run(capsys, "check", "--entry", "nightly exprt") == (2, (
        'CRITICAL - petsage entry "nightly exprt" missing: no entry of that name is watched '
        'for service petsage; 7 entries are: "a", "b", "c", "d", "e" and 2 more\n'))
    code, out = _run(capsys, "check", "--entry", "nightly exprt", "--json")
    data = json.loads(out)
    assert (code, data["state"], data["exit_code"]) == (2, "missing", 2)
    assert data["watched"] == ["a", "b", "c", "d", "e", "f", "g"]


@pytest.mark.parametrize(("name", "why"), [
    ("a\nb", "'a\\nb' refused: an entry name can't hold control characters"),
    ("x" * 201, "refused: an entry name has at most 200 characters, not 201"),
    ("", "'' refused: an entry name can't be empty or blank"),
    ("   ", "'   ' refused: an entry name can't be empty or blank"),
    ("\x1b]0;pwned\x07", "refused: an entry name can't hold control characters"),
    ("a\rb", "'a\\rb' refused"),
])
def test_a_name_no_entry_can_have_is_one_critical_line_exit_2(
        store: DictStore, capsys: pytest.CaptureFixture[str], name: str, why: str) -> None:
    store.put("petsage", "nightly export", **_succeeded(store))
    for extra in ((), ("--json",)):
        code, out = _run(capsys, "check", "--entry", name, *extra)
        assert code == 2
        assert out.startswith("CRITICAL - petsage-heartbeat: --entry "), out
        assert why in out and out.endswith("; accepted: 1-200 printable characters\n")
        assert out.count("\n") == 1 and out[:-1].isprintable()
    assert store.round_trips == 0  # refused before the store is asked


def test_flags_of_the_service_heartbeat_are_refused_with_entry(
        store: DictStore, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _run(capsys, "check", "--entry", "x", "--late-after", "3", "--stale-after", "9")
    assert code == 3 and out.startswith("UNKNOWN - petsage-heartbeat: --late-after, "
                                        "--stale-after can't be used with --entry")
    code, out = _run(capsys, "check", "--entry", "x", "--beat")
    assert code == 3 and "not allowed with argument" in out
    code, out = _run(capsys, "check", "--entry", "x", "--timeout", "0")
    assert code == 3 and "--timeout 0.0 is out of range" in out


def test_a_store_that_cannot_be_asked_is_unknown_unless_tolerated(
        store: DictStore, capsys: pytest.CaptureFixture[str]) -> None:
    store.down = "Error 111 connecting to store.invalid:6379"
    assert _run(capsys, "check", "--entry", "nightly export") == (3, (
        'UNKNOWN - petsage entry "nightly export" unreachable: Redis could not be asked: '
        "ConnectionError: Error 111 connecting to store.invalid:6379\n"))
    code, out = _run(capsys, "check", "--entry", "nightly export", "--unreachable-ok")
    assert code == 0 and out.startswith("OK - (unreachable tolerated) UNKNOWN - petsage entry")
    code, out = _run(capsys, "check", "--entry", "nightly export", "--json")
    assert code == 3 and json.loads(out)["state"] == "unreachable"


def test_a_store_that_hangs_is_unknown_within_the_timeout(
        store: DictStore, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()

    def hang(_: Any) -> list[Any]:
        gate.wait(5)
        return []

    monkeypatch.setattr(store, "execute_many", hang)
    code, out = _run(capsys, "check", "--entry", "x", "--timeout", "0.2")
    gate.set()
    assert code == 3 and out.endswith("unreachable: Redis could not be asked: timed out "
                                      "after 0.2s\n")


# --- a silenced entry -----------------------------------------------------------------------

SILENCE_MS = 2 * 3600 * 1000 - 30_000
"""A silence with 1h 59m 30s left: ``silenced for 1h 59m``."""


def _silence(store: DictStore, service: str, name: str, left_ms: int = SILENCE_MS,
             reason: str = "db migration") -> None:
    store.silences.setdefault(service, {})[name] = {
        "until_ms": store.now_ms + left_ms, "since_ms": store.now_ms - 60_000,
        "reason": reason}


def test_check_entry_of_a_silenced_entry_keeps_its_state_and_exit_code_and_says_so(
        store: DictStore, capsys: pytest.CaptureFixture[str]) -> None:
    store.put("petsage", "raises", **_failed(store))
    store.put("petsage", "nightly export", **_succeeded(store))
    _silence(store, "petsage", "raises")
    assert _run(capsys, "check", "--entry", "raises") == (2, (
        'CRITICAL - petsage entry "raises" failed: the last run raised 41.2s ago: '
        "OperationalError could not connect to server [task_failed] "
        "(silenced for 1h 59m: db migration)\n"))
    assert store.round_trips == 1  # the silence came with the entries
    # Another entry of the service is not silenced by it.
    assert _run(capsys, "check", "--entry", "nightly export") == (0, (
        'OK - petsage entry "nightly export" ok: the last run succeeded 3.1s ago | '
        "last_success=3.100s;;;0 duration=1200ms;;;0 queue_wait=4ms;;;0\n"))
    # A silence of an entry that is ok is said too, before the performance data.
    _silence(store, "petsage", "nightly export", left_ms=90_000, reason="")
    assert _run(capsys, "check", "--entry", "nightly export") == (0, (
        'OK - petsage entry "nightly export" ok: the last run succeeded 3.1s ago '
        "(silenced for 1m 30s) | "
        "last_success=3.100s;;;0 duration=1200ms;;;0 queue_wait=4ms;;;0\n"))


def test_check_entry_json_of_a_silenced_entry_has_the_silence_as_check_gives_it(
        store: DictStore, capsys: pytest.CaptureFixture[str]) -> None:
    store.put("petsage", "raises", **_failed(store))
    _silence(store, "petsage", "raises")
    code, out = _run(capsys, "check", "--entry", "raises", "--json")
    data = json.loads(out)
    assert (code, data["state"], data["exit_code"]) == (2, "failed", 2)
    assert data["silence"] == {"until_ms": NOW_MS + SILENCE_MS, "reason": "db migration",
                               "remaining_s": 7170.0}
    report = read_entries(store, "petsage")
    assert {k: v for k, v in data.items() if k not in ("service", "exit_code", "silence")} == (
        report.entries[0].as_json())


def test_an_ended_or_unreadable_entry_silence_is_none(
        store: DictStore, capsys: pytest.CaptureFixture[str]) -> None:
    store.put("petsage", "raises", **_failed(store))
    _silence(store, "petsage", "raises", left_ms=0)  # ends now on the Redis clock
    line = ('CRITICAL - petsage entry "raises" failed: the last run raised 41.2s ago: '
            "OperationalError could not connect to server [task_failed]\n")
    assert _run(capsys, "check", "--entry", "raises") == (2, line)
    code, out = _run(capsys, "check", "--entry", "raises", "--json")
    assert code == 2 and json.loads(out)["silence"] is None
    store.silences["petsage"]["raises"] = {"reason": "no end"}
    assert _run(capsys, "check", "--entry", "raises") == (2, line)
    store.silences["petsage"]["raises"] = {"until_ms": float("inf")}
    assert _run(capsys, "check", "--entry", "raises") == (2, line)


def test_a_silence_reason_stays_one_line_and_never_starts_perf_data(
        store: DictStore, capsys: pytest.CaptureFixture[str]) -> None:
    store.put("petsage", "nightly export", **_succeeded(store))
    _silence(store, "petsage", "nightly export", reason="a | b\nc\x1b")
    code, out = _run(capsys, "check", "--entry", "nightly export")
    assert code == 0 and out.count("\n") == 1
    assert out == ('OK - petsage entry "nightly export" ok: the last run succeeded 3.1s ago '
                   "(silenced for 1h 59m: a \u00a6 b\\nc\\x1b) | "
                   "last_success=3.100s;;;0 duration=1200ms;;;0 queue_wait=4ms;;;0\n")


def test_status_entries_says_a_silence_in_the_reason_and_its_json(
        store: DictStore, capsys: pytest.CaptureFixture[str]) -> None:
    store.put("petsage", "raises", **_failed(store))
    store.put("petsage", "nightly export", **_succeeded(store))
    _silence(store, "petsage", "raises")
    code, out = _run(capsys, "status", "--entries")
    assert code == 2  # the silence changes no state
    rows = out.splitlines()
    assert rows[1].split()[:3] == ["raises", "failed", "task_failed"]
    assert rows[1].endswith("OperationalError could not connect to server "
                            "(silenced for 1h 59m: db migration)")
    assert rows[2].endswith("the last run succeeded 3.1s ago")
    code, out = _run(capsys, "status", "--entries", "--json")
    silences = {item["name"]: item["silence"] for item in json.loads(out)}
    assert silences == {"raises": {"until_ms": NOW_MS + SILENCE_MS, "reason": "db migration",
                                   "remaining_s": 7170.0},
                        "nightly export": None}
    # With --all, each service's silences are its own: the same name elsewhere is not.
    store.put("billing", "raises", **_failed(store))
    code, out = _run(capsys, "status", "--entries", "--all")
    lines = [line for line in out.splitlines() if " raises " in line]
    assert len(lines) == 2
    assert [("silenced for" in line) for line in sorted(lines)] == [False, True]
    assert sorted(lines)[1].startswith("petsage")



# --- status --entries -----------------------------------------------------------------------

def test_status_entries_is_a_table_worst_first_with_the_worst_exit_code(
        store: DictStore, capsys: pytest.CaptureFixture[str]) -> None:
    store.put("petsage", "nightly export", **_succeeded(store))
    store.put("petsage", "raises", **_failed(store, "boom\n\x1b[2J"))
    store.put("petsage", "retries", **_retrying(store))
    code, out = _run(capsys, "status", "--entries")
    assert code == 2
    assert out.splitlines() == [
        "ENTRY           STATE     DIAGNOSIS      LAST_SUCCESS  NEXT_DUE  DURATION  "
        "QUEUE_WAIT  REASON",
        "raises          failed    task_failed    -             in 4.2s   -         "
        "-           the last run raised 41.2s ago: OperationalError boom\\n\\x1b[2J",
        "retries         retrying  task_retrying  -             in 4.2s   -         "
        "-           the last run raised and is retried (attempt 2): ConnectionError "
        "upstream busy",
        "nightly export  ok        -              3.1s ago      in 4.2s   1.2s      "
        "4ms         the last run succeeded 3.1s ago",
    ]
    store.entries["petsage"].pop("raises")
    assert _run(capsys, "status", "--entries")[0] == 1
    store.entries["petsage"].pop("retries")
    assert _run(capsys, "status", "--entries")[0] == 0


def test_status_entries_json_is_a_list_worst_first(
        store: DictStore, capsys: pytest.CaptureFixture[str]) -> None:
    store.put("petsage", "nightly export", **_succeeded(store))
    store.put("petsage", "raises", **_failed(store))
    code, out = _run(capsys, "status", "--entries", "--json")
    items = json.loads(out)
    assert code == 2
    assert [(i["service"], i["name"], i["state"], i["exit_code"]) for i in items] == [
        ("petsage", "raises", "failed", 2), ("petsage", "nightly export", "ok", 0)]
    assert items[1]["last_queue_wait_ms"] == 4 and items[1]["schedule"] == "every 10s"


def test_status_entries_with_none_watched_or_the_store_down(
        store: DictStore, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(capsys, "status", "--entries") == (
        2, "no beat entry is watched for service petsage\n")
    assert _run(capsys, "status", "--entries", "--json") == (2, "[]\n")
    assert _run(capsys, "status", "--entries", "--all") == (
        2, "no beat entry is watched under this prefix\n")
    store.down = "Error 111"
    code, out = _run(capsys, "status", "--entries")
    assert code == 3 and out.splitlines()[1].split()[:2] == ["*", "unreachable"]
    assert out.splitlines()[1].endswith("Redis could not be asked: ConnectionError: Error 111")
    code, out = _run(capsys, "status", "--entries", "--all", "--json")
    assert code == 3 and json.loads(out) == [{
        "service": "*", "name": None, "state": "unreachable", "diagnosis": None,
        "reason": "Redis could not be asked: ConnectionError: Error 111", "exit_code": 3,
        "silence": None}]


def test_status_all_entries_reads_every_indexed_service_worst_first(
        store: DictStore, capsys: pytest.CaptureFixture[str]) -> None:
    store.put("petsage", "nightly export", **_succeeded(store))
    store.put("billing", "invoices", **_failed(store))
    store.put("billing", "ledger", **_succeeded(store))
    code, out = _run(capsys, "status", "--entries", "--all")
    assert code == 2
    assert [line.split()[:3] for line in out.splitlines()] == [
        ["SERVICE", "ENTRY", "STATE"], ["billing", "invoices", "failed"],
        ["billing", "ledger", "ok"], ["petsage", "nightly", "export"]]


def test_the_entries_of_many_services_are_read_in_chunks_by_read_entries_itself() -> None:
    store = DictStore()
    names = [f"svc-{i:02d}" for i in range(7)]
    for i, service in enumerate(names):
        store.put(service, f"entry {i}", **(_failed(store) if i == 3 else _succeeded(store)))
    reports = read_entries_of(store, names, chunk=3)
    assert store.round_trips == 3  # 3 + 3 + 1 services
    assert reports == [read_entries(store, s) for s in names]
    assert [r.entries[0].state for r in reports].count(EntryState.FAILED) == 1
    store.down = "gone"
    assert [r.error for r in read_entries_of(store, names[:2])] == [
        "ConnectionError: gone", "ConnectionError: gone"]
    assert read_entries_of(store, []) == []


# --- watch --entries ------------------------------------------------------------------------

def _watcher(store: DictStore, lines: list[str], **options: Any) -> entries_cmd.EntryWatcher:
    from worker.core.settings import Settings

    settings = Settings.from_env({}, redis_url=URL)
    kwargs: dict[str, Any] = {"all_services": False, "exec_cmd": None, "as_json": True,
                              "timeout_s": 1.0, "poll_s": 0.01}
    kwargs.update(options)
    return entries_cmd.EntryWatcher(settings, emit=lines.append,
                                    client_factory=lambda: store, **kwargs)


def _changes(lines: list[str]) -> list[tuple[str | None, str, str]]:
    events = [json.loads(line) for line in lines]
    return [(e["entry"], e["old_state"], e["new_state"]) for e in events]


def test_watch_reports_each_entrys_changes_once(store: DictStore) -> None:
    lines: list[str] = []
    watcher = _watcher(store, lines)
    store.put("petsage", "nightly export", **_succeeded(store))
    store.put("petsage", "raises", **_succeeded(store))
    for _ in range(3):
        watcher.observe(watcher.read(store))
    assert _changes(lines) == [("nightly export", "unknown", "ok"), ("raises", "unknown", "ok")]
    store.put("petsage", "raises", **_failed(store))
    watcher.observe(watcher.read(store))
    last = json.loads(lines[-1])
    assert (last["entry"], last["old_state"], last["new_state"]) == ("raises", "ok", "failed")
    assert (last["diagnosis"], last["exit_code"], last["service"]) == ("task_failed", 2,
                                                                       "petsage")
    store.entries["petsage"].pop("raises")
    watcher.observe(watcher.read(store))
    watcher.observe(watcher.read(store))
    assert _changes(lines)[3:] == [("raises", "failed", "missing")]
    store.down = "Error 111"
    watcher.observe(watcher.read(store))
    assert _changes(lines)[4:] == [("nightly export", "ok", "unreachable"),
                                   ("raises", "missing", "unreachable")]
    store.down = None
    watcher.observe(watcher.read(store))
    assert _changes(lines)[6:] == [("nightly export", "unreachable", "ok"),
                                   ("raises", "unreachable", "missing")]


def test_watch_before_any_entry_is_known_and_in_text(store: DictStore) -> None:
    lines: list[str] = []
    watcher = _watcher(store, lines, as_json=False, all_services=True)
    store.down = "Error 111"
    watcher.observe(watcher.read(store))
    assert lines[0].split(" ", 1)[1] == (
        "* entry * unknown -> unreachable (Redis could not be asked: ConnectionError: "
        "Error 111)")
    store.down = None
    store.put("billing", 'say "hi"', **_failed(store))
    store.put("billing", "a\nb", **_failed(store))  # no entry's name: never read
    watcher.observe(watcher.read(store))
    assert lines[1].split(" ", 1)[1] == (
        'billing entry "say \\"hi\\"" unknown -> failed [task_failed] (the last run raised 41.2s '
        "ago: OperationalError could not connect to server)")
    assert len(lines) == 2 and watcher.states == {("billing", 'say "hi"'): "failed"}


def test_watch_runs_the_hook_with_the_transition(store: DictStore, tmp_path: Any) -> None:
    lines: list[str] = []
    log = tmp_path / "hook.log"
    watcher = _watcher(store, lines, exec_cmd=(
        f'echo "$PETSAGE_SERVICE|$PETSAGE_ENTRY|$PETSAGE_NEW_STATE|$PETSAGE_EXIT_CODE" '
        f'>> {log}'))
    store.put("petsage", "nightly export", **_failed(store))
    watcher.observe(watcher.read(store))
    assert watcher.hooks is not None and watcher.hooks.running is not None
    watcher.hooks.running.wait(30)
    assert log.read_text() == "petsage|nightly export|failed|2\n"


def test_the_entries_hook_gets_the_service_hook_s_variables(
        store: DictStore, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # watch --help names one set of PETSAGE_* variables for both hooks; an entry has no
    # age or seq, and a value in watch's own environment never reaches the hook.
    monkeypatch.setenv("PETSAGE_SEQ", "42")
    monkeypatch.setenv("PETSAGE_AGE_S", "9.9")
    out = tmp_path / "env.txt"
    watcher = _watcher(store, [], exec_cmd=(
        f"env | grep '^PETSAGE_' | sort > {out}.tmp && mv {out}.tmp {out}"))
    store.put("petsage", "nightly export", **_failed(store))
    watcher.observe(watcher.read(store))
    assert watcher.hooks is not None and watcher.hooks.running is not None
    watcher.hooks.running.wait(30)
    env = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert sorted(env) == sorted(f"PETSAGE_{name}" for name in (
        "TIME", "SERVICE", "OLD_STATE", "NEW_STATE", "AGE_S", "SEQ", "REASON", "DIAGNOSIS",
        "EXIT_CODE", "ENTRY"))
    assert (env["PETSAGE_ENTRY"], env["PETSAGE_AGE_S"], env["PETSAGE_SEQ"]) == (
        "nightly export", "", "")
    assert (env["PETSAGE_NEW_STATE"], env["PETSAGE_EXIT_CODE"]) == ("failed", "2")


def test_watch_polls_until_stopped(store: DictStore) -> None:
    lines: list[str] = []
    watcher = _watcher(store, lines)
    store.put("petsage", "nightly export", **_succeeded(store))
    thread = threading.Thread(target=watcher.run)
    thread.start()
    try:
        for _ in range(500):
            if lines:
                break
            threading.Event().wait(0.01)
        store.put("petsage", "nightly export", **_failed(store))
        for _ in range(500):
            if len(lines) > 1:
                break
            threading.Event().wait(0.01)
    finally:
        watcher.stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert _changes(lines) == [("nightly export", "unknown", "ok"),
                               ("nightly export", "ok", "failed")]


# --- the probe path -------------------------------------------------------------------------

def test_check_entry_imports_no_celery_kombu_or_redis_py() -> None:
    code = ("import sys\n"
            "from worker.cli.main import main\n"
            "main(['check', '--entry', 'x', '--redis', 'redis://127.0.0.1:1/0', "
            "'--timeout', '0.2'])\n"
            "main(['status', '--entries', '--redis', 'redis://127.0.0.1:1/0', "
            "'--timeout', '0.2'])\n"
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & "
            "{'celery', 'kombu', 'fastapi', 'redis', 'pydantic', 'starlette'})\n"
            "print('heavy=' + ','.join(heavy))\n")
    done = run_process([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, check=False)
    lines = done.stdout.splitlines()
    assert lines[0].startswith('UNKNOWN - petsage entry "x" unreachable: Redis could not be '
                               "asked:"), done.stdout + done.stderr
    assert lines[-1] == "heavy=", done.stdout + done.stderr


def test_reports_are_what_the_commands_print(store: DictStore) -> None:
    """The commands add nothing the reader did not say: same state, diagnosis and reason."""
    store.put("petsage", "raises", **_failed(store))
    report: EntriesReport = read_entries(store, "petsage")
    entry = report.entries[0]
    assert entry_line("petsage", entry, report.now_ms).startswith(
        f'CRITICAL - petsage entry "raises" {entry.state.value}: {entry.reason} '
        f"[{entry.diagnosis}]")


def test_watch_reports_a_diagnosis_that_becomes_known(store: DictStore) -> None:
    lines: list[str] = []
    watcher = _watcher(store, lines)
    store.put("petsage", "nightly export", **_failed(store))
    watcher.observe(watcher.read(store))
    watcher.observe(watcher.read(store))  # nothing new
    assert len(lines) == 1
    watcher.diagnoses[("petsage", "nightly export")] = "beat_or_scheduler"  # as if said before
    watcher.observe(watcher.read(store))
    second = json.loads(lines[1])
    assert (second["old_state"], second["new_state"], second["diagnosis"]) == (
        "failed", "failed", "task_failed")
