"""The least-privilege ACL of each role (docs/security.md), verbatim, on a real redis-server.

Every role runs every command it has under its own user, broker and store on the same Redis:
beat and a worker as processes; ``check`` (the probes too), ``status --all``, ``status
--entries``, ``watch``; ``serve``'s ``/metrics`` and ``/api/heartbeats?service=``; a
``monitor`` recording a transition and posting it to a local webhook; ``silence``,
``unsilence`` and ``forget`` as the operator. Redis's ACL log must stay empty: nothing any of
them sent was refused. Then, for each role, what it must not do is refused (``NOPERM``):
server-wide commands, other apps' keys and channels, other services' silences (all but the
operator), the outbox (all but the monitor).
"""

from __future__ import annotations

import json
import re
import shlex
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.helpers import (
    REPO,
    STARTUP_S,
    Proc,
    RedisServer,
    celery_argv,
    cli_argv,
    free_port,
    heartbeat_env,
    wait_for,
)
from tests.support.processes import run as run_process
from tests.support.publishing import publish
from tests.support.receiver import Receiver
from worker import State, read_heartbeat
from worker.core.names import Keys

pytestmark = pytest.mark.e2e
ROLES = ("beat", "worker", "monitor", "reader", "serve", "operator")
PASSWORD = "acl-matrix-Pw-7"
KEYS = Keys()
NODE = "heartbeat@%h"  # the docs' node names: heartbeat@..., as in the Kubernetes worker


def documented_acls() -> dict[str, list[str]]:
    """Each role's ``ACL SETUSER`` arguments, as docs/security.md shows them (redis-cli's
    quoting: ``"..."`` with ``\\xHH`` escapes), its password placeholder replaced."""
    text = (REPO / "docs" / "security.md").read_text(encoding="utf-8")
    acls: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.startswith("ACL SETUSER "):
            continue
        words = [re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), word)
                 for word in shlex.split(line)[2:]]
        role = words[0].removeprefix("petsage-")
        placeholder = f">{role.upper()}_PASSWORD"
        assert placeholder in words, (role, "its password placeholder")
        acls[role] = [f">{PASSWORD}" if w == placeholder else w for w in words[1:]]
    assert tuple(acls) == ROLES, "one ACL per role, in the docs' order"
    return acls


