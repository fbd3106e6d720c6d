"""Fleet reads side by side: ``status --all --json`` vs the plain baseline vs naive SCAN+GET.

    python -m bench.fleet_bench [--sizes 1000,10000,100000] [--runs 7]

For each fleet size, against a redis-server of its own: payloads of about 615 bytes in the
documented schema, half of them stale (with beat's markers); each command run as a process,
interleaved, ``--runs`` times (medians of wall, CPU and peak RSS). During one run of each,
another client PINGs every millisecond (its slowest answer is the stall a fleet read causes
everyone else, the broker's clients included) and ``SLOWLOG`` records every command (the
slowest single command). Then ``serve`` answers ``/metrics`` at 10,000 services. Prints one
markdown table; exits non-zero only if a benchmark could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence

import redis

from bench.common import BenchError, ProcessCost, RedisProcess, free_port, machine, run_measured
from bench.common import medians as median_cost
from bench.common import table as markdown

PAYLOAD = {
    "schema": 1, "status": "ok", "message": "PetSage is healthy",
    "published_at": "2026-11-27T05:00:00.000+00:00", "started_at": "2026-11-27T05:00:00.001+00:00",
    "finished_at": "2026-11-27T05:00:00.004+00:00", "queue_lag_ms": 3.1, "duration_ms": 1.2,
    "clock_offset_ms": 0.4, "backlog": {"depth": 0, "oldest_age_ms": None, "error": None},
    "worker": {"node": "celery@petsage-worker-7d9f8-abcde", "hostname": "petsage-worker-7d9f8",
               "pid": 7}, "version": "0.9.0",
    "checks": {"redis": {"status": "ok", "latency_ms": 0.2},
               "database": {"status": "ok", "latency_ms": 1.4}},
}


def fill(client: redis.Redis, services: int, prefix: str = "petsage:hb") -> None:
    """``services`` heartbeats, every other one stale (two minutes old, its marker as old)."""
    seconds, micros = client.time()
    now_ms = seconds * 1000 + micros // 1000
    pipe = client.pipeline(transaction=False)
    for i in range(services):
        name = f"svc-{i:06d}"
        stale = i % 2 == 1
        ts_ms = now_ms - 120_000 if stale else now_ms
        interval = 10 if stale else 3600  # the fresh half stays fresh for the whole run
        body = {**PAYLOAD, "service": name, "seq": 1000 + i, "ts_ms": ts_ms,
                "timestamp": "2026-11-27T05:00:00.005+00:00", "interval_s": interval,
                "stale_after_s": 3 * interval}
        pipe.set(f"{prefix}:{{{name}}}", json.dumps(body, separators=(",", ":")))
        pipe.zadd(f"{prefix}:index", {name: ts_ms})
        if stale:
            pipe.set(f"{prefix}:{{{name}}}:beat", json.dumps({
                "published_at_ms": ts_ms, "next_due_ms": ts_ms + 10_000, "seq": 12,
                "queue_depth": None, "since_ms": ts_ms - 60_000, "beat_id": "h:1:abc",
                "other_beat": None, "service": name, "interval_s": 10, "stale_after_s": 30,
                "queue": f"heartbeat.{name}", "hostname": "h", "pid": 1, "version": "0.9.0"},
                separators=(",", ":")))
        if i % 2000 == 1999:
            pipe.execute()
    pipe.execute()


NAIVE = """
import json, sys, redis
c = redis.Redis(port=int(sys.argv[1]))
out = []
for key in c.scan_iter(match="petsage:hb:{*}", count=1000):
    if key.endswith(b"}"):
        raw = c.get(key)
        if raw:
            out.append(json.loads(raw)["ts_ms"])
