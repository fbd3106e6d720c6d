"""``petsage-heartbeat run``: beat, one worker and a monitor as child processes, for a laptop.

Beat and the worker run as two ``celery`` processes (not ``worker -B``, whose beat child is
not reaped on SIGTERM), each in its own process group. Stopping sends SIGTERM to each child
alone (the worker then ends its pool children itself, after the task in hand: a SIGTERM to
the pool child too would kill that task and print ``WorkerLostError``), then, after a grace,
SIGKILL to each whole group, so that no pool child outlives ``run``. With no URL configured,
an embedded Redis-compatible server runs in this process. Each heartbeat is printed as it
lands, read back through the reader. A child that dies is started again with back-off
(``supervise``), one line each time.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import Any

from worker.cli.supervise import Supervised
from worker.cli.watch import follow
from worker.core.exits import fail
from worker.core.redis_clients import make_client
from worker.core.settings import Settings, load_or_exit
from worker.core.states import State
from worker.core.urls import redact
from worker.read.reader import read_heartbeat
from worker.read.render import heartbeat_line

STOP_GRACE_S = 3.5
"""How long beat and the worker get to stop after SIGTERM before they are killed."""

_stop_requested = False


def _request_stop(signum: int, _frame: Any) -> None:
    global _stop_requested  # noqa: PLW0603 - a signal handler has nowhere else to put it
    _stop_requested = True


def celery_commands(loglevel: str, queue: str) -> dict[str, list[str]]:
    """The beat and worker command lines ``run`` starts (the worker on the service's queue)."""
    base = [sys.executable, "-m", "celery", "-A", "worker", "--quiet"]
    return {
        "beat": [*base, "beat", "--loglevel", loglevel],
        "worker": [*base, "worker", "-Q", queue, "--loglevel", loglevel,
                   "--concurrency", "1", "--without-mingle", "--without-gossip",
                   "--hostname", "heartbeat@%h"],
    }


def monitor_command(loglevel: str) -> list[str]:
    """The monitor ``run`` starts beside them: incidents, uptime and webhooks work at once."""
    return [sys.executable, "-m", "worker", "monitor", "--loglevel", loglevel]


def _spawn(argv: list[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, env=dict(env), start_new_session=True)


def _stop(children: Mapping[str, subprocess.Popen[bytes]]) -> None:
    """SIGTERM every running child (not its group), wait, then SIGKILL every group."""
    for child in children.values():
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for child in children.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=max(deadline - time.monotonic(), 0.01))
    for child in children.values():
        _signal_group(child.pid, signal.SIGKILL)  # pool children too, even if the parent exited
        if child.poll() is None:
            child.wait(timeout=2)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _watch(settings: Settings, children: Mapping[str, Supervised]) -> int:
    """Print heartbeats as they land, and state changes when none come; return an exit code."""
    client = make_client(settings.redis_url, timeout_s=settings.redis_timeout_s)
    last: dict[str, State] = {}
    exited: list[int] = []

    def stopping() -> bool:
        for name, child in children.items():
            code = child.check()
            if code is not None:
                exited.append(fail("run", f"{name} exited with code {code} at start; "
                                          "stopping", runtime=True))
                return True
        return _stop_requested

    def on_read(landed: bool) -> None:
        report = read_heartbeat(client, settings.service, keys=settings.keys)
        if landed or report.state is not last.get("state"):
            print(heartbeat_line(report), flush=True)
        last["state"] = report.state

    def on_unreachable(exc: Exception) -> None:
        if last.get("state") is not State.UNREACHABLE:
            print(f"heartbeat {settings.service}: unreachable ({redact(str(exc))[:200]})",
                  flush=True)
            last["state"] = State.UNREACHABLE

    follow(client, settings.keys.events, poll_s=settings.interval_s,
           relevant=lambda data: _is_ours(data, settings.service), on_read=on_read,
           on_unreachable=on_unreachable, stopping=stopping, max_wait_s=0.2,
           reconnect_delay_s=0.2)
    return exited[0] if exited else 0


def _is_ours(data: Any, service: str) -> bool:
    try:
        return bool(json.loads(data).get("service") == service)
    except (TypeError, ValueError, AttributeError):
        return False


def run(loglevel: str = "WARNING") -> int:
    """Start (embedded Redis,) beat and worker; print heartbeats until SIGINT/SIGTERM."""
    global _stop_requested  # noqa: PLW0603
    _stop_requested = False
    settings = load_or_exit()
    env = dict(os.environ)
    embedded = None
    if settings.urls_defaulted:
        from worker.cli.embedded import EmbeddedRedis, available

        if not available():
            return fail("run", "no CELERY_BROKER_URL or HEARTBEAT_REDIS_URL is set and the "
                               "embedded server is not installed; accepted: set a redis:// URL, "
                               "or pip install 'petsage-heartbeat[embedded]'")
        embedded = EmbeddedRedis().start()
        env["CELERY_BROKER_URL"] = env["HEARTBEAT_REDIS_URL"] = embedded.url
        settings = load_or_exit(env)
        print(f"petsage-heartbeat: no Redis URL set, so an embedded Redis-compatible server "
              f"runs in this process at {embedded.url} (in memory); read it from another "
              f"terminal with HEARTBEAT_REDIS_URL={embedded.url}", flush=True)
    print(f"petsage-heartbeat: starting celery beat and worker: {settings.describe()}",
          flush=True)
    previous = {sig: signal.signal(sig, _request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    commands = {**celery_commands(loglevel, settings.queue), "monitor": monitor_command(loglevel)}
    children = {name: Supervised(name, argv, env, _spawn) for name, argv in commands.items()}
    try:
        code = _watch(settings, children)
    finally:
        _stop({name: child.process for name, child in children.items()})
        if embedded is not None:
            embedded.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("petsage-heartbeat: stopped", flush=True)
    return code
