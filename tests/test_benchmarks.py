"""The benchmarks cannot rot: every one of them runs here at a tiny size, and ``bench.fill``
fills a fleet that reads as it says.

``python -m bench.run_all --tiny`` runs every module of ``bench/`` once (100 services, 3
repetitions, seconds where a full run takes minutes), each against servers it starts
itself: it must exit 0, every benchmark must print its table, and nothing it started may be
left running, also when this test gives up on it (SIGTERM, which ``run_all`` turns into
stopping its benchmarks and whatever they left: it is their subreaper; then SIGKILL of
its process group). Which module is run how is written down twice, here and in
``bench/run_all.py``: a new module of ``bench/`` fails this test until both say.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys

import pytest
import redis

from bench import fill as fill_module
from bench.fill import fill, not_fresh_indices, service_name
from tests.support.helpers import REPO, RedisServer, require_binary
from tests.support.processes import processes_left, spawn, stop
from tests.support.processes import run as run_process
from worker.core.names import Keys
from worker.core.states import State
from worker.read.fleet import read_fleet

TINY_DEADLINE_S = 420.0
"""How long the tiny run may take before this test stops it: about a minute on a quiet
2-core machine, two to three beside a busy test run."""

STOP_GRACE_S = 60.0
"""After SIGTERM, how long ``run_all`` gets to stop its benchmarks before SIGKILL."""

RUN_BY_FLEET_BENCH = {"fleet_baseline", "summary_baseline"}
"""Floors run by ``bench.fleet_bench``, beside what they are the floor of."""

NOT_BENCHMARKS = {"mutation", "lua_mutations"}
"""Mutation testing: it runs the test suite inside itself, so not here."""

PLUMBING = {"__init__", "common", "run_all"}


def _bench_modules() -> list[str]:
    return sorted(p.stem for p in (REPO / "bench").glob("*.py") if p.stem not in PLUMBING)


def _sections(out: str) -> dict[str, str]:
    """Each ``## bench.MODULE ...`` section of the output, by module."""
    parts = re.split(r"^## bench\.(\w+).*$", out, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


TABLE = re.compile(r"^\|.*\|\n\|(---\|)+$", re.MULTILINE)


@pytest.mark.e2e
@pytest.mark.timeout(TINY_DEADLINE_S + STOP_GRACE_S + 60)
def test_every_benchmark_runs_at_a_tiny_size_and_prints_its_table() -> None:
    require_binary("redis-server")
    proc = spawn([sys.executable, "-m", "bench.run_all", "--tiny"], cwd=REPO,
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        try:
            out, err = proc.communicate(timeout=TINY_DEADLINE_S)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)  # the leader only: it stops its benchmarks
            out, err = proc.communicate(timeout=STOP_GRACE_S)
            pytest.fail(f"bench.run_all --tiny took over {TINY_DEADLINE_S:.0f} s; stopped. "
                        f"Its output:\n{out[-3000:]}\n{err[-3000:]}")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(STOP_GRACE_S)
        stop(proc, signal.SIGKILL)  # the group, whatever is left in it
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    assert processes_left(root_pid=proc.pid, started=[proc.pid]) == []

    head, _, _ = out.partition("\n## bench.")
    assert TABLE.search(head) and "### All benchmarks" in head, head
    assert re.search(r"^\| bench\.fill: 100 services through publish_many", head, re.MULTILINE)
    assert re.search(r"^\| bench\.fill: its fleet read back \(fresh / stale\) \| 90 / 10 \|",
                     head, re.MULTILINE), head
    sections = _sections(out)
    for module in _bench_modules():
        if module == "fill":
            continue  # its rows, above
        if module in RUN_BY_FLEET_BENCH:
            assert f"bench.{module}: run by bench.fleet_bench" in head
        elif module in NOT_BENCHMARKS:
            assert f"bench.{module}: not run: " in head
        else:
            assert module in sections, f"bench.{module} was not run:\n{out[-3000:]}"
            assert TABLE.search(sections[module]), f"bench.{module} printed no table"
    assert "| measure | ours | baseline | ratio | goal | met? |" in sections["fleet_bench"]
    assert "load average" in sections["fleet_bench"]


# --- bench.fill ------------------------------------------------------------------------------


def _states(client: redis.Redis, prefix: str) -> dict[str, State]:
    fleet = read_fleet(client, Keys(prefix))
    assert fleet.store_problem is None, fleet.store_problem
    return {r.service: r.state for r in fleet.reports}


def test_fill_writes_a_fleet_that_reads_fresh(redis_server: RedisServer,
                                              real: redis.Redis) -> None:
    done = run_process([sys.executable, "-m", "bench.fill", "--services", "50",
                        "--redis", redis_server.url, "--prefix", "f50"],
                       capture_output=True, text=True, timeout=120, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert re.fullmatch(r"wrote 50 services \(0 not fresh\) under f50 in [\d.]+ s: [\d,]+ "
                        r"services/s; waited 0\.00 s for the not-fresh to read stale\n",
                        done.stdout), done.stdout
    states = _states(real, "f50")
    assert states == {service_name(i): State.FRESH for i in range(50)}
    # Through the real write path: the latest payload, the history and the summary.
    assert real.xlen(Keys("f50").history("svc-000049")) == 1
    assert real.hexists(Keys("f50").summary_of("svc-000049"), "svc-000049")


def test_fill_with_a_fraction_not_fresh_leaves_exactly_those_stale(
        redis_server: RedisServer, real: redis.Redis) -> None:
    filled = fill(redis_server.url, 50, prefix="f20", not_fresh=0.2, threads=2)
    assert (filled.services, filled.not_fresh) == (50, 10)
    states = _states(real, "f20")
    stale = {service_name(i) for i in not_fresh_indices(50, 0.2)}
    assert len(stale) == 10
    assert {s for s, state in states.items() if state is State.STALE} == stale
    assert {s for s, state in states.items() if state is State.FRESH} == set(states) - stale
    assert len(states) == 50


@pytest.mark.parametrize(("argv", "says"), [
    (["--services", "0"], "--services must be 1 to 10,000,000, not 0"),
    (["--services", "-5"], "--services must be 1 to 10,000,000, not -5"),
    (["--services", "many"], "argument --services: invalid int value: 'many'"),
    (["--redis", "http://127.0.0.1:6379/0"], "--redis has unknown scheme http://"),
    (["--redis", "redis://127.0.0.1:port/0"], "--redis"),
    (["--not-fresh", "1.5"], "--not-fresh must be a fraction from 0 to 1, not 1.5"),
    (["--not-fresh", "-0.1"], "--not-fresh must be a fraction from 0 to 1, not -0.1"),
    (["--not-fresh", "nan"], "--not-fresh must be a fraction from 0 to 1, not nan"),
])
def test_fill_refuses_bad_input_in_one_line(argv: list[str], says: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--services", "10", "--redis", "redis://127.0.0.1:6379/0"]
    for flag, value in zip(argv[::2], argv[1::2], strict=True):
        at = args.index(flag) if flag in args else None
        if at is None:
            args += [flag, value]
        else:
            args[at + 1] = value
    with pytest.raises(SystemExit) as exited:
        fill_module.main(args)
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m bench.fill: "), captured.err
    assert says in lines[0]


def test_fill_as_a_command_says_a_bad_input_in_one_line_without_a_traceback() -> None:
    done = run_process([sys.executable, "-m", "bench.fill", "--services", "0",
                        "--redis", "redis://127.0.0.1:6379/0"],
                       capture_output=True, text=True, timeout=120, cwd=REPO, check=False)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == ("python -m bench.fill: --services must be 1 to 10,000,000, not 0\n")
