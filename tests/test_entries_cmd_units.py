"""The beat entries' commands in process, beyond tests/test_entries_cli.py: the URL, timeout
and deadline each read gets, a read that times out or fails as whole lines and JSON, the
bounds on what is shown (300 characters of an error, 100 watched names), the broken pipe,
and ``watch --entries``' states across services, its hook, its client and its loop."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import worker.cli.watch
import worker.core.redis_clients
from tests.support.entry_store_stub import URL, DictStore
from tests.support.entry_store_stub import failed as _failed
from tests.support.entry_store_stub import succeeded as _succeeded
from worker.cli import entries as entries_cmd
from worker.core.errors import StoreUnreachableError
from worker.core.settings import Settings
from worker.read.entries import EntriesReport, read_entries


class Stream:
    """A text stream that remembers where each flush happened; ``broken`` fails flushes."""

    def __init__(self, fd: int | None = None, broken: bool = False) -> None:
        self.text = ""
        self.flushed_at: list[int] = []
        self.fd = fd
        self.broken = broken

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        if self.broken:
            raise BrokenPipeError
        self.flushed_at.append(len(self.text))

    def fileno(self) -> int:
        assert self.fd is not None
        return self.fd


class Reads:
    """The store's reads: the URL and timeout of each client, each deadline given."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, store: DictStore) -> None:
        self.clients: list[tuple[str, float]] = []
        self.deadlines: list[float] = []
        self.outcome: Callable[[Callable[[], Any]], Any] = lambda work: work()

        def reader_client(url: str, timeout_s: float) -> DictStore:
            self.clients.append((url, timeout_s))
            return store

        def within(deadline_s: float, work: Callable[[], Any]) -> Any:
            self.deadlines.append(deadline_s)
            return self.outcome(work)

        monkeypatch.setattr(entries_cmd, "reader_client", reader_client)
        monkeypatch.setattr(entries_cmd, "within", within)


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> DictStore:
    for name in ("HEARTBEAT_REDIS_URL", "HEARTBEAT_KEY_PREFIX", "HEARTBEAT_SERVICE",
                 "CELERY_BROKER_URL", "HEARTBEAT_ENTRIES"):
        monkeypatch.delenv(name, raising=False)
    return DictStore()


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch, store: DictStore) -> Reads:
    return Reads(monkeypatch, store)


def _timed_out(work: Callable[[], Any]) -> None:
    return None


def _unreachable(work: Callable[[], Any]) -> None:
    raise StoreUnreachableError("E" * 400)


def _check(capsys: pytest.CaptureFixture[str], name: str = "nightly export",
           **kwargs: Any) -> tuple[int, str]:
    options: dict[str, Any] = {"redis_url": URL, "service": None, "prefix": None,
                               "timeout_s": 0.5, "as_json": False}
    options.update(kwargs)
    code = entries_cmd.run_check_entry(name=name, **options)
    out, err = capsys.readouterr()
    assert err == ""
    return code, out


def _status(capsys: pytest.CaptureFixture[str], **kwargs: Any) -> tuple[int, str]:
    options: dict[str, Any] = {"redis_url": URL, "service": None, "all_services": False,
                               "prefix": None, "timeout_s": 0.5, "as_json": False}
    options.update(kwargs)
    code = entries_cmd.run_status_entries(**options)
    out, err = capsys.readouterr()
    assert err == ""
    return code, out


def _problem(service: str, name: str | None, reason: str, code: int = 3,
             state: str = "unreachable") -> dict[str, Any]:
    return {"service": service, "name": name, "state": state, "diagnosis": None,
            "reason": reason, "exit_code": code, "silence": None}


# --- check --entry --------------------------------------------------------------------------

def test_check_entry_reads_at_the_url_with_the_timeout_within_it_and_a_little(
        store: DictStore, reads: Reads, capsys: pytest.CaptureFixture[str]) -> None:
    store.put("petsage", "nightly export", **_succeeded(store))
    assert _check(capsys)[0] == 0
    assert reads.clients == [(URL, 0.5)] and reads.deadlines == [0.5 + 0.05]


