"""The incident and silence reads are bounded, on a real redis-server (docs/incidents.md,
"Bounds").

An incident stream written far past its cap (200,000 entries, by hand or by a hostile
writer) costs the dashboard, ``/metrics`` and ``status SERVICE`` about what a stream of
1,000 does, and no command runs long enough to hold Redis for other clients; a 50 MB
silence value costs ``check`` no memory.

Times: each read is measured ``RUNS`` times and the fastest kept (the least disturbed by
the rest of the machine); the promise is ``< 1.5x`` the time at 1,000 entries, plus
``HEADROOM_S`` for a loaded machine (scheduling noise on a shared CI runner is tens of ms;
the unbounded read took seconds). Redis: ``SLOWLOG`` with ``slowlog-log-slower-than`` set
to ``SLOW_US`` (2 ms), reset before each read, must be empty after it: after the least
disturbed of the runs (as the times), and no command of any run may take ``NOISY_US``
(a loaded machine can stretch a 0.7 ms page past 2 ms once; the unbounded read took
1,840 ms on every run).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from tests.support.helpers import cli_argv, heartbeat_env
from tests.support.processes import run as run_process
from tests.support.publishing import publish
from worker.core.names import Keys
from worker.core.redis_io import redis_time_ms
from worker.core.settings import Settings
from worker.http.router import configure, create_app
from worker.read.entry_silence import entry_silences_command, read_entry_silences
from worker.read.incidents import MAX_INCIDENTS_READ, read_incidents

KEYS = Keys()
SERVICE = "petsage"
SETTINGS = Settings.from_env({"HEARTBEAT_SERVICE": SERVICE})

RUNS = 5
"""Each read is timed this many times; the fastest counts."""

RATIO = 1.5
"""A read of 200,000 entries takes at most this many times a read of 1,000 ..."""

HEADROOM_S = 0.2
"""... plus this: noise on a loaded machine, never the seconds an unbounded read took."""

SLOW_US = 2000
"""No command of a read may run this long (µs): Redis answers everyone else meanwhile."""

NOISY_US = 20_000
"""The margin for a loaded machine: no command of any run may take this long."""

BIG = 50 * 1024 * 1024
"""A hostile silence value: 50 MB."""

RSS_MARGIN_KB = 16 * 1024
"""``check`` with a 50 MB silence uses at most this much more than with none (it read the
whole value before: 172 MB, against a beat pod's 192 Mi)."""

_MEASURED_CLI = """
import contextlib, io, re, sys, time
from worker.cli.main import main
with contextlib.redirect_stdout(io.StringIO()):  # the command's imports, before the clock
    main([sys.argv[1], "--redis", "redis://127.0.0.1:1/0", "--timeout", "1"])
started = time.monotonic()
code = main(sys.argv[1:])
elapsed = time.monotonic() - started
with open("/proc/self/status") as status:
    rss = re.search(r"VmHWM:\\s+(\\d+) kB", status.read())[1]
print(f"ELAPSED {elapsed:.4f} MAXRSS_KB {rss}", file=sys.stderr)
sys.exit(code)
"""
"""Runs a CLI command in-process after a warm-up (its imports), timing the command and
reading the peak RSS of this process image from ``/proc`` (``VmHWM``): ``ru_maxrss`` would
count the forked test process too (it survives ``exec``)."""


def _cli(url: str, *args: str) -> tuple[int, str, float, int]:
    """Run the CLI in a fresh process: exit code, stdout, seconds of the command itself (its
    imports done before the clock starts) and the process's peak RSS (KiB)."""
    argv = cli_argv(*args)
    done = run_process([argv[0], "-c", _MEASURED_CLI, *args, "--redis", url],
                       env=heartbeat_env(url), capture_output=True, text=True, timeout=120,
                       check=False)
    found = re.search(r"ELAPSED ([\d.]+) MAXRSS_KB (\d+)", done.stderr)
    assert found, done.stderr[-2000:]
    return done.returncode, done.stdout, float(found[1]), int(found[2])


@pytest.fixture
def slowlog(real: redis.Redis) -> Iterator[Callable[[], list[Any]]]:
    """``SLOWLOG`` at ``SLOW_US``; call it to get (and reset) what ran longer since."""
    before = real.config_get("slowlog-log-slower-than")["slowlog-log-slower-than"]
    real.config_set("slowlog-log-slower-than", SLOW_US)
    real.slowlog_reset()

    def slow() -> list[Any]:
        entries = [(e["duration"], e["command"]) for e in real.slowlog_get(128)]
        real.slowlog_reset()
        return entries

    yield slow
    real.config_set("slowlog-log-slower-than", str(before))


def _fill(client: redis.Redis, now: int, count: int) -> None:
    """``count`` transitions in 30 days, as a monitor writes them (fresh/stale in turn),
    the newest a second ago; the record says stale since then."""
    client.delete(KEYS.incidents(SERVICE))
    step = min(10_000, (29 * 86_400_000) // count)
    for start in range(0, count, 10_000):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(start + 10_000, count)):
            at = now - 1000 - (count - 1 - i) * step
            old, new = ("fresh", "stale") if i % 2 else ("stale", "fresh")
            pipe.xadd(KEYS.incidents(SERVICE), {
                "from": old, "to": new, "diagnosis": "no_consumer" if new == "stale" else "",
                "reason": "no worker consumed a heartbeat for 31.2 s", "at_ms": at,
                "seen_ms": at, "age_s": "31.2", "seq": str(i), "monitor": "monitor-1"},
                id=f"{at}-0")
        pipe.execute()
    client.hset(KEYS.observed(SERVICE), mapping={
        "state": "stale", "first_ms": now - 29 * 86_400_000 - 5000, "at_ms": now - 1000,
        "diagnosis": "no_consumer"})


def _fastest(read: Callable[[], Any], slow: Callable[[], list[Any]],
             runs: int = RUNS) -> tuple[float, list[Any]]:
    """The fastest of ``runs`` reads, and the commands over ``SLOW_US`` in the run that had
    fewest; any command over ``NOISY_US`` in any run fails at once."""
    best, fewest = float("inf"), None
    for _ in range(runs):
        slow()
        started = time.perf_counter()
        read()
        best = min(best, time.perf_counter() - started)
        over = slow()
        assert all(us < NOISY_US for us, _ in over), over
        fewest = over if fewest is None or len(over) < len(fewest) else fewest
    return best, fewest or []


def _status(url: str) -> float:
    _, out, elapsed, _ = _cli(url, "status", "--service", SERVICE)
    assert "uptime" in out.lower() or "outage" in out.lower(), out
    return elapsed


def _status_runs(url: str, slow: Callable[[], list[Any]]) -> tuple[float, list[Any]]:
    """``status SERVICE`` three times (a process each): its fastest time and slow commands."""
    elapsed: list[float] = []
    _, over = _fastest(lambda: elapsed.append(_status(url)), slow, 3)
    return min(elapsed), over


def test_a_stream_of_200000_entries_costs_what_one_of_1000_does(
        real: redis.Redis, redis_server: Any, slowlog: Callable[[], list[Any]]) -> None:
    publish(real, SERVICE, interval_s=10)
    now = redis_time_ms(real.time())
    url = redis_server.url
    configure(settings=SETTINGS, client=real)
    times: dict[tuple[str, int], float] = {}
    try:
        app = TestClient(create_app())
        for count in (1000, 200_000):
            _fill(real, now, count)
            page = app.get("/")
            assert page.status_code == 200 and "outage" in page.text.lower()
            metrics = app.get("/metrics").text
            assert f'petsage_heartbeat_outages{{service="{SERVICE}",window="30d"}}' in metrics \
                or "outages" in metrics
            for name, read in (("dashboard", lambda: app.get("/")),
                               ("dashboard rows", lambda: app.get("/dashboard/rows")),
                               ("/metrics", lambda: app.get("/metrics")),
                               ("status SERVICE", lambda: None)):
                if name == "status SERVICE":
                    times[name, count], over = _status_runs(url, slowlog)
                else:
                    times[name, count], over = _fastest(read, slowlog)
                assert over == [], (name, count, over)  # nothing held Redis for 2 ms
    finally:
        configure()
    summary = {f"{name} {count}": round(t, 4) for (name, count), t in times.items()}
    print(json.dumps(summary))
    for name in ("dashboard", "dashboard rows", "/metrics", "status SERVICE"):
        small, big = times[name, 1000], times[name, 200_000]
        assert big < RATIO * small + HEADROOM_S, (name, summary)
    # What the reads said of the cut stream: the newest entries, and that it was cut.
    _, found = read_incidents(real, KEYS, [SERVICE])
    s = found[SERVICE]
    assert s.truncated and s.outages["30d"] == MAX_INCIDENTS_READ // 2
    assert s.covered_s["30d"] < 29 * 86_400  # the span read, not the 29 days watched
    _, out, _, _ = _cli(url, "status", "--service", SERVICE, "--json")
    assert json.loads(out)[0]["incidents"]["truncated"] is True


def test_a_50_mb_silence_costs_check_no_memory_and_is_no_silence(
        real: redis.Redis, redis_server: Any, slowlog: Callable[[], list[Any]]) -> None:
    publish(real, SERVICE, interval_s=10)
    url = redis_server.url
    code, out, _, base_kb = _cli(url, "check", "--service", SERVICE)
    assert code == 0 and out.startswith("OK"), out
    now = redis_time_ms(real.time())
    hostile = json.dumps({"until_ms": now + 3_600_000, "reason": "x"}) + " " * BIG
    real.set(KEYS.silence(SERVICE), hostile)
    slowlog()
    code, out, _, big_kb = _cli(url, "check", "--service", SERVICE)
    assert slowlog() == []
    assert code == 0 and out.startswith("OK") and "silenced" not in out, out
    assert big_kb < base_kb + RSS_MARGIN_KB, (base_kb, big_kb)
    code, out, _, _ = _cli(url, "check", "--service", SERVICE, "--json")
    assert json.loads(out)["silence"] is None
    # The service's own read (dashboard, /metrics, status) says no silence, as cheaply.
    _, found = read_incidents(real, KEYS, [SERVICE])
    assert found[SERVICE].silence is None
    assert slowlog() == []


def test_a_50_mb_entry_silence_is_never_read(real: redis.Redis,
                                            slowlog: Callable[[], list[Any]]) -> None:
    now = redis_time_ms(real.time())
    good = json.dumps({"until_ms": now + 3_600_000, "reason": "deploy", "since_ms": now})
    real.hset(KEYS.entry_silence(SERVICE), mapping={"nightly": good, "big": good + " " * BIG})
    slowlog()
    tracemalloc.start()
    try:
        silences = read_entry_silences(real, SERVICE)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert set(silences) == {"nightly"}
    assert peak < 1024 * 1024, peak  # the 50 MB value never came over the wire
    assert slowlog() == []
    with contextlib.redirect_stdout(io.StringIO()):
        reply = real.execute_command(  # type: ignore[no-untyped-call]
            *entry_silences_command(KEYS, SERVICE, "big"))
    assert reply == []
