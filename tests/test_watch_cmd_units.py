"""``petsage-heartbeat watch`` in process (``worker.cli.watch``): a hook's environment, the
hooks' debounce on a fake clock (one at a time, one a second, the oldest first, coalesced
per key), the watch loop driven by a scripted pub/sub on a fake clock (every wait it asks
for, every read, the reconnects), and the watcher: what it reads for a landing, a poll and
a store problem, each transition's line and JSON, its hook, its signal and its exits.
tests/test_watch.py runs the command as a real process against a real redis-server."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import types
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
from fakeredis.commands_mixins import server_mixin

from tests.support.hooks import HookProc as _Proc
from tests.support.publishing import backdate, publish
from tests.support.streams import GoneReader as _GoneReader
from worker.cli import watch
from worker.core.names import Keys
from worker.core.settings import Settings
from worker.core.states import State
from worker.read import render
from worker.read.reader import HeartbeatReport, unreachable

NOW_MS = 1_800_000_000_000
STAMP = "2027-01-15T08:00:00.000+00:00"
"""``NOW_MS`` as a transition's ``time``."""

ACME = Keys("acme")
SETTINGS = Settings(redis_url="redis://watch.invalid:6379/0", service="petsage",
                    key_prefix="acme")


class _Fixed(datetime):
    @classmethod
    def now(cls, tz: Any = None) -> _Fixed:
        return cls.fromtimestamp(NOW_MS / 1000, tz)


@pytest.fixture
def fixed(monkeypatch: pytest.MonkeyPatch) -> fakeredis.FakeRedis:
    """fakeredis on a fixed Redis clock, and transitions stamped at that instant."""
    monkeypatch.setattr(server_mixin, "time", types.SimpleNamespace(time=lambda: NOW_MS / 1000))
    monkeypatch.setattr(render, "datetime", _Fixed)
    return fakeredis.FakeRedis()


# --- a hook's environment ---------------------------------------------------------------------

def _event(old: str, new: str, service: str = "petsage", **extra: Any) -> dict[str, Any]:
    return {"service": service, "old_state": old, "new_state": new, **extra}


def test_a_hook_keeps_path_home_lang_and_petsage_variables_not_named_like_secrets() -> None:
    env = watch.hook_env(_event("fresh", "stale", age_s=None, exit_code=2), {
        "PATH": "/bin", "HOME": "/root", "LANG": "C", "LANGUAGE": "en", "SHELL": "/bin/sh",
        "PETSAGE_LOG": "/tmp/l", "petsage_lower": "x", "XPETSAGE_A": "y",
        "PETSAGE_DB_PASSWORD": "p", "PETSAGE_API_KEY": "k", "PETSAGE_CREDENTIALS": "c",
        "PETSAGE_READER_url": "u"})
    assert env == {"PATH": "/bin", "HOME": "/root", "LANG": "C", "PETSAGE_LOG": "/tmp/l",
                   "PETSAGE_ENTRY": "", "PETSAGE_SERVICE": "petsage",
                   "PETSAGE_OLD_STATE": "fresh", "PETSAGE_NEW_STATE": "stale",
                   "PETSAGE_AGE_S": "", "PETSAGE_EXIT_CODE": "2"}


def test_a_hook_without_path_gets_the_default_one_and_an_entry_s_event_names_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert watch.hook_env(_event("a", "b", entry="nightly"), {}) == {
        "PATH": os.defpath, "PETSAGE_ENTRY": "nightly", "PETSAGE_SERVICE": "petsage",
        "PETSAGE_OLD_STATE": "a", "PETSAGE_NEW_STATE": "b"}
    monkeypatch.setattr(os, "environ", {"PATH": "/opt/bin", "PETSAGE_X": "1",
                                        "HEARTBEAT_REDIS_URL": "redis://:pw@db"})
    assert watch.hook_env({}) == {"PATH": "/opt/bin", "PETSAGE_X": "1", "PETSAGE_ENTRY": ""}


# --- the hooks' debounce ----------------------------------------------------------------------