def test_check_entry_that_times_out_or_cannot_ask_is_unknown_by_default(
        store: DictStore, reads: Reads, capsys: pytest.CaptureFixture[str]) -> None:
    reads.outcome = _timed_out
    assert entries_cmd.run_check_entry(
        name="x", redis_url=URL, service=None, prefix=None, timeout_s=0.5, as_json=False) == 3
    assert capsys.readouterr().out == ('UNKNOWN - petsage entry "x" unreachable: Redis could '
                                       "not be asked: timed out after 0.5s\n")
    code, out = _check(capsys, "x", as_json=True)
    assert (code, json.loads(out)) == (3, _problem(
        "petsage", "x", "Redis could not be asked: timed out after 0.5s"))
    reads.outcome = _unreachable
    code, out = _check(capsys, "x", as_json=True, service="billing")
    assert (code, json.loads(out)) == (3, _problem(
        "billing", "x", "Redis could not be asked: " + "E" * 300))
    code, out = _check(capsys, "x", as_json=True, unreachable_ok=True)
    assert (code, json.loads(out)) == (0, _problem(
        "petsage", "x", "Redis could not be asked: " + "E" * 300, code=0))
    code, out = _check(capsys, "x", unreachable_ok=True)
    assert (code, out) == (0, 'OK - (unreachable tolerated) UNKNOWN - petsage entry "x" '
                              "unreachable: Redis could not be asked: " + "E" * 300 + "\n")


def test_check_entry_json_of_a_missing_entry_names_at_most_100_watched(
        store: DictStore, reads: Reads, capsys: pytest.CaptureFixture[str]) -> None:
    names = [f"entry {i:03d}" for i in range(101)]
    for name in names:
        store.put("petsage", name, **_succeeded(store))
    code, out = _check(capsys, "nope", as_json=True)
    reason = ('no entry of that name is watched for service petsage; 101 entries are: '
              '"entry 000", "entry 001", "entry 002", "entry 003", "entry 004" and 96 more')
    assert (code, json.loads(out)) == (2, {**_problem("petsage", "nope", reason, 2, "missing"),
                                           "watched": names[:100]})


def test_a_refused_entry_name_is_flushed_at_once(
        store: DictStore, reads: Reads, monkeypatch: pytest.MonkeyPatch) -> None:
    out = Stream()
    with monkeypatch.context() as patch:
        patch.setattr(sys, "stdout", out)
        assert entries_cmd.run_check_entry(name="", redis_url=URL, service=None, prefix=None,
                                           timeout_s=0.5, as_json=False) == 2
    assert out.text == ("CRITICAL - petsage-heartbeat: --entry '' refused: an entry name "
                        "can't be empty or blank; accepted: 1-200 printable characters\n")
    assert out.flushed_at == [len(out.text)]


# --- status --entries -----------------------------------------------------------------------

def test_status_entries_reads_at_the_url_within_two_round_trips(
        store: DictStore, reads: Reads, capsys: pytest.CaptureFixture[str]) -> None:
    store.put("billing", "invoices", **_failed(store))
    code, out = _status(capsys, service="billing")
    assert code == 2 and out.splitlines()[1].split()[:2] == ["invoices", "failed"]
    assert reads.clients == [(URL, 0.5)] and reads.deadlines == [2 * 0.5 + 0.05]


def test_status_entries_reads_under_the_prefix_given(
        store: DictStore, reads: Reads, capsys: pytest.CaptureFixture[str]) -> None:
    store.put("petsage", "nightly export", **_succeeded(store))
    assert _status(capsys, prefix="other") == (
        2, "no beat entry is watched for service petsage\n")
    assert _status(capsys, prefix="other", all_services=True) == (
        2, "no beat entry is watched under this prefix\n")
    assert _status(capsys, all_services=True)[0] == 0


