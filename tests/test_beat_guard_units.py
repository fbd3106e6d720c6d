"""Beat's guard on the heartbeat entries' publishes, exactly: the one-line error, the log
lines when publishing fails and works again, the marker note, and the user's entries left
as Celery handles them."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest

from worker.core.names import HEALTH_TASK, NODE_TASK
from worker.publish.beat_guard import PublishGuard, guard_publishes, publish_error

LOGGER = "worker.publish.beat_guard"


class PublishRefusedError(Exception):
    pass


def _records(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]


# -- the error's one line -------------------------------------------------------------------

def test_the_error_is_the_cause_celery_wrapped() -> None:
    try:
        try:
            raise ConnectionRefusedError("Error 111 connecting to redis://:pw@broker:6379")
        except ConnectionRefusedError as exc:
            raise PublishRefusedError("Couldn't apply scheduled task") from exc
    except PublishRefusedError as wrapped:
        assert publish_error(wrapped) == (
            "ConnectionRefusedError: Error 111 connecting to redis://:***@broker:6379")
    # The cause given wins over the exception being handled when it was raised.
    try:
        try:
            raise TimeoutError("handled")
        except TimeoutError:
            raise PublishRefusedError("wrapped") from ConnectionResetError("the cause")
    except PublishRefusedError as both:
        assert publish_error(both) == "ConnectionResetError: the cause"
    assert publish_error(PublishRefusedError("x").with_traceback(None)) == (
        "PublishRefusedError: x")
    alone = PublishRefusedError("outside a handler")
    alone.__cause__ = KeyError("k")
    assert publish_error(alone) == "KeyError: 'k'"


def test_the_error_is_the_context_when_no_cause_was_given() -> None:
    try:
        try:
            raise TimeoutError("timed out")
        except TimeoutError:
            raise PublishRefusedError("while handling") from None
    except PublishRefusedError as suppressed:
        # ``from None`` hides the context from tracebacks, but it is still the cause here.
        assert publish_error(suppressed) == "TimeoutError: timed out"
    try:
        try:
            raise TimeoutError("timed out")
        except TimeoutError:
            raise PublishRefusedError("while handling")  # noqa: B904
    except PublishRefusedError as chained:
        assert publish_error(chained) == "TimeoutError: timed out"


def test_the_error_is_the_exception_itself_when_alone() -> None:
    assert publish_error(OSError("no route\tto host\r\n")) == "OSError: no route to host"


def test_the_error_is_cut_to_200_characters_after_the_whitespace_is_folded() -> None:
    """The message is first cut to 800 characters (so a huge one is cheap), then each run
    of whitespace folded to one space, then cut to 200."""
    assert publish_error(RuntimeError("x" * 10_000)) == "RuntimeError: " + "x" * 186
    # Past 800 characters of the message, nothing is read: the "b" at index 800 is not.
    assert publish_error(RuntimeError("a" + " " * 799 + "b")) == "RuntimeError: a"
    assert publish_error(RuntimeError("a" + " " * 798 + "b")) == "RuntimeError: a b"
    folded = "w " * 100 + "z"
    assert publish_error(RuntimeError(folded)) == ("RuntimeError: " + folded)[:200]
    assert len(publish_error(RuntimeError(folded))) == 200


# -- the guard ------------------------------------------------------------------------------

class Publisher:
    """A scheduler's ``apply_async``: fails while ``failing`` is set, records each call."""

    def __init__(self) -> None:
        self.failing: str | None = None
        self.calls: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, entry: Any, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((entry, args, kwargs))
        if self.failing is not None:
            raise PublishRefusedError(self.failing)
        return f"sent {entry.name}"


HEALTH = SimpleNamespace(task=HEALTH_TASK, name="health-entry")
NODES = SimpleNamespace(task=NODE_TASK, name="nodes-entry")


