"""Test helpers: throwaway redis-server processes, celery subprocesses, deadline waits."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

from tests.support.processes import run, spawn, stop

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
IN_CI = bool(os.environ.get("CI"))


INTERVAL_S = 0.5
"""``HEARTBEAT_INTERVAL_S`` of every process the tests start (``heartbeat_env``)."""
HEADROOM_INTERVALS = 8
"""Headroom of a wall-clock bound past a documented promise, in intervals (4 s at 0.5 s).
On a busy machine (load 10 on 2 cores) every hop of a heartbeat, beat to broker to worker to
store to reader, waits its turn for a core."""
STARTUP_S = 120.0
"""Deadline for processes to start (celery workers ready, a first heartbeat): no promise, so
only a bound on how long a broken start keeps the run waiting."""


def with_headroom(promise_s: float) -> float:
    """The bound a test asserts for a promise of ``promise_s`` seconds: the promise itself,
    plus ``HEADROOM_INTERVALS`` intervals. The test names the promise next to it."""
    return promise_s + HEADROOM_INTERVALS * INTERVAL_S


def wait_for(condition: Callable[[], T], timeout_s: float, *, interval_s: float = 0.05,
             what: str = "condition") -> T:
    """Poll ``condition`` until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while True:
        try:
            result = condition()
        except Exception as exc:  # a condition that raises just isn't true yet
            last = exc
        else:
            if result:
                return result
            last = result
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {what}; last: {last!r}")
        time.sleep(interval_s)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_binary(name: str) -> str:
    """The path of ``name``; a missing binary fails the run in CI and skips the test elsewhere."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed"
        if IN_CI:
            pytest.fail(message + " (CI must provide it)")
        pytest.skip(message)
    return path


class RedisServer:
    """A redis-server on a free loopback port, in its own dir, that a test can kill and restart."""

    def __init__(self, *extra_args: str, port: int | None = None) -> None:
        self.binary = require_binary("redis-server")
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="petsage-redis-")
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, **kwargs: Any) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, **kwargs)

    def start(self) -> RedisServer:
        self.proc = spawn(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, *self.extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(self._pingable, 10, what=f"redis-server on port {self.port}")
        except BaseException:
            self.kill()  # never leave a running process behind a failed start
            raise
        return self

    def _pingable(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def kill(self) -> None:
        if self.proc is not None:
            stop(self.proc, signal.SIGKILL)
        self.proc = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def heartbeat_env(redis_url: str, **overrides: str) -> dict[str, str]:
    """Environment for celery and CLI subprocesses pointed at ``redis_url``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HEARTBEAT_", "CELERY_"))}
    env.update({
        "CELERY_BROKER_URL": redis_url,
        "HEARTBEAT_REDIS_URL": redis_url,
        "HEARTBEAT_INTERVAL_S": str(INTERVAL_S),
        "PYTHONUNBUFFERED": "1",
    })
    env.update(overrides)
    return env


class Proc:
    """A subprocess (``spawn``: its own process group, default signal dispositions) with its
    output captured to a file."""

    def __init__(self, argv: list[str], env: Mapping[str, str], cwd: Path, name: str) -> None:
        self.name = name
        self.log_path = cwd / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = spawn(argv, env=dict(env), cwd=cwd, stdout=self._log,
                          stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 10) -> int:
        """Signal the whole process group, wait, then SIGKILL what is left."""
        try:
            return stop(self.proc, sig, timeout_s)
        finally:
            self._log.close()


def celery_argv(role: str, *extra: str, queue: str = "heartbeat.petsage",
                hostname: str = "hbtest@%h") -> list[str]:
    base = [sys.executable, "-m", "celery", "-A", "worker"]
    if role == "beat":
        return [*base, "beat", "--loglevel", "INFO", *extra]
    return [*base, "worker", "-Q", queue, "--loglevel", "INFO", "--concurrency", "1",
            "--without-mingle", "--without-gossip", "--hostname", hostname, *extra]


def cli_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "worker", *args]


_TIMED_CLI = """
import contextlib, io, sys, time
from worker.cli.main import main
with contextlib.redirect_stdout(io.StringIO()):  # the command's imports, before the clock
    main([sys.argv[1], "--redis", "redis://127.0.0.1:1/0", "--timeout", "1"])
started = time.monotonic()
code = main(sys.argv[1:])
print(f"ELAPSED {time.monotonic() - started:.3f}", file=sys.stderr)
sys.exit(code)
"""
TIMEOUT_HEADROOM_S = 1.0
"""Past a ``--timeout``: the wake-up, after it, of a process that waits on a busy machine."""


def timed_cli(*args: str, env: Mapping[str, str],
              ) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``petsage-heartbeat ARGS`` in a process of its own; its result and how long the
    command took inside that process, from its call to its answer. The interpreter's start
    and the imports (seconds, on a busy machine) are no part of a ``--timeout``'s promise."""
    done = run([sys.executable, "-c", _TIMED_CLI, *args], env=dict(env), capture_output=True,
               text=True, timeout=120, check=False)
    assert "ELAPSED " in done.stderr, done.stdout + done.stderr
    return done, float(done.stderr.split("ELAPSED ")[1].split()[0])
