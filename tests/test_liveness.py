"""Liveness sees only its own component: a store that lost or can't take a record restarts
nothing, a record truly old or long absent does, and a name that names no one node is refused.

The verdict functions on made-up reports first (fast), then ``check --liveness`` as a
process against real redis-server, ``celery beat`` and ``celery worker`` processes
(interval 0.5 s).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.helpers import Proc, RedisServer, celery_argv, cli_argv, heartbeat_env, wait_for
from tests.support.processes import run as run_process
from worker.core.states import State, Thresholds
from worker.read.absence import Absence, absent_for, present, state_path
from worker.read.liveness import (
    StoreEvidence,
    beat_verdict,
    name_part_only,
    node_verdict,
    store_evidence,
)
from worker.read.nodes import NodeReport
from worker.read.reader import HeartbeatReport

NOW = 1_800_000_000_000
NORMAL = StoreEvidence(None, 3600.0, "run-1", False)
"""A store that takes writes and has run for an hour."""


def _marker(age_s: float, **extra: object) -> dict[str, object]:
    published = NOW - round(age_s * 1000)
    return {"published_at_ms": published, "next_due_ms": published + 10_000, "seq": 5,
            "since_ms": published - 600_000, "interval_s": 10.0, "stale_after_s": 30.0,
            **extra}


def _report(marker: dict[str, object] | None = None,
            nodes: tuple[NodeReport, ...] = ()) -> HeartbeatReport:
    return HeartbeatReport("petsage", State.STALE, "last heartbeat 99.0s ago", age_s=99.0,
                           thresholds=Thresholds(15, 30), now_ms=NOW, beat=marker, nodes=nodes)


def _node(name: str, age_s: float) -> NodeReport:
    return NodeReport(name, State.STALE if age_s > 30 else State.FRESH, age_s,
                      NOW - round(age_s * 1000))


# -- the store's evidence --------------------------------------------------------------

def test_store_evidence_names_a_replica_a_loading_store_and_a_full_one() -> None:
    replica = store_evidence({"role": "slave", "master_host": "10.0.0.9", "master_port": "6379",
                              "master_link_status": "down", "master_sync_in_progress": "1",
                              "uptime_in_seconds": "7200", "run_id": "abc"}, 4)
    assert replica.cannot_write == ("the store is a read-only replica of 10.0.0.9:6379 "
                                    "(link down, resyncing)")
    assert (replica.uptime_s, replica.run_id, replica.empty) == (7200.0, "abc", False)
    assert store_evidence({"role": "master", "loading": "1"}, 0).cannot_write == (
        "the store is loading its data set")
    full = store_evidence({"role": "master", "maxmemory": "1000", "used_memory": "2000",
                           "maxmemory_policy": "noeviction"}, 1)
    assert full.cannot_write is not None and "memory limit" in full.cannot_write
    normal = store_evidence({"role": "master", "loading": "0", "uptime_in_seconds": "x"}, 0)
    assert normal == StoreEvidence(None, None, "", True)  # an empty index: restarted empty
    assert store_evidence({}, None) == StoreEvidence()  # INFO denied: nothing known


# -- the absence clock ---------------------------------------------------------------------

def test_the_absence_clock_counts_from_the_first_probe_that_found_the_record_absent(
        tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    assert absent_for(path, "run-1", now_s=1000.0) == Absence(0.0, "")
    assert absent_for(path, "run-1", now_s=1031.5) == Absence(31.5, "")
    # The store restarted (a new run_id): the component gets a whole threshold again.
    assert absent_for(path, "run-2", now_s=1040.0) == Absence(0.0, "")
    assert absent_for(path, "run-2", now_s=1041.0) == Absence(1.0, "")
    present(path)
    assert not path.exists()
    present(path)  # twice: nothing to remove, no error
    assert absent_for(path, "run-2", now_s=1050.0) == Absence(0.0, "")


@pytest.mark.parametrize("content", ["{not json", '{"run_id": "r", "absent_since": "x"}',
                                     '{"run_id": 1, "absent_since": 5}', "[1, 2]",
                                     '{"run_id": "r", "absent_since": 99999}',
                                     '{"run_id": "r", "absent_since": true}'],
                         ids=["not-json", "since-text", "run-id-int", "list", "future", "bool"])
def test_a_corrupt_state_file_cannot_tell_and_restarts_the_clock(tmp_path: Path,
                                                                 content: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    absence = absent_for(path, "r", now_s=1000.0)
    assert absence.absent_s is None and absence.problem == f"liveness state file {path} corrupt"
    assert absent_for(path, "r", now_s=1002.0) == Absence(2.0, "")  # rewritten: counts again


def test_an_unwritable_state_file_cannot_tell(tmp_path: Path) -> None:
    path = tmp_path / "missing-dir" / "state.json"
    absence = absent_for(path, "r", now_s=1000.0)
    assert absence.absent_s is None
    assert absence.problem.startswith(f"liveness state file {path} not writable")


def test_state_files_are_keyed_by_store_prefix_service_and_component() -> None:
    base = state_path("redis://:secret@h:6379/0", "petsage:hb", "petsage", "beat")
    assert base.name.startswith("petsage-heartbeat-liveness-") and base.suffix == ".json"
    assert "secret" not in str(base)
    others = {state_path("redis://:secret@h:6379/1", "petsage:hb", "petsage", "beat"),
              state_path("redis://:secret@h:6379/0", "other", "petsage", "beat"),
              state_path("redis://:secret@h:6379/0", "petsage:hb", "billing", "beat"),
              state_path("redis://:secret@h:6379/0", "petsage:hb", "petsage", "node:pod-a")}
    assert base not in others and len(others) == 4
    # The password is not part of the key: a rotated password keeps the clock.
    assert state_path("redis://:other@h:6379/0", "petsage:hb", "petsage", "beat") == base


# -- beat's liveness -----------------------------------------------------------------------

def test_a_missing_marker_fails_beat_liveness_only_once_absent_over_the_threshold() -> None:
    report = _report(None)
    within = beat_verdict(report, liveness=True, store=NORMAL, absence=Absence(30.0, ""))
    assert within.exit_code == 0
    assert within.text == ("petsage beat missing: beat has recorded no publish; cannot tell "
                           "yet: absent for 30.0s since this probe first found it so, within "
                           "the 30s threshold: tolerated by liveness")
    over = beat_verdict(report, liveness=True, store=NORMAL, absence=Absence(30.001, ""))
    assert over.exit_code == 2 and over.text == "petsage beat missing: beat has recorded no publish"
    assert beat_verdict(report, liveness=False, store=NORMAL,
                        absence=Absence(0.0, "")).exit_code == 2  # not liveness: the state
    empty = StoreEvidence(None, 3600.0, "run-1", True)
    assert "(the store holds no heartbeat: restarted empty?)" in beat_verdict(
        report, liveness=True, store=empty, absence=Absence(1.0, "")).text


@pytest.mark.parametrize("absence", [None, Absence(None, "liveness state file /x corrupt")],
                         ids=["no-file", "corrupt"])
def test_a_missing_marker_without_a_usable_state_file_cannot_tell(
        absence: Absence | None) -> None:
    verdict = beat_verdict(_report(None), liveness=True, store=NORMAL, absence=absence)
    assert verdict.exit_code == 0 and "\n" not in verdict.text
    assert ("cannot tell: liveness state file /x corrupt" if absence else
            "cannot tell: no liveness state file") in verdict.text


@pytest.mark.parametrize("store", [
    StoreEvidence("the store is a read-only replica of m:6379 (link down)", 3600.0, "r", True),
    StoreEvidence("the store is loading its data set", 3600.0, "r", False),
], ids=["replica", "loading"])
@pytest.mark.parametrize("marker", [None, _marker(500)], ids=["missing", "old"])
def test_a_store_that_cannot_take_writes_never_fails_beat_liveness(
        store: StoreEvidence, marker: dict[str, object] | None) -> None:
    verdict = beat_verdict(_report(marker), liveness=True, store=store,
                           absence=Absence(9999.0, ""))
    assert verdict.exit_code == 0
    assert f"cannot tell: {store.cannot_write}, so no component can write" in verdict.text


def test_an_old_marker_fails_beat_liveness_on_a_store_that_ran_the_whole_threshold() -> None:
    old = _report(_marker(30.5))
    assert beat_verdict(old, liveness=True, store=NORMAL).exit_code == 2
    assert beat_verdict(old, liveness=True, store=None).exit_code == 2  # INFO denied
    assert beat_verdict(_report(_marker(30.0)), liveness=True, store=NORMAL).exit_code == 0
    restarted = StoreEvidence(None, 30.0, "r", False)  # from a snapshot 30 s ago
    verdict = beat_verdict(old, liveness=True, store=restarted)
    assert verdict.exit_code == 0 and ("cannot tell yet: the store (re)started 30s ago, within "
                                       "the 30s threshold") in verdict.text
    assert beat_verdict(old, liveness=True,
                        store=StoreEvidence(None, 30.001, "r", False)).exit_code == 2


# -- a worker node's liveness ----------------------------------------------------------------

def test_the_name_part_of_a_node_is_refused_in_one_line_naming_the_accepted_forms() -> None:
    report = _report(_marker(1), nodes=(_node("n1@host-a", 1), _node("n2@host-a", 1)))
    line = ("petsage-heartbeat: --node n1 is the name part of n1@host-a, which names no one "
            "node; accepted: the full node name (n1@host-a) or its host part (host-a)")
    assert name_part_only(report, "n1") == line
    for liveness in (True, False):
        verdict = node_verdict(report, "n1", liveness=liveness, store=NORMAL)
        assert (verdict.exit_code, verdict.text) == (3, line)
    shared = _report(_marker(1), nodes=(_node("hb@pod-a", 1), _node("hb@pod-b", 1)))
    assert "hb@pod-a and 1 other node(s)" in (name_part_only(shared, "hb") or "")
    for wanted in ("n1@host-a", "host-a", "n3", "n1@host-b"):  # a match, or no node's name part
        assert name_part_only(report, wanted) is None, wanted
    assert node_verdict(report, "host-a", liveness=True).exit_code == 0
    assert node_verdict(report, "n1@host-a", liveness=True).exit_code == 0


def test_a_missing_node_record_fails_liveness_only_once_absent_over_the_threshold() -> None:
    report = _report(_marker(1), nodes=(_node("hb@pod-b", 1),))
    over = node_verdict(report, "pod-a", liveness=True, store=NORMAL,
                        absence=Absence(31.0, ""))
    assert over.exit_code == 2 and "this worker is stuck, dead or not consuming" in over.text
    within = node_verdict(report, "pod-a", liveness=True, store=NORMAL, absence=Absence(29.0, ""))
    assert within.exit_code == 0 and "cannot tell yet: absent for 29.0s" in within.text
    assert node_verdict(report, "pod-a", liveness=True, store=NORMAL,
                        absence=Absence(None, "x")).exit_code == 0
    replica = StoreEvidence("the store is a read-only replica of m:1 (link up)", 3600.0, "", False)
    assert node_verdict(report, "pod-a", liveness=True, store=replica,
                        absence=Absence(99.0, "")).exit_code == 0
    stale = _report(_marker(1), nodes=(_node("hb@pod-a", 700),))  # an old record: no clock
    assert node_verdict(stale, "pod-a", liveness=True, store=NORMAL).exit_code == 2
    assert node_verdict(stale, "pod-a", liveness=True, store=replica).exit_code == 0


# -- real processes ----------------------------------------------------------------------------

def _check(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_process(cli_argv("check", *args), env=env, capture_output=True, text=True,
                       timeout=30, check=False)


def _env(server: RedisServer, tmp_path: Path) -> dict[str, str]:
    state_dir = tmp_path / "probe-tmp"
    state_dir.mkdir(exist_ok=True)
    return heartbeat_env(server.url, TMPDIR=str(state_dir))


@pytest.mark.e2e
def test_beat_liveness_passes_throughout_a_store_restarted_empty(
        own_redis: RedisServer, procs: list[Proc], tmp_path: Path) -> None:
    env = _env(own_redis, tmp_path)
    procs.append(Proc(celery_argv("beat"), env, tmp_path, "beat"))
    procs.append(Proc(celery_argv("worker", hostname="n1@pod-x"), env, tmp_path, "worker"))
    wait_for(lambda: _check(env).returncode == 0, 45, what="a fresh heartbeat")
    probe = ("--liveness", "--beat", "--stale-after", "30")
    seen: list[tuple[int, str]] = []

    def poll(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            done = _check(env, *probe)
            seen.append((done.returncode, done.stdout.strip()))
            assert done.returncode == 0, seen[-3:]

    poll(1.0)
    # Beat paused across the restart, so that the probe surely sees the empty store (on a
    # busy machine beat could write its marker again before the first probe ran).
    beat = procs[0]
    os.kill(beat.proc.pid, signal.SIGSTOP)
    try:
        own_redis.restart()  # no persistence: it comes back empty
        poll(1.0)
        deadline = time.monotonic() + 60
        while not any("missing" in line or "(re)started" in line for _, line in seen):
            assert time.monotonic() < deadline, seen[-3:]  # a probe of the empty store
            poll(0.1)
    finally:
        os.kill(beat.proc.pid, signal.SIGCONT)
    poll(1.0)
    assert any("missing" in line or "(re)started" in line for _, line in seen), seen
    wait_for(lambda: own_redis.client().exists("petsage:hb:{petsage}:beat"), 30,
             what="beat's marker written again")
    poll(1.0)
    # A mistyped node (the part before the @) is refused, not matched or failed.
    mistyped = _check(env, "--liveness", "--node", "n1")
    assert mistyped.returncode == 3 and mistyped.stdout.count("\n") == 1
    assert "accepted: the full node name (n1@pod-x) or its host part (pod-x)" in mistyped.stdout


@pytest.mark.e2e
def test_beat_liveness_passes_on_a_store_turned_into_a_replica(
        own_redis: RedisServer, procs: list[Proc], tmp_path: Path) -> None:
    env = _env(own_redis, tmp_path)
    procs.append(Proc(celery_argv("beat"), env, tmp_path, "beat"))
    wait_for(lambda: _check(env, "--beat").returncode == 0, 45, what="beat publishing")
    admin = own_redis.client()
    admin.replicaof("127.0.0.1", "1")  # a master nobody listens on
    for _ in range(4):  # the marker ages past 1 s on the replica: still no restart
        time.sleep(0.5)
        done = _check(env, "--liveness", "--beat", "--stale-after", "1")
        assert done.returncode == 0, done.stdout
    assert "stale" in done.stdout, done.stdout
    assert "read-only replica of 127.0.0.1:1 (link down" in done.stdout
    admin.replicaof("NO", "ONE")
    admin.flushall()
    admin.replicaof("127.0.0.1", "1")  # the marker gone on the replica
    time.sleep(1.2)
    done = _check(env, "--liveness", "--beat", "--stale-after", "1", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["state"] == "missing", done.stdout


@pytest.mark.e2e
def test_beat_liveness_fails_for_a_marker_older_than_the_threshold(
        own_redis: RedisServer, procs: list[Proc], tmp_path: Path) -> None:
    env = _env(own_redis, tmp_path)
    beat = Proc(celery_argv("beat"), env, tmp_path, "beat")
    procs.append(beat)
    wait_for(lambda: _check(env, "--beat").returncode == 0, 45, what="beat publishing")
    probe = ("--liveness", "--beat", "--stale-after", "1")
    assert _check(env, *probe).returncode == 0
    beat.stop()
    failed = wait_for(lambda: [d for d in [_check(env, *probe)] if d.returncode == 2], 5,
                      what="beat liveness to fail")
    assert "petsage beat stale: last published" in failed[0].stdout


@pytest.mark.e2e
def test_beat_liveness_fails_for_a_marker_absent_over_the_threshold_since_the_first_probe(
        own_redis: RedisServer, tmp_path: Path) -> None:
    env = _env(own_redis, tmp_path)
    own_redis.client().zadd("petsage:hb:index", {"billing": 1})  # in use; petsage's beat never ran
    probe = ("--liveness", "--beat", "--stale-after", "1")
    wait_for(lambda: float(own_redis.client().info()["uptime_in_seconds"]) > 1, 5,
             what="the store up for over the threshold")
    first = _check(env, *probe)
    assert first.returncode == 0 and "cannot tell yet: absent for 0.0s" in first.stdout
    time.sleep(1.1)
    over = _check(env, *probe)
    assert over.returncode == 2, over.stdout
    assert over.stdout.strip() == "CRITICAL - petsage beat missing: beat has recorded no publish"
    # A state file that can't be read or replaced (a directory in its place): cannot
    # tell, one line, pass.
    name = state_path(own_redis.url, "petsage:hb", "petsage", "beat").name
    path = Path(env["TMPDIR"]) / name
    path.unlink()
    path.mkdir()
    done = _check(env, *probe)
    assert done.returncode == 0 and done.stdout.count("\n") == 1, done.stdout
    assert f"cannot tell: liveness state file {path} unreadable" in done.stdout