def test_a_failing_heartbeat_entry_is_one_error_line_and_a_note_each_time(
        caplog: pytest.LogCaptureFixture) -> None:
    """The error line once per task while it fails (with the last error kept), the marker
    note for the health entry only at every failure, a warning once when it works again."""
    publisher = Publisher()
    noted: list[str] = []
    guard = PublishGuard(noted.append)
    guarded = guard.wrap(publisher)
    publisher.failing = "broker down"
    with caplog.at_level(logging.INFO):
        assert guarded(HEALTH, "producer", advance=False) is None
        assert guarded(NODES) is None
        assert guard.failing == {HEALTH_TASK: "PublishRefusedError: broker down",
                                 NODE_TASK: "PublishRefusedError: broker down"}
        publisher.failing = "still down"
        assert guarded(HEALTH) is None
        assert guarded(NODES) is None
        assert guard.failing == {HEALTH_TASK: "PublishRefusedError: still down",
                                 NODE_TASK: "PublishRefusedError: still down"}
        assert noted == ["PublishRefusedError: broker down", "PublishRefusedError: still down"]
        publisher.failing = None
        assert guarded(HEALTH) == "sent health-entry"
        assert guard.failing == {NODE_TASK: "PublishRefusedError: still down"}
        assert guarded(HEALTH) == "sent health-entry"
        assert guarded(NODES) == "sent nodes-entry"
        assert guard.failing == {}
    assert publisher.calls[0] == (HEALTH, ("producer",), {"advance": False})
    assert _records(caplog) == [
        (logging.ERROR, f"beat could not publish {HEALTH_TASK} (beat keeps trying every "
                        "interval): PublishRefusedError: broker down"),
        (logging.ERROR, f"beat could not publish {NODE_TASK} (beat keeps trying every "
                        "interval): PublishRefusedError: broker down"),
        (logging.WARNING, f"beat publishes {HEALTH_TASK} again"),
        (logging.WARNING, f"beat publishes {NODE_TASK} again"),
    ]


def test_a_heartbeat_entry_that_never_failed_says_nothing(
        caplog: pytest.LogCaptureFixture) -> None:
    publisher = Publisher()
    guard = PublishGuard(lambda _: pytest.fail("no failure to note"))
    with caplog.at_level(logging.INFO):
        assert guard.wrap(publisher)(NODES, 1, two=2) == "sent nodes-entry"
    assert publisher.calls == [(NODES, (1,), {"two": 2})]
    assert guard.failing == {} and _records(caplog) == []


def test_the_users_own_entries_are_left_as_celery_handles_them(
        caplog: pytest.LogCaptureFixture) -> None:
    """A user's task, and an entry with no task at all, go straight through: their result
    back, their failure raised, nothing noted or logged."""
    publisher = Publisher()
    guard = PublishGuard(lambda _: pytest.fail("not a heartbeat entry"))
    guarded = guard.wrap(publisher)
    own = SimpleNamespace(task="myapp.tasks.report", name="report")
    bare = SimpleNamespace(name="no task")
    assert guarded(own, 1, key="v") == "sent report"
    assert guarded(bare) == "sent no task"
    publisher.failing = "refused"
    with pytest.raises(PublishRefusedError, match=r"^refused$"):
        guarded(own)
    with pytest.raises(PublishRefusedError, match=r"^refused$"):
        guarded(bare)
    assert publisher.calls[0] == (own, (1,), {"key": "v"})
    assert guard.failing == {} and _records(caplog) == []


def test_guard_publishes_wraps_the_schedulers_own_apply_async() -> None:
    publisher = Publisher()
    scheduler = SimpleNamespace(apply_async=publisher)
    noted: list[str] = []
    guard = guard_publishes(scheduler, noted.append)
    assert isinstance(guard, PublishGuard)
    publisher.failing = "down"
    assert scheduler.apply_async(HEALTH) is None
    assert noted == ["PublishRefusedError: down"] and guard.failing == {
        HEALTH_TASK: "PublishRefusedError: down"}
    publisher.failing = None
    assert scheduler.apply_async(HEALTH) == "sent health-entry"
    assert len(publisher.calls) == 2
