"""Reads and answers shared by the HTTP requests that arrive together.

A fleet read of 10,000 services costs a few hundred milliseconds of this process and a
few of Redis; at 100,000 services, a second and about 110 MB. Prometheus servers,
dashboards and load balancers asking at once must not each pay it: a request that arrives
while a read runs waits for that read and shares its answer, and with ``max_age_s`` a
request that arrives within that long after a read finished shares it too (``serve`` keeps
answers for one second). So however many requests arrive, a read runs at most once per
``max_age_s`` plus its own duration, and an answer is never older than that.

``AnswerCache`` does the same for whole HTTP answers, one slot per key (the route and its
query), with a bounded number of slots.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar, cast

T = TypeVar("T")


class SharedRead(Generic[T]):
    """Runs ``read`` for a caller; callers that arrive while it runs, or within
    ``max_age_s`` after it finished, share its answer."""

    def __init__(self, read: Callable[[], T], max_age_s: float = 0.0) -> None:
        self._read = read
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._answer: T | None = None
        self._done_at = 0.0  #: when the kept answer's read finished (monotonic)

    def __call__(self) -> T:
        """The answer of a read that finished after ``now - max_age_s``."""
        arrived = time.monotonic()
        with self._lock:  # a caller arriving during a read waits for it, then shares it
            if self._answer is not None and self._done_at >= arrived - self.max_age_s:
                return self._answer
            self._answer = None  # not held through the next read (110 MB at 100,000 services)
            answer = self._read()
            self._answer, self._done_at = answer, time.monotonic()
            return answer

    def forget(self) -> None:
        """Drop the kept answer (the source was reconfigured)."""
        with self._lock:
            self._answer = None


class _Slot:
    __slots__ = ("answer", "done_at", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answer: object = None
        self.done_at = 0.0


class AnswerCache:
    """Answers by key, each built once per ``max_age_s`` however many callers ask.

    At most ``max_slots`` keys are kept (expired slots are dropped to make room); a key that
    finds no room is built for its caller alone, never kept. ``max_age_s`` 0 keeps nothing
    (callers of one key that arrive during a build still share it).
    """

    def __init__(self, max_age_s: float, max_slots: int = 64) -> None:
        self.max_age_s = max_age_s
        self.max_slots = max_slots
        self._lock = threading.Lock()
        self._slots: dict[Hashable, _Slot] = {}

    def get(self, key: Hashable, build: Callable[[], T]) -> T:
        """The answer for ``key``: a kept one at most ``max_age_s`` old, or a new one."""
        arrived = time.monotonic()
        with self._lock:
            slot = self._slots.get(key)
            if slot is None:
                if len(self._slots) >= self.max_slots:
                    self._drop_expired(arrived)
                slot = _Slot()
                if len(self._slots) < self.max_slots:
                    self._slots[key] = slot
        with slot.lock:
            if slot.answer is not None and slot.done_at >= arrived - self.max_age_s:
                return cast(T, slot.answer)
            slot.answer = None  # not held through the next build
            answer = build()
            slot.answer, slot.done_at = answer, time.monotonic()
            return answer

    def _drop_expired(self, now: float) -> None:
        for key, slot in list(self._slots.items()):
            if not slot.lock.locked() and slot.done_at < now - self.max_age_s:
                del self._slots[key]

    def forget(self) -> None:
        """Drop every kept answer."""
        with self._lock:
            self._slots.clear()
