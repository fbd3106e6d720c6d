"""``petsage-heartbeat run`` in process: the command lines of beat, the worker and the
monitor, how they are spawned and stopped (process groups, SIGTERM, the grace period,
SIGKILL), the heartbeat lines as they land, the child that exits at start, the embedded
server when no URL is set, and the signal handlers put back. No process is started: spawning,
``killpg``, the clock, the watch loop and the embedded server are stubs.

``run`` as a real process, with real Celery children, is in tests/test_e2e.py.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

import worker.cli.embedded
from tests.support.streams import Stream
from worker.cli import run as run_cmd
from worker.core.settings import Settings
from worker.core.states import State

URL = "redis://store.invalid:6379/0"


@contextlib.contextmanager
def streams() -> Iterator[tuple[Stream, Stream]]:
    """Standard output and error recorded, flushes included (set in the test's body:
    pytest's capture resets them after the fixtures)."""
    out, err = Stream(), Stream()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "stdout", out)
        patch.setattr(sys, "stderr", err)
        yield out, err


# --- the command lines ----------------------------------------------------------------------

def test_beat_and_the_worker_on_the_service_queue_at_the_log_level() -> None:
    base = [sys.executable, "-m", "celery", "-A", "worker", "--quiet"]
    assert run_cmd.celery_commands("INFO", "heartbeat.billing") == {
        "beat": [*base, "beat", "--loglevel", "INFO"],
        "worker": [*base, "worker", "-Q", "heartbeat.billing", "--loglevel", "INFO",
                   "--concurrency", "1", "--without-mingle", "--without-gossip",
                   "--hostname", "heartbeat@%h"],
    }


def test_the_monitor_at_the_log_level() -> None:
    assert run_cmd.monitor_command("DEBUG") == [sys.executable, "-m", "worker", "monitor",
                                                "--loglevel", "DEBUG"]


def test_a_child_is_spawned_in_its_own_session_with_a_copy_of_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **kw: calls.append((a, kw)) or "proc")
    env = {"A": "1"}
    assert run_cmd._spawn(["celery", "beat"], env) == "proc"
    assert calls == [((["celery", "beat"],), {"env": {"A": "1"}, "start_new_session": True})]
    assert calls[0][1]["env"] is not env and type(calls[0][1]["env"]) is dict


# --- stopping -------------------------------------------------------------------------------

class Child:
    """A child process: ``poll`` answers from a list (its last answer repeats)."""

    def __init__(self, pid: int, polls: list[int | None], events: list[Any],
                 wait_raises: bool = False) -> None:
        self.pid = pid
        self.polls = polls
        self.events = events
        self.wait_raises = wait_raises

    def poll(self) -> int | None:
        return self.polls.pop(0) if len(self.polls) > 1 else self.polls[0]

    def wait(self, timeout: float | None = None) -> int:
        self.events.append(("wait", self.pid, timeout))
        if self.wait_raises:
            self.wait_raises = False  # the first wait only: SIGKILL ends it
            raise subprocess.TimeoutExpired("child", timeout or 0)
        return 0


