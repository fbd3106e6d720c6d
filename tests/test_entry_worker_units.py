"""The worker's check-ins of the entries' runs (``worker.publish.entry_worker``), in
process: the signal handlers called as Celery calls them, with stub tasks, requests and
messages; what each hands the store (a recorder, and the real store on fakeredis); an
exception's type and message, redacted, masked and cut; one log line per outage; a new
client in a forked pool child.
"""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace
from typing import Any

import fakeredis
import pytest
from celery.app.task import Context
from celery.exceptions import Retry

from worker.core.entries import ENTRY_HEADER, ENTRY_TEXT_MAX, ERROR_TEXT_MAX
from worker.core.names import Keys
from worker.publish import entry_worker
from worker.publish.entry_store import EntryStore
from worker.publish.entry_worker import OUTCOME_OF_STATE, EntryCheckins, entry_of, error_of

LOGGER = "worker.publish.entry_worker"
DOWN = ("the worker could not check in a run of a beat entry (it keeps trying): "
        "ConnectionError: Error connecting to redis://:***@h:6379/0")
AGAIN = "the worker checks in runs of beat entries again"


class Store:
    """The store's check-in methods, noted; ``fail`` makes the next writes raise."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.fail: Exception | None = None

    def started(self, *args: Any, **kwargs: Any) -> None:
        self._note("started", args, kwargs)

    def finished(self, *args: Any, **kwargs: Any) -> None:
        self._note("finished", args, kwargs)

    def _note(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self.fail is not None:
            raise self.fail
        self.calls.append((method, args, kwargs))


class Opener:
    """Opens the one recorded store, counting how often it is asked to."""

    def __init__(self) -> None:
        self.store = Store()
        self.opened = 0

    def __call__(self) -> Store:
        self.opened += 1
        return self.store


def _task(**request: Any) -> SimpleNamespace:
    return SimpleNamespace(request=Context(request))


def _lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]


def test_a_run_names_its_entry_in_a_header_and_any_other_task_names_none() -> None:
    assert ENTRY_HEADER == "petsage_entry"
    assert entry_of({"petsage_entry": "nightly"}) == "nightly"
    assert entry_of(Context({"petsage_entry": "add every 10 seconds"})) == "add every 10 seconds"
    assert entry_of({}) is None
    assert entry_of({None: "nightly"}) is None
    assert entry_of(None) is None
    assert entry_of("petsage_entry") is None  # no ``get``
    assert entry_of({"petsage_entry": "a\nb"}) is None
    assert entry_of({"petsage_entry": 5}) is None
    assert entry_of({"petsage_entry": "x" * 201}) is None


def test_an_error_is_its_type_and_its_message_on_one_line() -> None:
    assert error_of(None) == ("", "")
    assert error_of("a failure told in text") == ("", "")
    assert error_of(ValueError("bad  row\n\tin  file")) == ("ValueError", "bad row in file")
    assert error_of(KeyError("k")) == ("KeyError", "'k'")
    # A Retry carries the exception it retries; one without is shown itself.
    assert error_of(Retry(exc=ValueError("flaky"))) == ("ValueError", "flaky")
    assert error_of(SimpleNamespace(exc=OSError("disk"))) == ("OSError", "disk")
    bare = ValueError("no cause")
    bare.exc = None  # type: ignore[attr-defined]
    assert error_of(bare) == ("ValueError", "no cause")


def test_an_error_s_passwords_urls_and_secrets_are_masked() -> None:
    text = ("connect redis://:hunter2@h:6379/0 failed; password=hunter2 TOKEN : abc "
            "api_key='x y' Authorization=\"Bearer z\" mypassword=keep pwd:1 secret= s "
            "apikey=k api-key=k auth=a passwd=p pass=p")
    assert error_of(ConnectionError(text)) == ("ConnectionError", (
        "connect redis://:***@h:6379/0 failed; password=*** TOKEN : *** api_key=*** "
        "Authorization=*** mypassword=keep pwd:*** secret= *** apikey=*** api-key=*** "
        "auth=*** passwd=*** pass=***"))


def test_an_error_is_cut_after_its_spaces_are_folded() -> None:
    assert ERROR_TEXT_MAX == 300
    assert error_of(ValueError("x" * 301)) == ("ValueError", "x" * 300)
    # Only the first 4 x 300 characters are read: a message of spaces ends there.
    assert error_of(ValueError(" " * 1200 + "tail")) == ("ValueError", "")
    assert error_of(ValueError(" " * 1196 + "tail")) == ("ValueError", "tail")
    long_name = type("E" * (ENTRY_TEXT_MAX + 1), (Exception,), {})
    assert error_of(long_name("x")) == ("E" * ENTRY_TEXT_MAX, "x")


def test_a_start_is_checked_in_with_the_node_and_nothing_for_other_tasks() -> None:
    opener = Opener()
    checkins = EntryCheckins(opener)
    checkins.on_prerun(task_id="id-1", task=_task(petsage_entry="nightly", hostname="w1@h"))
    checkins.on_prerun(task_id="i" * 201, task=_task(petsage_entry="nightly",
                                                     hostname="n" * 201))
    checkins.on_prerun(task_id="id-3", task=_task(petsage_entry="nightly", hostname=None))
    checkins.on_prerun(task_id="id-4", task=_task(petsage_entry="nightly"))
    checkins.on_prerun(task_id="id-5", task=SimpleNamespace(request={ENTRY_HEADER: "nightly"}))
    assert opener.store.calls == [
        ("started", ("nightly", "id-1", "w1@h"), {}),
        ("started", ("nightly", "i" * 200, "n" * 200), {}),
        ("started", ("nightly", "id-3", ""), {}),
        ("started", ("nightly", "id-4", ""), {}),
        ("started", ("nightly", "id-5", ""), {}),  # a request without a host name
    ]
    assert opener.opened == 1


def test_a_task_without_the_header_costs_no_store() -> None:
    opener = Opener()
    checkins = EntryCheckins(opener)
    checkins.on_prerun(task_id="id-1", task=_task(hostname="w1@h"))
    checkins.on_prerun(task_id=None, task=_task(petsage_entry="nightly"))
    checkins.on_prerun(task_id="id-1", task=SimpleNamespace())
    checkins.on_prerun()
    checkins.on_postrun(task_id="id-1", task=_task(), state="SUCCESS")
    checkins.on_postrun(task_id=7, task=_task(petsage_entry="nightly"), state="SUCCESS")
    checkins.on_postrun(task_id="id-1", task=_task(petsage_entry="nightly"), state="STARTED")
    checkins.on_postrun(task_id="id-1", task=_task(petsage_entry="nightly"))
    checkins.on_postrun()
    checkins.on_revoked(request=SimpleNamespace(id="id-1", _request_dict=None))
    checkins.on_revoked(request=SimpleNamespace(id=None, _request_dict={ENTRY_HEADER: "n"}))
    checkins.on_revoked()
    checkins.on_rejected(message=SimpleNamespace(headers={"id": "id-1"}))
    checkins.on_rejected(message=SimpleNamespace(headers={ENTRY_HEADER: "n", "id": 1}))
    checkins.on_rejected(message=SimpleNamespace(headers=None))
    checkins.on_rejected()
    assert opener.opened == 0 and opener.store.calls == []


@pytest.mark.parametrize(("state", "outcome"), [
    ("SUCCESS", "succeeded"), ("FAILURE", "failed"), ("RETRY", "retrying"),
    ("REVOKED", "revoked"), ("REJECTED", "rejected"),
])
def test_each_final_state_is_checked_in_as_its_outcome(state: str, outcome: str) -> None:
    assert OUTCOME_OF_STATE[state] == outcome
    opener = Opener()
    checkins = EntryCheckins(opener)
    checkins.on_postrun(task_id="id-1", task=_task(petsage_entry="nightly"), state=state,
                        retval=Retry(exc=ValueError("token=abc")))
    error = ("", "") if outcome == "succeeded" else ("ValueError", "token=***")
    assert opener.store.calls == [("finished", ("nightly", "id-1", outcome),
                                   {"error_type": error[0], "error": error[1]})]


def test_an_end_s_task_id_is_cut_and_a_plain_result_has_no_error() -> None:
    opener = Opener()
    checkins = EntryCheckins(opener)
    checkins.on_postrun(task_id="i" * 201, task=_task(petsage_entry="nightly"),
                        state="FAILURE", retval="not an exception")
    assert opener.store.calls == [("finished", ("nightly", "i" * 200, "failed"),
                                   {"error_type": "", "error": ""})]
    assert len(OUTCOME_OF_STATE) == 5


def test_a_revoked_run_is_checked_in_as_revoked_or_expired() -> None:
    opener = Opener()
    checkins = EntryCheckins(opener)
    request = SimpleNamespace(id="id-1", _request_dict={ENTRY_HEADER: "nightly"})
    checkins.on_revoked(request=request)
    checkins.on_revoked(request=request, expired=True)
    checkins.on_revoked(request=SimpleNamespace(id="i" * 201,
                                                _request_dict={ENTRY_HEADER: "nightly"}))
    assert opener.store.calls == [
        ("finished", ("nightly", "id-1", "revoked"), {"error_type": "Revoked"}),
        ("finished", ("nightly", "id-1", "revoked"), {"error_type": "Expired"}),
        ("finished", ("nightly", "i" * 200, "revoked"), {"error_type": "Revoked"}),
    ]


def test_a_rejected_message_is_checked_in_with_its_reason() -> None:
    opener = Opener()
    checkins = EntryCheckins(opener)
    headers = {ENTRY_HEADER: "nightly", "id": "id-1"}
    checkins.on_rejected(message=SimpleNamespace(headers=headers),
                         exc=ValueError("password=x"))
    checkins.on_rejected(message=SimpleNamespace(headers=headers))
    checkins.on_rejected(message=SimpleNamespace(headers={ENTRY_HEADER: "nightly",
                                                          "id": "i" * 201}))
    assert opener.store.calls == [
        ("finished", ("nightly", "id-1", "rejected"),
         {"error_type": "ValueError", "error": "password=***"}),
        ("finished", ("nightly", "id-1", "rejected"), {"error_type": "Rejected", "error": ""}),
        ("finished", ("nightly", "i" * 200, "rejected"),
         {"error_type": "Rejected", "error": ""}),
    ]


def test_a_forked_pool_child_opens_its_own_store(monkeypatch: pytest.MonkeyPatch) -> None:
    opener = Opener()
    checkins = EntryCheckins(opener)
    task = _task(petsage_entry="nightly")
    pid = [100]
    monkeypatch.setattr(entry_worker.os, "getpid", lambda: pid[0])
    checkins.on_prerun(task_id="id-1", task=task)
    checkins.on_prerun(task_id="id-2", task=task)
    assert opener.opened == 1
    pid[0] = 101
    checkins.on_prerun(task_id="id-3", task=task)
    checkins.on_prerun(task_id="id-4", task=task)
    assert opener.opened == 2 and len(opener.store.calls) == 4


def test_a_store_down_is_one_line_per_outage_and_the_task_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    opener = Opener()
    checkins = EntryCheckins(opener)
    task = _task(petsage_entry="nightly")
    checkins.on_prerun(task_id="id-0", task=task)
    assert _lines(caplog) == []
    opener.store.fail = ConnectionError("Error connecting to redis://:hunter2@h:6379/0")
    checkins.on_prerun(task_id="id-1", task=task)
    checkins.on_postrun(task_id="id-1", task=task, state="SUCCESS")
    assert _lines(caplog) == [(logging.ERROR, DOWN)]
    opener.store.fail = None
    checkins.on_prerun(task_id="id-2", task=task)
    checkins.on_prerun(task_id="id-3", task=task)
    assert _lines(caplog) == [(logging.ERROR, DOWN), (logging.WARNING, AGAIN)]
    opener.store.fail = ConnectionError("x" * 300)
    checkins.on_prerun(task_id="id-4", task=task)
    assert _lines(caplog)[-1] == (
        logging.ERROR, ("the worker could not check in a run of a beat entry (it keeps "
                        "trying): ConnectionError: " + "x" * 183))
    assert len(_lines(caplog)) == 3


def test_a_store_that_can_not_be_opened_is_tried_again_at_the_next_run(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    opener = Opener()
    refusals = [ConnectionError("Error connecting to redis://:hunter2@h:6379/0")]

    def open_store() -> Store:
        if refusals:
            raise refusals.pop()
        return opener()

    checkins = EntryCheckins(open_store)
    checkins.on_prerun(task_id="id-1", task=_task(petsage_entry="nightly"))
    checkins.on_prerun(task_id="id-2", task=_task(petsage_entry="nightly"))
    assert opener.store.calls == [("started", ("nightly", "id-2", ""), {})]
    assert _lines(caplog) == [(logging.ERROR, DOWN), (logging.WARNING, AGAIN)]


def test_a_run_s_check_ins_on_fakeredis(fake: fakeredis.FakeRedis) -> None:
    keys = Keys()
    store = EntryStore(fake, keys, "petsage", retention_s=600)
    store.dispatched("nightly", "id-1", due_in_ms=0, next_due_in_ms=60_000, beat_id="b",
                     depth=None)
    checkins = EntryCheckins(lambda: EntryStore(fake, keys, "petsage", retention_s=600))
    task = _task(petsage_entry="nightly", hostname="w1@h")
    checkins.on_prerun(task_id="id-1", task=task)
    checkins.on_postrun(task_id="id-1", task=task, state="FAILURE",
                        retval=KeyError("secret: s3"))
    run = json.loads(fake.hget(keys.entries("petsage"), "nightly"))["run"]  # type: ignore[arg-type]
    assert (run["node"], run["outcome"], run["error_type"], run["error"]) == (
        "w1@h", "failed", "KeyError", "'secret: ***")
