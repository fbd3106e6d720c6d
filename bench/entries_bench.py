"""Cost of watching every beat entry: worker, Redis, beat and the reader, each side by side.

Runs in one process against a throwaway redis-server (and one real ``celery worker -P solo``),
each figure beside its baseline measured in the same run, interleaved:

1. worker CPU per task, watched (the ``petsage_entry`` header: a check-in at start and at
   the end) against not watched, for an empty task: in process through Celery's own tracer
   (``build_tracer``, with the signals ``install_heartbeat`` connects), and in a real
   ``celery worker -P solo`` consuming from the Redis broker (CPU from ``/proc/PID/stat``);
2. Redis CPU per task (``used_cpu_sys + used_cpu_user``) for the same two real-worker runs,
   and the server time of each check-in script (``INFO commandstats``);
3. beat: ``scheduler.tick()`` of a Celery ``Scheduler`` with N entries at 1 s publishing to
   the Redis broker, with and without the ``EntryWatch`` attached, per dispatch and per sync;
4. ``read_entries`` at N entries against a plain TIME + HGETALL + ``json.loads`` of each
   value, and ``status --entries`` as a whole command against ``redis-cli HGETALL`` when the
   CLI has that flag.

    python -m bench.entries_bench [--entries 1000] [--rounds 8] [--no-worker-process]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from celery.app.trace import build_tracer
from celery.beat import Scheduler
from celery.signals import before_task_publish

from bench.common import BIN, BenchError, RedisProcess, machine, run_measured, table
from worker.core.entries import ENTRY_HEADER
from worker.core.redis_clients import make_client
from worker.core.settings import Settings
from worker.publish.beat_marker import MARKER_TIMEOUT_S
from worker.publish.entry_beat import EntryWatch, selector
from worker.publish.entry_store import EntrySpec, EntryStore
from worker.publish.install import ENTRY_SYNC_MAX_S, install_heartbeat
from worker.publish.queue_bound import QueueBound

REPO = Path(__file__).resolve().parents[1]
TASK = "bench.noop"
DONE = "bench.done"
QUEUE = "bench"
BEAT_QUEUE = "bench-beat"
DONE_KEY = "bench:done"

APP_SOURCE = f'''"""The benchmark's worker app: an empty task, and one that says a batch is done."""
import os

import redis
from celery import Celery

from worker.publish.install import install_heartbeat

app = Celery("entries_bench_app", broker=os.environ["CELERY_BROKER_URL"])
app.conf.update(task_ignore_result=True, task_serializer="json", accept_content=["json"])


@app.task(name={TASK!r})
def noop():
    pass


@app.task(name={DONE!r})
def done(token):
    redis.Redis.from_url(os.environ["CELERY_BROKER_URL"]).lpush({DONE_KEY!r}, token)


