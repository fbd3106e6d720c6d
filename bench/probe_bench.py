"""Probe cost: ``petsage-heartbeat check`` against ``celery inspect ping`` and two floors.

Runs, side by side in one run against a real redis-server and a real celery worker:
``petsage-heartbeat check``, ``celery -A worker inspect ping``, a redis-py one-liner GET
and the floor (a Python process that sends one GET on a socket, parsed by hiredis); then
``status --all`` over 10,000 services against a naive SCAN + GET loop.

    python -m bench.probe_bench [--runs 10] [--services 10000]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from bench.common import (
    BIN,
    BenchError,
    ProcessCost,
    RedisProcess,
    machine,
    medians,
    run_measured,
    table,
)
from worker.keys import Keys
from worker.store import HeartbeatStore


def _body(service: str) -> dict[str, object]:
    return {"schema": 1, "service": service, "status": "ok", "message": "bench",
            "interval_s": 10, "stale_after_s": 30, "queue_lag_ms": 1.0, "duration_ms": 1.0,
            "clock_offset_ms": 0.0, "published_at": None,
            "worker": {"node": "bench@host", "hostname": "host", "pid": 1}, "version": "bench",
            "checks": {"redis": {"status": "ok", "latency_ms": 0.1}}}


def _start_worker(env: dict[str, str], workdir: Path) -> subprocess.Popen[bytes]:
    log = open(workdir / "worker.log", "wb")  # noqa: SIM115 - lives as long as the worker
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker", "worker", "-Q", "heartbeat",
         "--concurrency", "1", "--loglevel", "INFO", "--hostname", "bench@%h"],
        env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while not re.search(r"bench@\S+ ready\.", (workdir / "worker.log").read_text()):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise BenchError("the celery worker did not become ready")
        time.sleep(0.1)
    return proc


def probe_commands(url: str, port: int, key: str) -> dict[str, list[str]]:
    exe = str(BIN / "petsage-heartbeat") if (BIN / "petsage-heartbeat").exists() else None
    check = [exe, "check"] if exe else [sys.executable, "-m", "worker", "check"]
    floor = (
        "import socket, hiredis\n"
        f"s = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
        f"k = {key!r}.encode()\n"
        "s.sendall(b'*2\\r\\n$3\\r\\nGET\\r\\n$%d\\r\\n%s\\r\\n' % (len(k), k))\n"
        "r = hiredis.Reader()\n"
        "r.feed(s.recv(65536))\n"
        "assert r.gets()\n"
    )
    return {
        "petsage-heartbeat check": [*check, "--redis", url],
        "celery -A worker inspect ping": [sys.executable, "-m", "celery", "-A", "worker",
                                          "inspect", "ping"],
        "python -c 'import redis; GET'": [
            sys.executable, "-c",
            f"import redis; assert redis.Redis.from_url({url!r}).get({key!r})"],
        "floor: socket + hiredis GET": [sys.executable, "-c", floor],
    }


def bench_probes(url: str, port: int, env: dict[str, str], runs: int) -> str:
    commands = probe_commands(url, port, Keys().latest("petsage"))
    costs: dict[str, list[ProcessCost]] = {name: [] for name in commands}
    for _ in range(runs):  # interleaved, so load on the machine hits every probe alike
        for name, argv in commands.items():
            cost = run_measured(argv, env)
            if cost.exit_code != 0:
                done = subprocess.run(argv, env=env, capture_output=True, text=True,
                                      timeout=60, check=False)
                raise BenchError(f"{name} exited {cost.exit_code}: {done.stdout[-300:]}"
                                 f"{done.stderr[-300:]}")
            costs[name].append(cost)
    med = {name: medians(c) for name, c in costs.items()}
    ping = med["celery -A worker inspect ping"]
    floor = med["floor: socket + hiredis GET"]
    rows = [(name, m.wall_s, m.cpu_s, m.rss_mib, m.cpu_s / ping.cpu_s, m.wall_s / ping.wall_s,
             m.cpu_s / floor.cpu_s) for name, m in med.items()]
    check = med["petsage-heartbeat check"]
    verdict = (
        f"targets: CPU <= 1/4 of inspect ping: {check.cpu_s / ping.cpu_s:.3f} "
        f"({'met' if check.cpu_s <= ping.cpu_s / 4 else 'MISSED'}); "
        f"wall <= 1/10: {check.wall_s / ping.wall_s:.3f} "
        f"({'met' if check.wall_s <= ping.wall_s / 10 else 'MISSED'}); "
        f"CPU within 3x of the floor: {check.cpu_s / floor.cpu_s:.2f}x "
        f"({'met' if check.cpu_s <= 3 * floor.cpu_s else 'MISSED'})"
    )
    return table(["probe", "wall s", "CPU s", "peak RSS MiB", "CPU / inspect ping",
                  "wall / inspect ping", "CPU / floor"], rows) + f"\n\n{verdict}\n"


def bench_fleet(server: RedisProcess, env: dict[str, str], services: int, runs: int) -> str:
    client = redis.Redis(port=server.port)
    store = HeartbeatStore(client, Keys(), retention_s=3600, history_len=10)
    for i in range(services):
        store.publish(f"svc-{i}", _body(f"svc-{i}"))
    exe = BIN / "petsage-heartbeat"
    status = ([str(exe)] if exe.exists() else [sys.executable, "-m", "worker"])
    naive = (
        "import redis\n"
        f"c = redis.Redis(port={server.port})\n"
        "n = 0\n"
        "for k in c.scan_iter(match='petsage:hb:{*}', count=1000):\n"
        "    if k.endswith(b'}'):\n"
        "        n += c.get(k) is not None\n"
        f"assert n == {services}, n\n"
    )
    commands = {
        f"status --all ({services:,} services)": [*status, "status", "--all", "--json",
                                                  "--redis", server.url],
        f"naive SCAN + GET ({services:,} services)": [sys.executable, "-c", naive],
    }
    walls: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            cost = run_measured(argv, env)
            if cost.exit_code not in (0, 1):
                raise BenchError(f"{name} exited {cost.exit_code}")
            walls[name].append(cost.wall_s)
    ours, theirs = (statistics.median(w) for w in walls.values())
    rows = [(name, statistics.median(w)) for name, w in walls.items()]
    return table(["fleet read", "median wall s"], rows) + (
        f"\n\nstatus --all is {theirs / ours:.1f}x faster than SCAN + GET "
        f"(target >= 10x: {'met' if theirs >= 10 * ours else 'MISSED'})\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--services", type=int, default=10_000)
    args = parser.parse_args()
    server = RedisProcess()
    worker = None
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HEARTBEAT_", "CELERY_"))}
        env.update(CELERY_BROKER_URL=server.url, HEARTBEAT_REDIS_URL=server.url)
        workdir = Path(tempfile.mkdtemp(prefix="petsage-bench-worker-"))
        started = time.monotonic()
        worker = _start_worker(env, workdir)
        print(f"(celery worker ready after {time.monotonic() - started:.1f}s)", file=sys.stderr)
        # A long interval keeps this one heartbeat fresh for the whole benchmark.
        HeartbeatStore(redis.Redis(port=server.port), Keys(), retention_s=3600,
                       history_len=10).publish("petsage", {**_body("petsage"),
                                                           "interval_s": 600,
                                                           "stale_after_s": 1800})
        print(f"## Probe cost ({args.runs} runs each, medians; {machine()})\n")
        print(bench_probes(server.url, server.port, env, args.runs))
        print(f"## Fleet read ({max(args.runs // 2, 3)} runs each, medians)\n")
        print(bench_fleet(server, env, args.services, max(args.runs // 2, 3)))
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if worker is not None:
            os.killpg(worker.pid, 9)
            worker.wait(10)
        server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
