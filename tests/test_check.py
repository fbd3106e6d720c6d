"""``petsage-heartbeat check`` and ``status`` as real processes against a real redis-server."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.certs import make_certs
from tests.support.helpers import (
    TIMEOUT_HEADROOM_S,
    RedisServer,
    cli_argv,
    heartbeat_env,
    timed_cli,
)
from tests.support.processes import run as run_process
from tests.support.publishing import backdate, publish
from worker.core.errors import StoreUnreachableError
from worker.core.names import SUMMARY_SHARDS, Keys
from worker.core.states import State
from worker.read.reader import read_heartbeat
from worker.read.resp_client import ProbeClient


def probe_read(url: str, service: str, *, raw: bool = False) -> Any:
    with ProbeClient(url, timeout_s=2) as client:
        if raw:
            return client.execute_many([("PING",)])
        return read_heartbeat(client, service)


def check(url: str, *args: str, timeout_s: float = 30) -> subprocess.CompletedProcess[str]:
    env = heartbeat_env(url)
    return run_process(cli_argv("check", *args), env=env, capture_output=True, text=True,
                       timeout=timeout_s, check=False)


@pytest.mark.parametrize(
    ("setup", "code", "word", "state"),
    [
        ("fresh", 0, "OK", "fresh"),
        ("late", 1, "WARNING", "late"),
        ("degraded", 1, "WARNING", "late"),
        ("stale", 2, "CRITICAL", "stale"),
        ("error", 2, "CRITICAL", "stale"),
        ("missing", 2, "CRITICAL", "missing"),
        ("garbage", 3, "UNKNOWN", "invalid"),
        ("oversized", 3, "UNKNOWN", "invalid"),
        ("wrong-types", 3, "UNKNOWN", "invalid"),
        ("hash", 3, "UNKNOWN", "invalid"),
    ],
)
def test_every_state_and_exit_code(redis_server: RedisServer, real: redis.Redis, setup: str,
                                   code: int, word: str, state: str) -> None:
    key = Keys().latest("petsage")
    if setup in ("fresh", "late", "stale", "degraded", "error"):
        publish(real, status={"degraded": "degraded", "error": "error"}.get(setup, "ok"))
        backdate(real, "petsage", {"late": 20, "stale": 40}.get(setup, 0))
    elif setup == "garbage":
        real.set(key, b"\xff{not json")
    elif setup == "oversized":
        real.set(key, b"x" * (10 * 1024 * 1024))
    elif setup == "wrong-types":
        publish(real)
        data = json.loads(real.get(key) or b"")
        real.set(key, json.dumps({**data, "ts_ms": "yesterday"}))
    elif setup == "hash":
        real.hset(key, "a", "1")
    done = check(redis_server.url)
    assert done.returncode == code, done.stdout + done.stderr
    assert done.stdout.startswith(f"{word} - petsage heartbeat"), done.stdout
    assert done.stdout.count("\n") == 1 and done.stderr == ""
    as_json = json.loads(check(redis_server.url, "--json").stdout)
    assert as_json["state"] == state and as_json["exit_code"] == code


def test_ok_line_has_nagios_performance_data(redis_server: RedisServer, real: redis.Redis) -> None:
    publish(real)
    done = check(redis_server.url)
    line = done.stdout.strip()
    assert line.startswith("OK - petsage heartbeat ") and ", seq 1 | age=" in line
    perf = line.split(" | ", 1)[1].split()
    age = perf[0]
    assert age.startswith("age=") and age.endswith("s;15;30;0")
    assert "lag=3ms;;;0" in perf and "seq=1c" in perf


def test_flags_override_thresholds_and_service(redis_server: RedisServer,
                                               real: redis.Redis) -> None:
    publish(real, "api")
    backdate(real, "api", 5)
    assert check(redis_server.url, "--service", "api").returncode == 0
    assert check(redis_server.url, "--service", "api", "--late-after", "2").returncode == 1
    assert check(redis_server.url, "--service", "api", "--stale-after", "3").returncode == 2
    done = check(redis_server.url, "--service", "api", "--late-after", "2", "--json")
    report = json.loads(done.stdout)
    assert report["late_after_s"] == 2 and report["stale_after_s"] == 30


def test_unreachable_when_nothing_listens() -> None:
    done = check("redis://127.0.0.1:1/0")
    assert done.returncode == 3
    assert done.stdout.startswith("UNKNOWN - petsage heartbeat unreachable")
    assert check("redis://127.0.0.1:1/0", "--unreachable-ok").returncode == 0


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and never answers (a hung Redis)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    listener.close()


@pytest.mark.parametrize("timeout_s", [0.5, 1.0, 3.0])
def test_a_server_that_never_answers_times_out_as_unknown(silent_server: int,
                                                          timeout_s: float) -> None:
    """The promise (docs/probes.md): ``--timeout`` bounds the whole check. Timed inside the
    check's process (``timed_cli``), plus ``TIMEOUT_HEADROOM_S``. At 3 s a timeout spent
    once per step (connect, then the read) would show."""
    done, elapsed = timed_cli("check", "--redis", f"redis://127.0.0.1:{silent_server}/0",
                              "--timeout", str(timeout_s),
                              env=heartbeat_env("redis://127.0.0.1:1/0"))
    assert done.returncode == 3, done.stdout + done.stderr
    assert "unreachable" in done.stdout and "timed out" in done.stdout
    assert timeout_s * 0.9 <= elapsed <= timeout_s + TIMEOUT_HEADROOM_S, elapsed


def test_bad_flags_are_one_unknown_line() -> None:
    for args in (["--redis", "foo://x"], ["--service", "a b"], ["--timeout", "0"],
                 ["--late-after", "-1"], ["--redis", "redis://h:99999/0"]):
        done = check("redis://127.0.0.1:1/0", *args)
        assert done.returncode == 3 and done.stdout.startswith("UNKNOWN - petsage-heartbeat: ")
        assert done.stdout.count("\n") == 1 and "Traceback" not in done.stderr


def test_the_check_path_imports_no_celery_kombu_or_redis_py(redis_server: RedisServer,
                                                             real: redis.Redis) -> None:
    publish(real)
    code = (
        "import sys\n"
        "from worker.cli.main import main\n"
        f"rc = main(['check', '--redis', '{redis_server.url}'])\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'celery', 'kombu', 'redis',"
        " 'billiard', 'asyncio'})\n"
        "print('HEAVY', heavy, rc)\n"
    )
    done = run_process([*cli_argv()[:1], "-c", code], capture_output=True, text=True,
                       timeout=30, check=False)
    assert "HEAVY [] 0" in done.stdout, done.stdout + done.stderr


@pytest.mark.servers
def test_probe_client_auth_with_password_and_acl_user(tmp_path: Path) -> None:
    server = RedisServer("--requirepass", "s3cret-pw").start()
    try:
        admin = server.client(password="s3cret-pw")
        publish(admin)
        admin.execute_command("ACL", "SETUSER", "reader", "on", ">reader-pw", "~petsage:hb:*",
                              "+@read", "+time", "+type", "+strlen", "+getrange", "+eval_ro")
        port = server.port
        for url in (f"redis://:s3cret-pw@127.0.0.1:{port}/0",
                    f"redis://reader:reader-pw@127.0.0.1:{port}/0"):
            report = probe_read(url, "petsage")
            assert report.state is State.FRESH, report.reason
        bad = check(f"redis://:wrong-pw@127.0.0.1:{port}/0")
        assert bad.returncode == 3 and "AUTH failed" in bad.stdout
        assert "wrong-pw" not in bad.stdout + bad.stderr
        done = check(f"redis://reader:reader-pw@127.0.0.1:{port}/0")
        assert done.returncode == 0 and "reader-pw" not in done.stdout
    finally:
        server.close()


def test_probe_client_selects_the_database(redis_server: RedisServer, real: redis.Redis) -> None:
    db3 = redis_server.client(db=3)
    db3.flushdb()
    publish(db3, "in-db3")
    url = f"redis://127.0.0.1:{redis_server.port}/3"
    assert probe_read(url, "in-db3").state is State.FRESH
    assert read_heartbeat(real, "in-db3").state is State.MISSING
    db3.flushdb()




@pytest.mark.servers
def test_probe_client_tls_verifies_certificates(tmp_path: Path) -> None:
    ours = make_certs(tmp_path, "ours")
    other = make_certs(tmp_path, "other")
    from tests.support.helpers import free_port
    tls_port = free_port()
    server = RedisServer("--tls-port", str(tls_port), "--tls-cert-file", str(ours["crt"]),
                         "--tls-key-file", str(ours["key"]), "--tls-ca-cert-file",
                         str(ours["ca"]), "--tls-auth-clients", "no").start()
    try:
        publish(server.client())
        good = f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={ours['ca']}"
        assert probe_read(good, "petsage").state is State.FRESH
        assert check(good).returncode == 0
        wrong_ca = f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={other['ca']}"
        with pytest.raises(StoreUnreachableError, match="certificate"):
            probe_read(wrong_ca, "petsage", raw=True)
        done = check(wrong_ca)
        assert done.returncode == 3 and "not trusted" in done.stdout
        default_store = f"rediss://127.0.0.1:{tls_port}/0"
        assert check(default_store).returncode == 3  # system CAs don't know our test CA
    finally:
        server.close()


def _client_commands(server: RedisServer, argv: list[str], env: dict[str, str]) -> list[str]:
    """Top-level commands (not those run inside scripts) the subprocess sends, via MONITOR."""
    watcher = server.client()
    with watcher.monitor() as monitor:
        done = run_process(argv, env=env, capture_output=True, text=True, timeout=60,
                           check=False)
        assert done.returncode in (0, 1, 2), done.stdout + done.stderr
        server.client().execute_command("ECHO", "end-marker")
        seen = []
        for event in monitor.listen():
            if event["command"].startswith("ECHO end-marker"):
                break
            if event["client_address"] != "lua":
                seen.append(event["command"].split()[0].upper())
    return seen


def test_status_all_costs_a_few_round_trips_of_bounded_commands(
        redis_server: RedisServer, real: redis.Redis) -> None:
    env = heartbeat_env(redis_server.url)
    argv = cli_argv("status", "--all", "--json")
    for i in range(10):
        publish(real, f"svc-{i}")
    ours = [c for c in _client_commands(redis_server, argv, env) if c not in ("CLIENT", "HELLO")]
    # The index, one clock reading, each service's summary: no script for fresh services.
    assert ours == ["ZCARD", "ZRANGE", "TIME", *["HGET"] * 10], ours
    for i in range(10, 2048):
        publish(real, f"svc-{i}")
    ours = [c for c in _client_commands(redis_server, argv, env) if c not in ("CLIENT", "HELLO")]
    # As many services as shards: the shards, whatever the fleet's size from here on.
    scan = ["ZCARD", *["ZRANGE"] * 3, "TIME", *["HGETALL"] * SUMMARY_SHARDS]
    assert ours == scan, ours
    reports = json.loads(run_process(argv, env=env, capture_output=True, text=True,
                                     timeout=60, check=False).stdout)
    assert len(reports) == 2048 and {r["state"] for r in reports} == {"fresh"}
    # Unhealthy services cost three more commands, not one each: their full read, their
    # diagnosis notes, and one INFO asking whether the store refuses writes.
    for i in range(5):
        backdate(real, f"svc-{i}", 120)
    with_stale = [c for c in _client_commands(redis_server, argv, env)
                  if c not in ("CLIENT", "HELLO")]
    assert with_stale == [*scan, "EVAL_RO", "EVAL_RO", "INFO"], with_stale


def test_status_table_is_sorted_worst_first(redis_server: RedisServer, real: redis.Redis) -> None:
    for name in ("a-fresh", "b-stale", "c-late"):
        publish(real, name)
    backdate(real, "b-stale", 60)
    backdate(real, "c-late", 20)
    real.set(Keys().latest("d-junk"), "junk")
    real.zadd(Keys().index, {"d-junk": 1})
    done = run_process(cli_argv("status", "--all"), env=heartbeat_env(redis_server.url),
                       capture_output=True, text=True, timeout=30, check=False)
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["SERVICE", "STATE", "DIAGNOSIS", "AGE", "SEQ", "WORKER", "NODES",
                                "LAG", "STATUS", "REASON"]
    assert [line.split()[0] for line in lines[1:]] == ["d-junk", "b-stale", "c-late", "a-fresh"]
    # No beat marker was ever written for these: the diagnosis says beat is the broken hop.
    assert [line.split()[2] for line in lines[1:]] == ["-", "beat_down", "beat_down", "-"]
    assert "test@host" in lines[-1] and "3ms" in lines[-1]
    assert done.returncode == 3  # the worst state's exit code (invalid)


def test_status_piped_into_head_exits_with_its_code_and_no_traceback(
        redis_server: RedisServer, real: redis.Redis) -> None:
    for i in range(3000):  # far more than a pipe buffer of output
        publish(real, f"svc-{i}")
    backdate(real, "svc-0", 120)
    env = heartbeat_env(redis_server.url)
    for flags in ("--all", "--all --json"):
        argv = " ".join(cli_argv("status"))
        done = run_process(["bash", "-c", f"{argv} {flags} | head -c 10 >/dev/null; "
                            "echo ${PIPESTATUS[0]} >&2"], env=env, capture_output=True,
                           text=True, timeout=60, check=False)
        assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
        assert done.stderr.strip().splitlines()[-1] == "2", done.stderr  # svc-0 is stale