install_heartbeat(app)
'''

Rows = list[tuple[str, str, str, str]]


def _names(n: int) -> list[str]:
    return [f"entry {i:04d} every second" for i in range(n)]


def _spec(name: str, queue: str) -> EntrySpec:
    return EntrySpec(name=name, task=TASK, schedule="<freq: 1.00 second>", kind="interval",
                     tz=None, queue=queue, grace_s=5.0, max_runtime_s=None, period_s=1.0,
                     next_due_in_ms=1000)


def _redis_cpu(client: redis.Redis) -> float:
    cpu = client.info("cpu")
    return float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])


def _evalsha_usec(client: redis.Redis) -> tuple[int, float]:
    stat = client.info("commandstats").get("cmdstat_evalsha", {})
    return int(stat.get("calls", 0)), float(stat.get("usec", 0))


@contextmanager
def _slowlog(client: redis.Redis) -> Iterator[list[dict[str, Any]]]:
    """Every command run inside the block, as Redis timed it (``SLOWLOG`` at 0 µs)."""
    old = str(client.config_get("slowlog-log-slower-than")["slowlog-log-slower-than"])
    old_len = str(client.config_get("slowlog-max-len")["slowlog-max-len"])
    client.config_set("slowlog-max-len", 100_000)
    client.config_set("slowlog-log-slower-than", 0)
    client.slowlog_reset()
    found: list[dict[str, Any]] = []
    try:
        yield found
        found.extend(client.slowlog_get(100_000))
    finally:
        client.config_set("slowlog-log-slower-than", old)
        client.config_set("slowlog-max-len", old_len)


def _command(item: dict[str, Any]) -> str:
    command = item.get("command", b"")
    text = command.decode(errors="replace") if isinstance(command, bytes) else str(command)
    return text.split(" ", 1)[0].upper()


def _slowest(log: list[dict[str, Any]], skip: tuple[str, ...] = ("SLOWLOG", "CONFIG")) -> str:
    name = _command
    mine = [item for item in log if name(item) not in skip]
    if not mine:
        return "-"
    top = max(mine, key=lambda item: int(item["duration"]))
    return f"{int(top['duration']) / 1000:.2f} ms ({name(top)})"


def _ratio(ours: float, base: float) -> str:
    return f"{ours / base:.2f}x" if base > 0 else "-"


# 1. Worker CPU per task, in process, through Celery's own tracer ---------------------------


def bench_tracer(url: str, settings: Settings, names: list[str], rounds: int,
                 client: redis.Redis) -> Rows:
    app = Celery("entries_bench_tracer", broker=url)
    app.conf.task_ignore_result = True

    @app.task(name=TASK)  # type: ignore[untyped-decorator]
    def noop() -> None:
        """Does nothing."""

    install_heartbeat(app, settings)  # connects task_prerun / task_postrun as in a worker
    app.finalize()
    task = app.tasks[TASK]
    tracer = build_tracer(task.name, task, app=app, hostname="bench@host")
    beat = EntryStore(client, settings.keys, settings.service, retention_s=settings.retention_s)
    beat.sync([_spec(name, "celery") for name in names])

    def batch(watched: bool) -> tuple[float, float, float, int, float]:
        ids = [str(uuid.uuid4()) for _ in names]
        if watched:  # beat's dispatch records, outside the measured time
            for name, task_id in zip(names, ids, strict=True):
                beat.dispatched(name, task_id, due_in_ms=0, next_due_in_ms=1000,
                                beat_id="bench", depth=0)
        requests = [{"id": task_id, "task": TASK, "hostname": "bench@host",
                     "delivery_info": {"routing_key": "celery", "exchange": ""},
                     **({ENTRY_HEADER: name} if watched else {})}
                    for name, task_id in zip(names, ids, strict=True)]
        redis0, (calls0, usec0) = _redis_cpu(client), _evalsha_usec(client)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for task_id, request in zip(ids, requests, strict=True):
            tracer(task_id, (), {}, request)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        redis_cpu = _redis_cpu(client) - redis0
        calls1, usec1 = _evalsha_usec(client)
        return cpu, wall, redis_cpu, calls1 - calls0, usec1 - usec0

    batch(True)
    batch(False)  # warm both paths
    totals: dict[bool, list[tuple[float, float, float, int, float]]] = {True: [], False: []}
    for _ in range(rounds):
        for watched in (False, True):
            totals[watched].append(batch(watched))
    n = len(names)

    def per_task(watched: bool, i: int) -> float:
        return statistics.median(t[i] for t in totals[watched]) / n * 1e6

    cpu_w, cpu_u = per_task(True, 0), per_task(False, 0)
    wall_w, wall_u = per_task(True, 1), per_task(False, 1)
    calls = sum(t[3] for t in totals[True])
    usec = sum(t[4] for t in totals[True])
    counts = json.loads(client.hget(settings.keys.entries(settings.service), names[0]) or b"{}")
    if (counts.get("counts") or {}).get("succeeded", 0) < rounds:
        raise BenchError(f"the watched runs were not checked in: {counts}")
    return [
        ("worker CPU per task, in-process tracer (µs)", f"{cpu_w:.1f}", f"{cpu_u:.1f}",
         _ratio(cpu_w, cpu_u)),
        ("worker wall per task, in-process tracer (µs)", f"{wall_w:.1f}", f"{wall_u:.1f}",
         _ratio(wall_w, wall_u)),
        ("check-ins per watched task (EVALSHA calls)", f"{calls / (rounds * n):.2f}", "0", "-"),
        ("Redis time per check-in script (commandstats µs)", f"{usec / max(calls, 1):.1f}",
         "-", "-"),
    ]


def bench_client_floor(client: redis.Redis, url: str, settings: Settings) -> Rows:
    """What one round trip costs the worker's CPU, by the way it is made."""
    worker_client = make_client(url, timeout_s=settings.redis_timeout_s, retries=0)
    store = EntryStore(worker_client, settings.keys, settings.service,
                       retention_s=settings.retention_s)
    store.sync([_spec("floor", "celery")])
    store.dispatched("floor", "floor-id", due_in_ms=0, next_due_in_ms=1000, beat_id="bench",
                     depth=0)
    sha = worker_client.script_load(
        Path(REPO, "worker", "publish", "entries.lua").read_text())
    keys = [settings.keys.entries(settings.service), settings.keys.entry_runs(settings.service)]
    calls: dict[str, Callable[[], object]] = {
        "EntryStore.started (register_script, matched run)":
            lambda: store.started("floor", "floor-id", "bench@host"),
        "the same script by a bare client.evalsha": lambda: worker_client.evalsha(
            sha, 2, *keys, "start", 3_600_000, 10_000, "floor", "floor-id", "bench@host"),
        "PING (the floor of any round trip)": worker_client.ping,
    }
    n = 3000
    cpu: dict[str, list[float]] = {name: [] for name in calls}
    wall: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(3):
        for name, call in calls.items():
            call()
            c0, w0 = time.process_time(), time.perf_counter()
            for _ in range(n):
                call()
            cpu[name].append((time.process_time() - c0) / n * 1e6)
            wall[name].append((time.perf_counter() - w0) / n * 1e6)
    ping = statistics.median(cpu["PING (the floor of any round trip)"])
    return [(f"one round trip, worker CPU: {name} (µs; wall µs)",
             f"{statistics.median(cpu[name]):.1f} ({statistics.median(wall[name]):.0f})",
             f"{ping:.1f} (PING)", _ratio(statistics.median(cpu[name]), ping))
            for name in calls]


# 1b + 2. A real celery worker -P solo ----------------------------------------------------------


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_worker_process(server: RedisProcess, settings: Settings, names: list[str],
                         rounds: int, client: redis.Redis) -> Rows:
    workdir = Path(tempfile.mkdtemp(prefix="petsage-bench-entries-"))
    (workdir / "entries_bench_app.py").write_text(APP_SOURCE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEARTBEAT_", "CELERY_"))}
    env.update(CELERY_BROKER_URL=server.url, HEARTBEAT_REDIS_URL=server.url,
               PYTHONPATH=os.pathsep.join([str(workdir), str(REPO)]))
    log = open(workdir / "worker.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "entries_bench_app", "worker", "-P", "solo",
         "-Q", QUEUE, "--loglevel", "WARNING", "--without-mingle", "--without-gossip",
         "--without-heartbeat", "--hostname", "bench@%h"],
        env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    publisher = Celery("entries_bench_publisher", broker=server.url)
    publisher.conf.update(task_ignore_result=True, task_serializer="json")
    beat = EntryStore(client, settings.keys, settings.service, retention_s=settings.retention_s)
    beat.sync([_spec(name, QUEUE) for name in names])
    done_client = redis.Redis(port=server.port)

    def wait_done(token: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = done_client.blpop([DONE_KEY], timeout=1)
            value = None if got is None else got[1]
            if (value.decode() if isinstance(value, bytes) else value) == token:
                return
            if proc.poll() is not None:
                tail = (workdir / "worker.log").read_text()[-500:]
                raise BenchError(f"the celery worker exited: {tail}")
        raise BenchError("the celery worker did not finish a batch in time")

    def batch(watched: bool) -> tuple[float, float, float]:
        ids = [str(uuid.uuid4()) for _ in names]
        if watched:  # beat's records, before the messages leave, outside the measured time
            for name, task_id in zip(names, ids, strict=True):
                beat.dispatched(name, task_id, due_in_ms=0, next_due_in_ms=1000,
                                beat_id="bench", depth=0)
        token = uuid.uuid4().hex
        redis0, cpu0, wall0 = _redis_cpu(client), _proc_cpu(proc.pid), time.perf_counter()
        with publisher.producer_or_acquire() as producer:
            for name, task_id in zip(names, ids, strict=True):
                publisher.send_task(TASK, task_id=task_id, queue=QUEUE, producer=producer,
                                    headers={ENTRY_HEADER: name} if watched else None)
            publisher.send_task(DONE, args=(token,), queue=QUEUE, producer=producer)
        wait_done(token, 120)
        return (_proc_cpu(proc.pid) - cpu0, _redis_cpu(client) - redis0,
                time.perf_counter() - wall0)

    try:
        token = uuid.uuid4().hex
        publisher.send_task(DONE, args=(token,), queue=QUEUE)
        wait_done(token, 120)  # the worker is up and consuming
        batch(True)
        batch(False)
        totals: dict[bool, list[tuple[float, float, float]]] = {True: [], False: []}
        for _ in range(rounds):
            for watched in (False, True):
                totals[watched].append(batch(watched))
    finally:
        os.killpg(proc.pid, 9)
        proc.wait(10)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)
    tasks = rounds * len(names)

    def per_task(watched: bool, i: int) -> float:  # sums: /proc counts in clock ticks
        return sum(t[i] for t in totals[watched]) / tasks * 1e6

    record = json.loads(client.hget(settings.keys.entries(settings.service), names[-1]) or b"{}")
    if (record.get("counts") or {}).get("succeeded", 0) < rounds:
        raise BenchError(f"the worker's watched runs were not checked in: {record}")
    w, u = per_task(True, 0), per_task(False, 0)
    rw, ru = per_task(True, 1), per_task(False, 1)
    ww, wu = per_task(True, 2), per_task(False, 2)
    return [
        ("worker CPU per task, real `celery worker -P solo`, Redis broker (µs)", f"{w:.0f}",
         f"{u:.0f}", _ratio(w, u)),
        ("Redis CPU per task, same runs: broker + check-ins (µs)", f"{rw:.0f}", f"{ru:.0f}",
         _ratio(rw, ru)),
        ("Redis CPU added per watched task (start + finish, µs)", f"{rw - ru:.0f}", "-", "-"),
        ("batch wall per task, publish to last run (µs)", f"{ww:.0f}", f"{wu:.0f}",
         _ratio(ww, wu)),
    ]


# 3. Beat ----------------------------------------------------------------------------------------


def bench_beat(url: str, names: list[str], rounds: int, client: redis.Redis) -> Rows:
    settings = Settings.from_env({"CELERY_BROKER_URL": url, "HEARTBEAT_REDIS_URL": url,
                                  "HEARTBEAT_SERVICE": "bench-beat"})
    app = Celery("entries_bench_beat", broker=url)
    app.conf.update(task_ignore_result=True, beat_schedule={
        name: {"task": TASK, "schedule": 1.0, "options": {"queue": BEAT_QUEUE}}
        for name in names})
    # Wired as install_heartbeat wires it in beat (worker.publish.install._connect_beat), with
    # the dispatch record and the queue depth timed where they run, inside beat's tick.
    store_client = make_client(settings.redis_url, timeout_s=MARKER_TIMEOUT_S, retries=0)
    spent = {"record": 0.0, "depth": 0.0}

    class TimedStore(EntryStore):
        def dispatched(self, *args: Any, **kwargs: Any) -> int:
            t = time.perf_counter()
            try:
                return super().dispatched(*args, **kwargs)
            finally:
                spent["record"] += time.perf_counter() - t

    queue_depth = QueueBound(store_client, settings.queue).depth

    def timed_depth(queue: str) -> int | None:
        t = time.perf_counter()
        try:
            return queue_depth(queue)
        finally:
            spent["depth"] += time.perf_counter() - t

    watch = EntryWatch(
        TimedStore(store_client, settings.keys, settings.service,
                   retention_s=settings.retention_s),
        skip=lambda name: False, watch=selector(None), beat_id="bench-beat",
        sync_every_s=min(settings.interval_s, ENTRY_SYNC_MAX_S), depth_of=timed_depth)

    def stamp(sender: str | None = None, headers: dict[str, Any] | None = None,
              **_: Any) -> None:
        watch.stamp(headers)

    before_task_publish.connect(stamp, weak=False)
    watched, plain = Scheduler(app), Scheduler(app)
    watch.attach(watched)
    n = len(names)

    cpu: dict[bool, float] = {True: 0.0, False: 0.0}

    def dispatch_round(scheduler: Any) -> list[float]:
        past = scheduler.app.now() - timedelta(seconds=2)
        for entry in scheduler.schedule.values():
            entry.last_run_at = past
        scheduler._heap = None
        out = []
        cpu0 = time.process_time()
        for _ in range(n):
            t = time.perf_counter()
            delay = scheduler.tick()
            out.append(time.perf_counter() - t)
            if delay != 0:
                raise BenchError(f"beat's tick did not dispatch (next in {delay})")
        cpu[scheduler is watched] += time.process_time() - cpu0
        client.delete(BEAT_QUEUE)
        return out

    try:
        dispatch_round(watched)
        dispatch_round(plain)
        spent.update(record=0.0, depth=0.0)
        cpu.update({True: 0.0, False: 0.0})
        ticks: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(rounds):
            for side, scheduler in ((False, plain), (True, watched)):
                ticks[side].extend(dispatch_round(scheduler))
        part_us = {"dispatch record (one EVALSHA)": spent["record"] / (rounds * n) * 1e6,
                   "queue depth (one LLEN pipeline)": spent["depth"] / (rounds * n) * 1e6}
        syncs: dict[str, list[float]] = {"write": [], "unchanged": []}
        with _slowlog(client) as log:
            for _ in range(5):
                for kind, samples in syncs.items():
                    watch._last_sync = -float("inf")
                    if kind == "write":
                        watch._written = {}
                    t = time.perf_counter()
                    watch.maybe_sync(watched)
                    samples.append(time.perf_counter() - t)
        scripts = [int(item["duration"]) / 1000 for item in log
                   if _command(item) == "EVALSHA"]
        if not scripts:
            raise BenchError("the syncs wrote nothing to Redis")
    finally:
        before_task_publish.disconnect(stamp)
    tw, tp = statistics.median(ticks[True]) * 1e6, statistics.median(ticks[False]) * 1e6
    mw, mp = statistics.mean(ticks[True]) * 1e6, statistics.mean(ticks[False]) * 1e6
    cw, cp = (cpu[side] / (rounds * n) * 1e6 for side in (True, False))
    write_ms = statistics.median(syncs["write"]) * 1000
    same_ms = statistics.median(syncs["unchanged"]) * 1000
    sync_every = min(settings.interval_s, ENTRY_SYNC_MAX_S)
    per_second = (tw - tp) * n / 1e6 + same_ms / 1000 / sync_every
    return [
        (f"beat tick that dispatches, {n:,} entries at 1 s, Redis broker (median µs)",
         f"{tw:.0f}", f"{tp:.0f}", _ratio(tw, tp)),
        ("beat tick that dispatches (mean µs, syncs included)", f"{mw:.0f}", f"{mp:.0f}",
         _ratio(mw, mp)),
        ("beat CPU per dispatching tick (mean µs, syncs included)", f"{cw:.0f}", f"{cp:.0f}",
         _ratio(cw, cp)),
        *((f"of which {label}, inside the tick (mean wall µs)", f"{us:.0f}", "-", "-")
          for label, us in part_us.items()),
        (f"sync of {n:,} entries, written (once a minute or on a change; ms)",
         f"{write_ms:.1f}", "-", "-"),
        (f"sync of {n:,} entries, unchanged (every {sync_every:g} s; ms)", f"{same_ms:.1f}",
         "-", "-"),
        ("sync script in Redis, median / longest (SLOWLOG ms)",
         f"{statistics.median(scripts):.1f} / {max(scripts):.1f}", "-", "-"),
        (f"beat time added per second at {n:,} dispatches/s (s)", f"{per_second:.3f}", "-",
         "-"),
    ]


# 4. The reader ---------------------------------------------------------------------------------


def bench_read(server: RedisProcess, settings: Settings, n: int, rounds: int,
               client: redis.Redis) -> Rows:
    from worker.read.entries import read_entries

    key = settings.keys.entries(settings.service)
    reader = redis.Redis(port=server.port)
    if reader.hlen(key) < n:
        raise BenchError(f"expected {n} entry records, found {reader.hlen(key)}")

    def plain() -> object:
        pipe = reader.pipeline(transaction=False)
        pipe.time()
        pipe.hgetall(key)
        _, raw = pipe.execute()
        return [json.loads(value) for value in raw.values()]

    def ours() -> object:
        report = read_entries(reader, settings.service)
        if report.error is not None or len(report.entries) < n:
            raise BenchError(f"read_entries: {report.error} ({len(report.entries)} entries)")
        return report

    calls = {"ours": ours, "plain": plain}
    walls: dict[str, list[float]] = {name: [] for name in calls}
    slowest: dict[str, str] = {}
    for name, call in calls.items():
        call()
        with _slowlog(client) as log:
            call()
        slowest[name] = _slowest(log)
    for _ in range(rounds * 3):
        for name, call in calls.items():
            t = time.perf_counter()
            call()
            walls[name].append(time.perf_counter() - t)
    o, p = (statistics.median(walls[k]) * 1000 for k in ("ours", "plain"))
    rows = [
        (f"read_entries, {n:,} entries (median ms)", f"{o:.2f}", f"{p:.2f}", _ratio(o, p)),
        ("slowest Redis command of one read (SLOWLOG)", slowest["ours"], slowest["plain"], "-"),
    ]
    rows += _bench_status_command(server, settings, key, rounds)
    return rows


def _bench_status_command(server: RedisProcess, settings: Settings, key: str,
                          rounds: int) -> Rows:
    exe = BIN / "petsage-heartbeat"
    status = [str(exe)] if exe.exists() else [sys.executable, "-m", "worker"]
    helped = subprocess.run([*status, "status", "--help"], capture_output=True, text=True,
                            timeout=60, check=False)
    cli = shutil.which("redis-cli")
    if "--entries" not in helped.stdout or cli is None:
        return [("status --entries, whole command", "not available", "-", "-")]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEARTBEAT_", "CELERY_"))}
    commands = {
        "ours": [*status, "status", "--entries", "--redis", server.url,
                 "--service", settings.service],
        "plain": [cli, "-p", str(server.port), "HGETALL", key],
        "python": [sys.executable, "-c",
                   "import json, redis\n"
                   f"c = redis.Redis(port={server.port})\n"
                   "p = c.pipeline(transaction=False)\n"
                   f"p.time(); p.hgetall({key!r})\n"
                   "t, h = p.execute()\n"
                   "print(len([json.loads(v) for v in h.values()]))\n"],
    }
    costs: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(max(rounds, 3)):
        for name, argv in commands.items():
            cost = run_measured(argv, env)
            if cost.exit_code > 2:  # 0-2: the entries' states; 3: could not tell
                raise BenchError(f"{' '.join(argv[-6:])} exited {cost.exit_code}")
            costs[name].append((cost.wall_s, cost.cpu_s))
    med = {name: (statistics.median(c[0] for c in cost), statistics.median(c[1] for c in cost))
           for name, cost in costs.items()}
    (ow, oc), (pw, pc), (yw, yc) = med["ours"], med["plain"], med["python"]
    return [("whole command: status --entries vs redis-cli HGETALL (wall s)", f"{ow:.3f}",
             f"{pw:.3f}", _ratio(ow, pw)),
            ("whole command: status --entries vs redis-cli HGETALL (CPU s)", f"{oc:.3f}",
             f"{pc:.3f}", _ratio(oc, pc)),
            ("whole command: status --entries vs python redis-py TIME + HGETALL + json.loads "
             "(wall s)", f"{ow:.3f}", f"{yw:.3f}", _ratio(ow, yw)),
            ("whole command: status --entries vs the same python (CPU s)", f"{oc:.3f}",
             f"{yc:.3f}", _ratio(oc, yc))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--no-worker-process", action="store_true",
                        help="skip the real celery worker (in-process figures only)")
    args = parser.parse_args()
    names = _names(args.entries)
    server = RedisProcess()
    rows: Rows = []
    try:
        client = redis.Redis(port=server.port)
        settings = Settings.from_env({"CELERY_BROKER_URL": server.url,
                                      "HEARTBEAT_REDIS_URL": server.url})
        rows += bench_tracer(server.url, settings, names, args.rounds, client)
        rows += bench_client_floor(client, server.url, settings)
        if not args.no_worker_process:
            rows += bench_worker_process(server, settings, names, args.rounds, client)
        rows += bench_beat(server.url, names, max(args.rounds // 2, 2), client)
        rows += bench_read(server, settings, args.entries, args.rounds, client)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        server.close()
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"### Entries ({args.entries:,} entries at 1 s, {args.rounds} interleaved rounds; "
          f"{machine()}; load average {load})\n")
    print(table(["what", "watched / ours", "not watched / plain", "ratio"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
