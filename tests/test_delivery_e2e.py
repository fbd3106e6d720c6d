"""The webhook lease on real processes: two ``petsage-heartbeat monitor`` processes and a
receiver slower than their lease, on a real redis-server. Each notification is posted at
least once, again only after a lease changed hands, in order, and the cursor (sampled all
along) never moves back.

The monitors run the real command with the lease and the POST timeout shortened (1 s and
10 s) by a launcher: at the defaults (10 s and 5 s) a POST can't outlast the lease, and a
test of it would take minutes.
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.helpers import Proc, RedisServer, heartbeat_env, wait_for
from worker.core.names import Keys
from worker.core.webhook_urls import parse_webhooks

pytestmark = pytest.mark.e2e
KEYS = Keys()
LEASE_S = 1.0
ANSWER_AFTER_S = LEASE_S + 1.0

LAUNCHER = """
import functools, sys
from worker.observe import delivery, monitor
monitor.Delivery = functools.partial(delivery.Delivery, lease_s=float(sys.argv[1]),
                                     timeout_s=float(sys.argv[2]))
from worker.cli import main
sys.exit(main(sys.argv[3:]))
"""


class SlowReceiver:
    """Answers every POST 200 after ``delay_s``; records each arrival (body id, time)."""

    def __init__(self, delay_s: float) -> None:
        self.arrivals: list[tuple[str, float]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                with receiver.lock:
                    receiver.arrivals.append((body["id"], time.monotonic()))
                time.sleep(delay_s)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def ids(self) -> list[str]:
        with self.lock:
            return [i for i, _ in self.arrivals]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def slow_receiver() -> Iterator[SlowReceiver]:
    server = SlowReceiver(ANSWER_AFTER_S)
    yield server
    server.close()


def _key(entry: str) -> tuple[int, int]:
    ms, seq = entry.split("-")
    return int(ms), int(seq)


def test_a_receiver_slower_than_the_lease_gets_each_in_order_again_only_per_hand_over(
        own_redis: RedisServer, procs: list[Proc], tmp_path: Path,
        slow_receiver: SlowReceiver) -> None:
    client = own_redis.client()
    (hook,) = parse_webhooks(slow_receiver.url)
    lock, cursor = KEYS.webhook_lock(hook.id), KEYS.webhook_cursor(hook.id)
    env = heartbeat_env(own_redis.url)
    for name in ("monitor-a", "monitor-b"):
        procs.append(Proc([sys.executable, "-c", LAUNCHER, str(LEASE_S), "10", "monitor",
                           "--webhook", slow_receiver.url], env, tmp_path, name))
    wait_for(lambda: all("judging every service" in p.output() for p in procs), 30,
             what="both monitors running")
    # Started on an empty outbox (the delivery threads start their cursor just after the
    # monitor says it judges: waited for, not read at once).
    wait_for(lambda: client.get(cursor) == b"0-0", 10, what="the cursor started at 0-0")
    ids = [client.xadd(KEYS.outbox, {"event": json.dumps(
        {"service": "petsage", "old_state": old, "new_state": new})}).decode()
        for old, new in [("fresh", "late"), ("late", "stale"), ("stale", "fresh"),
                         ("fresh", "missing")]]

    samples: list[tuple[str, str | None]] = []
    sampling = threading.Event()

    def sample() -> None:
        sampler = own_redis.client()
        while not sampling.is_set():
            at, owner = sampler.mget(cursor, lock)
            samples.append((at.decode(), owner.decode() if owner else None))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        wait_for(lambda: client.get(cursor) == ids[-1].encode(), 60,
                 what="the cursor at the last notification")
        time.sleep(ANSWER_AFTER_S + 2 * LEASE_S)  # POSTs in flight end; no more come
    finally:
        sampling.set()
        sampler.join()

    posted = slow_receiver.ids()
    assert sorted(set(posted), key=_key) == ids, posted  # each at least once
    assert posted == sorted(posted, key=_key), posted  # in order, repeats included
    # A repeat needs the lease to change hands (the first sender's POST outlasted it):
    # at most one per hand-over, and at most one per monitor.
    owners = [owner for _, owner in samples if owner is not None]
    hand_overs = sum(a != b for a, b in itertools.pairwise(owners))
    repeats = len(posted) - len(ids)
    assert repeats <= hand_overs, (posted, hand_overs)
    assert all(posted.count(i) <= 2 for i in ids), posted
    assert len(set(owners)) == 2 and hand_overs >= 1  # both monitors held it
    # The cursor, sampled every 10 ms, never moved back.
    at = [a for a, _ in samples]
    assert at == sorted(at, key=_key) and at[-1] == ids[-1]
    for proc in procs:
        assert proc.alive() and "Traceback" not in proc.output()
