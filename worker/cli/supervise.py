"""``run``'s children kept running: a child that exits is started again, with back-off.

The worker's consumer already survives the broker faults known to kill Celery's worker
(``worker/publish/consumer.py``), so this is the second line: whatever else ends beat, the
worker or the monitor (an OOM kill, a bug of a library), ``run`` starts it again and says
so in one line, instead of leaving the heartbeat stale. The wait doubles from 1 s to 30 s
while the child keeps dying young, and starts over once a child has run for a minute.

A child that exits with an error code within its first seconds of the very first start is
a setup fault (a bad ``HEARTBEAT_CHECKS`` entry, a missing module): restarting would only
repeat its one line, so ``run`` stops with that child's exit code instead. A child killed
by a signal (an OOM kill) is always started again.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping

FIRST_WAIT_S = 1.0
"""The wait before the first restart of a child that died."""

MAX_WAIT_S = 30.0
"""The longest wait between two restarts of a child that keeps dying."""

HEALTHY_AFTER_S = 60.0
"""A child that ran this long before it died is restarted after ``FIRST_WAIT_S`` again."""

SETUP_FAULT_S = 5.0
"""A child that dies this soon after its very first start is not restarted: setup fault."""

Spawn = Callable[[list[str], Mapping[str, str]], "subprocess.Popen[bytes]"]


class Supervised:
    """One child process of ``run``: started, watched, and started again when it dies."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str],
                 spawn: Spawn, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._argv = argv
        self._env = env
        self._spawn = spawn
        self._clock = clock
        self._first_start = clock()
        self._started = self._first_start
        self.process = spawn(argv, env)
        self.restarts = 0
        self._wait_s = FIRST_WAIT_S
        self._restart_at: float | None = None

    def check(self) -> int | None:
        """Restart the child if due; the child's exit code when it is a setup fault, else None."""
        now = self._clock()
        if self._restart_at is not None:
            if now >= self._restart_at:
                self._restart_at = None
                self._started = now
                self.restarts += 1
                self.process = self._spawn(self._argv, self._env)
            return None
        code = self.process.poll()
        if code is None:
            return None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # what it left: the worker's pool
        if code > 0 and self.restarts == 0 and now - self._first_start < SETUP_FAULT_S:
            return code
        if now - self._started >= HEALTHY_AFTER_S:
            self._wait_s = FIRST_WAIT_S
        print(f"petsage-heartbeat: {self.name} exited with code {code}; starting it again "
              f"in {self._wait_s:g}s", file=sys.stderr, flush=True)
        self._restart_at = now + self._wait_s
        self._wait_s = min(self._wait_s * 2, MAX_WAIT_S)
        return None
