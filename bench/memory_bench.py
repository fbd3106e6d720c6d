"""Worker memory: RSS of a real worker's pool process after 100 and after 10,000 heartbeats.

    python -m bench.memory_bench [--heartbeats 10000]

Heartbeats are sent back to back (no interval) straight onto the ``heartbeat`` queue, with
no expiry headers, so the worker runs every one of them. Target: neither the pool process nor
the main process grows by 5 MiB or more between heartbeat 100 and heartbeat 10,000.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
from celery import Celery

from bench.common import BenchError, RedisProcess, machine, table
from worker.core.names import Keys


def _rss_mib(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.MULTILINE)
    if match is None:
        raise BenchError(f"no RSS for pid {pid}")
    return int(match.group(1)) / 1024


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(p) for p in text]
    return found


def _seq(client: redis.Redis) -> int:
    raw = client.get(Keys().latest("petsage"))
    match = re.match(rb'\{"seq":(\d+),', raw or b"")
    return int(match.group(1)) if match else 0


def _wait_seq(client: redis.Redis, seq: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while _seq(client) < seq:
        if time.monotonic() > deadline:
            raise BenchError(f"seq {seq} not reached (at {_seq(client)})")
        time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heartbeats", type=int, default=10_000)
    args = parser.parse_args()
    server = RedisProcess()
    workdir = Path(tempfile.mkdtemp(prefix="petsage-mem-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEARTBEAT_", "CELERY_"))}
    env.update(CELERY_BROKER_URL=server.url)
    log = open(workdir / "worker.log", "wb")  # noqa: SIM115 - lives as long as the worker
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker", "worker", "-Q", "heartbeat.petsage",
         "--concurrency", "1", "--without-mingle", "--without-gossip", "--loglevel", "WARNING"],
        env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    client = redis.Redis(port=server.port)
    sender = Celery("bench", broker=server.url)
    sender.conf.update(task_serializer="json", accept_content=["json"])
    try:
        for _ in range(100):
            sender.send_task("health", queue="heartbeat.petsage")
        _wait_seq(client, 100, 60)
        time.sleep(0.5)
        (pool,) = _children(worker.pid)
        rows = [(100, _rss_mib(pool), _rss_mib(worker.pid))]
        started = time.monotonic()
        sent = 100
        with sender.connection_for_write() as conn, conn.Producer() as producer:
            # Batches of 100, each drained before the next: a worker keeping up, as with a
            # schedule, rather than a 10,000-message backlog held in the consumer's buffers.
            while sent < args.heartbeats:
                for _ in range(min(100, args.heartbeats - sent)):
                    sender.send_task("health", queue="heartbeat.petsage", producer=producer)
                sent += min(100, args.heartbeats - sent)
                _wait_seq(client, sent, 120)
                if sent in (args.heartbeats // 2, args.heartbeats):
                    rows.append((sent, _rss_mib(pool), _rss_mib(worker.pid)))
        elapsed = time.monotonic() - started
        growth = max(rows[-1][1] - rows[0][1], rows[-1][2] - rows[0][2])
        print(f"### Worker memory ({machine()})\n")
        print(table(["after heartbeats", "pool process RSS MiB", "main process RSS MiB"], rows))
        print(f"\nthe worker (pool or main process, whichever grew more) grew {growth:.2f} MiB "
              f"from heartbeat 100 to {args.heartbeats:,} "
              f"(target < 5 MiB: {'met' if growth < 5 else 'MISSED'}); "
              f"{(args.heartbeats - 100) / elapsed:.0f} heartbeats/s back to back\n")
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        os.killpg(worker.pid, 9)
        worker.wait(10)
        log.close()
        server.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
