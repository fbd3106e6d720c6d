"""The charts' history read: the last N entries oldest first, each field typed or unknown."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest

from worker.core.names import Keys
from worker.read.history import FLOAT_FIELDS, INT_FIELDS, read_histories

KEYS = Keys()


def _add(client: fakeredis.FakeRedis, service: str, **fields: Any) -> None:
    client.xadd(KEYS.history(service), fields)


def test_the_last_entries_oldest_first_with_typed_fields(fake: fakeredis.FakeRedis) -> None:
    for seq in range(1, 5):
        _add(fake, "a", ts_ms=1000 * seq, seq=seq, queue_depth=0, lag_ms="1.5",
             duration_ms="2.25", status="ok", other="dropped")
    got = read_histories(fake, KEYS, ["a"], 3)
    assert got == {"a": [
        {"ts_ms": 1000 * seq, "seq": seq, "queue_depth": 0, "lag_ms": 1.5,
         "duration_ms": 2.25, "status": "ok"} for seq in (2, 3, 4)]}
    assert (INT_FIELDS, FLOAT_FIELDS) == (("ts_ms", "seq", "queue_depth"),
                                          ("lag_ms", "duration_ms"))


def test_each_service_gets_its_own_list_and_one_with_none_an_empty_one(
        fake: fakeredis.FakeRedis) -> None:
    _add(fake, "a", seq=1)
    _add(fake, "b", seq=7)
    assert read_histories(fake, KEYS, ["a", "b", "c"], 10) == {
        "a": [{"seq": 1}], "b": [{"seq": 7}], "c": []}
    assert read_histories(fake, KEYS, [], 10) == {}


@pytest.mark.parametrize(("stored", "read"), [
    ("12", 12), ("9" * 18, int("9" * 18)), ("9" * 19, None), ("-1", None), ("1.5", None),
    ("", None), ("x", None), ("\xff", None),
])
def test_an_integer_field_is_plain_digits_within_64_bits(
        fake: fakeredis.FakeRedis, stored: str, read: int | None) -> None:
    _add(fake, "a", seq=stored)
    assert read_histories(fake, KEYS, ["a"], 1) == {"a": [{"seq": read}]}


@pytest.mark.parametrize(("stored", "read"), [
    ("2.5", 2.5), ("-1", -1.0), ("1e3", 1000.0), ("nan", None), ("inf", None),
    ("-inf", None), ("x", None), ("1" * 64, float("1" * 64)), ("1" * 65, None),
])
def test_a_measured_time_is_a_finite_number_or_unknown(
        fake: fakeredis.FakeRedis, stored: str, read: float | None) -> None:
    _add(fake, "a", lag_ms=stored)
    assert read_histories(fake, KEYS, ["a"], 1) == {"a": [{"lag_ms": read}]}


def test_status_is_cut_to_16_characters(fake: fakeredis.FakeRedis) -> None:
    _add(fake, "a", status="d" * 17)
    assert read_histories(fake, KEYS, ["a"], 1) == {"a": [{"status": "d" * 16}]}


def test_a_key_of_another_type_reads_as_no_history(fake: fakeredis.FakeRedis) -> None:
    fake.set(KEYS.history("a"), "not a stream")
    _add(fake, "b", seq=1)
    assert read_histories(fake, KEYS, ["a", "b"], 5) == {"a": [], "b": [{"seq": 1}]}


def test_a_store_that_cannot_be_asked_gives_no_charts_not_an_error() -> None:
    class Down:
        def pipeline(self, transaction: bool = True) -> Any:
            raise ConnectionError("down")

    assert read_histories(Down(), KEYS, ["a", "b"], 5) == {}


def test_the_entries_of_a_probe_client_reply_as_flat_lists() -> None:
    class Probe:
        def execute_many(self, commands: list[tuple[Any, ...]]) -> list[Any]:
            assert commands == [("XREVRANGE", "petsage:hb:{a}:history", "+", "-", "COUNT", 2)]
            return [[(b"2-0", [b"seq", b"2", b"lag_ms", b"0.5"]),
                     (b"1-0", [b"seq", b"1"])]]

    assert read_histories(Probe(), KEYS, ["a"], 2) == {"a": [{"seq": 1},
                                                              {"seq": 2, "lag_ms": 0.5}]}


def test_a_flat_entry_with_a_field_left_without_value_keeps_the_others() -> None:
    class Probe:
        def execute_many(self, commands: list[tuple[Any, ...]]) -> list[Any]:
            return [[(b"1-0", [b"seq", b"2", b"lag_ms"])]]

    assert read_histories(Probe(), KEYS, ["a"], 1) == {"a": [{"seq": 2}]}