class _Spawner:
    def __init__(self) -> None:
        self.runs: list[tuple[str, dict[str, str], _Proc]] = []

    def __call__(self, command: str, env: dict[str, str]) -> _Proc:
        proc = _Proc()
        self.runs.append((command, env, proc))
        return proc

    def finish(self) -> None:
        for _, _, proc in self.runs:
            proc.done = True

    def told(self) -> list[tuple[str, str, str]]:
        return [(env["PETSAGE_SERVICE"], env["PETSAGE_OLD_STATE"], env["PETSAGE_NEW_STATE"])
                for _, env, _ in self.runs]


def _hooks(now: list[float], **options: Any) -> tuple[watch.Hooks, _Spawner]:
    spawn = _Spawner()
    return watch.Hooks("notify.sh", spawn=spawn, clock=lambda: now[0], **options), spawn


def test_hooks_default_to_a_shell_on_the_monotonic_clock_once_a_second() -> None:
    hooks = watch.Hooks("notify.sh")
    assert (hooks.command, hooks.min_interval_s) == ("notify.sh", 1.0)
    assert hooks.spawn is watch._spawn and hooks.clock is time.monotonic
    assert (hooks.waiting, hooks.running, hooks.started) == ({}, None, 0)


def test_a_hook_starts_at_once_with_the_command_and_the_event_s_environment() -> None:
    now = [10.0]
    hooks, spawn = _hooks(now)
    hooks.add("petsage", _event("fresh", "stale"))
    assert [(command, env["PETSAGE_NEW_STATE"]) for command, env, _ in spawn.runs] == [
        ("notify.sh", "stale")]
    assert hooks.running is spawn.runs[0][2] and hooks.started == 1 and hooks.waiting == {}


def test_hooks_start_one_per_interval_measured_from_the_last_start() -> None:
    """Started at 10.0: not again before 11.0, and at 11.0 exactly."""
    now = [10.0]
    hooks, spawn = _hooks(now)
    hooks.add("a", _event("fresh", "stale", "a"))
    spawn.finish()
    now[0] = 10.5
    hooks.add("b", _event("fresh", "stale", "b"))
    now[0] = 10.999
    hooks.pump()
    assert spawn.told() == [("a", "fresh", "stale")] and list(hooks.waiting) == ["b"]
    now[0] = 11.0
    hooks.pump()
    assert spawn.told() == [("a", "fresh", "stale"), ("b", "fresh", "stale")]
    assert hooks.started == 2


def test_hooks_wait_for_the_one_running_and_start_the_oldest_first() -> None:
    now = [0.0]
    hooks, spawn = _hooks(now, min_interval_s=0.25)
    hooks.add("a", _event("fresh", "stale", "a"))
    hooks.add("b", _event("fresh", "late", "b"))
    hooks.add("c", _event("fresh", "missing", "c"))
    now[0] = 5.0
    hooks.pump()
    assert len(spawn.runs) == 1
    spawn.finish()
    hooks.pump()
    spawn.finish()
    now[0] = 5.2  # within 0.25 s of the last start
    hooks.pump()
    assert spawn.told() == [("a", "fresh", "stale"), ("b", "fresh", "late")]
    now[0] = 5.25
    hooks.pump()
    assert spawn.told()[2] == ("c", "fresh", "missing") and hooks.started == 3
    hooks.pump()  # nothing waits: nothing starts
    assert hooks.started == 3


def test_transitions_waiting_for_one_key_coalesce_keeping_the_state_last_told() -> None:
    now = [0.0]
    hooks, spawn = _hooks(now)
    hooks.add("a", _event("unknown", "fresh", "a"))  # runs
    hooks.add("a", _event("fresh", "late", "a"))
    hooks.add("b", _event("fresh", "late", "b"))
    hooks.add("a", _event("late", "stale", "a", reason="r3"))
    assert hooks.waiting == {"a": {"service": "a", "old_state": "fresh", "new_state": "stale",
                                   "reason": "r3"},
                             "b": {"service": "b", "old_state": "fresh", "new_state": "late"}}
    hooks.add("a", _event("stale", "fresh", "a"))  # back where the hook last left it
    assert list(hooks.waiting) == ["b"]
    hooks.add("c", _event("fresh", "fresh", "c"))  # no change at all: nothing waits
    assert list(hooks.waiting) == ["b"] and spawn.told() == [("a", "unknown", "fresh")]


