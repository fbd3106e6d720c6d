"""``petsage-heartbeat check`` imports only what a probe needs (its cost is its imports).

Each test runs the command in a fresh interpreter and looks at what it added to
``sys.modules``: never Celery, kombu, redis-py, FastAPI, pydantic or orjson (whose import
costs more than the probe's own work: ``worker.core.json_loads``), never the monitor, the
write path or the incident streams; the component probes' modules (``liveness``,
``absence``) only for ``--node`` and ``--beat``. The first tests read through a stand-in
client (no server; each answer a probe reads, a payload, beat's marker and a silence among
them), the last one is the whole command against a real redis-server. The CPU figures are
``bench/check_cost.py``'s (docs/performance.md).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import redis

from tests.support.helpers import REPO, RedisServer
from tests.support.processes import run as run_process
from tests.support.publishing import publish
from worker.core.names import Keys

FORBIDDEN = ("celery", "kombu", "billiard", "amqp", "redis", "fastapi", "pydantic",
             "starlette", "uvicorn", "orjson", "importlib.resources", "worker.celery",
             "worker.observe", "worker.publish", "worker.http", "worker.read.incidents",
             "worker.read.fleet", "worker.read.summary", "worker.read.entries")
"""Never imported by ``check``: a module, or a package and everything under it."""

COMPONENT_ONLY = ("worker.read.liveness", "worker.read.absence")
"""Imported by the component probes (``--node``, ``--beat``) only."""

NOW_MS = 1_800_000_000_000
KEYS = Keys()

_SCRIPT = """
import contextlib, io, json, sys
before = set(sys.modules)
import worker.cli.check
from worker.cli.main import main

answers = json.loads(sys.argv[1])


class StandIn:
    def execute_many(self, commands):
        replies = []
        for command in commands:
            name = command[0]
            if name == "EVAL_RO":
                time_reply, value, marker, discard, nodes = answers["read"]
                replies.append([time_reply, value.encode(), marker.encode(), discard.encode(),
                                [n.encode() for n in nodes]])
            elif name in ("GETRANGE", "STRLEN"):
                value = answers["silence"].encode()
                replies.append(value if name == "GETRANGE" else len(value))
            elif name == "INFO":
                replies.append(answers["info"].encode())
            elif name == "ZCARD":
                replies.append(1)
            else:
                raise AssertionError(command)
        return replies

    def close(self):
        pass


worker.cli.check.reader_client = lambda url, timeout_s: StandIn()
out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = main(sys.argv[2:])
print(json.dumps({"code": code, "line": out.getvalue(),
                  "added": sorted(set(sys.modules) - before)}))
"""

_WHOLE = """
import contextlib, io, json, sys
before = set(sys.modules)
from worker.cli.main import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = main(sys.argv[1:])
print(json.dumps({"code": code, "line": out.getvalue(),
                  "added": sorted(set(sys.modules) - before)}))
