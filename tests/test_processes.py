"""The helper every test starts processes with, and the end-of-session check that none is
left running (``tests/support/processes.py``, ``_no_process_left`` in ``tests/conftest.py``)."""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import (
    kill_all,
    processes_left,
    run,
    running_processes,
    spawn,
    stop,
    wait_gone,
)


def _ignored(pid: int) -> int:
    """The process's mask of ignored signals (``SigIgn`` in /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("SigIgn:"):
                return int(line.split()[1], 16)
    raise AssertionError("no SigIgn line")


def _bit(sig: int) -> int:
    return 1 << (sig - 1)


@pytest.fixture
def sigint_ignored() -> Iterator[None]:
    """This process ignores SIGINT, as pytest run as a shell's background job does."""
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    yield
    signal.signal(signal.SIGINT, before)


def test_the_leak_check_finds_a_process_left_running_and_kills_it() -> None:
    proc = spawn(["sleep", "60"])
    try:
        assert proc.pid in {p.pid for p in processes_left()}
        (left,) = [p for p in processes_left() if p.pid == proc.pid]
        assert "sleep 60" in str(left)
        kill_all([left])
        assert proc.wait(10) == -signal.SIGKILL
        assert proc.pid not in {p.pid for p in processes_left()}
    finally:
        stop(proc, signal.SIGKILL)


def test_the_leak_check_finds_an_orphan_adopted_by_init() -> None:
    """A grandchild whose parent exited is no descendant of pytest any more: its session
    (that of the process the test started) still names it."""
    shell = spawn(["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!"], stdout=subprocess.PIPE,
                  text=True)
    try:
        orphan = int(shell.communicate(timeout=30)[0])
        assert orphan not in {p.pid for p in processes_left(started=())}  # not a descendant
        assert orphan in {p.pid for p in processes_left()}
        kill_all([p for p in processes_left() if p.pid == orphan])
        assert orphan not in {p.pid for p in running_processes()}
    finally:
        stop(shell, signal.SIGKILL)


def test_a_process_started_with_sigint_ignored_gets_the_default(sigint_ignored: None) -> None:
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    plain = subprocess.Popen(["sleep", "60"])  # what the tests did before: SIGINT inherited
    ours = spawn(["sleep", "60"])
    try:
        assert _ignored(plain.pid) & _bit(signal.SIGINT)
        assert not _ignored(ours.pid) & _bit(signal.SIGINT)
        assert stop(ours, signal.SIGINT, timeout_s=10) == -signal.SIGINT  # not the SIGKILL
    finally:
        plain.kill()
        plain.wait(10)
        stop(ours, signal.SIGKILL)


def test_a_stop_that_is_ignored_ends_in_sigkill_of_the_group() -> None:
    proc = spawn(["sh", "-c", "trap '' TERM INT; sleep 60 & echo ready; sleep 60"],
                 stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        assert stop(proc, signal.SIGTERM, timeout_s=0.5) == -signal.SIGKILL
        assert wait_gone([p.pid for p in processes_left() if p.sid == proc.pid], 5) == set()
    finally:
        stop(proc, signal.SIGKILL)
        if proc.stdout is not None:
            proc.stdout.close()


def test_run_kills_the_whole_group_at_its_timeout() -> None:
    with pytest.raises(subprocess.TimeoutExpired):
        run(["sh", "-c", "sleep 60 & sleep 60; wait"], timeout=0.5, capture_output=True)
    assert wait_gone([p.pid for p in processes_left() if "sleep 60" in p.cmdline], 5) == set()


def test_run_is_subprocess_run() -> None:
    done = run(["sh", "-c", "cat; echo err >&2; exit 3"], input="in\n", capture_output=True,
               text=True, timeout=30)
    assert (done.returncode, done.stdout, done.stderr) == (3, "in\n", "err\n")
    with pytest.raises(subprocess.CalledProcessError):
        run(["false"], check=True, timeout=30)


def test_every_process_a_test_starts_goes_through_the_helper() -> None:
    """``spawn`` and ``run`` (or ``Proc`` and ``RedisServer``, built on them) only: a process
    started otherwise inherits pytest's ignored signals and is stopped by no deadline."""
    tests = Path(__file__).resolve().parent
    direct = re.compile(r"\bsubprocess\.(run|Popen|call|check_call|check_output)\(|"
                        r"\bos\.(system|popen|spawn\w*|fork|posix_spawnp?)\(")
    allowed = {tests / "support" / "processes.py", Path(__file__).resolve()}
    found = [f"{path.relative_to(tests.parent)}:{n}: {line.strip()}"
             for path in sorted(tests.rglob("*.py")) if path not in allowed
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if direct.search(line)]
    assert found == [], found
