"""A liveness probe's absence clock (``worker.read.absence``) and the worker nodes' reads
(``worker.read.nodes``), in process: the state file's bounds and problems, each node's
age and state, the table cell, and the second beat's window.
"""

from __future__ import annotations

import json
import os
import pathlib
import time
from pathlib import Path
from typing import Any

import pytest

from worker.core.states import State, Thresholds
from worker.read.absence import Absence, absent_for, present, state_path
from worker.read.nodes import (
    NodeReport,
    describe_beats,
    judge_nodes,
    matches,
    node_counts,
    second_beat,
)

NOW_S = 1_700_000_000.0
NOW_MS = 1_700_000_000_000


# -- the absence clock ------------------------------------------------------------------------


def test_the_state_file_name_is_stable_across_releases() -> None:
    path = state_path("redis://:secret@store:6379/0", "heartbeat", "svc", "beat")
    # An upgrade must find the file an earlier release wrote (the clock keeps running).
    assert path.name == "petsage-heartbeat-liveness-1500934c728333626e52.json"
    assert path == state_path("redis://:other@store:6379/0", "heartbeat", "svc", "beat")
    assert path != state_path("redis://store:6379/0", "heartbeat", "svc", "node:w@a")


def test_the_clock_starts_then_counts_then_restarts_with_the_store(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    assert absent_for(path, "run-1", now_s=NOW_S) == Absence(0.0, "")
    assert json.loads(path.read_text()) == {"run_id": "run-1", "absent_since": NOW_S}
    assert absent_for(path, "run-1", now_s=NOW_S + 12.5) == Absence(12.5, "")
    assert absent_for(path, "run-2", now_s=NOW_S + 20) == Absence(0.0, "")
    assert json.loads(path.read_text()) == {"run_id": "run-2", "absent_since": NOW_S + 20}


def test_the_clock_reads_the_time_when_none_is_given(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    before = time.time()
    assert absent_for(path, "run-1") == Absence(0.0, "")
    since = json.loads(path.read_text())["absent_since"]
    assert before <= since <= time.time()


@pytest.mark.parametrize(("since", "kept"), [
    (0.5, True), (NOW_S + 1, True), (NOW_S + 0.5, True),  # a clock a second ahead is fine
    (0, False), (-3, False), (NOW_S + 1.5, False), (True, False), ("5", False),
])
def test_the_recorded_start_must_be_a_time_up_to_a_second_ahead(
        tmp_path: Path, since: Any, kept: bool) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"run_id": "run-1", "absent_since": since}))
    got = absent_for(path, "run-1", now_s=NOW_S)
    if kept:
        assert got == Absence(max(NOW_S - since, 0.0), "")
    else:
        assert got == Absence(None, f"liveness state file {path} corrupt")
        assert json.loads(path.read_text()) == {"run_id": "run-1", "absent_since": NOW_S}


def test_a_start_ahead_of_now_counts_as_absent_for_no_time(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"run_id": "run-1", "absent_since": NOW_S + 0.5}))
    assert absent_for(path, "run-1", now_s=NOW_S) == Absence(0.0, "")


@pytest.mark.parametrize("text", ["{", "[]", '{"absent_since": 5}', '{"run_id": 3, '
                                  '"absent_since": 5}'])
def test_a_corrupt_file_says_cannot_tell_and_starts_again(tmp_path: Path, text: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(text)
    assert absent_for(path, "run-1", now_s=NOW_S) == Absence(
        None, f"liveness state file {path} corrupt")
    assert json.loads(path.read_text()) == {"run_id": "run-1", "absent_since": NOW_S}


def test_an_unreadable_file_says_why_and_starts_again(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"run_id": "run-1", "absent_since": 5}))
    real = pathlib.Path.read_text

    def refuse(self: Path, *args: Any, **kwargs: Any) -> str:
        if self == path:
            raise PermissionError("no")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "read_text", refuse)
    assert absent_for(path, "run-2", now_s=NOW_S) == Absence(
        None, f"liveness state file {path} unreadable (PermissionError)")
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"run_id": "run-2", "absent_since": NOW_S}


def test_a_file_that_cannot_be_written_says_so(tmp_path: Path) -> None:
    path = tmp_path / "missing-dir" / "state.json"
    assert absent_for(path, "run-1", now_s=NOW_S) == Absence(
        None, f"liveness state file {path} not writable (FileNotFoundError)")
    path.parent.mkdir()
    path.write_text("{")
    path.chmod(0o644)
    blocked = tmp_path / "blocked" / "state.json"
    blocked.parent.mkdir()
    blocked.write_text("{")
    # The old file's problem is said first: it is why the probe can't tell.
    (blocked.parent / f"{blocked.name}.{os.getpid()}.tmp").mkdir()
    assert absent_for(blocked, "run-1", now_s=NOW_S) == Absence(
        None, f"liveness state file {blocked} corrupt")


