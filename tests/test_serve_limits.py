"""``petsage-heartbeat serve``'s limits and access checks, on real processes.

Security headers and the dashboard's CSP, the Host allow list, the optional bearer token
(and the dashboard's login cookie), pages of ``/api/heartbeats``, the bound on requests
handled at once, answers kept for a second (counted in Redis' own ``INFO commandstats``),
a slowloris client cut at the header timeout, and the memory of four concurrent
``/api/heartbeats`` requests at 100,000 services (``MEMORY_BOUND_MB``, docs/http.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tests.support.helpers import (
    STARTUP_S,
    Proc,
    RedisServer,
    cli_argv,
    free_port,
    heartbeat_env,
    wait_for,
)
from tests.support.publishing import publish
from worker.core.names import Keys
from worker.http.server import HEADER_TIMEOUT_S

TOKEN = "s3cret-token-0123456789abcdef"
MEMORY_BOUND_MB = 160
"""The promise (docs/http.md): ``serve``'s peak resident memory (VmHWM) stays under this
while four different pages of ``/api/heartbeats`` (1,000 services each, with history) are
asked at once of a fleet of 100,000 services. Measured: about 105 MB (55 MB of it is the
idle process); before pages and the request bound, one request took 620 MB."""

Answer = tuple[int, dict[str, str], bytes]


def _request(url: str, headers: dict[str, str] | None = None, data: bytes | None = None,
             timeout: float = 30) -> Answer:
    request = urllib.request.Request(url, headers=headers or {}, data=data)
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_: object, **__: object) -> None:
        return None


def _serve(redis_url: str, procs: list[Proc], tmp_path: Path, *args: str,
           **env: str) -> tuple[str, Proc]:
    port = free_port()
    proc = Proc(cli_argv("serve", "--port", str(port), *args), heartbeat_env(redis_url, **env),
                tmp_path, f"serve-{port}")
    procs.append(proc)
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: _request(base + "/system/health", timeout=2)[0] in (200, 503), STARTUP_S,
             what="serve answering")
    return base, proc


@pytest.fixture
def served(own_redis: RedisServer, procs: list[Proc], tmp_path: Path) -> str:
    return _serve(own_redis.url, procs, tmp_path)[0]


def test_every_answer_carries_the_security_headers(served: str, own_redis: RedisServer,
                                                   tmp_path: Path) -> None:
    publish(own_redis.client(), "petsage")
    for path in ("/", "/api/heartbeats", "/api/entries", "/metrics", "/openapi.json",
                 "/system/health", "/dashboard/rows", "/nowhere"):
        status, headers, _ = _request(served + path)
        assert status in (200, 404), path
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["cache-control"] == "no-store", path
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
        assert "server" not in {k.lower() for k in headers}, path
    csp = _request(served + "/")[1]["content-security-policy"]
    assert "script-src 'sha256-" in csp and "style-src 'sha256-" in csp
    assert "unsafe-inline" not in csp and "default-src 'none'" in csp
    assert _request(served + "/api/heartbeats")[1]["content-security-policy"] == (
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'")


def test_a_foreign_host_header_is_refused_on_loopback(served: str) -> None:
    port = served.rsplit(":", 1)[1]
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.2", "localhost.evil.example"):
        status, _, body = _request(served + "/api/heartbeats", {"Host": host})
        assert status == 421, host
        assert "evil" not in body.decode()
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "LOCALHOST", f"[::1]:{port}"):
        assert _request(served + "/api/heartbeats", {"Host": host})[0] == 200, host
    # Load balancers and kubelets send an address of their own: health is not checked.
    assert _request(served + "/system/health", {"Host": "10.1.2.3:9808"})[0] == 503


def test_allowed_hosts_from_the_flag_and_any_when_bound_beyond_loopback(
        own_redis: RedisServer, procs: list[Proc], tmp_path: Path) -> None:
    base, proc = _serve(own_redis.url, procs, tmp_path, "--allowed-host", "heartbeat.internal",
                        "--allowed-host", "10.0.0.5")
    assert _request(base + "/metrics", {"Host": "heartbeat.internal:9808"})[0] == 200
    assert _request(base + "/metrics", {"Host": "10.0.0.5"})[0] == 200
    assert _request(base + "/metrics", {"Host": "localhost"})[0] == 421
    assert "Host header: 10.0.0.5, heartbeat.internal" in proc.output()
    anywhere, proc = _serve(own_redis.url, procs, tmp_path, "--host", "0.0.0.0")
    assert _request(anywhere + "/metrics", {"Host": "whatever.example"})[0] == 200
    assert "Host header: any accepted" in proc.output()
    listed, _ = _serve(own_redis.url, procs, tmp_path, "--host", "0.0.0.0",
                       HEARTBEAT_HTTP_ALLOWED_HOSTS="a.example, b.example")
    assert _request(listed + "/metrics", {"Host": "b.example"})[0] == 200
    assert _request(listed + "/metrics", {"Host": "c.example"})[0] == 421


def test_the_token_is_required_but_for_health_and_never_printed(
        own_redis: RedisServer, procs: list[Proc], tmp_path: Path) -> None:
    publish(own_redis.client(), "petsage")
    secret = tmp_path / "token"
    secret.write_text(TOKEN + "\n")
    base, proc = _serve(own_redis.url, procs, tmp_path, HEARTBEAT_HTTP_TOKEN_FILE=str(secret))
    for path in ("/api/heartbeats", "/api/entries", "/metrics", "/openapi.json",
                 "/dashboard/rows", "/dashboard/entries"):
        status, headers, body = _request(base + path)
        assert status == 401, path
        assert headers["www-authenticate"].startswith("Bearer"), path
        assert json.loads(body)["detail"].startswith("a token is required")
        status, headers, _ = _request(base + path, {"Authorization": "Bearer wrong-token"})
        assert status == 401 and 'error="invalid_token"' in headers["www-authenticate"]
        assert _request(base + path, {"Authorization": f"Bearer {TOKEN}"})[0] == 200, path
        assert _request(base + path, {"Authorization": f"bearer  {TOKEN} "})[0] == 200, path
    assert _request(base + "/system/health")[0] == 200  # probes need no token
    assert _request(base + "/system/health/petsage")[0] == 200
    schema = json.loads(_request(base + "/openapi.json", {"Authorization": f"Bearer {TOKEN}"})[2])
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert schema["paths"]["/api/heartbeats"]["get"]["security"] == [{"bearer": []}]
    assert "security" not in schema["paths"]["/system/health"]["get"]

    # The dashboard: 401 with the login form, the form trades the token for a cookie.
    status, headers, body = _request(base + "/")
    assert status == 401 and b'<form method="post" action="login">' in body
    assert "<script" not in body.decode()
    status, _, _ = _request(base + "/login", data=b"token=wrong-token-0123456789")
    assert status == 401
    status, headers, _ = _request(base + "/login", data=f"token={TOKEN}".encode())
    assert status == 303 and headers["location"] == "./"
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    session = cookie.split(";")[0]
    status, _, body = _request(base + "/", {"Cookie": session})
    assert status == 200 and b'data-service="petsage"' in body
    assert _request(base + "/dashboard/rows", {"Cookie": session})[0] == 200
    forged = session.split("=")[0] + "=99999999999." + "0" * 64
    assert _request(base + "/api/heartbeats", {"Cookie": forged})[0] == 401
    assert TOKEN not in proc.output()
    assert "token required for all but /system/health" in proc.output()


def test_a_bad_token_setting_stops_serve_without_quoting_it(
        own_redis: RedisServer, procs: list[Proc], tmp_path: Path) -> None:
    port = free_port()
    proc = Proc(cli_argv("serve", "--port", str(port)),
                heartbeat_env(own_redis.url, HEARTBEAT_HTTP_TOKEN="short-secret"), tmp_path,
                "serve-bad")
    procs.append(proc)
    assert proc.proc.wait(30) == 2
    assert "HEARTBEAT_HTTP_TOKEN is not a usable token" in proc.output()
    assert "short-secret" not in proc.output()


def _fill(client: redis.Redis, services: int, history_of: int = 0, history: int = 0) -> None:
    """``services`` healthy services (raw keys, as the store script writes them), the first
    ``history_of`` of them with ``history`` history entries each."""
    keys = Keys()
    seconds, micros = client.time()
    now_ms = seconds * 1000 + micros // 1000
    pipe = client.pipeline(transaction=False)
    for i in range(services):
        name = f"svc-{i:06d}"
        pipe.set(keys.latest(name), json.dumps({
            "schema": 1, "service": name, "status": "ok", "message": "m", "seq": history or 1,
            "ts_ms": now_ms, "timestamp": "2026-12-02T05:00:00.000+00:00", "interval_s": 600,
            "stale_after_s": 1800, "checks": {}}))
        pipe.zadd(keys.index, {name: now_ms})
        for seq in range(1, history + 1 if i < history_of else 1):
            pipe.xadd(keys.history(name), {"ts_ms": now_ms - (history - seq) * 600_000,
                                           "seq": seq, "lag_ms": "3.5", "duration_ms": "1.25",
                                           "status": "ok", "queue_depth": 0})
        if i % 2000 == 1999:
            pipe.execute()
    pipe.execute()


def test_pages_cover_2500_services_once_each_in_name_order(
        served: str, own_redis: RedisServer) -> None:
    _fill(own_redis.client(), 2500)
    seen: list[str] = []
    after = ""
    pages = 0
    while True:
        status, _, body = _request(served + "/api/heartbeats" + (f"?after={after}" if after
                                                                 else ""))
        assert status == 200
        page = json.loads(body)
        pages += 1
        assert page["total"] == 2500 and len(page["services"]) <= 500
        names = sorted(s["service"] for s in page["services"])
        assert not seen or names[0] > seen[-1]  # pages cut the index in name order
        seen += names
        if page["next"] is None:
            break
        assert page["next"] == names[-1]
        after = page["next"]
    assert pages == 5 and seen == [f"svc-{i:06d}" for i in range(2500)]
    small = json.loads(_request(served + "/api/heartbeats?page_size=7&after=svc-000100")[2])
    assert [s["service"] for s in small["services"]] == [f"svc-{i:06d}" for i in range(101, 108)]
    assert small["next"] == "svc-000107"
    # A page holds at most 30,000 history entries: 30 services at limit=1000.
    big = json.loads(_request(served + "/api/heartbeats?page_size=1000&limit=1000")[2])
    assert len(big["services"]) == 30 and big["next"] == "svc-000029"
    for query in ("page_size=0", "page_size=1001", "after=a*b", "after=x&after=y"):
        assert _request(served + "/api/heartbeats?" + query)[0] == 400, query


def _commands(client: redis.Redis) -> int:
    """Commands Redis has run since ``CONFIG RESETSTAT``, but this test's own."""
    stats = client.info("commandstats")
    return sum(int(each["calls"]) for name, each in stats.items()
               if name not in ("cmdstat_info", "cmdstat_config|resetstat"))


