"""Every benchmark in one run, against a real redis-server it starts; markdown tables.

    python -m bench.run_all [--quick | --tiny] [--soak-seconds 0]

Medians and ratios are measured side by side in this run (interleaved where it matters),
so a loaded machine slows both sides alike. Nothing here is a test: a missed target is
reported, not failed; a benchmark that cannot run exits non-zero.

Every module of ``bench/`` is accounted for: run (``MODULES``, each as a process of its
own, whose output must hold a markdown table), run by another (``RUN_BY``), or not a
benchmark (``NOT_RUN``, printed with the reason); a module in none of them fails the run.
``--tiny`` runs every benchmark once at a tiny size (100 services, 3 repetitions, seconds
where the full run takes minutes), the soak included: what CI runs, so that no benchmark
rots. Every process a benchmark starts is stopped when it ends, on SIGTERM and on
Ctrl-C too: this process is their subreaper, and kills whatever is left.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import redis

from bench.common import BIN, BenchError, RedisProcess, free_port, fresh_body, machine, table
from bench.fill import not_fresh_indices
from bench.probe_bench import _naive_scan_get
from worker.core.names import Keys, default_queue
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
    body = fresh_body("bench-publish")
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


def bench_fleet_read(server: RedisProcess, client: redis.Redis, services: int,
                     runs: int = 5) -> None:
    store = HeartbeatStore(client, Keys(), retention_s=3600, history_len=10)
    for i in range(services):
        store.publish(f"svc-{i}", fresh_body(f"svc-{i}"))
    probe = ProbeClient(server.url, timeout_s=30)
    ours, naive = [], []
    for _ in range(runs):
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
        store.publish("cost", fresh_body("cost"))
    latest = float(client.memory_usage(Keys().latest("cost")) or 0)
    history = float(client.memory_usage(Keys().history("cost"), samples=0) or 0)
    large = HeartbeatStore(client, Keys(), retention_s=3600, history_len=1000)
    for _ in range(1200):
        large.publish("cost-1000", fresh_body("cost-1000"))
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
             subprocess.Popen([*base, "worker", "-Q", default_queue("e2e"), "--without-mingle",
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
        shutil.rmtree(workdir, ignore_errors=True)
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
        bodies = {f"svc-{i}": fresh_body(f"svc-{i}") for i in range(services)}
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


@dataclass(frozen=True)
class Sizes:
    """How much each in-process benchmark of one mode does."""

    calls: int  #: publishes and reads timed, in interleaved blocks of 100
    fleet: int  #: services of the fleet read
    fleet_runs: int
    e2e_s: int  #: seconds of real beat and worker
    load: tuple[int, int]  #: services and seconds of the fleet load
    fill: int  #: services bench.fill writes


SIZES = {
    "full": Sizes(5000, 10_000, 5, 60, (1000, 20), 100_000),
    "quick": Sizes(1000, 1000, 5, 10, (1000, 5), 10_000),
    "tiny": Sizes(300, 100, 3, 2, (100, 2), 100),
}

MODULES: dict[str, dict[str, list[str]]] = {
    "probe_bench": {"full": [], "quick": ["--runs", "5", "--services", "1000"],
                    "tiny": ["--runs", "3", "--services", "100"]},
    "check_cost": {"full": [], "quick": ["--runs", "3"], "tiny": ["--runs", "3"]},
    "memory_bench": {"full": ["--heartbeats", "10000"], "quick": ["--heartbeats", "2000"],
                     "tiny": ["--heartbeats", "200"]},
    "fleet_bench": {"full": ["--sizes", "1000,10000,100000", "--runs", "7"],
                    "quick": ["--sizes", "1000,10000", "--runs", "3"],
                    "tiny": ["--sizes", "100", "--runs", "3", "--metrics-size", "100",
                             "--publish-calls", "1000"]},
    "monitor_bench": {"full": ["--runs", "7"], "quick": ["--runs", "3"],
                      "tiny": ["--sizes", "100", "--runs", "3"]},
    "entries_bench": {"full": ["--rounds", "8"], "quick": ["--rounds", "3"],
                      "tiny": ["--entries", "100", "--rounds", "3"]},
    # Its own default run goes to 1,000,000 services (minutes of filling a cluster).
    "cluster_scale": {"full": ["--sizes", "10000,100000"], "quick": ["--sizes", "10000"],
                      "tiny": ["--sizes", "100", "--runs", "3"]},
    "soak": {"tiny": ["--seconds", "3"]},  # full and quick: with --soak-seconds only
}
"""The benchmarks run as processes of their own, with their flags in each mode (a module
listed here whose file is gone is left out: ``check_cost`` came later)."""

IN_PROCESS = ("fill",)
"""Run by this process, its figures rows of the first table (``bench.fill`` as a process:
its line, then the fleet it filled read back)."""

RUN_BY = {"fleet_baseline": "fleet_bench", "summary_baseline": "fleet_bench"}
"""Floors that another benchmark runs, side by side with what they are the floor of."""

NOT_RUN = {
    "mutation": "mutation testing, not a benchmark: it runs the test suite inside itself "
                "(python -m bench.mutation)",
    "lua_mutations": "hand-made Lua mutations, not a benchmark: it runs parts of the test "
                     "suite inside itself (python -m bench.lua_mutations)",
}
"""Modules of bench/ that are no benchmark, with why."""

PLUMBING = ("__init__", "common", "run_all")

TABLE = re.compile(r"^\|.*\|\n\|(---\|)+$", re.MULTILINE)
"""A markdown table's header and rule: what every benchmark prints."""