def test_present_forgets_the_absence_and_never_raises(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    absent_for(path, "run-1", now_s=NOW_S)
    present(path)
    assert not path.exists()
    present(path)  # already gone
    path.mkdir()
    present(path)  # a directory in its place: unlink fails, silently
    assert path.is_dir()


# -- the nodes ----------------------------------------------------------------------------------


def test_each_node_s_age_and_state_on_the_redis_clock() -> None:
    thresholds = Thresholds(15, 30)
    raw = [b"w@a", str(NOW_MS).encode(), b"w@b", b"soon", b"w@c", str(NOW_MS - 20_000).encode(),
           "w@d", str(NOW_MS + 5000), b"w@" + b"x" * 300, str(NOW_MS - 31_000).encode(), b"w@e"]
    nodes = judge_nodes(NOW_MS, raw, thresholds)
    assert nodes == (
        NodeReport("w@a", State.FRESH, 0.0, NOW_MS),
        NodeReport("w@c", State.LATE, 20.0, NOW_MS - 20_000),
        NodeReport("w@d", State.FRESH, 0.0, NOW_MS + 5000),
        NodeReport("w@" + "x" * 253, State.STALE, 31.0, NOW_MS - 31_000),
    )
    assert judge_nodes(NOW_MS, b"x", thresholds) == ()
    assert judge_nodes(NOW_MS, [b"w@a", str(NOW_MS - 1).encode()], thresholds)[0].age_s == 0.001


def test_a_node_is_named_whole_or_by_its_host_part() -> None:
    assert matches("heartbeat@pod-7", "heartbeat@pod-7")
    assert matches("heartbeat@pod-7", "pod-7")
    assert not matches("heartbeat@pod-7", "heartbeat")
    assert matches("a@b@c", "b@c") and not matches("a@b@c", "c")


def _node(name: str, state: State) -> NodeReport:
    return NodeReport(name, state, 1.0, NOW_MS)


def test_the_node_cell_counts_fresh_ones_and_names_three_behind() -> None:
    assert node_counts(()) == "0/0"
    assert node_counts((_node("a", State.FRESH), _node("b", State.LATE))) == "1/2 (b not fresh)"
    three = tuple(_node(n, State.STALE) for n in "bcd")
    assert node_counts((_node("a", State.FRESH), *three)) == "1/4 (b, c, d not fresh)"
    four = tuple(_node(n, State.STALE) for n in "bcde")
    assert node_counts(four) == "0/4 (b, c, d, ... not fresh)"


def _marker(seen_ms: Any, beat_id: Any = "beat-2", interval_s: Any = 2) -> dict[str, Any]:
    return {"beat_id": "beat-1", "interval_s": interval_s,
            "other_beat": {"seen_at_ms": seen_ms, "beat_id": beat_id}}


def test_a_second_beat_counts_for_ten_of_beat_s_intervals() -> None:
    assert second_beat(NOW_MS, _marker(NOW_MS - 20_000)) == "beat-2"  # 10 x 2 s: the edge
    assert second_beat(NOW_MS, _marker(NOW_MS - 20_001)) is None
    assert second_beat(NOW_MS, _marker(NOW_MS - 19_000, interval_s=2.5)) == "beat-2"
    assert second_beat(NOW_MS, _marker(NOW_MS - 24_000, interval_s=2.5)) == "beat-2"
    assert second_beat(NOW_MS, _marker(NOW_MS - 25_001, interval_s=2.5)) is None
    assert second_beat(NOW_MS, _marker(NOW_MS, beat_id="b" * 150)) == "b" * 100
    assert second_beat(NOW_MS, _marker(float(NOW_MS))) is None
    assert second_beat(NOW_MS, _marker(NOW_MS, beat_id=7)) is None
    assert second_beat(NOW_MS, _marker(NOW_MS, interval_s="2")) is None
    assert second_beat(None, _marker(NOW_MS)) is None
    assert second_beat(NOW_MS, None) is None


def test_the_two_beats_warning_names_both() -> None:
    assert describe_beats(_marker(NOW_MS), "beat-2") == (
        'two beats publish for this service ("beat-1" and "beat-2"): run exactly one')
    assert describe_beats(None, "beat-2") == (
        'two beats publish for this service (null and "beat-2"): run exactly one')
