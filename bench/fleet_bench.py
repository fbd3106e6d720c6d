"""Fleet reads against their floor, side by side in one run, and the fleet goals table.

    python -m bench.fleet_bench [--sizes 1000,10000,100000] [--runs 7] [--not-fresh 0.01]
                                [--metrics-size 10000] [--publish-calls 10000]

For each fleet size, against a redis-server of its own filled by ``bench.fill`` (the real
write path: latest payloads, history, index and compact summaries; ``--not-fresh`` of the
services stale, the rest fresh): ``status --all --json`` beside the compact-summary floor
(``bench/summary_baseline.py``: TIME + HSCAN of every shard + ages, nothing else) and the
full-read floor (``bench/fleet_baseline.py``: ZRANGE + MGET of every payload). Each
command runs as a process, interleaved, ``--runs`` times: medians of wall, CPU, peak RSS
and the Redis server's CPU per read (``INFO``'s ``used_cpu_sys + used_cpu_user`` before
and after). In one more run of each, ``SLOWLOG`` (slower than 0) records every command
(the slowest single one) while another client PINGs every millisecond (its slowest answer
is the stall a read causes everyone else, the broker's clients included); that run's
output is checked: every service listed, exactly the not-fresh ones not fresh.

Then ``serve``'s ``/metrics`` at ``--metrics-size`` services, interleaved with
``status --all --json`` on the same store; and the publish script's Redis time per call
against a ``SET`` of the same payload (``INFO commandstats``, same server, same run).

Prints the details, then the goals table (measure | ours | baseline | ratio | goal | met?)
with the load average beside it. A missed goal is printed, not failed; the command exits
non-zero only if a benchmark could not run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import redis

from bench.common import BenchError, ProcessCost, RedisProcess, free_port, machine, run_measured
from bench.common import medians as median_cost
from bench.common import table as markdown
from bench.fill import fill, not_fresh_indices, service_name, template
from worker.core.names import Keys
from worker.core.settings import DEFAULT_HISTORY_LEN, DEFAULT_RETENTION_S
from worker.publish.store import HeartbeatStore

GOAL_SIZE = 100_000
"""The fleet size the goals are set at (the largest size run stands in when it is not run)."""

OURS = "status --all --json"
SUMMARY = "summary baseline"
FULL = "full-read baseline"


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages, as /proc/loadavg has them."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


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
        self._client.close()


IGNORED = (b"PING", b"SLOWLOG", b"CONFIG", b"INFO")
"""Commands of the measurement itself, left out of the slowest command."""


def slowest_command(client: redis.Redis, run: Callable[[], object]) -> tuple[float, str]:
    """The longest single command (ms) of what ``run`` sends, from SLOWLOG."""
    client.config_set("slowlog-log-slower-than", 0)
    client.config_set("slowlog-max-len", 1_000_000)
    client.slowlog_reset()
    try:
        run()
        entries = client.slowlog_get(1_000_000)
    finally:
        client.config_set("slowlog-log-slower-than", 10_000)
    ours = [e for e in entries if e["command"].split()[0].upper() not in IGNORED]
    if not ours:
        return 0.0, "-"
    worst = max(ours, key=lambda e: e["duration"])
    return worst["duration"] / 1000, worst["command"].split()[0].decode()


def redis_cpu_s(client: redis.Redis) -> float:
    """The server's CPU so far: ``used_cpu_sys + used_cpu_user``."""
    cpu = client.info("cpu")
    return float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])


@dataclass(frozen=True)
class Read:
    """One command's medians at one size, and its one watched run."""

    cost: ProcessCost
    redis_cpu_s: float
    slowest_ms: float
    slowest_command: str
    ping_ms: float


