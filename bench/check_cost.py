"""Check cost: the CPU of one ``petsage-heartbeat check`` process against the socket floor.

The floor is the least any probe written in Python can cost: a process that opens a
socket to Redis, sends one GET and reads the reply, importing only ``socket``. Each
command runs as a process of its own, interleaved, against a redis-server this benchmark
starts (and stops, whatever happens) holding one fresh heartbeat. Goal: check's CPU
(user + system, the whole process) at most 2x the floor's.

Both sides are measured twice: with bytecode as this environment has it (with
``PYTHONDONTWRITEBYTECODE`` set, every module of ``worker/`` is compiled from source at
each start) and with bytecode cached (in a throwaway ``PYTHONPYCACHEPREFIX``, as after
``pip install``, which compiles it).

    python -m bench.check_cost [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import redis

import worker
from bench.common import (
    BenchError,
    ProcessCost,
    RedisProcess,
    fresh_body,
    machine,
    run_measured,
    table,
)
from worker.core.names import Keys
from worker.publish.store import HeartbeatStore

GOAL = 2.0
"""check's CPU may be at most this many times the floor's."""


def commands(url: str, port: int, key: str) -> dict[str, list[str]]:
    floor = (
        "import socket\n"
        f"s = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
        f"k = {key!r}.encode()\n"
        "s.sendall(b'*2\\r\\n$3\\r\\nGET\\r\\n$%d\\r\\n%s\\r\\n' % (len(k), k))\n"
        "assert s.recv(65536).startswith(b'$')\n"
    )
    return {
        "python -m worker check": [sys.executable, "-m", "worker", "check", "--redis", url],
        "floor: socket GET": [sys.executable, "-c", floor],
    }


def environments(pycache: Path) -> dict[str, dict[str, str]]:
    """The environment of each measurement: as inherited, and with bytecode cached."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("HEARTBEAT_", "CELERY_", "PYTHONPYCACHEPREFIX"))}
    cached = {k: v for k, v in base.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cached["PYTHONPYCACHEPREFIX"] = str(pycache)
    inherited = ("not written (PYTHONDONTWRITEBYTECODE set)"
                 if os.environ.get("PYTHONDONTWRITEBYTECODE") else "as this environment has it")
    if any(Path(worker.__file__).parent.rglob("__pycache__")):
        inherited += ", but read from worker/'s own __pycache__"  # written by another run
    return {f"bytecode {inherited}": base, "bytecode cached": cached}


def measure(argv_by_name: dict[str, list[str]], env: dict[str, str],
            runs: int) -> dict[str, ProcessCost]:
    for name, argv in argv_by_name.items():  # a warm-up run each: writes cached bytecode
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60,
                              check=False)
        if done.returncode != 0:
            raise BenchError(f"{name} exited {done.returncode}: {done.stdout[-300:]}"
                             f"{done.stderr[-300:]}")
    costs: dict[str, list[ProcessCost]] = {name: [] for name in argv_by_name}
    for _ in range(runs):  # interleaved, so load on the machine hits both alike
        for name, argv in argv_by_name.items():
            cost = run_measured(argv, env)
            if cost.exit_code != 0:
                raise BenchError(f"{name} exited {cost.exit_code}")
            costs[name].append(cost)
    return {name: ProcessCost(statistics.median(c.wall_s for c in samples),
                              statistics.median(c.cpu_s for c in samples),
                              statistics.median(c.rss_mib for c in samples), 0)
            for name, samples in costs.items()}


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def _stop(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # through the ``finally`` that stops redis-server


def main() -> int:
    signal.signal(signal.SIGTERM, _stop)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7,
                        help="processes per command and environment (default 7)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    pycache = Path(tempfile.mkdtemp(prefix="petsage-bench-pycache-"))
    server = None
    try:
        server = RedisProcess()
        HeartbeatStore(redis.Redis(port=server.port), Keys(), retention_s=3600,
                       history_len=10).publish("petsage", fresh_body("petsage"))
        argv_by_name = commands(server.url, server.port, Keys().latest("petsage"))
        load_before = loadavg()
        rows = []
        verdicts = []
        for label, env in environments(pycache).items():
            med = measure(argv_by_name, env, args.runs)
            check, floor = med["python -m worker check"], med["floor: socket GET"]
            ratio = check.cpu_s / floor.cpu_s
            rows.append((label, check.cpu_s, floor.cpu_s, ratio, check.wall_s, floor.wall_s,
                         check.rss_mib))
            verdicts.append(f"{label}: {ratio:.2f}x ({'met' if ratio <= GOAL else 'MISSED'})")
        print(f"### Check cost ({args.runs} runs each, medians; {machine()}; "
              f"load average {load_before} before, {loadavg()} after)\n")
        print(table(["bytecode", "check CPU s", "floor CPU s", "check / floor",
                     "check wall s", "floor wall s", "check peak RSS MiB"], rows))
        print(f"\ngoal: check CPU <= {GOAL:g}x the socket floor: {'; '.join(verdicts)}\n")
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            server.close()
        shutil.rmtree(pycache, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