"""


def _payload(age_ms: int = 1500) -> str:
    """A sound schema-1 payload, written ``age_ms`` before ``NOW_MS``."""
    ts_ms = NOW_MS - age_ms
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts_ms // 1000))
    return json.dumps({
        "seq": 42, "ts_ms": ts_ms, "timestamp": f"{stamp}.{ts_ms % 1000:03d}+00:00",
        "schema": 1, "service": "petsage", "status": "ok", "message": "purring",
        "interval_s": 10, "stale_after_s": 30, "published_at": None, "queue_lag_ms": 3.0,
        "duration_ms": 1.0, "clock_offset_ms": 0.0,
        "worker": {"node": "hb@pod-a", "hostname": "pod-a", "pid": 7},
        "checks": {"redis": {"status": "ok", "latency_ms": 0.1}}})


def _answers() -> dict[str, object]:
    marker = json.dumps({"published_at_ms": NOW_MS - 1000, "next_due_ms": NOW_MS + 9000,
                         "seq": 42, "interval_s": 10, "since_ms": NOW_MS - 60_000})
    silence = json.dumps({"until_ms": NOW_MS + 3_600_000, "reason": "db migration",
                          "since_ms": NOW_MS - 60_000})
    nodes = ["hb@pod-a", str(NOW_MS - 1000)]
    return {"read": [[str(NOW_MS // 1000), str(NOW_MS % 1000 * 1000)], _payload(), marker, "",
                     nodes],
            "silence": silence,
            "info": "# Server\r\nrun_id:abc\r\nuptime_in_seconds:86400\r\n"
                    "# Replication\r\nrole:master\r\n"}


def _added(done_stdout: str) -> tuple[int, str, list[str]]:
    result = json.loads(done_stdout.splitlines()[-1])
    return result["code"], result["line"], result["added"]


def _offences(added: list[str], names: tuple[str, ...]) -> list[str]:
    return [m for m in added if any(m == n or m.startswith(n + ".") for n in names)]


def _run(code: str, *args: str, tmp_path: Path) -> tuple[int, str, list[str]]:
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}
    done = run_process([sys.executable, "-c", code, *args], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stdout, done.stdout + done.stderr
    return _added(done.stdout)


@pytest.mark.parametrize(("flags", "start"), [
    ((), "OK - petsage heartbeat 1.5s old, seq 42 (silenced for 1h 0m: db migration) | "),
    (("--json",), '{"service": "petsage", "state": "fresh", "exit_code": 0, '),
    (("--late-after", "1"), "WARNING - petsage heartbeat late: last heartbeat 1.5s ago"),
])
def test_the_service_probe_imports_nothing_it_does_not_need(
        flags: tuple[str, ...], start: str, tmp_path: Path) -> None:
    code, line, added = _run(_SCRIPT, json.dumps(_answers()), "check", "--redis",
                             "redis://127.0.0.1:6379/0", *flags, tmp_path=tmp_path)
    # A payload, beat's marker and a silence were decoded: the path a probe takes.
    assert line.startswith(start), line
    assert code == (1 if "--late-after" in flags else 0)
    assert _offences(added, FORBIDDEN) == []
    assert _offences(added, COMPONENT_ONLY) == []
    assert "worker.read.silence" in added and "worker.core.json_loads" in added


@pytest.mark.parametrize(("flags", "start"), [
    (("--node", "pod-a"), "OK - petsage node pod-a (hb@pod-a) fresh: "),
    (("--beat",), "OK - petsage beat fresh: "),
    (("--liveness", "--node", "pod-a"), "OK - petsage node pod-a (hb@pod-a) fresh: "),
    (("--liveness", "--beat"), "OK - petsage beat fresh: "),
])
def test_the_component_probes_add_only_their_own_modules(
        flags: tuple[str, ...], start: str, tmp_path: Path) -> None:
    code, line, added = _run(_SCRIPT, json.dumps(_answers()), "check", "--redis",
                             "redis://127.0.0.1:6379/0", *flags, tmp_path=tmp_path)
    assert (code, line.startswith(start)) == (0, True), line
    assert _offences(added, FORBIDDEN) == []
    assert "worker.read.liveness" in added
    assert ("worker.read.absence" in added) == ("--liveness" in flags)


def test_a_store_that_cannot_be_asked_imports_no_more(tmp_path: Path) -> None:
    """Port 1 refuses at once: the probe's own client, its socket and the error path."""
    code, line, added = _run(_WHOLE, "check", "--redis", "redis://127.0.0.1:1/0",
                             "--timeout", "5", tmp_path=tmp_path)
    assert (code, line.startswith("UNKNOWN - petsage heartbeat unreachable: ")) == (3, True)
    assert _offences(added, FORBIDDEN + COMPONENT_ONLY) == []
    assert "worker.read.resp_client" in added


def test_the_whole_command_against_redis_imports_nothing_it_does_not_need(
        redis_server: RedisServer, real: redis.Redis, tmp_path: Path) -> None:
    publish(real)
    real.set(KEYS.silence("petsage"), json.dumps(
        {"until_ms": 2**50, "reason": "db migration", "since_ms": 1}))
    code, line, added = _run(_WHOLE, "check", "--redis", redis_server.url, "--json",
                             tmp_path=tmp_path)
    summary = json.loads(line)
    assert (code, summary["state"], summary["silence"]["reason"]) == (0, "fresh",
                                                                      "db migration")
    assert _offences(added, FORBIDDEN + COMPONENT_ONLY) == []
    assert "worker.read.resp_client" in added and "hiredis" in added