@pytest.fixture
def killpg(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every ``os.killpg`` (``kill``) and ``os.kill`` (``term``) call, none sent."""
    events: list[Any] = []
    monkeypatch.setattr(run_cmd.os, "killpg", lambda pgid, sig: events.append(("kill", pgid, sig)))
    monkeypatch.setattr(run_cmd.os, "kill", lambda pid, sig: events.append(("term", pid, sig)))
    return events


def test_stop_terms_the_running_children_waits_out_the_grace_then_kills_every_group(
        killpg: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([100.0, 101.0, 104.0])
    monkeypatch.setattr(run_cmd, "time", SimpleNamespace(monotonic=lambda: next(clock)))
    running = Child(11, [None], killpg, wait_raises=True)  # ignores SIGTERM
    exited = Child(22, [0], killpg)
    run_cmd._stop({"beat": running, "worker": exited})
    assert killpg == [
        ("term", 11, signal.SIGTERM),  # the child alone; the exited one is not asked
        ("wait", 11, 100.0 + 3.5 - 101.0),  # the grace left
        ("wait", 22, 0.01),  # past the grace: the least wait
        ("kill", 11, signal.SIGKILL), ("wait", 11, 2),
        ("kill", 22, signal.SIGKILL),  # its pool children too; it is not waited for again
    ]


def test_a_child_gone_at_stop_is_no_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def kill(pid: int, sig: int) -> None:
        raise {1: ProcessLookupError, 2: PermissionError}[pid]()

    monkeypatch.setattr(run_cmd.os, "kill", kill)
    monkeypatch.setattr(run_cmd.os, "killpg", lambda pgid, sig: None)
    monkeypatch.setattr(run_cmd, "STOP_GRACE_S", 0.0)
    run_cmd._stop({"beat": Child(1, [None], []), "worker": Child(2, [None], [])})


def test_a_group_gone_or_not_ours_is_no_error(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[int, int]] = []

    def killpg(pgid: int, sig: int) -> None:
        sent.append((pgid, sig))
        raise {1: ProcessLookupError, 2: PermissionError}.get(pgid, OSError)()

    monkeypatch.setattr(run_cmd.os, "killpg", killpg)
    run_cmd._signal_group(1, signal.SIGTERM)
    run_cmd._signal_group(2, signal.SIGKILL)
    with pytest.raises(OSError):  # anything else is not swallowed
        run_cmd._signal_group(3, signal.SIGKILL)
    assert sent == [(1, signal.SIGTERM), (2, signal.SIGKILL), (3, signal.SIGKILL)]


def test_the_stop_handler_sets_the_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_cmd, "_stop_requested", False)
    run_cmd._request_stop(signal.SIGTERM, None)
    assert run_cmd._stop_requested is True


# --- the heartbeat lines --------------------------------------------------------------------

@pytest.mark.parametrize(("data", "ours"), [
    ('{"service": "petsage", "seq": 3}', True),
    (b'{"service": "petsage"}', True),
    ('{"service": "billing"}', False),
    ('{"seq": 3}', False),
    ("not json", False),
    (None, False),
    ("[1, 2]", False),
    ('"petsage"', False),
])
def test_an_event_is_ours_when_it_names_the_service(data: Any, ours: bool) -> None:
    assert run_cmd._is_ours(data, "petsage") is ours


class Supervisee:
    """A supervised child whose ``check`` answers from a list."""

    def __init__(self, codes: list[int | None]) -> None:
        self.codes = codes
        self.checked = 0

    def check(self) -> int | None:
        self.checked += 1
        return self.codes.pop(0) if self.codes else None


class Watched:
    """``_watch``'s collaborators: the client made, each read, and ``follow`` scripted."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch,
                 script: Callable[[dict[str, Any]], None]) -> None:
        self.clients: list[tuple[Any, ...]] = []
        self.reads: list[tuple[Any, ...]] = []
        self.states: list[State] = []
        self.follows: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        monkeypatch.setattr(run_cmd, "make_client", self._make_client)
        monkeypatch.setattr(run_cmd, "read_heartbeat", self._read)
        monkeypatch.setattr(run_cmd, "heartbeat_line",
                            lambda report: f"heartbeat line {report.state.value}")

        def follow(*args: Any, **kwargs: Any) -> None:
            self.follows.append((args, kwargs))
            script(kwargs)

        monkeypatch.setattr(run_cmd, "follow", follow)

    def _make_client(self, url: str, **kwargs: Any) -> str:
        self.clients.append((url, kwargs))
        return "client"

    def _read(self, client: Any, service: str, **kwargs: Any) -> Any:
        self.reads.append((client, service, kwargs))
        return SimpleNamespace(state=self.states.pop(0))


def _settings() -> Settings:
    return Settings.from_env({"HEARTBEAT_REDIS_URL": URL, "HEARTBEAT_SERVICE": "billing",
                              "HEARTBEAT_INTERVAL_S": "7", "HEARTBEAT_REDIS_TIMEOUT_S": "1.5",
                              "HEARTBEAT_KEY_PREFIX": "pfx"})


