"""Every benchmark in one run, against a real redis-server it starts; one markdown table.

    python -m bench.run_all [--quick] [--soak-seconds 0]

Medians and ratios are measured side by side in this run (interleaved where it matters),
so a loaded machine slows both sides alike. Nothing here is a test: a missed target is
reported, not failed; a benchmark that cannot run exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import redis

from bench.common import BIN, BenchError, RedisProcess, free_port, machine, table
from bench.probe_bench import _body, _naive_scan_get
from worker.core.names import Keys
from worker.core.settings import DEFAULT_HISTORY_LEN
from worker.publish.store import HeartbeatStore
from worker.read.fleet import read_fleet
from worker.read.reader import read_heartbeat
from worker.read.resp_client import ProbeClient

Row = tuple[str, str, str, str, str, str]
ROWS: list[Row] = []


def row(name: str, ours: str, baseline: str, ratio: float | None, target: str,
        met: bool | None) -> None:
    verdict = "-" if met is None else ("met" if met else "MISSED")
    ROWS.append((name, ours, baseline, "-" if ratio is None else f"{ratio:.2f}", target,
                 verdict))


def _median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def bench_publish(client: redis.Redis, n: int) -> None:
    store = HeartbeatStore(client, Keys(), retention_s=3600, history_len=1000)
    body = _body("bench-publish")
    store.publish("bench-publish", body)  # load the script
    payload = client.get(Keys().latest("bench-publish")) or b""
    ours: list[float] = []
    bare: list[float] = []
    for _ in range(n // 100):  # interleaved blocks of 100
        for _ in range(100):
            t = time.perf_counter()
            store.publish("bench-publish", body)
            ours.append(time.perf_counter() - t)
        for _ in range(100):
            t = time.perf_counter()
            client.set("bench:bare", payload)
            bare.append(time.perf_counter() - t)
    client.config_resetstat()
    for _ in range(100):
        store.publish("bench-publish", body)
    stats = client.info("commandstats")
    top = stats.get("cmdstat_evalsha", {}).get("calls", 0) / 100
    inner = sum(v["calls"] for k, v in stats.items()
                if k.startswith("cmdstat_") and k != "cmdstat_evalsha") / 100
    ratio = _median_us(ours) / _median_us(bare)
    row("publish one heartbeat (median µs)", f"{_median_us(ours):.0f}",
        f"{_median_us(bare):.0f} (SET)", ratio, "<= 2x", ratio <= 2)
    row("round trips per heartbeat", f"{top:.0f} (EVALSHA)", "1 (SET)", top, "1", top == 1)
    row("commands per heartbeat (INFO commandstats)", f"{top + inner:.0f}", "1", None,
        "-", None)


def bench_read(server: RedisProcess, client: redis.Redis, n: int) -> None:
    key = Keys().latest("bench-publish")
    probe = ProbeClient(server.url, timeout_s=2)
    ours: list[float] = []
    probe_t: list[float] = []
    bare: list[float] = []
    for _ in range(n // 100):
        for _ in range(100):
            t = time.perf_counter()
            read_heartbeat(client, "bench-publish")
            ours.append(time.perf_counter() - t)
        for _ in range(100):
            t = time.perf_counter()
            read_heartbeat(probe, "bench-publish")
            probe_t.append(time.perf_counter() - t)
        for _ in range(100):
            t = time.perf_counter()
            client.get(key)
            bare.append(time.perf_counter() - t)
    probe.close()
    for name, samples in (("read_heartbeat, redis-py client", ours),
                          ("read_heartbeat, probe client", probe_t)):
        ratio = _median_us(samples) / _median_us(bare)
        row(f"{name} (median µs)", f"{_median_us(samples):.0f}", f"{_median_us(bare):.0f} (GET)",
            ratio, "<= 1.5x", ratio <= 1.5)


def bench_fleet_read(server: RedisProcess, client: redis.Redis, services: int) -> None:
    store = HeartbeatStore(client, Keys(), retention_s=3600, history_len=10)
    for i in range(services):
        store.publish(f"svc-{i}", _body(f"svc-{i}"))
    probe = ProbeClient(server.url, timeout_s=30)
    ours, naive = [], []
    for _ in range(5):
        t = time.perf_counter()
        read_fleet(probe, Keys())
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        _naive_scan_get(client)
        naive.append(time.perf_counter() - t)
    probe.close()
    speedup = statistics.median(naive) / statistics.median(ours)
    row(f"status --all read, {services:,} services (median s)", f"{statistics.median(ours):.3f}",
        f"{statistics.median(naive):.3f} (SCAN + GET)", speedup, ">= 10x faster",
        speedup >= 10)


def bench_store_cost(client: redis.Redis) -> dict[str, float]:
    store = HeartbeatStore(client, Keys(), retention_s=3600, history_len=DEFAULT_HISTORY_LEN)
    for _ in range(3 * DEFAULT_HISTORY_LEN):
        store.publish("cost", _body("cost"))
    latest = float(client.memory_usage(Keys().latest("cost")) or 0)
    history = float(client.memory_usage(Keys().history("cost"), samples=0) or 0)
    large = HeartbeatStore(client, Keys(), retention_s=3600, history_len=1000)
    for _ in range(1200):
        large.publish("cost-1000", _body("cost-1000"))
    history_1000 = float(client.memory_usage(Keys().history("cost-1000"), samples=0) or 0)
    before = float(client.memory_usage(Keys().index, samples=0) or 0)
    count = client.zcard(Keys().index)
    client.zadd(Keys().index, {f"extra-{i}": i for i in range(1000)})
    after = float(client.memory_usage(Keys().index, samples=0) or 0)
    index_entry = (after - before) / 1000
    client.zrem(Keys().index, *[f"extra-{i}" for i in range(1000)])
    per_service = latest + history + index_entry
    fleet_gib = per_service * 10_000 / 2**30
    row(f"store bytes per service (latest + history {DEFAULT_HISTORY_LEN} + index)",
        f"{per_service:,.0f}", "-", None, "-", None)
    row("10,000-service fleet at the default cap (GiB)", f"{fleet_gib:.2f}", "-", None,
        "< 1 GiB", fleet_gib < 1)
    del count
    return {"latest": latest, "history_default": history, "history_1000": history_1000,
            "index_entry": index_entry}


def bench_end_to_end(server: RedisProcess, seconds: int) -> list[float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEARTBEAT_", "CELERY_"))}
    env.update(CELERY_BROKER_URL=server.url, HEARTBEAT_INTERVAL_S="0.5",
               HEARTBEAT_SERVICE="e2e")
    workdir = Path(tempfile.mkdtemp(prefix="petsage-e2e-"))
    base = [sys.executable, "-m", "celery", "-A", "worker"]
    procs = [subprocess.Popen([*base, "beat"], env=env, cwd=workdir, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True),
             subprocess.Popen([*base, "worker", "-Q", "heartbeat.petsage", "--without-mingle",
                               "--without-gossip"], env=env, cwd=workdir,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)]
    client = redis.Redis(port=server.port)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(Keys().events)
    fractions: list[float] = []
    try:
        deadline = time.monotonic() + 60
        while not fractions:  # wait for the first heartbeat, not counted (start-up)
            message = pubsub.get_message(timeout=1)
            if message and json.loads(message["data"]).get("service") == "e2e":
                fractions.append(-1.0)
            if time.monotonic() > deadline:
                raise BenchError("no end-to-end heartbeat within 60 s")
        fractions.clear()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            message = pubsub.get_message(timeout=1)
            if not message:
                continue
            payload = json.loads(message["data"])
            if payload.get("service") != "e2e" or payload.get("published_at") is None:
                continue
            from datetime import datetime

            published = datetime.fromisoformat(payload["published_at"]).timestamp() * 1000
            fractions.append((payload["ts_ms"] - published) / 500)
    finally:
        pubsub.close()
        for proc in procs:
            os.killpg(proc.pid, 9)
            proc.wait(10)
    if len(fractions) < seconds:
        raise BenchError(f"only {len(fractions)} heartbeats in {seconds} s at 0.5 s")
    fractions.sort()
    p50 = fractions[len(fractions) // 2]
    p99 = fractions[min(len(fractions) - 1, int(len(fractions) * 0.99))]
    row(f"publish-to-visible lag, real beat + worker, {len(fractions)} heartbeats "
        "(fraction of the 0.5 s interval, p50 / p99 / max)",
        f"{p50:.3f} / {p99:.3f} / {fractions[-1]:.3f}", "-", None, "-", None)
    return fractions


def bench_fleet_load(server: RedisProcess, services: int, seconds: int) -> None:
    client = redis.Redis(port=server.port)
    store = HeartbeatStore(client, Keys("load"), retention_s=3600, history_len=100)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEARTBEAT_", "CELERY_"))}
    env.update(HEARTBEAT_REDIS_URL=server.url, HEARTBEAT_KEY_PREFIX="load")
    port = free_port()
    exe = BIN / "petsage-heartbeat"
    serve = subprocess.Popen([*([str(exe)] if exe.exists() else [sys.executable, "-m", "worker"]),
                              "serve", "--port", str(port)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    errors = 0
    status_s: list[float] = []
    scrape_s: list[float] = []
    stop = threading.Event()

    def readers() -> None:
        nonlocal errors
        probe = ProbeClient(server.url, timeout_s=5)
        while not stop.is_set():
            tick = time.monotonic()
            try:
                t = time.perf_counter()
                result = read_fleet(probe, Keys("load"))
                status_s.append(time.perf_counter() - t)
                if result.store_problem is not None:
                    errors += 1
                t = time.perf_counter()
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                            timeout=5) as response:
                    response.read()
                scrape_s.append(time.perf_counter() - t)
            except Exception:
                errors += 1
            stop.wait(max(1.0 - (time.monotonic() - tick), 0))
        probe.close()

    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise BenchError("serve did not start") from None
                time.sleep(0.2)
        bodies = {f"svc-{i}": _body(f"svc-{i}") for i in range(services)}
        for name, body in bodies.items():
            store.publish(name, body)
        cpu0 = client.info("cpu")
        ops0 = client.info("stats")["total_commands_processed"]
        thread = threading.Thread(target=readers, daemon=True)
        started = time.monotonic()
        thread.start()
        late_rounds = 0
        for second in range(seconds):
            for name, body in bodies.items():
                try:
                    store.publish(name, body)
                except redis.RedisError:
                    errors += 1
            wait = started + second + 1 - time.monotonic()
            if wait < 0:
                late_rounds += 1
            time.sleep(max(wait, 0))
        elapsed = time.monotonic() - started
        stop.set()
        thread.join(10)
        cpu1 = client.info("cpu")
        ops1 = client.info("stats")["total_commands_processed"]
    finally:
        serve.kill()
        serve.wait(10)
    cpu = sum(cpu1[k] - cpu0[k] for k in ("used_cpu_sys", "used_cpu_user")) / elapsed
    ops = (ops1 - ops0) / elapsed

    def pct(samples: list[float], q: float) -> float:
        ordered = sorted(samples)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000

    row(f"fleet load: {services:,} services every second for {seconds} s, Redis CPU",
        f"{cpu:.3f} CPU-s/s", "-", None, "-", None)
    row("fleet load: Redis ops per second", f"{ops:,.0f}", "-", None, "-", None)
    row("fleet load: status --all read latency p50 / p99 (ms)",
        f"{pct(status_s, 0.5):.1f} / {pct(status_s, 0.99):.1f}", "-", None, "-", None)
    row("fleet load: /metrics scrape latency p50 / p99 (ms)",
        f"{pct(scrape_s, 0.5):.1f} / {pct(scrape_s, 0.99):.1f}", "-", None, "-", None)
    row("fleet load: errors (and publish rounds that overran their second)",
        f"{errors} ({late_rounds})", "-", None, "0", errors == 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples, shorter runs")
    parser.add_argument("--soak-seconds", type=int, default=0,
                        help="also run the soak for this long (600 for the README figure)")
    args = parser.parse_args()
    quick = args.quick
    server = RedisProcess()
    try:
        client = redis.Redis(port=server.port)
        bench_publish(client, 1000 if quick else 5000)
        bench_read(server, client, 1000 if quick else 5000)
        bench_fleet_read(server, client, 1000 if quick else 10_000)
        cost = bench_store_cost(client)
        bench_end_to_end(server, 10 if quick else 60)
        bench_fleet_load(server, 1000, 5 if quick else 20)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        server.close()
    print(f"### All benchmarks ({machine()}, redis-server on loopback)\n")
    print(table(["benchmark", "ours", "baseline", "ratio", "target", "verdict"], ROWS))
    print("\n### Store cost per service (MEMORY USAGE, bytes)\n")
    print(table(["latest payload", f"history, cap {DEFAULT_HISTORY_LEN} (default)",
                 "history, cap 1000", "index entry"],
                [(f"{cost['latest']:,.0f}", f"{cost['history_default']:,.0f}",
                  f"{cost['history_1000']:,.0f}", f"{cost['index_entry']:,.0f}")]))
    others = [["bench.probe_bench", "--runs", "5" if quick else "10",
               "--services", "1000" if quick else "10000"],
              ["bench.memory_bench", "--heartbeats", "2000" if quick else "10000"],
              ["bench.fleet_bench", "--sizes", "1000,10000" if quick else "1000,10000,100000",
               "--runs", "3" if quick else "7"],
              ["bench.monitor_bench", "--runs", "3" if quick else "7"],
              ["bench.entries_bench", "--rounds", "3" if quick else "8"]]
    if args.soak_seconds:
        others.append(["bench.soak", "--seconds", str(args.soak_seconds)])
    for module in others:  # each starts its own redis-server (and celery where it needs it)
        print(flush=True)
        done = subprocess.run([sys.executable, "-m", *module], check=False)
        if done.returncode != 0:
            print(f"benchmark failed: {module[0]} exited {done.returncode}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