print(len(out))
"""


class Watch:
    """Another client PINGing every millisecond while a read runs: its slowest answer."""

    def __init__(self, port: int) -> None:
        self._client = redis.Redis(port=port)
        self._stop = threading.Event()
        self.slowest_ms = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            self._client.ping()
            self.slowest_ms = max(self.slowest_ms, (time.perf_counter() - started) * 1000)
            time.sleep(0.001)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def slowest_command(client: redis.Redis, run: Callable[[], object]) -> tuple[float, str]:
    """The longest single command (ms) of what ``run`` sends, from SLOWLOG."""
    client.config_set("slowlog-log-slower-than", 0)
    client.config_set("slowlog-max-len", 1_000_000)
    client.slowlog_reset()
    run()
    entries = client.slowlog_get(1_000_000)
    client.config_set("slowlog-log-slower-than", 10_000)
    ours = [e for e in entries if e["command"].split()[0].upper() not in (b"PING", b"SLOWLOG",
                                                                            b"CONFIG")]
    if not ours:
        return 0.0, "-"
    worst = max(ours, key=lambda e: e["duration"])
    return worst["duration"] / 1000, worst["command"].split()[0].decode()


def measure(sizes: Sequence[int], runs: int) -> list[list[object]]:
    rows: list[list[object]] = []
    for size in sizes:
        server = RedisProcess()
        try:
            client = redis.Redis(port=server.port)
            fill(client, size)
            env = {**os.environ, "HEARTBEAT_REDIS_URL": server.url,
                   "CELERY_BROKER_URL": server.url}
            commands = {
                "status --all --json": [sys.executable, "-m", "worker", "status", "--all",
                                        "--json", "--timeout", "60"],
                "baseline": [sys.executable, "-m", "bench.fleet_baseline", str(server.port)],
                "naive SCAN+GET": [sys.executable, "-c", NAIVE, str(server.port)],
            }
            costs: dict[str, list[ProcessCost]] = {name: [] for name in commands}
            for _ in range(runs):  # interleaved: a busy moment slows every side alike
                for name, argv in commands.items():
                    if name == "naive SCAN+GET" and size > 10_000 and costs[name]:
                        continue  # one run is enough to show it, at 100,000
                    costs[name].append(run_measured(argv, env))
            stalls = {}
            for name, argv in commands.items():
                with Watch(server.port) as watch:
                    slow_ms, command = slowest_command(
                        client, lambda a=argv, e=env: subprocess.run(a, env=e, check=False,
                                                                     capture_output=True))
                stalls[name] = (slow_ms, command, watch.slowest_ms)
            base = median_cost(costs["baseline"])
            for name in commands:
                cost = median_cost(costs[name])
                if cost.exit_code not in (0, 2):
                    raise BenchError(f"{name} exited {cost.exit_code} at {size} services")
                slow_ms, command, ping_ms = stalls[name]
                rows.append([f"{size:,}", name, f"{cost.wall_s:.3f}", f"{cost.cpu_s:.3f}",
                             f"{cost.rss_mib:.0f}", f"{cost.wall_s / base.wall_s:.2f}x",
                             f"{cost.rss_mib / base.rss_mib:.2f}x",
                             f"{slow_ms:.2f} ({command})", f"{ping_ms:.1f}"])
        finally:
            server.close()
    return rows


def metrics_scrape(services: int, runs: int) -> tuple[float, float, int]:
    """``serve``'s ``/metrics`` at ``services``: first and median scrape seconds, bytes."""
    server = RedisProcess()
    port = free_port()
    proc = None
    try:
        fill(redis.Redis(port=server.port), services)
        env = {**os.environ, "HEARTBEAT_REDIS_URL": server.url, "CELERY_BROKER_URL": server.url}
        proc = subprocess.Popen([sys.executable, "-m", "worker", "serve", "--port", str(port)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}/metrics"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/system/health", timeout=5)
                break
            except OSError as exc:
                if "503" in str(exc):
                    break
                if time.monotonic() > deadline:
                    raise BenchError("serve did not start") from None
                time.sleep(0.1)
        samples, size = [], 0
        for _ in range(runs):
            started = time.perf_counter()
            with urllib.request.urlopen(url, timeout=60) as response:
                size = len(response.read())
            samples.append(time.perf_counter() - started)
            time.sleep(1.0)  # past any cache: each scrape reads the fleet
        return samples[0], statistics.median(samples), size
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        server.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    try:
        rows = measure(sizes, args.runs)
        first_s, median_s, size = metrics_scrape(10_000, max(3, args.runs // 2))
    except BenchError as exc:
        print(f"benchmark could not run: {exc}", file=sys.stderr)
        return 1
    print(f"Fleet reads on {machine()}; medians of {args.runs} process runs, interleaved.\n")
    print(markdown(["services", "command", "wall s", "CPU s", "peak RSS MiB", "wall vs baseline",
                    "RSS vs baseline", "slowest command ms", "slowest PING of another client ms"],
                   rows))
    print(f"\n/metrics at 10,000 services: first scrape {first_s:.3f} s, median {median_s:.3f} s, "
          f"{size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
