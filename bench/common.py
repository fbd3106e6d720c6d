"""Shared benchmark plumbing: a throwaway redis-server, process measurement, table printing."""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent


class BenchError(RuntimeError):
    """A benchmark could not run (missing server, crash): the run exits non-zero."""


def fresh_body(service: str) -> dict[str, object]:
    """A heartbeat whose long interval keeps it fresh for the whole benchmark."""
    return {"schema": 1, "service": service, "status": "ok", "message": "bench",
            "interval_s": 600, "stale_after_s": 1800, "queue_lag_ms": 1.0, "duration_ms": 1.0,
            "clock_offset_ms": 0.0, "published_at": None,
            "worker": {"node": "bench@host", "hostname": "host", "pid": 1}, "version": "bench",
            "checks": {"redis": {"status": "ok", "latency_ms": 0.1}}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisProcess:
    """A redis-server on a free loopback port for the length of a benchmark."""

    def __init__(self, *extra: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise BenchError("redis-server is not installed")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="petsage-bench-")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                        break
                except OSError:
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        raise BenchError("redis-server did not start") from None
                    time.sleep(0.05)
        except BaseException:
            self.close()  # never left running, whatever stopped its start (SIGTERM too)
            raise

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass(frozen=True)
class ProcessCost:
    """What one run of a command cost."""

    wall_s: float
    cpu_s: float
    rss_mib: float
    exit_code: int


GNU_TIME = shutil.which("time") and Path("/usr/bin/time")
"""GNU time, used only to read a child's own peak RSS (see ``run_measured``)."""


def run_measured(argv: Sequence[str], env: dict[str, str] | None = None) -> ProcessCost:
    """Run ``argv`` to completion: wall time, user+system CPU (``wait4``) and peak RSS.

    A child forked from this (large) process inherits its peak RSS in ``ru_maxrss``, so the
    peak RSS is read from GNU ``time``, whose own child is forked from a tiny process.
    ``time`` adds about a millisecond of CPU to every command alike.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss_file:
        wrapper = ([str(GNU_TIME), "-f", "%M", "-o", rss_file.name]
                   if GNU_TIME and GNU_TIME.exists() else [])
        started = time.perf_counter()
        proc = subprocess.Popen([*wrapper, *argv], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        text = rss_file.read().strip().splitlines()
        rss_kib = float(text[-1]) if wrapper and text and text[-1].isdigit() else usage.ru_maxrss
    return ProcessCost(wall, usage.ru_utime + usage.ru_stime, rss_kib / 1024, proc.returncode)


def medians(costs: list[ProcessCost]) -> ProcessCost:
    return ProcessCost(
        statistics.median(c.wall_s for c in costs),
        statistics.median(c.cpu_s for c in costs),
        statistics.median(c.rss_mib for c in costs),
        max(c.exit_code for c in costs),
    )


def time_call(fn: Callable[[], object], runs: int) -> list[float]:
    """Wall seconds of ``runs`` calls of ``fn``."""
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table."""
    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> str:
    """One line naming the machine the numbers come from."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {sys.version.split()[0]}"
