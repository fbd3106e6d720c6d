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
from collections.abc import Callable
from pathlib import Path

import redis

from bench.common import (
    BIN,
    BenchError,
    ProcessCost,
    RedisProcess,
    fresh_body,
    machine,
    medians,
    run_measured,
    table,
    time_call,
)
from worker.core.names import Keys
from worker.publish.store import HeartbeatStore
from worker.read.fleet import read_fleet
from worker.read.reader import read_heartbeat
from worker.read.resp_client import ProbeClient


def _start_worker(env: dict[str, str], workdir: Path) -> subprocess.Popen[bytes]:
    log = open(workdir / "worker.log", "wb")  # noqa: SIM115 - lives as long as the worker
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker", "worker", "-Q", "heartbeat.petsage",
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


def _naive_scan_get(client: redis.Redis) -> int:
    """What a team writes first: SCAN the key space, GET each latest key (no judging)."""
    found = 0
    for key in client.scan_iter(match="petsage:hb:{*}", count=1000):
        if key.endswith(b"}"):
            found += client.get(key) is not None
    return found


def _naive_scan_read(client: redis.Redis) -> int:
    """SCAN, then ``read_heartbeat`` per service: the same table as ``status --all``."""
    prefix = len("petsage:hb:{")
    return len([read_heartbeat(client, key.decode()[prefix:-1])
                for key in client.scan_iter(match="petsage:hb:{*}", count=1000)
                if key.endswith(b"}")])


def bench_fleet(server: RedisProcess, env: dict[str, str], services: int, runs: int) -> str:
    client = redis.Redis(port=server.port)
    store = HeartbeatStore(client, Keys(), retention_s=3600, history_len=10)
    for i in range(services):
        store.publish(f"svc-{i}", fresh_body(f"svc-{i}"))
    probe = ProbeClient(server.url, timeout_s=30)
    calls: dict[str, Callable[[], object]] = {
        "read_fleet (what status --all reads and judges)": lambda: read_fleet(probe, Keys()),
        "SCAN + GET, raw values, not judged": lambda: _naive_scan_get(client),
        "SCAN + read_heartbeat per service (same output)": lambda: _naive_scan_read(client),
    }
    walls: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(runs):
        for name, call in calls.items():
            walls[name].extend(time_call(call, 1))
    exe = BIN / "petsage-heartbeat"
    status = [str(exe)] if exe.exists() else [sys.executable, "-m", "worker"]
    whole = {
        "whole command: petsage-heartbeat status --all --json": [
            *status, "status", "--all", "--json", "--redis", server.url],
        "whole command: python script SCAN + GET": [
            sys.executable, "-c",
            "import redis\n"
            f"c = redis.Redis(port={server.port})\n"
            "n = sum(c.get(k) is not None for k in c.scan_iter(match='petsage:hb:{*}', "
            "count=1000) if k.endswith(b'}'))\n"
            f"assert n >= {services}, n\n"],
    }
    for name in whole:
        walls[name] = []
    for _ in range(runs):
        for name, argv in whole.items():
            cost = run_measured(argv, env)
            if cost.exit_code != 0:
                raise BenchError(f"{name} exited {cost.exit_code}")
            walls[name].append(cost.wall_s)
    med = {name: statistics.median(w) for name, w in walls.items()}
    ours = med["read_fleet (what status --all reads and judges)"]
    ours_cmd = med["whole command: petsage-heartbeat status --all --json"]
    rows = []
    for name, value in med.items():
        base = ours_cmd if name.startswith("whole") else ours
        rows.append((name, value, value / base))
    raw = med["SCAN + GET, raw values, not judged"] / ours
    same = med["SCAN + read_heartbeat per service (same output)"] / ours
    return table(["fleet read", "median wall s", "x slower than ours"], rows) + (
        f"\n\nread_fleet is {raw:.1f}x faster than raw SCAN + GET and {same:.1f}x faster "
        f"than SCAN + read_heartbeat (target >= 10x vs SCAN + GET: "
        f"{'met' if raw >= 10 else 'MISSED'})\n")


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
        HeartbeatStore(redis.Redis(port=server.port), Keys(), retention_s=3600,
                       history_len=10).publish("petsage", fresh_body("petsage"))
        print(f"### Probe cost ({args.runs} runs each, medians; {machine()})\n")
        print(bench_probes(server.url, server.port, env, args.runs))
        print(f"### Fleet read ({max(args.runs // 2, 3)} runs each, medians)\n")
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
