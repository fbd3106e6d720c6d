"""Fill a store with a fleet through the real write path, for any benchmark or experiment.

    python -m bench.fill --services N --redis URL [--prefix P] [--not-fresh FRACTION]
                         [--history-len 1] [--retention-s 86400] [--threads 4]

Every heartbeat goes through ``HeartbeatStore.publish_many`` (the publish script: latest
payload, history, index and compact summary in one atomic write), 1,000 services a round
trip (on a Redis Cluster one script per service, then its index entry and summary), on a
few threads with a client each. The body is what ``worker.publish.health.build_body``
builds for a healthy worker (about 600 bytes), with the service's own name, so every
service passes the reader's checks.

Services are named ``svc-000000``, ``svc-000001``... A fraction ``--not-fresh`` of them,
spread evenly through the names, is published with the shortest interval the settings
accept (0.5 s, stale after 0.5 s); fill then polls the Redis clock (``TIME``, on every
primary of a cluster), with a deadline, until they are past their stale threshold, so
they read ``stale`` when it returns. The others have an interval of an hour (stale after
three): they read ``fresh`` for an hour and a half. ``--history-len`` caps each service's
history stream (default 1: a fleet for reads, not for history; the worker's default is
120). Filling the same store again overwrites each service (its ``seq`` goes up).

Prints one line: services written, seconds, rate. A bad flag is one line on standard
error and exit 2; a store that can't be written, one line and exit 1.
"""

from __future__ import annotations

import argparse
import math
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NoReturn

import redis

from bench.common import BenchError
from worker.core.errors import ConfigError
from worker.core.names import DEFAULT_PREFIX, Keys
from worker.core.redis_clients import make_client
from worker.core.redis_io import is_cluster_client, redis_time_ms
from worker.core.settings import MAX_HISTORY_LEN, MAX_RETENTION_S, MIN_INTERVAL_S, Settings
from worker.core.urls import redact
from worker.publish.health import build_body
from worker.publish.store import HeartbeatStore

FRESH_INTERVAL_S = 3600.0
"""Interval of a fresh service: late after 1.5 h, so it reads fresh for the whole run."""

FRESH_STALE_AFTER_S = 3 * FRESH_INTERVAL_S
"""Stale threshold of a fresh service (the default rule: three intervals)."""

NOT_FRESH_INTERVAL_S = MIN_INTERVAL_S
"""Interval and stale threshold of a service filled not fresh: the settings' lower bounds
(``MIN_INTERVAL_S``, and a stale threshold at least the interval), so it goes stale fast."""

DEFAULT_RETENTION_S = 86_400
"""TTL of each latest payload and history stream: a day (at least the fresh services'
stale threshold, as the settings require)."""

DEFAULT_HISTORY_LEN = 1
"""History stream cap: 1, a fleet for reads (the worker's default is 120)."""

BATCH = 1000
"""Services per ``publish_many``: one round trip (one script each) on a single Redis."""

DEFAULT_THREADS = 4
"""Writers, a client each: the wire and Redis overlap with building the next batch."""

MAX_SERVICES = 10_000_000
"""More than any fleet a benchmark reads."""

STALE_DEADLINE_S = 30.0
"""How long fill waits for the not-fresh services to go stale on the Redis clock."""

TIMEOUT_S = 60.0
"""Socket timeout of the writers' clients (a pipeline of 1,000 scripts on a busy machine)."""

NODE = "celery@petsage-worker-7d9f8-abcde"
"""The worker node named in every body."""


@dataclass(frozen=True)
class Filled:
    """What one fill wrote."""

    services: int  #: heartbeats written (each service once)
    not_fresh: int  #: of which published with the short interval, stale on return
    seconds: float  #: writing, from the first batch to the last
    waited_s: float  #: then waiting for the not-fresh services to go stale

    @property
    def rate(self) -> float:
        """Services written per second of writing."""
        return self.services / self.seconds if self.seconds > 0 else math.inf

    def line(self, prefix: str) -> str:
        return (f"wrote {self.services:,} services ({self.not_fresh:,} not fresh) under "
                f"{prefix} in {self.seconds:.2f} s: {self.rate:,.0f} services/s; waited "
                f"{self.waited_s:.2f} s for the not-fresh to read stale")


