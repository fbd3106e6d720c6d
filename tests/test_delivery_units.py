"""The webhook delivery's promises, in-process on fakeredis (its Lua runs the real scripts):
one lease holder at a time, a lease that expires unless renewed, a cursor that only moves
forward, every notification at least once and in order even to a receiver slower than the
lease, retries with back-off, drops with one line, the store's outages said once."""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
import urllib.error
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import fakeredis
import pytest

from tests.support.helpers import wait_for
from tests.support.receiver import Receiver
from worker.core.names import Keys
from worker.core.redis_io import as_text, redis_time_ms
from worker.core.version import __version__
from worker.core.webhook_urls import parse_webhooks
from worker.observe import delivery as delivery_module
from worker.observe.delivery import (
    BACKOFF_S,
    CURSOR_TTL_MS,
    LEASE_S,
    MAX_AGE_S,
    POLL_S,
    POST_TIMEOUT_S,
    Delivery,
    _retryable,
    post,
)

KEYS = Keys()
URL = "https://user:hunter2@hooks.example.com/T/SECRET"
(HOOK,) = parse_webhooks(URL)
LOCK = KEYS.webhook_lock(HOOK.id)
CURSOR = KEYS.webhook_cursor(HOOK.id)


class Poster:
    """A receiver in-process: answers from a script (a status, "timeout", "refused",
    "bad-url"), then 200, after ``delay_s``; records each body with its arrival."""

    def __init__(self, *answers: int | str, delay_s: float = 0.0,
                 gate: threading.Event | None = None) -> None:
        self.answers = list(answers)
        self.delay_s = delay_s
        self.gate = gate
        self.calls: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, url: str, data: bytes, timeout_s: float) -> int:
        with self.lock:
            answer = self.answers.pop(0) if self.answers else 200
            self.calls.append({"answer": answer, "body": json.loads(data), "url": url,
                               "timeout_s": timeout_s, "at": time.monotonic()})
        if self.gate is not None:
            self.gate.wait(10)
        time.sleep(self.delay_s)
        if answer == "timeout":
            raise TimeoutError(f"timed out posting to {url}")
        if answer == "refused":
            raise urllib.error.URLError(ConnectionRefusedError(f"refused by {url}"))
        if answer == "bad-url":
            raise ValueError("x" * 500)
        return int(answer)

    def ids(self) -> list[str]:
        with self.lock:
            return [c["body"]["id"] for c in self.calls]

    def states(self) -> list[str]:
        with self.lock:
            return [c["body"]["new_state"] for c in self.calls]