# --- the watch loop ---------------------------------------------------------------------------

class _Clock:
    """``watch``'s ``time``: a monotonic clock that moves only when the loop waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class _PubSub:
    """Replies to ``get_message`` from a script: None (the wait ran out: the clock moves by
    it), ``(seconds, message)`` (a message that came after that long), or an exception."""

    def __init__(self, owner: _Client) -> None:
        self.owner = owner

    def subscribe(self, channel: str) -> None:
        self.owner.subscribed.append(channel)

    def get_message(self, timeout: float) -> dict[str, Any] | None:
        self.owner.waits.append(timeout)
        step = self.owner.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        if step is None:
            self.owner.clock.now += timeout
            return None
        elapsed, message = step
        self.owner.clock.now += elapsed
        return message  # type: ignore[no-any-return]


class _Client:
    def __init__(self, clock: _Clock, script: list[Any]) -> None:
        self.clock = clock
        self.script = script
        self.pubsubs: list[dict[str, Any]] = []
        self.subscribed: list[str] = []
        self.waits: list[float] = []

    def pubsub(self, **options: Any) -> _PubSub:
        self.pubsubs.append(options)
        return _PubSub(self)


def _follow(monkeypatch: pytest.MonkeyPatch, script: list[Any], *, poll_s: float = 0.5,
            relevant: Callable[[Any], bool] = lambda data: data == b"yes",
            **options: Any) -> tuple[_Client, list[tuple[float, Any]], list[tuple[float, Any]]]:
    """Run ``follow`` until its script is used up; what it read and when, and each outage."""
    clock = _Clock()
    monkeypatch.setattr(watch, "time", clock)
    client = _Client(clock, script)
    reads: list[tuple[float, Any]] = []
    outages: list[tuple[float, Any]] = []
    watch.follow(client, "petsage:hb:events", poll_s=poll_s, relevant=relevant,  # type: ignore[arg-type]
                 on_read=lambda landed: reads.append((clock.now, landed)),
                 on_unreachable=lambda exc: outages.append((clock.now, exc)),
                 stopping=lambda: not client.script, **options)
    return client, reads, outages


def test_follow_reads_at_once_then_every_poll_and_on_each_relevant_message(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A message that is not relevant leaves the wait for the poll as it was."""
    client, reads, outages = _follow(monkeypatch, [
        None, None, (0.125, {"type": "message", "data": b"no"}),
        (0.125, {"type": "message", "data": b"yes"}), None, None])
    assert client.pubsubs == [{"ignore_subscribe_messages": True}]
    assert client.subscribed == ["petsage:hb:events"]
    assert client.waits == [0.0, 0.5, 0.5, 0.375, 0.5, 0.5]
    assert reads == [(0.0, False), (0.5, False), (0.75, True), (1.25, False), (1.75, False)]
    assert outages == []


def test_follow_waits_at_most_max_wait_s_and_never_less_than_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    client, reads, _ = _follow(monkeypatch, [None, None, None, None, None], poll_s=0.5,
                               max_wait_s=0.375)
    assert client.waits == [0.0, 0.375, 0.125, 0.375, 0.125]
    assert reads == [(0.0, False), (0.5, False), (1.0, False)]