def test_status_entries_bad_flags_are_one_unknown_line(
        store: DictStore, reads: Reads, capsys: pytest.CaptureFixture[str]) -> None:
    assert _status(capsys, timeout_s=0.0) == (
        3, "UNKNOWN - petsage-heartbeat: --timeout 0.0 is out of range; accepted: seconds > 0 "
           "and <= 3600\n")
    code, out = _status(capsys, service="bad service")
    assert code == 3 and out.startswith("UNKNOWN - petsage-heartbeat: --service 'bad service' ")
    code, out = _status(capsys, prefix="bad prefix")
    assert code == 3 and out.startswith("UNKNOWN - petsage-heartbeat: --prefix 'bad prefix' ")
    code, out = _status(capsys, redis_url="http://x/")
    assert code == 3 and out.startswith("UNKNOWN - petsage-heartbeat: --redis ")
    assert reads.clients == []


def test_status_entries_that_times_out_or_cannot_ask_is_unknown(
        store: DictStore, reads: Reads, capsys: pytest.CaptureFixture[str]) -> None:
    reads.outcome = _timed_out
    code, out = _status(capsys, as_json=True)
    assert (code, json.loads(out)) == (3, [_problem(
        "petsage", None, "Redis could not be asked: timed out after 0.5s")])
    code, out = _status(capsys, as_json=True, all_services=True)
    assert (code, json.loads(out)) == (3, [_problem(
        "*", None, "Redis could not be asked: timed out after 0.5s")])
    code, out = _status(capsys, all_services=True)
    assert code == 3 and out.splitlines()[1].split()[:3] == ["*", "*", "unreachable"]
    assert out.splitlines()[1].endswith("Redis could not be asked: timed out after 0.5s")
    reads.outcome = _unreachable
    code, out = _status(capsys, as_json=True)
    assert (code, json.loads(out)) == (3, [_problem(
        "petsage", None, "Redis could not be asked: " + "E" * 300)])