class _Server:
    """A loopback HTTP server whose every request ``answer(handler)`` answers."""

    def __init__(self, answer: Callable[[BaseHTTPRequestHandler], None]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                answer(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> _Server:
        return self

    def __exit__(self, *_: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def _answer(handler: BaseHTTPRequestHandler, status: int, seen: list[dict[str, str]],
            headers: dict[str, str] | None = None) -> None:
    length = int(handler.headers.get("Content-Length", "0"))
    seen.append({**dict(handler.headers.items()), "path": handler.path,
                 "method": handler.command, "body": handler.rfile.read(length).decode()})
    handler.send_response(status)
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.send_header("Content-Length", "0")
    handler.end_headers()


def _delivery(client: Any, poster: Poster, owner: str = "m1", **options: Any) -> Delivery:
    options = {"backoff_s": (0.05, 0.1), "poll_s": 0.02, **options}
    return Delivery(client, KEYS, HOOK, owner=owner, fmt="json", dashboard_url=None,
                    poster=poster, **options)


def _queue(client: Any, *states: str) -> list[str]:
    return [client.xadd(KEYS.outbox, {"event": json.dumps(
        {"service": "petsage", "old_state": old, "new_state": new})}).decode()
        for old, new in itertools.pairwise(states)]


def _key(entry: str) -> tuple[int, int]:
    ms, seq = entry.split("-")
    return int(ms), int(seq)


def _stopped(*deliveries: Delivery) -> None:
    for d in deliveries:
        d.stop()
    for d in deliveries:
        d.join(5)
        assert not d.is_alive()


def test_the_defaults_are_the_documented_ones() -> None:
    assert (BACKOFF_S, LEASE_S, POST_TIMEOUT_S, MAX_AGE_S, POLL_S) == (
        (1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 60.0), 10.0, 5.0, 3600.0, 0.5)
    assert CURSOR_TTL_MS == 35 * 86_400_000
    d = Delivery(fakeredis.FakeRedis(), KEYS, HOOK, owner="m1", fmt="json",
                 dashboard_url=None)
    assert (d.poster, d.backoff_s, d.lease_ms, d.timeout_s, d.max_age_ms, d.poll_s) == (
        post, BACKOFF_S, 10_000, 5.0, 3_600_000, 0.5)
    assert d.name == f"webhook-{HOOK.id}" and d.daemon and d.delivered == 0


def test_one_monitor_holds_the_lease_until_it_expires_on_the_redis_clock() -> None:
    client = fakeredis.FakeRedis()
    a = _delivery(client, Poster(), "m1", lease_s=0.3)
    b = _delivery(client, Poster(), "m2", lease_s=0.3)
    assert a.hold() is True
    assert client.get(LOCK) == b"m1" and 200 < client.pttl(LOCK) <= 300
    assert b.hold() is False and client.get(LOCK) == b"m1"
    assert a.hold() is True  # its own lease: renewed, not refused
    time.sleep(0.35)  # a holder that died: its lease runs out by itself
    assert b.hold() is True and client.get(LOCK) == b"m2"
    assert a.hold() is False


def test_renewing_the_lease_extends_it() -> None:
    client = fakeredis.FakeRedis()
    a = _delivery(client, Poster(), "m1", lease_s=0.4)
    b = _delivery(client, Poster(), "m2", lease_s=0.4)
    assert a.hold()
    time.sleep(0.25)
    assert a.hold() and client.pttl(LOCK) > 300
    time.sleep(0.25)  # 0.5 s after it was taken, 0.25 s after it was renewed
    assert not b.hold()


def test_stopping_gives_up_only_its_own_lease() -> None:
    client = fakeredis.FakeRedis()
    a = _delivery(client, Poster(), "m1")
    b = _delivery(client, Poster(), "m2")
    assert a.hold()
    a.stop()
    a.run()  # returns at once (stopping), releasing the lease
    assert client.get(LOCK) is None
    assert b.hold()
    a.run()
    assert client.get(LOCK) == b"m2"


def test_a_new_webhook_starts_after_the_last_queued_entry_and_keeps_its_cursor() -> None:
    client = fakeredis.FakeRedis()
    d = _delivery(client, Poster())
    assert d.start_cursor() == "0-0"  # nothing queued yet
    client.delete(CURSOR)
    first, last = _queue(client, "fresh", "late", "stale")
    assert d.start_cursor() == last
    assert CURSOR_TTL_MS - 5000 < client.pttl(CURSOR) <= CURSOR_TTL_MS
    _queue(client, "stale", "fresh")
    assert d.start_cursor() == last  # set once: a known webhook keeps its place
    assert first != last


def test_the_cursor_moves_forward_only_and_compares_ids_as_numbers() -> None:
    client = fakeredis.FakeRedis()
    d = _delivery(client, Poster())
    assert d._advance("9-5")
    assert client.get(CURSOR) == b"9-5"
    assert CURSOR_TTL_MS - 5000 < client.pttl(CURSOR) <= CURSOR_TTL_MS
    assert not d._advance("9-4") and not d._advance("9-5") and not d._advance("8-9")
    assert client.get(CURSOR) == b"9-5"
    assert d._advance("9-6") and d._advance("10-0")  # '10-0' < '9-6' as text
    assert client.get(CURSOR) == b"10-0"
    assert not d._advance("9-99") and client.get(CURSOR) == b"10-0"


def test_the_cursor_moves_without_the_lease() -> None:
    """Whoever delivered an entry moves the cursor to it, even with its lease gone."""
    client = fakeredis.FakeRedis()
    d = _delivery(client, Poster())
    client.set(LOCK, "m2")
    assert d._advance("5-0") and client.get(CURSOR) == b"5-0"


def test_a_receiver_slower_than_the_lease_gets_every_notification_in_order() -> None:
    client = fakeredis.FakeRedis()
    poster = Poster(delay_s=0.35)  # the lease is 0.25 s
    deliveries = [_delivery(client, poster, f"m{i}", lease_s=0.25) for i in range(2)]
    deliveries[0].start_cursor()
    ids = _queue(client, "fresh", "late", "stale", "fresh")
    cursors: list[str] = []
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            raw = client.get(CURSOR)
            if raw is not None:
                cursors.append(raw.decode())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.monotonic()
    for d in deliveries:
        d.start()
    try:
        wait_for(lambda: client.get(CURSOR) == ids[-1].encode(), 15, what="the last entry")
        time.sleep(0.5)  # nothing more comes
    finally:
        _stopped(*deliveries)
        sampling.set()
        sampler.join()
    took = time.monotonic() - started
    posted = poster.ids()
    assert sorted(set(posted), key=_key) == ids  # every one, at least once
    assert posted == sorted(posted, key=_key)  # in order: a repeat never after a later one
    expiries = took / 0.25
    assert all(posted.count(i) <= 2 for i in ids), posted  # once, and once per expiry
    assert len(posted) <= len(ids) + expiries
    assert cursors == sorted(cursors, key=_key) and cursors[-1] == ids[-1]  # never back


def test_a_late_sender_never_moves_the_cursor_back_over_what_the_next_holder_sent() -> None:
    client = fakeredis.FakeRedis()
    gate = threading.Event()
    slow = Poster(gate=gate)
    fast = Poster()
    a = _delivery(client, slow, "m1")
    b = _delivery(client, fast, "m2")
    a.start_cursor()
    ids = _queue(client, "fresh", "late", "stale", "fresh")
    stepping = threading.Thread(target=a.step)
    stepping.start()
    wait_for(lambda: slow.calls, 5, what="the slow POST")
    client.delete(LOCK)  # a's lease ran out during its POST
    b.step()  # the next holder posts them all
    assert fast.ids() == ids and client.get(CURSOR) == ids[-1].encode()
    gate.set()  # a's POST of the first entry comes back
    stepping.join(5)
    assert client.get(CURSOR) == ids[-1].encode()
    assert slow.ids() == ids[:1]  # it stopped there: the lease is not its own
    client.delete(LOCK)
    a.step()
    b.step()
    assert slow.ids() == ids[:1] and fast.ids() == ids  # nothing posted again


def test_each_entry_is_posted_in_order_and_batches_go_on_to_the_end() -> None:
    client = fakeredis.FakeRedis()
    poster = Poster()
    d = _delivery(client, poster)
    d.start_cursor()
    ids = _queue(client, *(["fresh", "stale"] * 31))  # 61 entries: two batches of 50
    d.step()
    assert poster.ids() == ids[:50] and client.get(CURSOR) == ids[49].encode()
    d.step()
    assert poster.ids() == ids and d.delivered == 61
    d.step()
    assert len(poster.calls) == 61
    first = poster.calls[0]
    assert first["url"] == URL and first["timeout_s"] == POST_TIMEOUT_S
    assert first["body"]["old_state"] == "fresh" and first["body"]["new_state"] == "stale"


def test_nothing_is_posted_without_the_lease() -> None:
    client = fakeredis.FakeRedis()
    poster = Poster()
    d = _delivery(client, poster)
    d.start_cursor()
    _queue(client, "fresh", "stale")
    client.set(LOCK, "m2", px=10_000)
    d.step()
    assert poster.calls == [] and client.get(CURSOR) == b"0-0"


def test_a_lost_cursor_starts_again_after_what_is_queued() -> None:
    client = fakeredis.FakeRedis()
    poster = Poster()
    d = _delivery(client, poster)
    _queue(client, "fresh", "stale")  # queued before this webhook's cursor existed
    d.step()
    assert poster.calls == []
    (new,) = _queue(client, "stale", "fresh")
    d.step()
    assert poster.ids() == [new]


@pytest.mark.parametrize(("status", "retried"), [
    (408, True), (425, True), (429, True), (500, True), (503, True), (599, True),
    (300, False), (400, False), (404, False), (407, False), (410, False), (499, False)])
def test_which_answers_are_retried(status: int, retried: bool) -> None:
    assert _retryable(status) is retried


@pytest.mark.parametrize("answer", [200, 201, 204, 299])
def test_any_2xx_is_delivered(answer: int) -> None:
    client = fakeredis.FakeRedis()
    poster = Poster(answer)
    d = _delivery(client, poster)
    d.start_cursor()
    ids = _queue(client, "fresh", "stale", "fresh")
    d.step()
    assert poster.ids() == ids and d.delivered == 2


def test_failures_are_retried_with_back_off_and_refusals_dropped_with_a_line(
        caplog: pytest.LogCaptureFixture) -> None:
    client = fakeredis.FakeRedis()
    poster = Poster(500, "timeout", "refused", "bad-url", 200, 300)
    caplog.set_level(logging.INFO, logger="petsage_heartbeat.webhooks")
    d = _delivery(client, poster, backoff_s=(0.05, 0.1, 0.15))
    d.start_cursor()
    first, second = _queue(client, "fresh", "late", "stale")
    d.step()
    assert poster.ids() == [first] * 5 + [second]
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(poster.calls[:5])]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1 and gaps[2] >= 0.15 and gaps[3] >= 0.15
    assert gaps[3] < 0.3  # the last wait repeats
    assert d.delivered == 1 and client.get(CURSOR) == second.encode()
    text = caplog.text
    assert "retry 1 in 0.05 s" in text and "retry 4 in 0.15 s" in text
    assert "not delivered (HTTP 500)" in text
    assert "not delivered (TimeoutError: timed out posting to https://hooks.example.com)" in text
    assert "(URLError: refused by https://hooks.example.com)" in text
    assert "ValueError: " + "x" * 188 + ")" in text and "x" * 190 not in text
    assert "delivered petsage fresh -> late" in text
    assert ("dropped petsage late -> stale: the receiver refused it (HTTP 300, a redirect: "
            "not followed)") in text
    assert "hunter2" not in text and "SECRET" not in text


def test_an_entry_older_than_max_age_is_dropped_counting_the_back_off(
        caplog: pytest.LogCaptureFixture) -> None:
    client = fakeredis.FakeRedis()
    now_ms = redis_time_ms(client.time())
    old = client.xadd(KEYS.outbox, {"event": json.dumps(
        {"service": "s", "old_state": "fresh", "new_state": "stale"})},
        id=f"{now_ms - 2500}-0").decode()
    client.set(CURSOR, "0-1")
    poster = Poster(*[500] * 20)
    d = _delivery(client, poster, max_age_s=2, backoff_s=(0.2,))
    caplog.set_level(logging.WARNING, logger="petsage_heartbeat.webhooks")
    d.step()
    assert poster.calls == []
    assert "dropped s fresh -> stale, not delivered within 2 s" in caplog.text
    assert client.get(CURSOR) == old.encode()
    # One within the limit is tried, and dropped once the back-offs add up past it.
    now_ms = redis_time_ms(client.time())
    client.xadd(KEYS.outbox, {"event": json.dumps(
        {"service": "s", "old_state": "stale", "new_state": "fresh"})},
        id=f"{now_ms - 1500}-0")
    d.step()
    assert 2 <= len(poster.calls) <= 4, len(poster.calls)


def test_an_entry_that_is_not_a_json_object_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    client = fakeredis.FakeRedis()
    poster = Poster()
    d = _delivery(client, poster)
    d.start_cursor()
    bad = [client.xadd(KEYS.outbox, fields).decode()
           for fields in ({"event": "not json"}, {"event": "[1, 2]"}, {"other": "x"})]
    (good,) = _queue(client, "fresh", "stale")
    caplog.set_level(logging.WARNING, logger="petsage_heartbeat.webhooks")
    d.step()
    assert poster.ids() == [good]
    for entry in bad:
        assert f"outbox entry {entry} is not JSON; skipped" in caplog.text


def test_a_lost_lease_or_a_stop_ends_a_back_off() -> None:
    client = fakeredis.FakeRedis()
    poster = Poster(*[500] * 10)
    d = _delivery(client, poster, backoff_s=(5.0,))
    d.start_cursor()
    (entry,) = _queue(client, "fresh", "stale")
    stepping = threading.Thread(target=d.step)
    started = time.monotonic()
    stepping.start()
    wait_for(lambda: poster.calls, 5, what="a first POST")
    client.set(LOCK, "m2")  # another monitor took over
    stepping.join(5)
    # noticed within the second's renewal, not after the 5 s back-off
    assert time.monotonic() - started < 4.5
    assert len(poster.calls) == 1 and client.get(CURSOR) != entry.encode()
    client.delete(LOCK)
    d.stop()
    started = time.monotonic()
    d.step()  # holds the lease, posts nothing once stopping
    assert len(poster.calls) == 1 and time.monotonic() - started < 4.5  # not the 5 s back-off


def test_a_back_off_longer_than_the_lease_keeps_the_lease() -> None:
    client = fakeredis.FakeRedis()
    poster = Poster(500)
    a = _delivery(client, poster, "m1", lease_s=1.2, backoff_s=(1.6,))
    b = _delivery(client, Poster(), "m2", lease_s=1.2)
    a.start_cursor()
    (entry,) = _queue(client, "fresh", "stale")
    stepping = threading.Thread(target=a.step)
    stepping.start()
    wait_for(lambda: poster.calls, 5, what="a first POST")
    time.sleep(1.3)  # past the lease taken before the POST: renewed during the wait
    assert not b.hold()
    stepping.join(5)
    assert poster.ids() == [entry, entry] and client.get(CURSOR) == entry.encode()


class _Down:
    """A client whose store is down while ``down`` is set."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.down = threading.Event()
        self.down.set()

    def __getattr__(self, name: str) -> Any:
        if self.down.is_set():
            def refuse(*_: Any, **__: Any) -> Any:
                raise ConnectionError("Error 111 connecting to redis://:pw@db:6379")
            return refuse
        return getattr(self.client, name)


def test_a_store_outage_is_said_once_and_its_end_once(caplog: pytest.LogCaptureFixture) -> None:
    client = fakeredis.FakeRedis()
    flaky = _Down(client)
    poster = Poster()
    d = _delivery(flaky, poster)
    caplog.set_level(logging.WARNING, logger="petsage_heartbeat.webhooks")
    d.start()
    try:
        time.sleep(0.2)  # several steps fail
        flaky.down.clear()
        d_cursor = wait_for(lambda: client.get(CURSOR), 5, what="a cursor")
        (entry,) = _queue(client, "fresh", "stale")
        wait_for(lambda: poster.calls, 5, what="a POST")
    finally:
        _stopped(d)
    lines = [r.getMessage() for r in caplog.records]
    down = [line for line in lines if "cannot read the outbox" in line]
    assert len(down) == 1 and "pw" not in down[0] and "Error 111" in down[0]
    assert lines.count(f"webhook {HOOK.shown}: the store answers again") == 1
    assert d_cursor == b"0-0" and poster.ids() == [entry]


def test_a_real_post_sends_json_with_the_version_and_returns_the_status() -> None:
    receiver = Receiver(204, 503, 202)
    seen: list[dict[str, str]] = []
    try:
        assert post(receiver.url, b'{"a": 1}', 5) == 204
        assert post(receiver.url, b'{"a": 2}', 5) == 503
        with _Server(lambda handler: _answer(handler, 202, seen)) as server:
            assert post(server.url.replace("http://", "http://u:p@") + "?q=1", b"{}", 2.5) == 202
        assert [p["body"] for p in receiver.posts] == [{"a": 1}, {"a": 2}]
        assert receiver.posts[0]["authorization"] is None
    finally:
        receiver.close()
    (headers,) = seen
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == f"petsage-heartbeat/{__version__}"
    assert headers["Authorization"] == "Basic dTpw"  # u:p
    assert headers["path"] == "/hook?q=1" and headers["method"] == "POST"
    assert headers["body"] == "{}" and headers["Host"].startswith("127.0.0.1:")


@pytest.mark.parametrize(("url", "target", "userinfo"), [
    ("https://user@hooks.example.com/x", "https://hooks.example.com/x", b"user:"),
    ("https://:pw@hooks.example.com/x", "https://hooks.example.com/x", b":pw"),
    ("https://a@b:p@hooks.example.com/x", "https://hooks.example.com/x", b"a@b:p"),
])
def test_credentials_of_every_shape_become_basic_auth(url: str, target: str,
                                                      userinfo: bytes) -> None:
    import base64

    assert delivery_module.split_credentials(url) == (
        target, "Basic " + base64.b64encode(userinfo).decode())


def test_fields_read_as_text_are_delivered_too() -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    poster = Poster()
    d = _delivery(client, poster)
    d.start_cursor()
    entry = client.xadd(KEYS.outbox, {"event": json.dumps(
        {"service": "s", "old_state": "fresh", "new_state": "stale"})})
    d.step()
    assert poster.ids() == [entry]


def test_the_format_and_the_dashboard_link_reach_the_body() -> None:
    client = fakeredis.FakeRedis()
    poster = Poster()
    d = Delivery(client, KEYS, HOOK, owner="m1", fmt="slack",
                 dashboard_url="https://dash.example.com/", poster=poster, poll_s=0.02)
    d.start_cursor()
    _queue(client, "fresh", "stale")
    d.step()
    (call,) = poster.calls
    assert set(call["body"]) == {"text"} and "https://dash.example.com/" in call["body"]["text"]
    json_poster = Poster()
    d = Delivery(client, KEYS, HOOK, owner="m1", fmt="json",
                 dashboard_url="https://dash.example.com/", poster=json_poster)
    client.delete(CURSOR)
    d.start_cursor()
    _queue(client, "stale", "fresh")
    d.step()
    assert json_poster.calls[0]["body"]["dashboard_url"] == "https://dash.example.com/"


def test_each_log_line_names_the_webhook(caplog: pytest.LogCaptureFixture) -> None:
    client = fakeredis.FakeRedis()
    poster = Poster()
    d = _delivery(client, poster, max_age_s=2)
    d.start_cursor()
    now_ms = redis_time_ms(client.time())
    client.xadd(KEYS.outbox, {"event": json.dumps({"service": "s", "old_state": "fresh",
                                                   "new_state": "late"})}, id=f"{now_ms - 9000}-0")
    bad = client.xadd(KEYS.outbox, {"event": "x"}).decode()
    _queue(client, "fresh", "stale")
    caplog.set_level(logging.INFO, logger="petsage_heartbeat.webhooks")
    d.step()
    assert [r.getMessage() for r in caplog.records] == [
        f"webhook {HOOK.shown}: dropped s fresh -> late, not delivered within 2 s",
        f"webhook {HOOK.shown}: outbox entry {bad} is not JSON; skipped",
        f"webhook {HOOK.shown}: delivered petsage fresh -> stale"]


class _Clock:
    """A client whose Redis clock stands still at ``now_ms``."""

    def __init__(self, client: Any, now_ms: int) -> None:
        self.client, self.now_ms = client, now_ms

    def time(self) -> tuple[int, int]:
        return self.now_ms // 1000, self.now_ms % 1000 * 1000

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_an_entry_exactly_max_age_old_is_still_posted() -> None:
    client = fakeredis.FakeRedis()
    now_ms = redis_time_ms(client.time()) // 1000 * 1000
    client.xadd(KEYS.outbox, {"event": json.dumps({"service": "s", "old_state": "late",
                                                   "new_state": "stale"})}, id=f"{now_ms - 2001}-0")
    client.xadd(KEYS.outbox, {"event": json.dumps({"service": "s", "old_state": "fresh",
                                                   "new_state": "late"})}, id=f"{now_ms - 2000}-0")
    client.set(CURSOR, "0-1")
    poster = Poster()
    _delivery(_Clock(client, now_ms), poster, max_age_s=2).step()
    assert poster.ids() == [f"{now_ms - 2000}-0"]  # the one a millisecond older: dropped


@pytest.mark.parametrize("how", ["lease lost", "stopped"])
def test_a_back_off_cut_short_never_drops_an_entry_for_its_age(how: str) -> None:
    """The wait that ends (lease lost, or stopping) leaves the entry for the next holder:
    not dropped as too old by the back-off's time, with the cursor moved past it."""
    client = fakeredis.FakeRedis()
    now_ms = redis_time_ms(client.time())
    entry = client.xadd(KEYS.outbox, {"event": json.dumps(
        {"service": "s", "old_state": "fresh", "new_state": "late"})},
        id=f"{now_ms - 500}-0").decode()
    client.set(CURSOR, "0-1")
    poster = Poster(*[500] * 5)
    d = _delivery(client, poster, max_age_s=1, backoff_s=(1.0,))
    stepping = threading.Thread(target=d.step)
    stepping.start()
    wait_for(lambda: poster.calls, 5, what="a first POST")
    if how == "stopped":
        d.stop()
    else:
        client.set(LOCK, "m2")
    stepping.join(5)
    assert client.get(CURSOR) == b"0-1" and poster.ids() == [entry]


def test_a_store_down_when_stopping_does_not_raise(caplog: pytest.LogCaptureFixture) -> None:
    flaky = _Down(fakeredis.FakeRedis())
    d = _delivery(flaky, Poster())
    d.stop()
    d.run()  # the release fails: the lease expires on its own
    long = _Down(fakeredis.FakeRedis())
    d = _delivery(long, Poster())
    caplog.set_level(logging.WARNING, logger="petsage_heartbeat.webhooks")
    original = _Down.__getattr__

    def refuse_long(self: _Down, name: str) -> Any:
        def refuse(*_: Any, **__: Any) -> Any:
            raise ConnectionError("y" * 300)
        return refuse

    _Down.__getattr__ = refuse_long  # type: ignore[method-assign]
    try:
        d.start()
        wait_for(lambda: caplog.records, 5, what="a line")
    finally:
        _stopped(d)
        _Down.__getattr__ = original  # type: ignore[method-assign]
    (line,) = [r.getMessage() for r in caplog.records]
    assert line == f"webhook {HOOK.shown}: cannot read the outbox: " + "y" * 200


def test_refusals_and_retries_are_each_one_whole_line(caplog: pytest.LogCaptureFixture) -> None:
    client = fakeredis.FakeRedis()
    poster = Poster(503, 404)
    d = _delivery(client, poster, backoff_s=(0.01,))
    d.start_cursor()
    _queue(client, "fresh", "stale")
    caplog.set_level(logging.WARNING, logger="petsage_heartbeat.webhooks")
    d.step()
    assert [r.getMessage() for r in caplog.records] == [
        f"webhook {HOOK.shown}: petsage fresh -> stale not delivered (HTTP 503); retry 1 in "
        "0.01 s",
        f"webhook {HOOK.shown}: dropped petsage fresh -> stale: the receiver refused it "
        "(HTTP 404)"]


def test_a_back_off_counts_towards_the_age_to_the_millisecond() -> None:
    client = fakeredis.FakeRedis()
    now_ms = redis_time_ms(client.time())
    entry = client.xadd(KEYS.outbox, {"event": json.dumps(
        {"service": "s", "old_state": "fresh", "new_state": "late"})},
        id=f"{now_ms - 1000}-0").decode()
    client.set(CURSOR, "0-1")
    poster = Poster(500)
    d = _delivery(_Clock(client, now_ms), poster, max_age_s=2, backoff_s=(1.0,))
    d.step()  # one second of back-off: exactly two seconds old, still posted
    assert poster.ids() == [entry, entry] and d.delivered == 1


def test_an_entry_s_notification_names_the_entry_in_its_line(
        caplog: pytest.LogCaptureFixture) -> None:
    client = fakeredis.FakeRedis()
    d = _delivery(client, Poster())
    d.start_cursor()
    client.xadd(KEYS.outbox, {"event": json.dumps({"service": "petsage", "entry": "nightly",
                                                   "old_state": "ok", "new_state": "failed"})})
    client.xadd(KEYS.outbox, {"event": json.dumps({"service": "petsage", "entry": 5,
                                                   "old_state": "ok", "new_state": "failed"})})
    caplog.set_level(logging.INFO, logger="petsage_heartbeat.webhooks")
    d.step()
    (_, bad) = [as_text(i) for i, _ in client.xrange(KEYS.outbox)]
    assert [r.getMessage() for r in caplog.records] == [
        f"webhook {HOOK.shown}: delivered petsage entry 'nightly' ok -> failed",
        f"webhook {HOOK.shown}: outbox entry {bad} dropped, not a monitor's: entry 5: an "
        "entry name is text, not int"]