def test_follow_reconnects_after_an_error_and_reads_at_once_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A Redis error or an OSError: said, a pause, a new subscription, a read at once."""
    down = redis.ConnectionError("down")
    reset = ConnectionResetError("reset")
    client, reads, outages = _follow(monkeypatch, [down, None, reset, None], poll_s=2.0,
                                     reconnect_delay_s=0.25)
    assert outages == [(0.0, down), (0.25, reset)]
    assert client.pubsubs == [{"ignore_subscribe_messages": True}] * 3
    assert client.subscribed == ["petsage:hb:events"] * 3
    assert client.waits == [0.0, 0.0, 2.0, 0.0]
    assert reads == [(0.25, False), (0.5, False)]
    assert watch.time.slept == [0.25, 0.25]  # type: ignore[attr-defined]


def test_follow_pauses_half_a_second_between_reconnects_by_default(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _, reads, outages = _follow(monkeypatch, [OSError("no route"), None])
    assert [at for at, _ in outages] == [0.0] and reads == [(0.5, False)]


def test_follow_hands_relevant_the_message_s_data(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []

    def relevant(data: Any) -> bool:
        seen.append(data)
        return False

    _follow(monkeypatch, [None, (0.0, {"type": "message", "data": b"x"})], relevant=relevant)
    assert seen == [b"x"]


# --- the watcher ------------------------------------------------------------------------------

def _watcher(lines: list[str], **options: Any) -> watch.Watcher:
    return watch.Watcher(SETTINGS, **{"all_services": False, "exec_cmd": None, "as_json": False,
                                      "timeout_s": 1.0, "emit": lines.append, **options})


def _report(service: str, state: State, reason: str = "why") -> HeartbeatReport:
    return HeartbeatReport(service, state, reason, age_s=1.5, payload={"seq": 4},  # type: ignore[arg-type]
                           diagnosis=None)


class _Stdout:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def flush(self) -> None:
        self.parts.append("<flush>")


def test_a_watcher_s_defaults_and_its_default_output_flushed_line_by_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each line is flushed at once: a pipe (``| grep``) sees a transition when it happens."""
    watcher = watch.Watcher(SETTINGS, all_services=True, exec_cmd=None, as_json=True,
                            timeout_s=2.0)
    assert (watcher.poll_s, watcher.hooks, watcher.stopping, watcher.states) == (
        0.5, None, False, {})
    stdout = _Stdout()
    monkeypatch.setattr(sys, "stdout", stdout)
    watcher.emit("a line")
    assert stdout.parts == ["a line", "\n", "<flush>"]
    hooked = watch.Watcher(SETTINGS, all_services=True, exec_cmd="notify.sh", as_json=True,
                           timeout_s=2.0)
    assert hooked.hooks is not None and hooked.hooks.command == "notify.sh"


def test_each_change_is_one_line_and_no_change_says_nothing(fixed: Any) -> None:
    lines: list[str] = []
    watcher = _watcher(lines)
    watcher.observe([_report("petsage", State.FRESH, "last heartbeat 1.5s ago")])
    watcher.observe([_report("petsage", State.FRESH, "last heartbeat 2.0s ago")])
    watcher.observe([_report("petsage", State.LATE, "over 15s")])
    assert lines == [f"{STAMP} petsage unknown -> fresh (last heartbeat 1.5s ago)",
                     f"{STAMP} petsage fresh -> late (over 15s)"]
    assert watcher.states == {"petsage": State.LATE}
    lines.clear()
    watcher.observe([_report("petsage", State.LATE), _report("billing", State.STALE, "gone")])
    assert lines == [f"{STAMP} billing unknown -> stale (gone)"]
    assert watcher.states == {"petsage": State.LATE, "billing": State.STALE}


def test_json_transitions_carry_every_field(fixed: Any) -> None:
    lines: list[str] = []
    watcher = _watcher(lines, as_json=True)
    watcher.observe([_report("petsage", State.STALE, "over 30s")])
    assert [json.loads(line) for line in lines] == [{
        "time": STAMP, "service": "petsage", "old_state": "unknown", "new_state": "stale",
        "age_s": 1.5, "seq": 4, "reason": "over 30s", "diagnosis": None, "exit_code": 2}]


def test_the_whole_fleet_unreachable_before_any_service_is_known_is_one_star(
        fixed: Any) -> None:
    """Then the first service seen takes the place of ``*``."""
    lines: list[str] = []
    watcher = _watcher(lines, all_services=True)
    watcher.observe([unreachable("*", "down")])
    watcher.observe([_report("billing", State.FRESH)])
    assert watcher.states == {"billing": State.FRESH}
    watcher.observe([unreachable("*", "down again")])
    assert watcher.states == {"*": State.UNREACHABLE, "billing": State.FRESH}
    assert lines == [f"{STAMP} * unknown -> unreachable (down)",
                     f"{STAMP} billing unknown -> fresh (why)",
                     f"{STAMP} * unknown -> unreachable (down again)"]


