"""The shared fleet read and the answer cache on a hand-moved clock: who shares an answer
and who reads again (both sides of ``max_age_s``), what a failed read or ``forget`` leaves,
the bound on kept keys and which slots make room."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest

from worker.http import shared_read
from worker.http.shared_read import AnswerCache, SharedRead


class Clock:
    """``time.monotonic`` of the module under test, moved by hand."""

    def __init__(self, at: float = 100.0) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(shared_read, "time", SimpleNamespace(monotonic=clock))
    return clock


class Reads:
    """A read that counts its calls and answers ``answer-N``; raises while ``fail`` is set."""

    def __init__(self) -> None:
        self.calls = 0
        self.fail = False

    def __call__(self) -> str:
        self.calls += 1
        if self.fail:
            raise ConnectionError("down")
        return f"answer-{self.calls}"


def test_a_read_is_shared_up_to_max_age_s_after_it_finished_and_not_a_moment_more(
        clock: Clock) -> None:
    reads = Reads()
    shared = SharedRead(reads, max_age_s=1.0)
    assert shared() == "answer-1"
    clock.at = 101.0  # exactly max_age_s after: still shared
    assert shared() == "answer-1" and reads.calls == 1
    clock.at = 101.25  # past it: read again, and that read is the one shared next
    assert shared() == "answer-2"
    clock.at = 102.0
    assert shared() == "answer-2" and reads.calls == 2


def test_by_default_nothing_is_kept_once_a_read_finished(clock: Clock) -> None:
    """``max_age_s`` 0: only callers arriving during a read share it; a caller a moment
    after it finished reads again."""
    reads = Reads()
    shared = SharedRead(reads)
    assert shared.max_age_s == 0.0
    assert shared() == "answer-1"
    assert shared() == "answer-1"  # same instant: the read finished at (not before) it
    clock.at = 100.5
    assert shared() == "answer-2"


def test_forget_drops_the_kept_answer(clock: Clock) -> None:
    reads = Reads()
    shared = SharedRead(reads, max_age_s=60.0)
    assert shared() == "answer-1"
    shared.forget()
    assert shared() == "answer-2"
    assert shared() == "answer-2"


def test_a_failed_read_drops_the_answer_it_was_replacing(clock: Clock) -> None:
    """The old answer is let go before the next read (not held through it): when that read
    fails, a caller with a longer ``max_age_s`` reads again rather than get the old one."""
    reads = Reads()
    shared = SharedRead(reads, max_age_s=1.0)
    assert shared() == "answer-1"
    clock.at = 105.0
    reads.fail = True
    with pytest.raises(ConnectionError):
        shared()
    reads.fail = False
    shared.max_age_s = 3600.0
    assert shared() == "answer-3"


def test_the_cache_keeps_each_key_for_max_age_s(clock: Clock) -> None:
    built: list[str] = []

    def build(name: str) -> Callable[[], str]:
        def make() -> str:
            built.append(name)
            return f"{name}-{len(built)}"
        return make

    cache = AnswerCache(2.0)
    assert cache.max_slots == 64
    assert cache.get("a", build("a")) == "a-1"
    assert cache.get("b", build("b")) == "b-2"
    clock.at = 102.0
    assert cache.get("a", build("a")) == "a-1"
    clock.at = 102.5
    assert cache.get("a", build("a")) == "a-3"
    assert cache.get("b", build("b")) == "b-4"
    cache.forget()
    assert cache.get("a", build("a")) == "a-5"
    assert built == ["a", "b", "a", "b", "a"]


def test_a_new_slot_holds_no_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Near the clock's origin a new slot's zero time is within ``max_age_s``: only its
    empty answer makes the first caller build."""
    clock = Clock(0.5)
    monkeypatch.setattr(shared_read, "time", SimpleNamespace(monotonic=clock))
    assert AnswerCache(1.0).get("k", lambda: "built") == "built"


def test_a_failed_build_leaves_an_expired_slot_that_makes_room(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A slot whose build raised has finished at time 0: once the cache is full, it is
    dropped for a new key as soon as ``max_age_s`` has passed since 0."""
    clock = Clock(0.25)
    monkeypatch.setattr(shared_read, "time", SimpleNamespace(monotonic=clock))
    cache = AnswerCache(0.5, max_slots=1)

    def fail() -> str:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        cache.get("a", fail)
    clock.at = 0.75  # 0.75 s after time 0: the failed slot has expired
    calls: list[int] = []

    def build() -> str:
        calls.append(1)
        return "b"

    assert cache.get("b", build) == "b"
    assert cache.get("b", build) == "b" and len(calls) == 1  # b was kept: a made room


def test_at_most_max_slots_keys_are_kept_and_expired_ones_make_room(clock: Clock) -> None:
    counts: dict[str, int] = {}

    def build(key: str) -> Callable[[], str]:
        def make() -> str:
            counts[key] = counts.get(key, 0) + 1
            return key
        return make

    cache = AnswerCache(1.0, max_slots=2)
    cache.get("a", build("a"))
    cache.get("b", build("b"))
    cache.get("c", build("c"))  # no room: built for its caller alone
    cache.get("c", build("c"))
    assert counts == {"a": 1, "b": 1, "c": 2}
    clock.at = 101.0  # a and b are exactly max_age_s old: not expired, no room yet
    cache.get("c", build("c"))
    cache.get("a", build("a"))
    assert counts == {"a": 1, "b": 1, "c": 3}
    clock.at = 101.5  # both expired: dropped, and c takes a slot
    cache.get("c", build("c"))
    cache.get("c", build("c"))
    assert counts == {"a": 1, "b": 1, "c": 4}
    cache.get("a", build("a"))  # a slot was left
    cache.get("a", build("a"))
    assert counts == {"a": 2, "b": 1, "c": 4}


def test_the_default_bound_is_64_keys(clock: Clock) -> None:
    cache = AnswerCache(10.0)
    calls: list[int] = []
    for n in range(64):
        cache.get(n, lambda: "x")
    for _ in range(2):
        cache.get(64, lambda: calls.append(1) or "y")
    cache.get(63, lambda: calls.append(2) or "z")
    assert calls == [1, 1]


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def test_a_slot_being_built_is_never_dropped_to_make_room(clock: Clock,
                                                         gate: threading.Event) -> None:
    """A build in progress keeps its slot even when its time looks expired: its callers
    are waiting for it."""
    cache = AnswerCache(1.0, max_slots=1)
    started = threading.Event()

    def slow() -> str:
        started.set()
        gate.wait(10)
        return "a"

    thread = threading.Thread(target=cache.get, args=("a", slow))
    thread.start()
    assert started.wait(10)
    clock.at = 200.0
    calls: list[int] = []
    cache.get("b", lambda: calls.append(1) or "b")
    cache.get("b", lambda: calls.append(1) or "b")
    assert calls == [1, 1]  # no room was made: b is built each time
    gate.set()
    thread.join(10)
    assert not thread.is_alive()
