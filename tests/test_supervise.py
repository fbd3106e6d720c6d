"""``run``'s supervisor, in process: restarts with back-off, a setup fault stops ``run``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from worker.cli import supervise
from worker.cli.supervise import Supervised


class FakeProcess:
    """A child whose exit code the test sets; ``pid`` names no real process group."""

    def __init__(self) -> None:
        self.code: int | None = None
        self.pid = 2**22 + 7  # above pid_max's default: killpg finds nothing

    def poll(self) -> int | None:
        return self.code


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def _supervised() -> tuple[Supervised, list[FakeProcess], Clock]:
    started: list[FakeProcess] = []

    def spawn(argv: list[str], env: Mapping[str, str]) -> Any:
        assert argv == ["celery", "worker"] and env == {"A": "1"}
        started.append(FakeProcess())
        return started[-1]

    clock = Clock()
    child = Supervised("worker", ["celery", "worker"], {"A": "1"}, spawn, clock=clock)
    return child, started, clock


def test_a_running_child_is_left_alone() -> None:
    child, started, clock = _supervised()
    clock.now_s += 3600
    assert child.check() is None
    assert len(started) == 1 and child.restarts == 0


def test_a_child_dying_at_its_first_start_is_a_setup_fault() -> None:
    child, started, clock = _supervised()
    clock.now_s += supervise.SETUP_FAULT_S - 0.01
    started[0].code = 2
    assert child.check() == 2
    assert len(started) == 1


def test_a_child_killed_by_a_signal_at_its_first_start_is_restarted() -> None:
    child, started, clock = _supervised()
    started[0].code = -9  # an OOM kill is no setup fault
    assert child.check() is None
    clock.now_s += supervise.FIRST_WAIT_S
    assert child.check() is None
    assert len(started) == 2


def test_a_child_that_dies_later_is_restarted_with_doubling_waits(
        capsys: pytest.CaptureFixture[str]) -> None:
    child, started, clock = _supervised()
    clock.now_s += supervise.SETUP_FAULT_S
    waits: list[float] = []
    for _ in range(7):
        started[-1].code = 1
        assert child.check() is None  # noted, restart scheduled
        died_at = clock.now_s
        count = len(started)
        while len(started) == count:
            clock.now_s += 0.25
            assert child.check() is None
        waits.append(clock.now_s - died_at)
        assert id(child.process) == id(started[-1])
        clock.now_s += 1  # dies young again
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert child.restarts == 7
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "petsage-heartbeat: worker exited with code 1; starting it again in 1s"
    assert lines[-1] == "petsage-heartbeat: worker exited with code 1; starting it again in 30s"
    assert len(lines) == 7


def test_a_child_that_ran_for_a_while_starts_over_at_the_first_wait() -> None:
    child, started, clock = _supervised()
    clock.now_s += supervise.SETUP_FAULT_S
    for _ in range(3):  # waits 1, 2, 4: the next would be 8
        started[-1].code = 1
        child.check()
        clock.now_s += 10
        child.check()
    clock.now_s += supervise.HEALTHY_AFTER_S
    started[-1].code = -9
    child.check()
    clock.now_s += supervise.FIRST_WAIT_S
    child.check()
    assert len(started) == 5  # restarted after 1 s, not 8


def test_a_restarted_child_dying_at_once_is_restarted_again_not_a_setup_fault() -> None:
    child, started, clock = _supervised()
    clock.now_s += supervise.SETUP_FAULT_S
    started[-1].code = 1
    child.check()
    clock.now_s += 1
    child.check()
    started[-1].code = 1  # the restarted child dies at once
    assert child.check() is None


@pytest.mark.e2e
def test_run_starts_a_killed_worker_again(own_redis: Any, procs: list[Any],
                                           tmp_path: Any) -> None:
    """Real processes: ``run`` against a redis-server; its worker SIGKILLed; one line, and
    heartbeats again within the first wait plus the worker's start and one interval."""
    from pathlib import Path

    from tests.support.helpers import Proc, cli_argv, heartbeat_env, wait_for
    from worker import State, read_heartbeat

    run = Proc(cli_argv("run"), heartbeat_env(own_redis.url), tmp_path, "run")
    procs.append(run)
    client = own_redis.client()

    def seq() -> int:
        report = read_heartbeat(client, "petsage")
        fresh = report.state is State.FRESH and report.payload is not None
        return report.payload["seq"] if fresh and report.payload else -1

    wait_for(lambda: seq() > 0, 60, what="a first heartbeat")
    pid = run.proc.pid
    workers = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
               if b" worker -Q " in Path(f"/proc/{c}/cmdline").read_bytes().replace(b"\0", b" ")]
    assert len(workers) == 1
    import os
    import signal

    os.kill(workers[0], signal.SIGKILL)
    wait_for(lambda: "worker exited with code -9; starting it again in 1s" in run.output(), 30,
             what="run's line about the worker")
    before = seq()
    wait_for(lambda: seq() > before, 60, what="heartbeats from the restarted worker")
    assert run.alive()


@pytest.mark.parametrize("code", [1, 3])
def test_every_error_code_at_the_first_start_is_a_setup_fault(code: int) -> None:
    child, started, _ = _supervised()
    started[0].code = code  # 1 is Celery's own "could not start" code
    assert child.check() == code
    assert len(started) == 1


def test_a_child_that_exits_0_at_its_first_start_is_restarted() -> None:
    child, started, clock = _supervised()
    started[0].code = 0  # ended cleanly but far too soon: no fault of its setup
    assert child.check() is None
    clock.now_s += supervise.FIRST_WAIT_S
    assert child.check() is None
    assert len(started) == 2


@pytest.mark.parametrize("error", [ProcessLookupError, PermissionError])
def test_a_group_that_cannot_be_killed_still_restarts(
        monkeypatch: pytest.MonkeyPatch, error: type[OSError]) -> None:
    def refuse(pid: int, sig: int) -> None:
        raise error  # gone already, or (a setuid child) not ours to signal

    monkeypatch.setattr(supervise.os, "killpg", refuse)
    child, started, clock = _supervised()
    clock.now_s += supervise.SETUP_FAULT_S
    started[0].code = 1
    assert child.check() is None
    clock.now_s += supervise.FIRST_WAIT_S
    assert child.check() is None
    assert len(started) == 2


class Stderr:
    """A stderr that records whether each line was flushed as it was written."""

    def __init__(self) -> None:
        self.text = ""
        self.flushed = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        self.flushed = self.text


def test_the_restart_line_is_flushed_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = Stderr()
    monkeypatch.setattr(supervise.sys, "stderr", stderr)
    child, started, clock = _supervised()
    clock.now_s += supervise.SETUP_FAULT_S
    started[0].code = 1
    assert child.check() is None
    assert stderr.flushed == stderr.text == (
        "petsage-heartbeat: worker exited with code 1; starting it again in 1s\n")
