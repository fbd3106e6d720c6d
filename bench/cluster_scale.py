"""A fleet on a local 3-primary Redis Cluster, from 10,000 to 1,000,000 services.

    python -m bench.cluster_scale [--sizes 10000,100000,1000000] [--runs 3]
                                  [--not-fresh 0.01]

For each size, on one cluster started here (three redis-servers, no replicas, emptied
between sizes): the fleet is filled through the real write path (``bench.fill``, history
length 1), then ``status --all --json`` runs ``--runs`` times as a process (medians of
wall, CPU and peak RSS). Prints, per size: fill rate, Redis memory per service (the
growth of ``used_memory`` summed over the primaries, divided by the services), the read's
wall and CPU, seconds per 100,000 services (flat if the read grows linearly), peak RSS,
and the slowest command any primary ran during the reads (``SLOWLOG``). Then the load
average. Exits non-zero only if a benchmark could not run or a read failed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import redis

from bench.common import BenchError, ProcessCost, machine, medians, run_measured, table
from bench.fill import fill


def _free_pair() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port > 55000:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise BenchError("no free pair of ports for a cluster node")


class LocalCluster:
    """Three primaries on loopback, every slot assigned; stopped by ``close``."""

    def __init__(self) -> None:
        server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if server is None or cli is None:
            raise BenchError("redis-server and redis-cli are needed")
        self.dir = Path(tempfile.mkdtemp(prefix="petsage-cluster-bench-"))
        self.ports: list[int] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        try:
            for _ in range(3):
                port = _free_pair()
                self.ports.append(port)
                self.procs.append(subprocess.Popen(
                    [server, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled",
                     "yes", "--cluster-config-file", f"nodes-{port}.conf", "--save", "",
                     "--appendonly", "no", "--dir", str(self.dir)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            self._wait(lambda: all(self.node(p).ping() for p in self.ports), "nodes up")
            subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                            "--cluster-replicas", "0", "--cluster-yes"], check=True,
                           capture_output=True, timeout=60)
            self._wait(lambda: all(b"cluster_state:ok" in self.node(p).execute_command(
                "CLUSTER", "INFO") for p in self.ports), "cluster_state:ok")
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _wait(ready: object, what: str, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if ready():  # type: ignore[operator]
                    return
            except (redis.RedisError, OSError):
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"the cluster did not come up: {what}")
            time.sleep(0.1)

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=30)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0?cluster=true"

    def used_memory(self) -> int:
        return sum(int(self.node(p).info("memory")["used_memory"]) for p in self.ports)

    def flush(self) -> None:
        for port in self.ports:
            self.node(port).flushall()

    def slowlog_start(self) -> None:
        for port in self.ports:
            node = self.node(port)
            node.config_set("slowlog-log-slower-than", 0)
            node.config_set("slowlog-max-len", 100_000)
            node.slowlog_reset()

    def slowest_ms(self) -> tuple[float, str]:
        """The slowest command since ``slowlog_start`` on any primary, and its name."""
        slowest, name = 0.0, "-"
        for port in self.ports:
            for entry in self.node(port).slowlog_get(100_000):
                command = entry["command"]
                text = command.decode(errors="replace") if isinstance(command, bytes) else str(
                    command)
                if entry["duration"] / 1000 > slowest:
                    slowest, name = entry["duration"] / 1000, text.split(" ")[0]
        return slowest, name

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def measure(cluster: LocalCluster, services: int, runs: int, not_fresh: float) -> list[object]:
    """One row: fill, memory, the read's cost and the slowest command."""
    cluster.flush()
    before = cluster.used_memory()
    filled = fill(cluster.url, services, not_fresh=not_fresh, history_len=1)
    per_service = (cluster.used_memory() - before) / services
    # --timeout: the read's deadline is twice this; a million services take more than the
    # default's 10 s on two cores.
    argv = [sys.executable, "-m", "worker", "status", "--all", "--json", "--timeout", "150",
            "--redis", cluster.url]
    costs: list[ProcessCost] = []
    cluster.slowlog_start()
    for _ in range(runs):
        cost = run_measured(argv, env=dict(os.environ))
        if cost.exit_code not in (0, 1, 2):  # 1/2: the not-fresh services
            raise BenchError(f"status --all exited {cost.exit_code} at {services:,} services")
        costs.append(cost)
    slowest, command = cluster.slowest_ms()
    for port in cluster.ports:
        cluster.node(port).config_set("slowlog-log-slower-than", 10_000)
    cost = medians(costs)
    return [f"{services:,}", f"{services / filled.seconds:,.0f}/s", f"{per_service:,.0f} B",
            f"{cost.wall_s:.2f}", f"{cost.cpu_s:.2f}", f"{cost.wall_s / services * 1e5:.2f}",
            f"{cost.rss_mib:.0f}", f"{slowest:.2f} ({command})"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--not-fresh", type=float, default=0.01)
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        parser.exit(2, f"bench.cluster_scale: --sizes {args.sizes!r} is not a list of "
                       "numbers, e.g. 10000,100000\n")
    if min(sizes) <= 0 or args.runs <= 0:
        parser.exit(2, "bench.cluster_scale: sizes and --runs must be positive\n")
    print(f"# A fleet on a 3-primary Redis Cluster ({machine()})\n")
    try:
        cluster = LocalCluster()
    except BenchError as exc:
        print(f"bench.cluster_scale: {exc}", file=sys.stderr)
        return 1
    rows = []
    try:
        for services in sizes:
            rows.append(measure(cluster, services, args.runs, args.not_fresh))
    except (BenchError, redis.RedisError) as exc:
        print(f"bench.cluster_scale: {exc}", file=sys.stderr)
        return 1
    finally:
        cluster.close()
    print(table(["services", "fill", "Redis memory a service", "status --all wall s", "CPU s",
                 "s per 100k", "peak RSS MiB", "slowest command ms"], rows))
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"\nnot fresh: {args.not_fresh:.0%} of each fleet, read in full; history length 1; "
          f"medians of {args.runs} runs; load average {load}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