def test_each_change_is_handed_to_the_hook_per_service(fixed: Any) -> None:
    lines: list[str] = []
    watcher = _watcher(lines, exec_cmd="notify.sh")
    assert watcher.hooks is not None
    now = [100.0]
    spawn = _Spawner()
    watcher.hooks.spawn = spawn
    watcher.hooks.clock = lambda: now[0]
    watcher.observe([_report("a", State.FRESH), _report("b", State.FRESH)])
    watcher.observe([_report("a", State.STALE), _report("b", State.LATE)])
    assert spawn.told() == [("a", "unknown", "fresh")]
    assert spawn.runs[0][1]["PETSAGE_REASON"] == "why" and spawn.runs[0][1]["PETSAGE_SEQ"] == "4"
    spawn.finish()
    now[0] = 101.0
    watcher.observe([])  # the oldest waiting starts at the next round, changes or not
    assert spawn.told() == [("a", "unknown", "fresh"), ("a", "fresh", "stale")]
    spawn.finish()
    now[0] = 102.0
    watcher.observe([])
    assert spawn.told()[2] == ("b", "unknown", "late") and len(lines) == 4


def test_a_watcher_reads_its_service_or_the_fleet_or_the_one_that_landed(
        fixed: fakeredis.FakeRedis) -> None:
    for name in ("petsage", "billing"):
        publish(fixed, name, keys=ACME)
    backdate(fixed, "billing", 60, keys=ACME)
    publish(fixed, "other", keys=Keys())  # another prefix: never read
    one = _watcher([])
    assert [(r.service, r.state) for r in one._read(fixed)] == [("petsage", State.FRESH)]
    assert [r.service for r in one._read(fixed, True)] == ["petsage"]  # no message yet
    fleet = _watcher([], all_services=True)
    assert [r.service for r in fleet._read(fixed, True)] == ["billing", "petsage"]
    assert [(r.service, r.state) for r in fleet._read(fixed)] == [
        ("billing", State.STALE), ("petsage", State.FRESH)]
    assert fleet._is_watched(json.dumps({"service": "billing"}))
    assert [(r.service, r.state) for r in fleet._read(fixed, True)] == [
        ("billing", State.STALE)]
    assert [r.service for r in fleet._read(fixed, False)] == ["billing", "petsage"]
    assert not fleet._is_watched(b"{}")
    assert [r.service for r in fleet._read(fixed, True)] == ["billing", "petsage"]


class _Down:
    def __getattr__(self, name: str) -> Any:
        def refuse(*_: Any, **__: Any) -> Any:
            raise redis.ConnectionError("Error 111 connecting to db:6379")
        return refuse


def test_a_store_problem_turns_every_known_service_unreachable(fixed: Any) -> None:
    watcher = _watcher([], all_services=True)
    (star,) = watcher._read(_Down())  # type: ignore[arg-type]
    assert (star.service, star.state) == ("*", State.UNREACHABLE)
    assert star.reason.startswith("Redis could not be asked")
    watcher.observe([_report("b", State.FRESH), _report("a", State.LATE)])
    assert [(r.service, r.state, r.reason) for r in watcher._read(_Down())] == [  # type: ignore[arg-type]
        ("b", State.UNREACHABLE, star.reason), ("a", State.UNREACHABLE, star.reason)]


@pytest.mark.parametrize(("data", "all_services", "landed"), [
    (json.dumps({"service": "petsage", "seq": 1}), False, "petsage"),
    (json.dumps({"service": "billing"}), False, None),
    (json.dumps({"service": "billing"}), True, "billing"),
    (json.dumps({"service": "a b"}), True, None),
    (json.dumps({"service": 5}), True, None),
    (json.dumps({"seq": 1}), True, None),
    (json.dumps(["petsage"]), True, "before"),
    (b"not json", True, "before"),
    (None, True, "before"),
])
def test_a_message_is_watched_when_it_names_a_watched_service(
        data: Any, all_services: bool, landed: str | None) -> None:
    """The service it names is kept for the read it starts; what is no JSON object changes
    nothing."""
    watcher = _watcher([], all_services=all_services)
    watcher._landed = "before"
    assert watcher._is_watched(data) is (landed not in (None, "before"))
    assert watcher._landed == landed


class _Recorded:
    """``follow`` replaced: its arguments kept, a script of callbacks run."""

    def __init__(self, then: Callable[[dict[str, Any]], None] = lambda _: None) -> None:
        self.calls: list[tuple[Any, str, dict[str, Any]]] = []
        self.then = then

    def __call__(self, client: Any, channel: str, **options: Any) -> None:
        self.calls.append((client, channel, options))
        self.then(options)


