"""Every process a test starts goes through here: ``spawn`` and ``run``.

- It starts with default signal dispositions. A shell starts a background job with SIGINT
  (and SIGQUIT) ignored, an ignored signal stays ignored across ``exec``, and a Python
  started with SIGINT ignored never turns Ctrl-C into ``KeyboardInterrupt``: without the
  reset, a ``watch`` stopped with SIGINT by a test of a backgrounded pytest ran on.
- It leads a session (and process group) of its own, so a stop reaches its children too.
- Every stop ends in SIGKILL of the process group after a deadline.
- Each one is recorded; at the end of the session ``tests/conftest.py`` fails the run if any
  of them, or any other descendant of pytest, is still running (``processes_left``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                   signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD, signal.SIGPIPE,
                   signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)
"""Reset to SIG_DFL in every started process, whatever pytest inherited."""

STARTED: list[subprocess.Popen[Any]] = []
"""Every process started by a test in this session."""


def _default_signals() -> None:
    """Runs in the child between fork and exec: default dispositions, nothing blocked."""
    for sig in DEFAULT_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())


def spawn(argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """``subprocess.Popen`` in a session of its own with default signal dispositions."""
    # preexec_fn is unsafe beside threads when it takes a lock another thread may have held
    # at fork; this one takes none (two system calls under the GIL the child owns).
    proc: subprocess.Popen[Any] = subprocess.Popen(
        list(argv), start_new_session=True, preexec_fn=_default_signals,  # noqa: PLW1509
        **kwargs)
    STARTED.append(proc)
    return proc


def killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout_s: float = 10) -> int:
    """Send ``sig`` to the process group, wait up to ``timeout_s``, then SIGKILL the group."""
    if proc.poll() is None:
        killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout_s)
    killpg(proc.pid, signal.SIGKILL)  # the leader if it didn't stop, and whatever it left
    if proc.poll() is None:
        proc.wait(10)
    return proc.returncode


def run(argv: Sequence[str], *, timeout: float = 120, input: Any = None,
        capture_output: bool = False, check: bool = False,
        **kwargs: Any) -> subprocess.CompletedProcess[Any]:
    """``subprocess.run`` through ``spawn``: on a timeout (or any error) the whole process
    group is killed, and so is whatever the process left in its group when it exits."""
    if capture_output:
        kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
    if input is not None:
        kwargs["stdin"] = subprocess.PIPE
    with spawn(argv, **kwargs) as proc:
        try:
            stdout, stderr = proc.communicate(input, timeout=timeout)
        except BaseException:
            killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
        finally:
            killpg(proc.pid, signal.SIGKILL)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    if check:
        done.check_returncode()
    return done


@dataclass(frozen=True)
class Running:
    """A process seen in /proc."""

    pid: int
    ppid: int
    pgid: int
    sid: int
    state: str
    cmdline: str

    def __str__(self) -> str:
        return f"pid {self.pid} (parent {self.ppid}): {self.cmdline}"


def _read(pid: int) -> Running | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    comm_end = stat.rindex(")")  # the command name may hold spaces and parentheses
    fields = stat[comm_end + 2:].split()
    cmdline = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    return Running(pid, int(fields[1]), int(fields[2]), int(fields[3]), fields[0],
                   cmdline or stat[stat.index("(") + 1:comm_end])


def running_processes() -> list[Running]:
    """Every process in /proc but zombies (they have exited; their parent just hasn't reaped
    them)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            proc = _read(int(name))
            if proc is not None and proc.state != "Z":
                found.append(proc)
    return found


def processes_left(root_pid: int | None = None,
                   started: Iterable[int] | None = None) -> list[Running]:
    """Processes still running that descend from ``root_pid`` (pytest), or that belong to the
    session or process group of a process in ``started`` (a child that went on after its
    parent exited is adopted by init, but keeps its session)."""
    root = os.getpid() if root_pid is None else root_pid
    leaders = {p.pid for p in STARTED} if started is None else set(started)
    everything = running_processes()
    children: dict[int, list[Running]] = {}
    for proc in everything:
        children.setdefault(proc.ppid, []).append(proc)
    left: dict[int, Running] = {}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child.pid not in left:
                left[child.pid] = child
                todo.append(child.pid)
    for proc in everything:
        if proc.pid != root and (proc.sid in leaders or proc.pgid in leaders):
            left.setdefault(proc.pid, proc)
    return sorted(left.values(), key=lambda p: p.pid)


def reap_started() -> None:
    """Collect the exit status of recorded processes that have exited (no zombies left)."""
    for proc in STARTED:
        proc.poll()


def wait_gone(pids: Iterable[int], timeout_s: float) -> set[int]:
    """Wait up to ``timeout_s`` for the processes to exit; those still running."""
    pending = set(pids)
    deadline = time.monotonic() + timeout_s
    while True:
        reap_started()
        alive = {p.pid for p in running_processes()}
        pending &= alive
        if not pending or time.monotonic() >= deadline:
            return pending
        time.sleep(0.1)


def kill_all(procs: Iterable[Running]) -> None:
    """SIGKILL each process (and its group when it leads one), then reap what we started."""
    for proc in procs:
        if proc.pgid == proc.pid:
            killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(proc.pid, signal.SIGKILL)
    wait_gone([p.pid for p in procs], 10)