def test_requests_within_a_second_share_one_redis_read(served: str,
                                                       own_redis: RedisServer) -> None:
    client = own_redis.client()
    _fill(client, 50)
    for path in ("/api/heartbeats", "/metrics", "/api/entries", "/dashboard/rows"):
        # The promise holds for two requests within a second: on a busy machine a pair
        # may take longer, and is tried again (up to 10 times) rather than judged.
        for _ in range(10):
            time.sleep(1.1)  # past what earlier requests keep
            client.config_resetstat()
            started = time.monotonic()
            assert _request(served + path)[0] == 200
            first = _commands(client)
            assert first >= 1, path
            assert _request(served + path)[0] == 200
            if time.monotonic() - started < 0.9:
                assert _commands(client) == first, path  # the second read nothing
                break
        else:
            pytest.fail(f"no two requests of {path} within a second in 10 tries")
        time.sleep(1.1)
        assert _request(served + path)[0] == 200
        assert _commands(client) == 2 * first, path  # a second later: read again


def test_requests_beyond_the_bound_get_503_at_once(served: str,
                                                   own_redis: RedisServer) -> None:
    publish(own_redis.client(), "petsage")
    assert own_redis.proc is not None
    results: list[tuple[int, dict[str, str], float]] = []
    lock = threading.Lock()

    def ask(n: int) -> None:
        started = time.monotonic()
        status, headers, _ = _request(served + f"/api/entries?service=s{n}", timeout=30)
        with lock:
            results.append((status, headers, time.monotonic() - started))

    os.kill(own_redis.proc.pid, signal.SIGSTOP)  # every read now waits for its timeout
    try:
        threads = [threading.Thread(target=ask, args=(n,)) for n in range(20)]
        for thread in threads:
            thread.start()
            time.sleep(0.02)
        for thread in threads:
            thread.join(30)
    finally:
        os.kill(own_redis.proc.pid, signal.SIGCONT)
    busy = [r for r in results if r[1].get("retry-after") == "1"]
    assert len(results) == 20 and len(busy) == 12  # 8 handled at once, 12 turned away
    assert all(status == 503 and elapsed < 1.0 for status, _, elapsed in busy)
    assert all(status == 503 and elapsed > 1.5 for status, headers, elapsed in results
               if "retry-after" not in headers)  # the store's read timeout, then 503
    assert _request(served + "/api/entries")[0] == 200  # and all is well again