def _run(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    done = run_process(cli_argv(*args), env=env, capture_output=True, text=True, timeout=60,
                       check=False)
    return done.returncode, done.stdout + done.stderr


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


def _refusals(admin: redis.Redis) -> list[dict[str, Any]]:
    """Redis's ACL log of the roles' users: every refused command, key or channel."""
    users = {f"petsage-{role}" for role in ROLES}
    return [e for e in admin.acl_log(128) if e.get("username") in users]


@pytest.fixture
def acl_server() -> Any:
    server = RedisServer().start()
    admin = server.client()
    for role, words in documented_acls().items():
        admin.execute_command("ACL", "SETUSER", f"petsage-{role}", *words)
    # The default user keeps the test's own access; the roles never log in as it.
    try:
        yield server
    finally:
        server.close()


def _url(server: RedisServer, role: str) -> str:
    return f"redis://petsage-{role}:{PASSWORD}@127.0.0.1:{server.port}/0"


def _client(server: RedisServer, role: str) -> redis.Redis:
    return redis.Redis.from_url(_url(server, role), socket_timeout=5)


def test_redis_server_supports_the_documented_acls() -> None:
    """Key permissions (``%R~``/``%W~``) and selectors need Redis 7.0."""
    done = run_process(["redis-server", "--version"], capture_output=True, text=True,
                       timeout=10, check=False)
    version = re.search(r"v=(\d+)\.(\d+)", done.stdout)
    assert version and (int(version[1]), int(version[2])) >= (7, 0), done.stdout


def test_every_role_runs_every_command_under_its_own_acl(acl_server: RedisServer,
                                                         procs: list[Proc],
                                                         tmp_path: Path) -> None:
    server, admin = acl_server, acl_server.client()
    publish(admin, "billing", interval_s=600)  # another service, for forget and the fleet
    beat = Proc(celery_argv("beat"), heartbeat_env(_url(server, "beat")), tmp_path, "beat")
    worker = Proc(celery_argv("worker", hostname=NODE), heartbeat_env(_url(server, "worker")),
                  tmp_path, "worker")
    procs += [beat, worker]
    wait_for(lambda: read_heartbeat(admin, "petsage").state is State.FRESH, STARTUP_S,
             what="a fresh heartbeat from beat and the worker under their users")
    wait_for(lambda: read_heartbeat(admin, "petsage").nodes, 30,
             what="the worker's node heartbeat under its user")
    node = f"heartbeat@{socket.gethostname()}"

    reader = heartbeat_env(_url(server, "reader"))
    for args in (["check"], ["check", "--json"],
                 ["check", "--liveness", "--beat", "--stale-after", "120"],
                 ["check", "--liveness", "--node", node, "--stale-after", "120"],
                 ["status", "--all", "--json"]):
        code, out = _run(args, reader)
        assert code == 0, (args, out)
    code, out = _run(["status", "--entries"], reader)
    assert code == 2 and "no beat entry is watched" in out, out  # read, and none there
    watch = Proc(cli_argv("watch", "--all", "--json"), reader, tmp_path, "watch")
    procs.append(watch)
    wait_for(lambda: '"service": "petsage"' in watch.output()
             or '"service":"petsage"' in watch.output(), 30, what="watch under the reader")
    watch.stop()

    receiver = Receiver()
    monitor = Proc(cli_argv("monitor", "--every", "0.5", "--webhook", receiver.url),
                   heartbeat_env(_url(server, "monitor")), tmp_path, "monitor")
    procs.append(monitor)
    wait_for(lambda: admin.hget(KEYS.observed("petsage"), "state") == b"fresh", 30,
             what="the monitor's record under its user")
    code, out = _run(["status", "--json"], reader)
    assert code == 0 and json.loads(out)[0]["incidents"]["monitored"] is True, out

    port = free_port()
    serve = Proc(cli_argv("serve", "--port", str(port)), heartbeat_env(_url(server, "serve")),
                 tmp_path, "serve")
    procs.append(serve)
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: "petsage_heartbeat_store_up 1.0" in _get(base + "/metrics")[1], 30,
             what="serve's /metrics under its user")
    status, body = _get(base + "/api/heartbeats?service=petsage")
    assert status == 200, body  # ZSCORE: a 503 without it
    assert "fresh" in body

    operator = heartbeat_env(_url(server, "operator"))
    admin.hset(KEYS.entries("petsage"), "nightly", "{}")  # an entry for --entry to name
    for args in (["silence", "petsage", "--for", "1h", "--reason", "acl matrix"],
                 ["unsilence", "petsage"],
                 ["silence", "petsage", "--entry", "nightly", "--for", "1h"],
                 ["unsilence", "petsage", "--entry", "nightly"],
                 ["forget", "billing", "--yes"]):
        code, out = _run(args, operator)
        assert code == 0, (args, out)
    assert admin.zscore(KEYS.index, "billing") is None and not admin.exists(
        *KEYS.service_keys("billing"))
    admin.hdel(KEYS.entries("petsage"), "nightly")

    # A transition the monitor records, writes to the outbox and posts (the worker stops).
    worker.stop()
    try:
        wait_for(receiver.delivered, 60,
                 what="a notification through the outbox to the webhook, the monitor's user")
    finally:
        receiver.close()
    assert admin.xlen(KEYS.outbox) >= 1

    outputs = {p.name: p.output() for p in procs}
    for name, text in outputs.items():
        assert "NOPERM" not in text and "no permissions" not in text, (name, text[-2000:])
    assert "cannot" not in outputs["monitor"], outputs["monitor"]
    assert _refusals(admin) == [], "every command of every role was allowed"


def _refused(call: Any) -> bool:
    try:
        call()
    except redis.exceptions.NoPermissionError:
        return True
    except redis.exceptions.ResponseError as exc:  # inside a script: "The user executing
        # the script can't run this command" or "can't access at least one of the keys"
        return "user executing the script can't" in str(exc) or "no permissions" in str(exc)
    return False