BENCH = Path(__file__).resolve().parent


def bench_modules() -> list[str]:
    """Every module of bench/ but its plumbing."""
    return sorted(p.stem for p in BENCH.glob("*.py") if p.stem not in PLUMBING)


def unaccounted() -> list[str]:
    """Modules of bench/ that this file neither runs nor says why not."""
    known = set(MODULES) | set(IN_PROCESS) | set(RUN_BY) | set(NOT_RUN)
    return [name for name in bench_modules() if name not in known]


def bench_fill(server: RedisProcess, services: int) -> None:
    """``python -m bench.fill`` against this run's server, then its fleet read back."""
    prefix = "fill"
    argv = [sys.executable, "-m", "bench.fill", "--services", str(services), "--redis",
            server.url, "--prefix", prefix, "--not-fresh", "0.1"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=3600)
    if done.returncode != 0:
        raise BenchError(f"bench.fill exited {done.returncode}: {done.stderr.strip()[-300:]}")
    match = re.search(r"in ([\d.]+) s: ([\d,]+) services/s", done.stdout)
    if match is None:
        raise BenchError(f"bench.fill printed no rate: {done.stdout.strip()[-300:]}")
    probe = ProbeClient(server.url, timeout_s=60)
    try:
        fleet = read_fleet(probe, Keys(prefix))
    finally:
        probe.close()
    stale = sum(r.state.value == "stale" for r in fleet.reports)
    fresh = sum(r.state.value == "fresh" for r in fleet.reports)
    want_stale = len(not_fresh_indices(services, 0.1))
    row(f"bench.fill: {services:,} services through publish_many (services/s)",
        match.group(2), "-", None, "-", None)
    row("bench.fill: its fleet read back (fresh / stale)", f"{fresh:,} / {stale:,}",
        f"{services - want_stale:,} / {want_stale:,} filled", None, "the same",
        fresh == services - want_stale and stale == want_stale)