def _cut_after(sender: Callable[[socket.socket], None], port: int) -> float:
    """Seconds until the server closes a connection on which ``sender`` runs."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        def send() -> None:
            with contextlib.suppress(OSError):
                sender(sock)

        threading.Thread(target=send, daemon=True).start()
        while True:
            try:
                if sock.recv(4096) == b"":
                    break
            except ConnectionResetError:
                break
        return time.monotonic() - started


def test_a_slowloris_client_is_cut_at_the_header_timeout(served: str) -> None:
    port = int(served.rsplit(":", 1)[1])

    def byte_by_byte(sock: socket.socket) -> None:
        for byte in b"GET /system/health HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 200:
            sock.sendall(bytes([byte]))
            time.sleep(0.1)

    def nothing(sock: socket.socket) -> None:
        time.sleep(60)

    for sender in (byte_by_byte, nothing):
        cut = _cut_after(sender, port)
        assert HEADER_TIMEOUT_S - 0.5 < cut < HEADER_TIMEOUT_S + 3, (sender.__name__, cut)
    # A kept-alive connection: its second request must be quick too.
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"GET /system/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 ")
        sock.sendall(b"GET /system/health HTTP/1.1\r\n")
        started = time.monotonic()
        while sock.recv(4096) != b"":
            pass
        assert time.monotonic() - started < HEADER_TIMEOUT_S + 3


def _peak_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_four_concurrent_pages_at_100000_services_stay_under_the_bound(
        own_redis: RedisServer, procs: list[Proc], tmp_path: Path) -> None:
    _fill(own_redis.client(), 100_000, history_of=4000, history=30)
    base, proc = _serve(own_redis.url, procs, tmp_path)
    idle_kb = _peak_kb(proc.proc.pid)
    answers: list[tuple[int, int]] = []
    lock = threading.Lock()

    def ask(after: str) -> None:
        status, _, body = _request(base + f"/api/heartbeats?page_size=1000&limit=30{after}",
                                   timeout=60)
        services = json.loads(body)["services"] if status == 200 else []
        with lock:
            answers.append((status, sum(len(s["history"]) for s in services)))

    afters = ["", "&after=svc-000999", "&after=svc-001999", "&after=svc-002999"]
    threads = [threading.Thread(target=ask, args=(after,)) for after in afters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    peak_mb = _peak_kb(proc.proc.pid) / 1024
    assert sorted(answers) == [(200, 30_000)] * 4  # four full pages, history and all
    assert peak_mb < MEMORY_BOUND_MB, f"peak {peak_mb:.0f} MB (idle {idle_kb / 1024:.0f} MB)"
    print(f"serve peak {peak_mb:.0f} MB, idle {idle_kb / 1024:.0f} MB")