def test_status_entries_into_a_closed_pipe_is_quiet_with_its_exit_code(
        store: DictStore, reads: Reads, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    store.put("petsage", "raises", **_failed(store))
    path = tmp_path / "out"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        with monkeypatch.context() as patch:
            patch.setattr(sys, "stdout", Stream(fd, broken=True))
            assert entries_cmd.run_status_entries(
                redis_url=URL, service=None, all_services=False, prefix=None, timeout_s=0.5,
                as_json=False) == 2
        os.write(fd, b"later writes go nowhere")
    finally:
        os.close(fd)
    assert path.read_bytes() == b""


# --- watch --entries ------------------------------------------------------------------------

class FakeHooks:
    """``watch``'s hooks: each command, event and pump recorded; nothing run."""

    made: list[FakeHooks] = []  # noqa: RUF012 - the instances of one test

    def __init__(self, command: str) -> None:
        self.command = command
        self.added: list[tuple[Any, dict[str, Any]]] = []
        self.pumps = 0
        FakeHooks.made.append(self)

    def add(self, key: Any, event: dict[str, Any]) -> None:
        self.added.append((key, event))

    def pump(self) -> None:
        self.pumps += 1


def _settings(**env: str) -> Settings:
    return Settings.from_env({"HEARTBEAT_REDIS_URL": URL, **env})


def _watcher(lines: list[str], store: DictStore | None = None,
             **options: Any) -> entries_cmd.EntryWatcher:
    kwargs: dict[str, Any] = {"all_services": False, "exec_cmd": None, "as_json": True,
                              "timeout_s": 1.5, "poll_s": 30.0, "emit": lines.append}
    if store is not None:
        kwargs["client_factory"] = lambda: store
    kwargs.update(options)
    return entries_cmd.EntryWatcher(_settings(), **kwargs)


def _report(store: DictStore, service: str) -> EntriesReport:
    return read_entries(store, service)


def _events(lines: list[str]) -> list[tuple[str, str | None, str, str, int]]:
    return [(e["service"], e["entry"], e["old_state"], e["new_state"], e["exit_code"])
            for e in map(json.loads, lines)]


def _watching_billing_and_petsage(
        store: DictStore) -> tuple[list[str], entries_cmd.EntryWatcher]:
    """A watcher of every service that has seen one entry ok in ``billing`` and one in
    ``petsage``, its lines so far dropped: where the cases of a service failing, or of the
    whole store failing, start, so that every line after it is the failure's own."""
    store.put("billing", "invoices", **_succeeded(store))
    store.put("petsage", "export", **_succeeded(store))
    lines: list[str] = []
    watcher = _watcher(lines, all_services=True)
    watcher.observe([_report(store, "billing"), _report(store, "petsage")])
    del lines[:]
    return lines, watcher


def test_a_service_that_fails_turns_only_its_own_entries_unreachable(
        store: DictStore) -> None:
    lines, watcher = _watching_billing_and_petsage(store)
    # The failing report first: the reports after it are still read.
    watcher.observe([EntriesReport("petsage", None, (), "boom"), _report(store, "billing")])
    assert _events(lines) == [("petsage", "export", "ok", "unreachable", 3)]
    assert json.loads(lines[0])["reason"] == "Redis could not be asked: boom"
    del lines[:]
    watcher.observe([_report(store, "billing"), EntriesReport("petsage", None, (), "boom")])
    assert lines == []


def test_a_store_that_fails_for_all_turns_every_known_entry_unreachable(
        store: DictStore) -> None:
    lines, watcher = _watching_billing_and_petsage(store)
    watcher.observe([EntriesReport("*", None, (), "down")])
    assert _events(lines) == [("billing", "invoices", "ok", "unreachable", 3),
                              ("petsage", "export", "ok", "unreachable", 3)]
    assert set(watcher.states) == {("billing", "invoices"), ("petsage", "export")}


def test_an_entry_gone_from_a_service_that_answered_is_missing(store: DictStore) -> None:
    # An entry named like a service that fails: its own service answered, so it is missing.
    store.put("billing", "petsage", **_succeeded(store))
    lines: list[str] = []
    watcher = _watcher(lines, all_services=True)
    watcher.observe([_report(store, "billing")])
    store.entries["billing"].pop("petsage")
    store.put("billing", "other", **_succeeded(store))
    del lines[:]
    watcher.observe([_report(store, "billing"), EntriesReport("petsage", None, (), "boom")])
    assert _events(lines) == [("billing", "other", "unknown", "ok", 0),
                              ("petsage", None, "unknown", "unreachable", 3),
                              ("billing", "petsage", "ok", "missing", 2)]
    forgotten = json.loads(lines[2])
    assert (forgotten["service"], forgotten["entry"], forgotten["old_state"],
            forgotten["new_state"], forgotten["diagnosis"], forgotten["exit_code"]) == (
        "billing", "petsage", "ok", "missing", None, 2)
    assert forgotten["reason"] == ("the entry is no longer in the store (forgotten, or its "
                                   "retention passed)")


def test_unreachable_before_any_entry_stays_while_a_failure_covers_it(
        store: DictStore) -> None:
    watcher = _watcher([], all_services=True)
    watcher.observe([EntriesReport("petsage", None, (), "boom")])
    watcher.observe([EntriesReport("*", None, (), "down")])
    assert watcher.states == {("petsage", None): "unreachable", ("*", None): "unreachable"}
    # A service with no entry yet and one known, both failing: neither is forgotten.
    watcher.states = {("petsage", None): "unreachable", ("petsage", "export"): "ok"}
    watcher.observe([EntriesReport("petsage", None, (), "boom")])
    assert watcher.states == {("petsage", None): "unreachable",
                              ("petsage", "export"): "unreachable"}
    store.put("petsage", "export", **_succeeded(store))
    watcher.observe([_report(store, "petsage")])
    assert watcher.states == {("petsage", "export"): "ok"}


def test_a_read_that_raises_is_one_failed_report_of_200_characters(
        store: DictStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: Any) -> Any:
        raise ValueError("v" * 300)

    monkeypatch.setattr(entries_cmd, "_read_all", broken)
    assert _watcher([]).read(store) == [
        EntriesReport("petsage", None, (), ("ValueError: " + "v" * 300)[:200])]
    assert _watcher([], all_services=True).read(store) == [
        EntriesReport("*", None, (), ("ValueError: " + "v" * 300)[:200])]


def test_each_change_goes_to_the_hook_with_the_service_watch_s_variables(
        store: DictStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker.cli.watch, "Hooks", FakeHooks)
    FakeHooks.made = []
    lines: list[str] = []
    watcher = _watcher(lines, exec_cmd="notify.sh")
    assert watcher.exec_cmd == "notify.sh"
    store.put("petsage", "export", **_failed(store))
    watcher.observe([_report(store, "petsage")])
    [hooks] = FakeHooks.made
    assert hooks.command == "notify.sh" and watcher.hooks is hooks
    [(key, event)] = hooks.added
    assert key == ("petsage", "export")
    assert event == {**json.loads(lines[0]), "age_s": None, "seq": None}
    assert _watcher([]).hooks is None


def test_the_default_client_has_the_url_and_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(worker.core.redis_clients, "make_client",
                        lambda url, **kw: made.append((url, kw)) or "client")
    assert _watcher([])._client() == "client"
    assert made == [(URL, {"timeout_s": 1.5})]


def test_the_default_emit_prints_each_line_flushed(monkeypatch: pytest.MonkeyPatch) -> None:
    watcher = entries_cmd.EntryWatcher(_settings(), all_services=False, exec_cmd=None,
                                       as_json=False, timeout_s=1.0, poll_s=1.0)
    out = Stream()
    with monkeypatch.context() as patch:
        patch.setattr(sys, "stdout", out)
        watcher.emit("a line")
    assert (out.text, out.flushed_at) == ("a line\n", [7])


def test_run_polls_pumps_the_hooks_and_sigterm_stops_it(
        store: DictStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker.cli.watch, "Hooks", FakeHooks)
    FakeHooks.made = []
    store.put("petsage", "export", **_succeeded(store))
    previous = signal.getsignal(signal.SIGTERM)
    lines: list[str] = []

    def emit(line: str) -> None:
        lines.append(line)
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)
        handler(signal.SIGTERM, None)  # as if the process got SIGTERM

    try:
        watcher = _watcher(lines, store, emit=emit, exec_cmd="notify.sh")
        assert watcher.run() == 0
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert watcher.stop.is_set()
    assert _events(lines) == [("petsage", "export", "unknown", "ok", 0)]
    assert FakeHooks.made[0].pumps == 1