def test_watch_prints_each_landing_and_each_change_of_state_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_cmd, "_stop_requested", False)
    settings = _settings()
    children = {"beat": Supervisee([]), "worker": Supervisee([])}
    long_error = "Error 111 connecting to redis://:hunter2@store.invalid:6379/0. " + "x" * 300

    def script(kwargs: dict[str, Any]) -> None:
        assert kwargs["stopping"]() is False
        assert (children["beat"].checked, children["worker"].checked) == (1, 1)
        assert kwargs["relevant"]('{"service": "billing"}') is True
        assert kwargs["relevant"]('{"service": "petsage"}') is False
        watched.states += [State.FRESH, State.FRESH, State.FRESH, State.LATE, State.FRESH]
        kwargs["on_read"](True)  # landed: printed
        kwargs["on_read"](False)  # a poll, same state: not printed
        kwargs["on_read"](True)  # landed again: printed
        kwargs["on_read"](False)  # late: printed
        kwargs["on_unreachable"](ConnectionError(long_error))
        kwargs["on_unreachable"](ConnectionError("again"))  # still unreachable: not printed
        kwargs["on_read"](False)  # back: printed
        run_cmd._stop_requested = True
        assert kwargs["stopping"]() is True

    watched = Watched(monkeypatch, script)
    with streams() as (out, err):
        assert run_cmd._watch(settings, children) == 0
    shown = "Error 111 connecting to redis://:***@store.invalid:6379/0. " + "x" * 300
    assert out.text.splitlines() == [
        "heartbeat line fresh", "heartbeat line fresh", "heartbeat line late",
        f"heartbeat billing: unreachable ({shown[:200]})",
        "heartbeat line fresh"]
    assert out.flushed_at == out.line_ends()
    assert err.text == ""
    assert watched.clients == [(URL, {"timeout_s": 1.5})]
    assert watched.reads == [("client", "billing", {"keys": settings.keys})] * 5
    [(args, kwargs)] = watched.follows
    assert args == ("client", settings.keys.events)
    assert {k: v for k, v in kwargs.items() if not callable(v)} == {
        "poll_s": 7.0, "max_wait_s": 0.2, "reconnect_delay_s": 0.2}
    assert sorted(k for k, v in kwargs.items() if callable(v)) == [
        "on_read", "on_unreachable", "relevant", "stopping"]


def test_a_child_that_exits_at_start_stops_the_watch_with_exit_1(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_cmd, "_stop_requested", False)
    children = {"beat": Supervisee([None, None]), "worker": Supervisee([None, 3]),
                "monitor": Supervisee([])}
    answers: list[bool] = []

    def script(kwargs: dict[str, Any]) -> None:
        answers.append(kwargs["stopping"]())
        answers.append(kwargs["stopping"]())

    Watched(monkeypatch, script)
    with streams() as (out, err):
        assert run_cmd._watch(_settings(), children) == 1
    assert answers == [False, True]
    assert err.text == "petsage-heartbeat: worker exited with code 3 at start; stopping\n"
    assert out.text == ""
    assert children["monitor"].checked == 1  # not asked once one had exited


# --- run ------------------------------------------------------------------------------------

