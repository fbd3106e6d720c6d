"""Beat entries' transitions recorded and notified on real processes: the sample app's beat
and worker (``tests/sample_app/entries_app.py``), TWO real ``petsage-heartbeat monitor``
processes and a local webhook receiver. The "raises" entry's change to failed and the
"nobody consumes" entry's to not_started are each posted exactly once; an entry of a
one-second schedule flipping between ok and running is never posted; a silenced entry's
change (``silence petsage --entry``) is recorded, not posted.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.entries_app import HEADROOM_S, STARTUP_S, app_env, start_beat, start_worker
from tests.support.helpers import Proc, RedisServer, cli_argv, heartbeat_env, wait_for
from tests.support.processes import run as run_process
from tests.support.receiver import Receiver
from worker.core.names import Keys
from worker.core.redis_io import redis_time_ms

pytestmark = pytest.mark.e2e
KEYS = Keys()
REPEAT_WINDOW_S = 5.0
"""How long the test waits after the posts for a repeat to show (there must be none)."""
RAISES_EVERY_S = 10
"""The period of the "raises" entry in this test: its first run, one period after beat
starts, comes after the monitors have judged it pending."""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def _monitor(url: str, hook: str, cwd: Path, name: str) -> Proc:
    return Proc(cli_argv("monitor", "--webhook", hook),
                heartbeat_env(url, HEARTBEAT_INTERVAL_S="1"), cwd, name)


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_process(cli_argv(*args), env=heartbeat_env(url), capture_output=True,
                       text=True, timeout=60, check=False)


def _said(proc: Proc, text: str) -> Callable[[], bool]:
    return lambda: text in proc.output()


def _entry_posts(receiver: Receiver) -> list[dict[str, Any]]:
    return [b for b in receiver.delivered() if "entry" in b]


def _posted(receiver: Receiver, entry: str, state: str) -> list[dict[str, Any]]:
    return [b for b in _entry_posts(receiver) if b["entry"] == entry and b["new_state"] == state]


def _recorded(client: redis.Redis) -> list[dict[str, str]]:
    return [{k.decode(): v.decode() for k, v in fields.items()}
            for _, fields in client.xrange(KEYS.entry_incidents("petsage"))]


def test_two_monitors_post_each_entry_transition_once_and_hold_a_silenced_one(
        own_redis: RedisServer, procs: list[Proc], tmp_path: Path, receiver: Receiver) -> None:
    client = own_redis.client()
    # "raises" first runs (and fails) one period after beat starts: 10 s leaves the monitors
    # time to judge it pending on a busy machine, where two seconds did not always suffice.
    env = app_env(own_redis.url, PETSAGE_RAISES_EVERY_S=str(RAISES_EVERY_S))
    # The monitors first: they judge the entries from their first sync (all pending), so
    # each change below is a transition of the record, not an entry first seen failed.
    monitors = [_monitor(own_redis.url, receiver.url, tmp_path, f"monitor-{x}") for x in "ab"]
    procs += monitors
    for monitor in monitors:
        wait_for(_said(monitor, "judging every service"), STARTUP_S,
                 what=f"{monitor.name} started")
    # The worker before beat: the service's first heartbeat is indexed (and its entries
    # judged pending) about when beat starts, two seconds before "raises" first fails.
    worker = start_worker(env, tmp_path)
    procs.append(worker)
    wait_for(_said(worker, " ready."), STARTUP_S, what="the worker ready")
    procs.append(start_beat(env, tmp_path))
    wait_for(lambda: client.hlen(KEYS.entries("petsage")) == 6, STARTUP_S,
             what="six entries watched")
    # Silenced before its first run (20 s after beat starts) can overrun (2 s later).
    done = _cli(own_redis.url, "silence", "petsage", "--entry", "sleeps too long", "--for",
                "10m", "--reason", "known slow")
    assert done.returncode == 0, done.stderr
    assert "petsage entry 'sleeps too long' silenced until" in done.stdout

    wait_for(lambda: _posted(receiver, "raises", "failed"),
             RAISES_EVERY_S + 2 + HEADROOM_S + STARTUP_S,
             what="raises -> failed posted")
    wait_for(lambda: _posted(receiver, "nobody consumes", "not_started"),
             2 + 1 + HEADROOM_S, what="nobody consumes -> not_started posted")
    wait_for(lambda: any(t["entry"] == "sleeps too long" and t["to"] == "overrun"
                         for t in _recorded(client)), 20 + 2 + HEADROOM_S,
             what="sleeps too long -> overrun recorded")
    time.sleep(REPEAT_WINDOW_S)

    (failed,) = _posted(receiver, "raises", "failed")
    assert failed["service"] == "petsage" and failed["kind"] == "transition"
    assert failed["diagnosis"] == "task_failed" and "ValueError" in failed["reason"]
    assert failed["old_state"] == "pending"
    first = json.loads(client.hget(KEYS.entry_observed("petsage"), "raises") or b"{}")
    assert first["first_state"] == "pending"  # the record began before the first run
    (not_started,) = _posted(receiver, "nobody consumes", "not_started")
    assert not_started["diagnosis"] == "no_consumer"
    posted_entries = {b["entry"] for b in _entry_posts(receiver)}
    assert "sleeps too long" not in posted_entries  # silenced: recorded, not posted
    assert "every second" not in posted_entries  # ok <-> running is never news
    assert len({b["id"] for b in receiver.delivered()}) == len(receiver.delivered())
    # Recorded once each, whichever of the two monitors saw it first.
    recorded = _recorded(client)
    assert [t["to"] for t in recorded if t["entry"] == "raises"] == ["failed"]
    assert [t["to"] for t in recorded if t["entry"] == "nobody consumes"] == ["not_started"]
    assert {t["monitor"].rsplit(":", 1)[1] for t in recorded} <= {
        str(m.proc.pid) for m in monitors}
    assert failed["incident"] == next(
        i.decode() for i, f in client.xrange(KEYS.entry_incidents("petsage"))
        if f[b"entry"] == b"raises")
    # Unsilenced while it still overruns (its run sleeps 30 s, from 20 s after beat's start):
    # what was held back is posted once, from the verdict notified before the silence.
    sleeping = json.loads(client.hget(KEYS.entries("petsage"), "sleeps too long") or b"{}")
    done = _cli(own_redis.url, "unsilence", "petsage", "--entry", "sleeps too long")
    assert done.returncode == 0 and "unsilenced" in done.stdout, done.stderr
    started_ms = sleeping["run"].get("started_ms") or 0
    if redis_time_ms(client.time()) < started_ms + 25_000:  # 5 s before the run ends
        wait_for(lambda: _posted(receiver, "sleeps too long", "overrun"), 5,
                 what="the held-back overrun posted")
        time.sleep(2)
        (held,) = [b for b in _entry_posts(receiver) if b["entry"] == "sleeps too long"]
        assert held["old_state"] == "pending" and held["diagnosis"] == "task_hung"
    assert all(m.alive() for m in monitors)
    assert all("Traceback" not in m.output() for m in monitors)  # the worker's has raises'