def service_name(i: int) -> str:
    """The ``i``-th service's name: ``svc-000000``..."""
    return f"svc-{i:06d}"


def not_fresh_indices(services: int, fraction: float) -> set[int]:
    """Which of ``services`` are filled not fresh: ``round(services * fraction)`` of them,
    spread evenly through the names (so through the summary shards too)."""
    count = round(services * fraction)
    return {j * services // count for j in range(count)} if count else set()


def template() -> dict[str, Any]:
    """The body a healthy worker writes (``build_body``), two checks, an empty backlog."""
    now_ms = time.time() * 1000
    return build_body(
        Settings(), node=NODE, started_ms=now_ms, finished_ms=now_ms + 1.2,
        published_at_ms=now_ms - 3.1, clock_offset_ms=0.4,
        checks={"redis": {"status": "ok", "latency_ms": 0.2},
                "database": {"status": "ok", "latency_ms": 1.4}},
        backlog={"depth": 0, "oldest_age_ms": None, "error": None},
        message="PetSage system is alive and purring!")


def check_args(services: int, not_fresh: float, history_len: int, retention_s: int,
               threads: int) -> None:
    """Raise ``ValueError`` with one line naming the flag for a value out of range."""
    if not 1 <= services <= MAX_SERVICES:
        raise ValueError(f"--services must be 1 to {MAX_SERVICES:,}, not {services}")
    if not (math.isfinite(not_fresh) and 0 <= not_fresh <= 1):
        raise ValueError(f"--not-fresh must be a fraction from 0 to 1, not {not_fresh}")
    if not 1 <= history_len <= MAX_HISTORY_LEN:
        raise ValueError(f"--history-len must be 1 to {MAX_HISTORY_LEN:,}, not {history_len}")
    if not FRESH_STALE_AFTER_S <= retention_s <= MAX_RETENTION_S:
        raise ValueError(f"--retention-s must be {FRESH_STALE_AFTER_S:.0f} (the fresh "
                         f"services' stale threshold) to {MAX_RETENTION_S}, not {retention_s}")
    if not 1 <= threads <= 64:
        raise ValueError(f"--threads must be 1 to 64, not {threads}")


def check_url(url: str, prefix: str) -> None:
    """Raise ``ConfigError`` (one line naming ``--redis`` or ``--prefix``) for a bad one."""
    Settings.from_env({}, redis_url=url, prefix=prefix)


def _clock_ms(client: Any) -> int:
    """The Redis clock; on a cluster the earliest of the primaries' (all must be past)."""
    if is_cluster_client(client):
        times = client.execute_command("TIME", target_nodes=client.get_primaries())
        readings = times.values() if isinstance(times, dict) else [times]
        return min(redis_time_ms(reading) for reading in readings)
    return redis_time_ms(client.time())


def fill(url: str, services: int, *, prefix: str = DEFAULT_PREFIX, not_fresh: float = 0.0,
         history_len: int = DEFAULT_HISTORY_LEN, retention_s: int = DEFAULT_RETENTION_S,
         threads: int = DEFAULT_THREADS) -> Filled:
    """Publish ``services`` heartbeats through ``HeartbeatStore.publish_many``; on return
    the fraction ``not_fresh`` reads stale and the rest fresh.

    Raises ``ValueError`` or ``ConfigError`` for a bad argument, ``redis.RedisError`` when
    the store can't be written, ``BenchError`` when a write is refused or the not-fresh
    services do not go stale within ``STALE_DEADLINE_S`` on the Redis clock.
    """
    check_args(services, not_fresh, history_len, retention_s, threads)
    check_url(url, prefix)
    keys = Keys(prefix)
    base = template()
    short = not_fresh_indices(services, not_fresh)
    local = threading.local()
    clients: list[Any] = []
    lock = threading.Lock()

    def store() -> HeartbeatStore:
        if not hasattr(local, "store"):
            client = make_client(url, timeout_s=TIMEOUT_S)
            with lock:
                clients.append(client)
            local.store = HeartbeatStore(client, keys, retention_s=retention_s,
                                         history_len=history_len)
        found: HeartbeatStore = local.store
        return found

    def body(i: int, name: str) -> dict[str, Any]:
        interval, stale = ((NOT_FRESH_INTERVAL_S, NOT_FRESH_INTERVAL_S) if i in short
                           else (FRESH_INTERVAL_S, FRESH_STALE_AFTER_S))
        return {**base, "service": name, "interval_s": interval, "stale_after_s": stale}

    def write(batch: Sequence[int]) -> tuple[int, int]:
        """Publish ``batch``; (writes refused, the latest ts_ms of a not-fresh service)."""
        names = [service_name(i) for i in batch]
        results = store().publish_many([(name, body(i, name))
                                        for i, name in zip(batch, names, strict=True)])
        refused = sum(not r.accepted for r in results)
        latest = max((r.ts_ms for i, r in zip(batch, results, strict=True) if i in short),
                     default=0)
        return refused, latest

    # The not-fresh services first: they age while the others are written.
    order = sorted(short) + [i for i in range(services) if i not in short]
    batches = [order[start:start + BATCH] for start in range(0, services, BATCH)]
    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fill") as pool:
            outcomes = list(pool.map(write, batches))
        seconds = time.perf_counter() - started
        refused = sum(r for r, _ in outcomes)
        if refused:
            raise BenchError(f"{refused:,} writes were refused: a newer heartbeat is stored "
                             "(a Redis clock that stepped back?)")
        waited = 0.0
        if short:
            clock = clients[0]
            due_ms = max(ts for _, ts in outcomes) + round(NOT_FRESH_INTERVAL_S * 1000) + 1
            wait_started = time.perf_counter()
            deadline = time.monotonic() + STALE_DEADLINE_S
            while (now_ms := _clock_ms(clock)) < due_ms:
                if time.monotonic() > deadline:
                    raise BenchError(f"the not-fresh services were not stale on the Redis "
                                     f"clock after {STALE_DEADLINE_S:.0f} s")
                time.sleep(min(max(due_ms - now_ms, 1), 50) / 1000)
            waited = time.perf_counter() - wait_started
    finally:
        for client in clients:
            client.close()
    return Filled(services, len(short), seconds, waited)


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line on standard error, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="python -m bench.fill", description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, required=True, metavar="N",
                        help="how many services (svc-000000...)")
    parser.add_argument("--redis", required=True, metavar="URL",
                        help="the store: redis://, rediss://, sentinel://, or a cluster "
                             "(redis://host:port/0?cluster=true)")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX,
                        help=f"key prefix (default {DEFAULT_PREFIX})")
    parser.add_argument("--not-fresh", type=float, default=0.0, metavar="FRACTION",
                        help="this fraction of the services reads stale on return (default 0)")
    parser.add_argument("--history-len", type=int, default=DEFAULT_HISTORY_LEN,
                        help=f"history stream cap per service (default {DEFAULT_HISTORY_LEN})")
    parser.add_argument("--retention-s", type=int, default=DEFAULT_RETENTION_S,
                        help=f"TTL of each service's keys (default {DEFAULT_RETENTION_S})")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help=f"writers, a client each (default {DEFAULT_THREADS})")
    args = parser.parse_args(argv)
    try:
        check_args(args.services, args.not_fresh, args.history_len, args.retention_s,
                   args.threads)
        check_url(args.redis, args.prefix)
    except (ValueError, ConfigError) as exc:
        parser.error(str(exc))
    try:
        filled = fill(args.redis, args.services, prefix=args.prefix, not_fresh=args.not_fresh,
                      history_len=args.history_len, retention_s=args.retention_s,
                      threads=args.threads)
    except (redis.RedisError, OSError, BenchError) as exc:
        text = redact(str(exc)).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"{parser.prog}: the store could not be filled: {text[:300]}", file=sys.stderr)
        return 1
    print(filled.line(args.prefix))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