def test_run_ends_with_0_on_ctrl_c(store: DictStore) -> None:
    store.put("petsage", "export", **_succeeded(store))

    def interrupted(line: str) -> None:
        raise KeyboardInterrupt

    previous = signal.getsignal(signal.SIGTERM)
    try:
        assert _watcher([], store, emit=interrupted).run() == 0
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_run_watch_entries_hands_every_option_on_and_ends_quietly(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[entries_cmd.EntryWatcher] = []
    outcome: list[BaseException | None] = [None]

    def run(self: entries_cmd.EntryWatcher) -> int:
        seen.append(self)
        if outcome[0] is not None:
            raise outcome[0]
        return 7

    monkeypatch.setattr(entries_cmd.EntryWatcher, "run", run)
    settings = _settings()
    options: dict[str, Any] = {"all_services": True, "exec_cmd": None, "as_json": True,
                               "timeout_s": 1.5, "poll_s": 4.0}
    assert entries_cmd.run_watch_entries(settings, **options) == 7
    watcher = seen[0]
    assert watcher.settings is settings
    assert (watcher.all_services, watcher.as_json, watcher.timeout_s, watcher.poll_s) == (
        True, True, 1.5, 4.0)
    outcome[0] = KeyboardInterrupt()
    assert entries_cmd.run_watch_entries(settings, **options) == 0
    assert capsys.readouterr() == ("", "\n")
    quieted: list[bool] = []
    monkeypatch.setattr(entries_cmd, "_quiet_broken_pipe", lambda: quieted.append(True))
    outcome[0] = BrokenPipeError()
    assert entries_cmd.run_watch_entries(settings, **options) == 0
    assert quieted == [True]
    assert capsys.readouterr() == ("", "")
