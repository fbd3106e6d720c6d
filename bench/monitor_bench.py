"""What the monitor and the monitors' record cost, side by side with what they add to.

    python -m bench.monitor_bench [--sizes 1000,10000] [--runs 7]

For each fleet size (``bench.fill``: half fresh, half stale), against a redis-server of
its own: one steady monitor round (read the fleet; nothing changed, so only the services
in this round's slice go to the record script) beside the fleet read alone; and
``/metrics`` with the monitors' record (uptime, outages, silences: three one-key commands
a service) beside the exposition without it. Medians of ``--runs`` interleaved runs; the
slowest single command of a monitor round (SLOWLOG). Prints one markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import redis

from bench.common import RedisProcess, machine
from bench.common import table as markdown
from bench.fill import fill
from bench.fleet_bench import slowest_command
from worker.core.names import Keys
from worker.core.settings import Settings
from worker.http.metrics import exposition
from worker.observe.monitor import Monitor
from worker.read.fleet import read_fleet
from worker.read.incidents import read_incidents


def _timed(fn: Callable[[], object], samples: list[float]) -> None:
    started = time.perf_counter()
    fn()
    samples.append(time.perf_counter() - started)


def measure(sizes: Sequence[int], runs: int) -> list[list[object]]:
    rows: list[list[object]] = []
    keys = Keys()
    for size in sizes:
        server = RedisProcess()
        try:
            client = redis.Redis(port=server.port)
            fill(server.url, size, not_fresh=0.5)
            monitor = Monitor(Settings(redis_url=server.url), client, every_s=10)
            monitor.judge_once()  # the first round starts every record
            read_s: list[float] = []
            round_s: list[float] = []
            plain_s: list[float] = []
            with_s: list[float] = []
            for _ in range(runs):  # interleaved: a busy moment slows both sides alike
                _timed(lambda c=client: read_fleet(c, keys), read_s)
                _timed(monitor.judge_once, round_s)
                fleet = read_fleet(client, keys)
                names = [r.service for r in fleet.reports]
                _timed(lambda f=fleet: exposition(f), plain_s)
                _timed(lambda f=fleet, n=names, c=client: exposition(
                    f, read_incidents(c, keys, n)[1]), with_s)
            slow_ms, command = slowest_command(client, monitor.judge_once)
            read, round_, plain, with_ = (statistics.median(s) for s in
                                          (read_s, round_s, plain_s, with_s))
            rows.append([f"{size:,}", "monitor round vs fleet read", f"{round_:.3f}",
                         f"{read:.3f}", f"{round_ / read:.2f}x", f"{slow_ms:.2f} ({command})"])
            rows.append([f"{size:,}", "/metrics text with record vs without", f"{with_:.3f}",
                         f"{plain:.3f}", f"{with_ / plain:.2f}x", "-"])
        finally:
            server.close()
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = measure(sizes, args.runs)
    print(f"machine: {machine()}\n")
    print(markdown(["services", "what", "ours (s)", "beside (s)", "ratio",
                    "slowest command (ms)"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