SERVER_WIDE = {
    "SCRIPT FLUSH": ("SCRIPT", "FLUSH"),
    "FUNCTION FLUSH": ("FUNCTION", "FLUSH"),
    "FLUSHALL": ("FLUSHALL",),
    "FLUSHDB": ("FLUSHDB",),
    "CONFIG SET": ("CONFIG", "SET", "maxmemory", "1"),
    "KEYS": ("KEYS", "*"),
    "CLIENT KILL": ("CLIENT", "KILL", "ID", "1"),
    "ACL SETUSER": ("ACL", "SETUSER", "intruder", "on", "+@all", "~*"),
}

OTHER_APPS = {
    "SET other:app:key": ("SET", "other:app:key", "x"),
    "GET other:app:key": ("GET", "other:app:key"),
    "HSET other:app:unacked": ("HSET", "other:app:unacked", "tag", "x"),
    "SET unacked_of_other": ("SET", "other.unacked", "x"),
    "LPUSH celery": ("LPUSH", "celery", "x"),
    "SADD _kombu.binding.celery": ("SADD", "_kombu.binding.celery", "x"),
    "SET pidbox of another node": ("SET", "otherapp@host.celery.pidbox", "x"),
    "PUBLISH other channel": ("PUBLISH", "other:app:events", "x"),
    "PUBLISH another fanout": ("PUBLISH", "/0.celeryev/task.sent", "x"),
    "SET other prefix": ("SET", "other:hb:{petsage}", "x"),
}


@pytest.mark.parametrize("role", ROLES)
def test_what_a_role_must_not_do_is_refused(role: str, acl_server: RedisServer) -> None:
    server = acl_server
    admin = server.client()
    publish(admin, "billing")
    admin.xadd(KEYS.outbox, {"kind": "seed"})
    client = _client(server, role)
    assert client.ping()
    refused: dict[str, bool] = {}
    for name, command in {**SERVER_WIDE, **OTHER_APPS}.items():
        refused[name] = _refused(lambda c=command: client.execute_command(*c))

    # Other services' silences: only the operator writes silences (service and entry).
    silence, entry_silence = KEYS.silence("billing"), KEYS.entry_silence("billing")
    writes = {
        "SET billing silence": lambda: client.set(silence, "{}"),
        "DEL billing silence": lambda: client.delete(silence),
        "HSET billing entry silence": lambda: client.hset(entry_silence, "e", "{}"),
        "EVAL SET billing silence": lambda: client.eval(
            "return redis.call('SET', KEYS[1], ARGV[1])", 1, silence, "{}"),
        "EVAL HSET billing entry silence": lambda: client.eval(
            "return redis.call('HSET', KEYS[1], 'e', ARGV[1])", 1, entry_silence, "{}"),
    }
    for name, call in writes.items():
        refused[name] = _refused(call)
    # The outbox: only the monitor writes it.
    refused["XADD outbox"] = _refused(lambda: client.xadd(KEYS.outbox, {"kind": "forged"}))
    refused["DEL outbox"] = _refused(lambda: client.delete(KEYS.outbox))
    refused["EVAL XADD outbox"] = _refused(lambda: client.eval(
        "return redis.call('XADD', KEYS[1], '*', 'kind', 'forged')", 1, KEYS.outbox))
    # Another service's heartbeat: no role but the operator's forget touches it.
    refused["SET billing heartbeat"] = _refused(lambda: client.set(KEYS.latest("billing"), "x"))

    expected_allowed: set[str] = set()
    if role == "operator":
        expected_allowed = {"SET billing silence", "DEL billing silence",
                            "HSET billing entry silence", "EVAL SET billing silence",
                            "EVAL HSET billing entry silence"}
    if role == "monitor":
        expected_allowed = {"XADD outbox", "DEL outbox", "EVAL XADD outbox"}
    allowed = {name for name, was_refused in refused.items() if not was_refused}
    assert allowed == expected_allowed, f"{role} may: {sorted(allowed - expected_allowed)}"
    # Nothing refused was done: the other app's keys, the silences and the outbox as they were.
    assert admin.get("other:app:key") is None and admin.exists("other:app:unacked") == 0
    if role not in ("operator", "monitor"):
        assert admin.exists(silence) == 0 and admin.xlen(KEYS.outbox) == 1
    assert admin.ping() and admin.dbsize() > 0  # no flush
