"""Hostile text and hostile receivers on real processes: ``petsage-heartbeat monitor`` and
``watch`` against a real redis-server and local HTTP receivers.

- a Slack body with ``<!channel>`` in a check name arrives escaped;
- a 302 is not followed: the second receiver it points at hears nothing, no credential;
- a receiver that trickles its answer is cut at the POST's deadline (5 s);
- a forged outbox entry whose service name holds a newline is dropped with one line;
- 100 quick flips run a bounded number of ``watch --exec`` hooks, the last with the state now.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.helpers import Proc, RedisServer, cli_argv, heartbeat_env, wait_for
from tests.support.publishing import backdate, publish
from tests.support.receiver import Receiver
from worker.core.names import Keys

pytestmark = pytest.mark.e2e
KEYS = Keys()
EVIL = "<!channel> <http://evil.example|click>"


class _Hostile:
    """A receiver that redirects (``Location``) or trickles its answer a byte at a time;
    records each request's arrival, ``Authorization`` and when its connection was cut."""

    def __init__(self, *, location: str | None = None, trickle_s: float = 0.0) -> None:
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        hostile = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                record = {"at": time.monotonic(), "path": self.path, "cut_at": None,
                          "authorization": self.headers.get("Authorization")}
                with hostile.lock:
                    hostile.requests.append(record)
                if location is not None:
                    self.send_response(302)
                    self.send_header("Location", location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                try:
                    self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                    deadline = time.monotonic() + trickle_s
                    while time.monotonic() < deadline:
                        self.wfile.write(b"X")
                        self.wfile.flush()
                        time.sleep(0.5)
                except OSError:
                    record["cut_at"] = time.monotonic()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook/SECRET-TOKEN"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def _monitor(redis_url: str, tmp_path: Path, *args: str, **env: str) -> Proc:
    proc = Proc(cli_argv("monitor", "--every", "0.2", *args), heartbeat_env(redis_url, **env),
                tmp_path, "monitor")
    wait_for(lambda: "judging every service" in proc.output(), 30, what="the monitor running")
    return proc


def _known_then_down(own_redis: RedisServer, **checks: Any) -> None:
    """petsage seen fresh by the monitor, then down (stale, or a failed check)."""
    client = own_redis.client()
    publish(client, interval_s=10)
    wait_for(lambda: client.hget(KEYS.observed("petsage"), "state") == b"fresh", 15,
             what="petsage recorded fresh")
    if checks:
        publish(client, interval_s=10, status="error", checks=checks)
    else:
        backdate(client, "petsage", 40)


def test_a_slack_body_with_channel_in_a_check_name_arrives_escaped(
        own_redis: RedisServer, procs: list[Proc], tmp_path: Path,
        receiver: Receiver) -> None:
    procs.append(_monitor(own_redis.url, tmp_path, "--webhook", receiver.url,
                          "--webhook-format", "slack"))
    _known_then_down(own_redis, **{f"{EVIL}\x1b[2J": {"status": "error"}})
    wait_for(receiver.delivered, 15, what="the notification")
    (body,) = receiver.delivered()
    text = body["text"]
    assert "<!channel>" not in text and "<http://evil" not in text, text
    assert "&lt;!channel&gt; &lt;http://evil.example|click&gt;\\x1b[2J" in text, text
    assert text.startswith("PetSage heartbeat: petsage fresh -> stale (check_failed): ")


def test_a_302_is_not_followed_and_no_credential_reaches_the_other_origin(
        own_redis: RedisServer, procs: list[Proc], tmp_path: Path) -> None:
    other = Receiver()
    redirecting = _Hostile(location=other.url.replace("/hook/SECRET-TOKEN", "/internal/admin"))
    try:
        url = redirecting.url.replace("http://", "http://ops:hunter2@")
        # The URL (with its password) from a variable: never in the monitor's command line.
        monitor = _monitor(own_redis.url, tmp_path, "--webhook", "PETSAGE_TEST_HOOK",
                           PETSAGE_TEST_HOOK=url)
        procs.append(monitor)
        cmdline = Path(f"/proc/{monitor.proc.pid}/cmdline").read_bytes()
        assert b"hunter2" not in cmdline and b"SECRET-TOKEN" not in cmdline
        _known_then_down(own_redis)
        wait_for(lambda: "a redirect: not followed" in monitor.output(), 15,
                 what="the redirect refused")
        time.sleep(1.5)  # a retry or a follow would come now
        assert len(redirecting.requests) == 1
        assert redirecting.requests[0]["authorization"].startswith("Basic ")
        assert other.posts == []  # nothing, and so no Authorization, reached it
        out = monitor.output()
        assert out.count("a redirect: not followed") == 1
        assert "hunter2" not in out and "SECRET-TOKEN" not in out
    finally:
        redirecting.close()
        other.close()


def test_a_trickling_receiver_is_cut_at_the_deadline(
        own_redis: RedisServer, procs: list[Proc], tmp_path: Path) -> None:
    slow = _Hostile(trickle_s=18)
    try:
        monitor = _monitor(own_redis.url, tmp_path, "--webhook", slow.url)
        procs.append(monitor)
        _known_then_down(own_redis)
        wait_for(lambda: slow.requests and slow.requests[0]["cut_at"] is not None, 15,
                 what="the first POST cut")
        first = slow.requests[0]
        assert 4.5 <= first["cut_at"] - first["at"] <= 7.0, first  # 5 s, not 18
        wait_for(lambda: "no answer within 5 s" in monitor.output(), 5,
                 what="the timeout logged")
    finally:
        slow.close()


def test_a_forged_outbox_entry_with_a_newline_in_its_service_is_dropped(
        own_redis: RedisServer, procs: list[Proc], tmp_path: Path,
        receiver: Receiver) -> None:
    monitor = _monitor(own_redis.url, tmp_path, "--webhook", receiver.url)
    procs.append(monitor)
    client = own_redis.client()
    wait_for(lambda: client.exists(KEYS.webhook_cursor(_hook_id(receiver.url))), 10,
             what="the webhook's cursor")
    forged = client.xadd(KEYS.outbox, {"event": json.dumps({
        "service": "payments\nINFO webhook https://x: delivered all good",
        "old_state": "fresh", "new_state": "stale",
        "reason": "re-login at <https://evil.example/sso|sso>"})}).decode()
    good = client.xadd(KEYS.outbox, {"event": json.dumps({
        "service": "payments", "old_state": "fresh", "new_state": "stale",
        "reason": "last heartbeat 31.5s ago"})}).decode()
    wait_for(receiver.delivered, 15, what="the good entry")
    time.sleep(1)
    assert [b["id"] for b in receiver.delivered()] == [good]
    out = monitor.output()
    (line,) = [line for line in out.splitlines() if forged in line]
    assert "dropped, not a monitor's: service 'payments\\nINFO webhook" in line
    assert not any(line.startswith("INFO webhook https://x") for line in out.splitlines())


def _hook_id(url: str) -> str:
    from worker.core.webhook_urls import parse_webhooks

    return parse_webhooks(url)[0].id


def test_a_hundred_quick_flips_run_a_bounded_number_of_hooks(
        own_redis: RedisServer, procs: list[Proc], tmp_path: Path) -> None:
    log = tmp_path / "hooks.log"
    env = heartbeat_env(own_redis.url, PETSAGE_HOOK_LOG=str(log))
    hook = 'echo "$PETSAGE_OLD_STATE $PETSAGE_NEW_STATE $HEARTBEAT_REDIS_URL" >> ' \
           '"$PETSAGE_HOOK_LOG"; sleep 0.2'
    watch = Proc(cli_argv("watch", "--json", "--poll", "0.1", "--exec", hook), env, tmp_path,
                 "watch")
    procs.append(watch)
    client = own_redis.client()
    wait_for(lambda: '"missing"' in watch.output(), 15, what="watch running")
    started = time.monotonic()
    for i in range(100):
        if i % 2:
            publish(client, interval_s=10, status="error", checks={"db": {"status": "error"}})
        else:
            publish(client, interval_s=10)
        time.sleep(0.02)
    took = time.monotonic() - started  # the last publish was an error: stale

    def settled() -> bool:
        lines = log.read_text().splitlines() if log.exists() else []
        return bool(lines) and lines[-1].split()[1] == "stale"

    wait_for(settled, 10, what="the last hook telling stale")
    time.sleep(2)
    seen = sum(1 for line in watch.output().splitlines() if line.startswith("{"))
    lines = log.read_text().splitlines()
    assert seen >= 30, seen  # watch saw the flips
    assert len(lines) <= took + 4, (len(lines), took)  # at most one a second, plus the first
    assert lines[-1].split()[:2][1] == "stale"
    assert all(len(line.split()) == 2 for line in lines)  # no HEARTBEAT_REDIS_URL