def test_run_follows_the_events_channel_and_reads_on_each_callback(
        fixed: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch) -> None:
    """A poll reads every service watched, a landing only its own, an outage every one
    again; SIGTERM stops the loop."""
    publish(fixed, "petsage", keys=ACME)
    publish(fixed, "billing", keys=ACME)
    made: list[tuple[str, float]] = []

    def make_client(url: str, *, timeout_s: float) -> fakeredis.FakeRedis:
        made.append((url, timeout_s))
        return fixed

    handlers: dict[int, Any] = {}
    monkeypatch.setattr(watch, "make_client", make_client)
    monkeypatch.setattr(watch, "signal", types.SimpleNamespace(
        SIGTERM=signal.SIGTERM, signal=handlers.__setitem__))
    lines: list[str] = []
    watcher = _watcher(lines, all_services=True, timeout_s=3.0, poll_s=0.25)
    seen: list[Any] = []

    def then(options: dict[str, Any]) -> None:
        options["on_read"](False)
        backdate(fixed, "petsage", 20, keys=ACME)
        backdate(fixed, "billing", 20, keys=ACME)
        seen.append(options["relevant"](json.dumps({"service": "petsage"})))
        options["on_read"](True)
        seen.append(options["stopping"]())
        handlers[signal.SIGTERM](signal.SIGTERM, None)
        seen.append(options["stopping"]())

    follow = _Recorded(then)
    monkeypatch.setattr(watch, "follow", follow)
    assert watcher.run() == 0
    assert made == [("redis://watch.invalid:6379/0", 3.0)]
    ((client, channel, options),) = follow.calls
    assert (client, channel, options["poll_s"]) == (fixed, "acme:events", 0.25)
    assert seen == [True, False, True] and watcher.stopping is True
    late = "last heartbeat 20.0s ago, over 15s; beat_down: beat has recorded no publish"
    assert lines == [f"{STAMP} billing unknown -> fresh (last heartbeat 0.0s ago)",
                     f"{STAMP} petsage unknown -> fresh (last heartbeat 0.0s ago)",
                     f"{STAMP} petsage fresh -> late ({late})"]
    options["on_unreachable"](OSError("x"))
    assert lines[3:] == [f"{STAMP} billing fresh -> late ({late})"]


def test_run_ends_quietly_on_an_interrupt(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Inside the loop, or before it: exit 0, a newline on standard error at most."""
    monkeypatch.setattr(watch, "make_client", lambda url, **_: object())
    monkeypatch.setattr(watch, "signal", types.SimpleNamespace(SIGTERM=signal.SIGTERM,
                                                               signal=lambda *_: None))

    def interrupted(*_: Any, **__: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(watch, "follow", interrupted)
    options = {"all_services": False, "exec_cmd": None, "as_json": False, "timeout_s": 1.0}
    assert watch.run_watch(SETTINGS, **options) == 0
    assert capsys.readouterr() == ("", "")
    monkeypatch.setattr(watch, "make_client", interrupted)
    assert watch.run_watch(SETTINGS, **options) == 0
    assert capsys.readouterr() == ("", "\n")


def test_a_reader_that_went_away_ends_watch_with_0_and_later_output_goes_nowhere(
        fixed: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(watch, "make_client", lambda url, **_: object())
    monkeypatch.setattr(watch, "signal", types.SimpleNamespace(SIGTERM=signal.SIGTERM,
                                                               signal=lambda *_: None))
    monkeypatch.setattr(watch, "follow", _Recorded(
        lambda options: options["on_unreachable"](OSError("x"))))
    monkeypatch.setattr(watch.Watcher, "_read", lambda self, client, landed=False: [
        unreachable("petsage", "down")])
    out = tmp_path / "out"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT)
    try:
        monkeypatch.setattr(sys, "stdout", _GoneReader(fd))
        assert watch.run_watch(SETTINGS, all_services=False, exec_cmd=None, as_json=False,
                               timeout_s=1.0) == 0
        os.write(fd, b"later")
    finally:
        os.close(fd)
    assert out.read_bytes() == b""