def commands(port: int) -> dict[str, list[str]]:
    return {
        OURS: [sys.executable, "-m", "worker", "status", "--all", "--json", "--timeout", "60",
               "--redis", f"redis://127.0.0.1:{port}/0"],
        SUMMARY: [sys.executable, "-m", "bench.summary_baseline", str(port)],
        FULL: [sys.executable, "-m", "bench.fleet_baseline", str(port)],
    }


def check_output(name: str, stdout: bytes, size: int, stale: int) -> None:
    """A read that lists every service, exactly ``stale`` of them not fresh."""
    try:
        listed = orjson.loads(stdout)
    except orjson.JSONDecodeError as exc:
        raise BenchError(f"{name} printed no JSON list at {size:,} services: {exc}") from None
    names = {row["service"] for row in listed}
    not_fresh = sum(row["state"] != "fresh" for row in listed)
    if len(listed) != size or len(names) != size or not_fresh != stale:
        raise BenchError(f"{name} listed {len(listed):,} services ({len(names):,} names), "
                         f"{not_fresh:,} not fresh, where {size:,} were filled, {stale:,} "
                         "not fresh")


def measure_size(size: int, runs: int, not_fresh: float) -> dict[str, Read]:
    """Every command at ``size`` services, against a redis-server of its own."""
    server = RedisProcess()
    try:
        client = redis.Redis(port=server.port)
        fill(server.url, size, not_fresh=not_fresh)
        stale = len(not_fresh_indices(size, not_fresh))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HEARTBEAT_", "CELERY_"))}
        argv_by_name = commands(server.port)
        costs: dict[str, list[ProcessCost]] = {name: [] for name in argv_by_name}
        cpu: dict[str, list[float]] = {name: [] for name in argv_by_name}
        for _ in range(runs):  # interleaved: a busy moment slows every side alike
            for name, argv in argv_by_name.items():
                before = redis_cpu_s(client)
                cost = run_measured(argv, env)
                cpu[name].append(redis_cpu_s(client) - before)
                if cost.exit_code not in (0, 1, 2):  # status: the worst service's code
                    raise BenchError(f"{name} exited {cost.exit_code} at {size:,} services")
                costs[name].append(cost)
        reads = {}
        for name, argv in argv_by_name.items():
            done: list[subprocess.CompletedProcess[bytes]] = []
            with Watch(server.port) as watch:
                slow_ms, command = slowest_command(client, lambda a=argv, d=done: d.append(
                    subprocess.run(a, env=env, check=False, capture_output=True, timeout=600)))
            check_output(name, done[0].stdout, size, stale)
            reads[name] = Read(median_cost(costs[name]), statistics.median(cpu[name]), slow_ms,
                               command, watch.slowest_ms)
        return reads
    finally:
        server.close()


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=120) as response:
        return len(response.read())