def run_module(module: str, args: list[str]) -> None:
    """``python -m bench.MODULE ARGS`` in a process group of its own; its output shown; a
    BenchError if it fails or prints no table. Stopped, with its group, on any exit."""
    print(f"\n## bench.{module} {' '.join(args)}\n", flush=True)
    proc = subprocess.Popen([sys.executable, "-m", f"bench.{module}", *args],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate()
    finally:
        _stop_group(proc)
    print(out, end="", flush=True)
    if proc.returncode != 0:
        raise BenchError(f"bench.{module} exited {proc.returncode}")
    if not TABLE.search(out):
        raise BenchError(f"bench.{module} printed no table")


def _stop_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM the process group, a grace, then SIGKILL it (whatever is left in it)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait(10)


PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Linux: the processes our children leave behind (a celery worker in a session of its
    own, whose parent died) become our children, not init's, so ``stop_left`` finds them."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _descendants(root: int) -> list[tuple[int, int, str]]:
    """(pid, parent pid, state) of every process below ``root``, from /proc."""
    parents: dict[int, list[tuple[int, int, str]]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        parents.setdefault(int(fields[1]), []).append((int(entry), int(fields[1]), fields[0]))
    found, todo = [], [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return found


def stop_left() -> list[str]:
    """SIGKILL every process still running below this one; their command lines."""
    me = os.getpid()
    left = []
    for pid, _, state in _descendants(me):
        if state != "Z":
            try:
                left.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                            .decode(errors="replace").strip())
            except OSError:
                left.append(str(pid))
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pending = [(pid, ppid) for pid, ppid, _ in _descendants(me)]
        if not pending:
            break
        for pid, ppid in pending:
            if ppid == me:  # an orphan handed to us, or a child of ours: reap it
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    return left


def _terminated(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # the finally blocks stop what was started


def run(mode: str, soak_seconds: int) -> int:
    missing = unaccounted()
    if missing:
        print("benchmark failed: bench/ modules neither run nor listed as not run in "
              f"bench/run_all.py: {', '.join(missing)}", file=sys.stderr)
        return 1
    sizes = SIZES[mode]
    present = set(bench_modules())
    server = RedisProcess()
    try:
        client = redis.Redis(port=server.port)
        bench_publish(client, sizes.calls)
        bench_read(server, client, sizes.calls)
        bench_fleet_read(server, client, sizes.fleet, sizes.fleet_runs)
        cost = bench_store_cost(client)
        bench_end_to_end(server, sizes.e2e_s)
        bench_fleet_load(server, *sizes.load)
        bench_fill(server, sizes.fill)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        server.close()
    print(f"### All benchmarks ({machine()}, redis-server on loopback, {mode} run; load "
          f"average {' / '.join(f'{x:.2f}' for x in os.getloadavg())})\n")
    print(table(["benchmark", "ours", "baseline", "ratio", "target", "verdict"], ROWS))
    print("\n### Store cost per service (MEMORY USAGE, bytes)\n")
    print(table(["latest payload", f"history, cap {DEFAULT_HISTORY_LEN} (default)",
                 "history, cap 1000", "index entry"],
                [(f"{cost['latest']:,.0f}", f"{cost['history_default']:,.0f}",
                  f"{cost['history_1000']:,.0f}", f"{cost['index_entry']:,.0f}")]))
    for name, runner in RUN_BY.items():
        if name in present:
            print(f"\nbench.{name}: run by bench.{runner}, beside what it is the floor of")
    for name, why in NOT_RUN.items():
        if name in present:
            print(f"\nbench.{name}: not run: {why}")
    for module, flags in MODULES.items():  # each starts its own redis-server (and celery)
        if module not in present:
            continue
        if module == "soak" and mode != "tiny":
            if not soak_seconds:
                print("\nbench.soak: not run (--soak-seconds 600 runs it)")
                continue
            args = ["--seconds", str(soak_seconds)]
        else:
            args = flags[mode]
        try:
            run_module(module, args)
        except BenchError as exc:
            print(f"benchmark failed: {exc}", file=sys.stderr)
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer samples, shorter runs")
    size.add_argument("--tiny", action="store_true",
                      help="every benchmark once at a tiny size, the soak included (CI)")
    parser.add_argument("--soak-seconds", type=int, default=0,
                        help="also run the soak for this long (600 for the README figure)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminated)
    become_subreaper()
    code = 1
    try:
        code = run("tiny" if args.tiny else "quick" if args.quick else "full", args.soak_seconds)
    finally:
        # Interrupted, a benchmark stopped mid-way leaves its servers: expected, and stopped
        # here. After a run that ended, anything left is a benchmark's leak: a failure.
        left = stop_left()
        if left:
            print(f"{'stopped' if code == 1 else 'benchmark failed:'} {len(left)} processes "
                  "left running, now killed: " + "; ".join(cmd[:120] for cmd in left),
                  file=sys.stderr)
            code = 1
    return code


if __name__ == "__main__":
    raise SystemExit(main())