class Ran:
    """``run``'s children, watch and stop, recorded in order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, code: int = 0) -> None:
        self.events: list[Any] = []
        self.children: dict[str, Any] = {}
        self.watched: list[Settings] = []
        self.handlers: dict[int, Any] = {}
        self.flag_at_watch: list[bool] = []
        ran = self

        class FakeSupervised:
            def __init__(self, name: str, argv: list[str], env: dict[str, str],
                         spawn: Any) -> None:
                self.name, self.argv, self.env, self.spawn = name, argv, env, spawn
                self.process = f"process-{name}"
                ran.children[name] = self

        def watch(settings: Settings, children: dict[str, Any]) -> int:
            assert children == ran.children
            ran.watched.append(settings)
            ran.flag_at_watch.append(run_cmd._stop_requested)
            ran.handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT,
                                                                   signal.SIGTERM)}
            ran.events.append("watch")
            return code

        monkeypatch.setattr(run_cmd, "Supervised", FakeSupervised)
        monkeypatch.setattr(run_cmd, "_watch", watch)
        monkeypatch.setattr(run_cmd, "_stop", lambda processes: ran.events.append(
            ("stop", processes)))


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("HEARTBEAT_REDIS_URL", "CELERY_BROKER_URL", "HEARTBEAT_SERVICE",
                 "HEARTBEAT_KEY_PREFIX", "HEARTBEAT_QUEUE", "HEARTBEAT_INTERVAL_S",
                 "HEARTBEAT_STALE_AFTER_S"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RUN_TEST_MARK", "kept")
    monkeypatch.setattr(run_cmd, "_stop_requested", True)  # left over: run clears it
    return monkeypatch


def test_run_starts_the_three_children_watches_then_stops_them_and_restores_signals(
        clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("HEARTBEAT_REDIS_URL", URL)
    clean_env.setenv("HEARTBEAT_SERVICE", "billing")
    ran = Ran(clean_env, code=5)
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with streams() as (out, err):
        assert run_cmd.run() == 5
    assert out.text == (
        "petsage-heartbeat: starting celery beat and worker: service=billing interval=10s "
        "stale_after=30s store=redis://store.invalid:6379/0 "
        "broker=redis://127.0.0.1:6379/0 prefix=petsage:hb queue=heartbeat.billing\n"
        "petsage-heartbeat: stopped\n")
    assert out.flushed_at == out.line_ends()
    assert err.text == ""
    assert ran.flag_at_watch == [False]
    assert ran.handlers == {signal.SIGINT: run_cmd._request_stop,
                            signal.SIGTERM: run_cmd._request_stop}
    assert {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)} == before
    expected = {**run_cmd.celery_commands("WARNING", "heartbeat.billing"),
                "monitor": run_cmd.monitor_command("WARNING")}
    assert {name: child.argv for name, child in ran.children.items()} == expected
    assert list(ran.children) == ["beat", "worker", "monitor"]
    for name, child in ran.children.items():
        assert child.name == name and child.spawn is run_cmd._spawn
        assert child.env["RUN_TEST_MARK"] == "kept" and "CELERY_BROKER_URL" not in child.env
    assert ran.watched[0].redis_url == URL and ran.watched[0].service == "billing"
    assert ran.events == ["watch", ("stop", {"beat": "process-beat", "worker": "process-worker",
                                             "monitor": "process-monitor"})]


def test_run_passes_its_log_level_to_every_child(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("CELERY_BROKER_URL", URL)
    ran = Ran(clean_env)
    with streams():
        assert run_cmd.run("DEBUG") == 0
    assert {name: child.argv for name, child in ran.children.items()} == {
        **run_cmd.celery_commands("DEBUG", "heartbeat.petsage"),
        "monitor": run_cmd.monitor_command("DEBUG")}


class FakeEmbedded:
    """The embedded server: a URL, started and stopped, no socket."""

    instances: ClassVar[list[FakeEmbedded]] = []

    def __init__(self) -> None:
        self.url = "redis://127.0.0.1:6399/0"
        self.events: list[str] = []
        FakeEmbedded.instances.append(self)

    def start(self) -> FakeEmbedded:
        self.events.append("start")
        return self

    def stop(self) -> None:
        self.events.append("stop")


def test_with_no_url_run_serves_the_embedded_store_and_gives_its_url_to_every_child(
        clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setattr(worker.cli.embedded, "available", lambda: True)
    clean_env.setattr(worker.cli.embedded, "EmbeddedRedis", FakeEmbedded)
    FakeEmbedded.instances = []
    ran = Ran(clean_env)
    with streams() as (out, err):
        assert run_cmd.run() == 0
    embedded = "redis://127.0.0.1:6399/0"
    assert out.text == (
        f"petsage-heartbeat: no Redis URL set, so an embedded Redis-compatible server runs in "
        f"this process at {embedded} (in memory); read it from another terminal with "
        f"HEARTBEAT_REDIS_URL={embedded}\n"
        "petsage-heartbeat: starting celery beat and worker: service=petsage interval=10s "
        f"stale_after=30s store={embedded} broker={embedded} prefix=petsage:hb "
        "queue=heartbeat.petsage\n"
        "petsage-heartbeat: stopped\n")
    assert out.flushed_at == out.line_ends()
    assert err.text == ""
    [server] = FakeEmbedded.instances
    assert server.events == ["start", "stop"]
    assert ran.events[0] == "watch"  # stopped after the children
    for child in ran.children.values():
        assert (child.env["CELERY_BROKER_URL"], child.env["HEARTBEAT_REDIS_URL"]) == (
            embedded, embedded)
        assert child.env["RUN_TEST_MARK"] == "kept"
    assert (ran.watched[0].redis_url, ran.watched[0].broker_url) == (embedded, embedded)


def test_with_no_url_and_no_embedded_server_run_says_what_to_do(
        clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setattr(worker.cli.embedded, "available", lambda: False)
    ran = Ran(clean_env)
    with streams() as (out, err):
        assert run_cmd.run() == 2
    assert err.text == (
        "petsage-heartbeat: no CELERY_BROKER_URL or HEARTBEAT_REDIS_URL is set and the "
        "embedded server is not installed; accepted: set a redis:// URL, or pip install "
        "'petsage-heartbeat[embedded]'\n")
    assert out.text == "" and ran.children == {} and ran.events == []