def metrics_against_status(services: int, runs: int, not_fresh: float
                           ) -> tuple[float, float, int]:
    """``/metrics`` of ``serve`` and ``status --all --json`` at ``services``, interleaved:
    median scrape seconds, median status seconds (a whole process), bytes scraped."""
    server = RedisProcess()
    port = free_port()
    proc = None
    try:
        fill(server.url, services, not_fresh=not_fresh)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HEARTBEAT_", "CELERY_"))}
        env["HEARTBEAT_REDIS_URL"] = server.url
        proc = subprocess.Popen([sys.executable, "-m", "worker", "serve", "--port", str(port)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}/metrics"
        deadline = time.monotonic() + 60
        while True:
            try:
                _get(url)  # the first scrape: imports and warm-up, not counted
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise BenchError("serve did not answer /metrics within 60 s") from None
                time.sleep(0.1)
        status = commands(server.port)[OURS]
        scrapes: list[float] = []
        reads: list[float] = []
        size = 0
        last = time.monotonic()
        for _ in range(runs):
            time.sleep(max(1.1 - (time.monotonic() - last), 0))  # past serve's 1 s cache
            started = time.perf_counter()
            size = _get(url)
            scrapes.append(time.perf_counter() - started)
            last = time.monotonic()
            cost = run_measured(status, env)
            if cost.exit_code not in (0, 1, 2):
                raise BenchError(f"status --all --json exited {cost.exit_code}")
            reads.append(cost.wall_s)
        return statistics.median(scrapes), statistics.median(reads), size
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        server.close()


def publish_against_set(calls: int) -> tuple[float, float]:
    """The publish script's and a SET's Redis time per call (µs, ``INFO commandstats``):
    heartbeats of 1,000 services at the worker's default history cap and retention, and SETs
    of the same payload, in alternating blocks on one server."""
    server = RedisProcess()
    try:
        client = redis.Redis(port=server.port)
        store = HeartbeatStore(client, Keys(), retention_s=DEFAULT_RETENTION_S,
                               history_len=DEFAULT_HISTORY_LEN)
        base = template()
        count = min(calls, 1000)
        names = [service_name(i) for i in range(count)]
        batch = [(name, {**base, "service": name, "interval_s": 10.0, "stale_after_s": 30.0})
                 for name in names]
        store.publish_many(batch)  # loads the script; every key exists from here on
        payload = client.get(Keys().latest(names[0])) or b""
        totals = {"evalsha": [0, 0.0], "set": [0, 0.0]}
        for _ in range(max(calls // count, 1)):
            client.config_resetstat()
            store.publish_many(batch)
            stat: dict[str, Any] = client.info("commandstats").get("cmdstat_evalsha", {})
            totals["evalsha"][0] += int(stat.get("calls", 0))
            totals["evalsha"][1] += float(stat.get("usec", 0))
            client.config_resetstat()
            pipe = client.pipeline(transaction=False)
            for name in names:
                pipe.set(f"bench:set:{name}", payload)
            pipe.execute()
            stat = client.info("commandstats").get("cmdstat_set", {})
            totals["set"][0] += int(stat.get("calls", 0))
            totals["set"][1] += float(stat.get("usec", 0))
        (script_calls, script_us), (set_calls, set_us) = totals["evalsha"], totals["set"]
        if not script_calls or not set_calls:
            raise BenchError("INFO commandstats counted no EVALSHA or no SET")
        return float(script_us) / int(script_calls), float(set_us) / int(set_calls)
    finally:
        server.close()


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def goals(reads: dict[str, Read], size: int, metrics: tuple[float, float, int],
          metrics_size: int, publish: tuple[float, float]) -> list[list[object]]:
    ours, base = reads[OURS], reads[SUMMARY]
    scrape_s, status_s, _ = metrics
    script_us, set_us = publish
    at = f"{size:,} services"
    wall = ours.cost.wall_s / base.cost.wall_s
    rss = ours.cost.rss_mib / base.cost.rss_mib
    return [
        [f"status --all --json wall, {at} (s)", f"{ours.cost.wall_s:.3f}",
         f"{base.cost.wall_s:.3f}", f"{wall:.2f}x", "<= 1.2x", _verdict(wall <= 1.2)],
        [f"Redis CPU per fleet read, {at} (s)", f"{ours.redis_cpu_s:.4f}",
         f"{base.redis_cpu_s:.4f}", f"{ours.redis_cpu_s / max(base.redis_cpu_s, 1e-6):.2f}x",
         "<= 0.1 s", _verdict(ours.redis_cpu_s <= 0.1)],
        [f"slowest Redis command during status --all, {at} (ms)",
         f"{ours.slowest_ms:.2f} ({ours.slowest_command})",
         f"{base.slowest_ms:.2f} ({base.slowest_command})", "-", "<= 2 ms",
         _verdict(ours.slowest_ms <= 2)],
        [f"another client's worst PING during status --all, {at} (ms)", f"{ours.ping_ms:.1f}",
         f"{base.ping_ms:.1f}", "-", "<= 5 ms", _verdict(ours.ping_ms <= 5)],
        [f"peak RSS of status --all, {at} (MiB)", f"{ours.cost.rss_mib:.0f}",
         f"{base.cost.rss_mib:.0f}", f"{rss:.2f}x", "<= 1.5x", _verdict(rss <= 1.5)],
        [f"/metrics scrape vs status --all --json, {metrics_size:,} services (s)",
         f"{scrape_s:.3f}", f"{status_s:.3f}", f"{scrape_s / status_s:.2f}x", "<= 2x",
         _verdict(scrape_s <= 2 * status_s)],
        ["publish script vs SET of the same payload, Redis time per call (µs)",
         f"{script_us:.1f}", f"{set_us:.1f}", f"{script_us / set_us:.2f}x", "<= 10x",
         _verdict(script_us <= 10 * set_us)],
    ]


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of sizes: {text}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"every size must be at least 1: {text}")
    return sizes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=_sizes, default=[1000, 10_000, 100_000],
                        help="fleet sizes, comma-separated (default 1000,10000,100000)")
    parser.add_argument("--runs", type=int, default=7, help="runs of each command (default 7)")
    parser.add_argument("--not-fresh", type=float, default=0.01, metavar="FRACTION",
                        help="fraction of the fleet filled stale (default 0.01)")
    parser.add_argument("--metrics-size", type=int, default=10_000,
                        help="services of the /metrics comparison (default 10000)")
    parser.add_argument("--publish-calls", type=int, default=10_000,
                        help="heartbeats (and SETs) of the publish comparison (default 10000)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.metrics_size < 1 or args.publish_calls < 1:
        parser.error("--runs, --metrics-size and --publish-calls must be at least 1")
    if not 0 <= args.not_fresh <= 1:
        parser.error("--not-fresh must be a fraction from 0 to 1")
    load_before = loadavg()
    rows: list[list[object]] = []
    measured: dict[int, dict[str, Read]] = {}
    try:
        for size in args.sizes:
            measured[size] = reads = measure_size(size, args.runs, args.not_fresh)
            base = reads[SUMMARY]
            for name, read in reads.items():
                rows.append([f"{size:,}", name, f"{read.cost.wall_s:.3f}",
                             f"{read.cost.cpu_s:.3f}", f"{read.cost.rss_mib:.0f}",
                             f"{read.redis_cpu_s * 1000:.1f}",
                             f"{read.cost.wall_s / base.cost.wall_s:.2f}x",
                             f"{read.cost.rss_mib / base.cost.rss_mib:.2f}x",
                             f"{read.slowest_ms:.2f} ({read.slowest_command})",
                             f"{read.ping_ms:.1f}"])
        metrics = metrics_against_status(args.metrics_size, max(args.runs, 3), args.not_fresh)
        publish = publish_against_set(args.publish_calls)
    except BenchError as exc:
        print(f"benchmark could not run: {exc}", file=sys.stderr)
        return 1
    goal_size = GOAL_SIZE if GOAL_SIZE in measured else max(measured)
    print(f"### Fleet reads ({machine()}; {args.not_fresh:.0%} of each fleet stale; medians of "
          f"{args.runs} process runs, interleaved)\n")
    print(markdown(["services", "command", "wall s", "CPU s", "peak RSS MiB",
                    "Redis CPU ms per read", "wall vs summary baseline",
                    "RSS vs summary baseline", "slowest command ms",
                    "slowest PING of another client ms"], rows))
    print(f"\n/metrics at {args.metrics_size:,} services: median scrape {metrics[0]:.3f} s "
          f"({metrics[2] / 1e6:.1f} MB), status --all --json beside it {metrics[1]:.3f} s\n")
    print(f"### Fleet goals (at {goal_size:,} services; load average {load_before} before, "
          f"{loadavg()} after)\n")
    print(markdown(["measure", "ours", "baseline", "ratio", "goal", "met?"],
                   goals(measured[goal_size], goal_size, metrics, args.metrics_size, publish)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
