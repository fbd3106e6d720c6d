"""Whether the store refuses writes (``worker.read.store_writes``), in process: ``INFO`` read
from redis-py's dict and from the probe's raw text, each refusal's whole clause at both
sides of its memory bounds, the replica's clause, and ``ask_refusal``'s one ``INFO`` that
says nothing when it fails. tests/test_diagnosis.py and tests/test_diagnosis_changes.py
show the refusal in the readers' diagnoses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import fakeredis
import pytest

from worker.read.store_writes import ask_refusal, oom_refusals, parse_info, refusal

FULL = ("the store is at its memory limit ({used} of maxmemory {limit} bytes, policy "
        "noeviction): free memory or raise maxmemory")
REFUSED = ("the store is at its memory limit ({used} of maxmemory {limit} bytes, policy "
           "noeviction) and has refused {refused} write(s) for memory since it started: free "
           "memory or raise maxmemory")


def _limit(limit: int, used: int, **more: str) -> dict[str, str]:
    return {"role": "master", "maxmemory": str(limit), "used_memory": str(used),
            "maxmemory_policy": "noeviction", **more}


# -- parse_info ----------------------------------------------------------------------------


def test_redis_py_s_dict_is_taken_as_text_fields() -> None:
    """redis-py parses ``INFO`` into typed values: every key and value becomes text."""
    assert parse_info({"maxmemory": 100, "role": "master", 7: 1.5}) == {
        "maxmemory": "100", "role": "master", "7": "1.5"}


def test_the_raw_text_skips_section_headers_and_lines_without_a_field() -> None:
    """The probe gets ``INFO`` as text: ``# Section`` lines (even with a colon in them) and
    lines without one are no field; a value keeps its own colons, trimmed of spaces."""
    raw = (b"# Server\r\nrole:slave\r\nmaster_host:::1\r\n#x:y\r\nno field here\r\n"
           b"used_memory: 12 \r\n\r\nerrorstat_OOM:count=3\n")
    assert parse_info(raw) == {"role": "slave", "master_host": "::1", "used_memory": "12",
                               "errorstat_OOM": "count=3"}
    assert parse_info("role:master") == {"role": "master"}
    assert parse_info(b"") == {}


# -- refusal ----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["slave", "replica"])
def test_a_replica_refuses_every_write_and_names_its_primary(role: str) -> None:
    info = {"role": role, "master_host": "10.0.0.5", "master_port": "6380"}
    assert refusal(info) == ("the store is a read-only replica (of 10.0.0.5:6380): point beat "
                             "and the workers at the primary")
    assert refusal({"role": role}) == ("the store is a read-only replica (of ?:?): point beat "
                                       "and the workers at the primary")


def test_a_primary_without_a_memory_limit_refuses_nothing() -> None:
    """No ``maxmemory`` (or 0) is no limit; a missing ``used_memory`` is none used."""
    assert refusal({"role": "master"}) is None
    assert refusal({}) is None
    assert refusal(_limit(0, 0)) is None  # 0 is no limit, though 0 used is "at" it
    assert refusal({"maxmemory": "100", "maxmemory_policy": "noeviction"}) is None


def test_the_smallest_limit_counts() -> None:
    assert refusal(_limit(1, 1)) == FULL.format(used=1, limit=1)


def test_full_at_98_percent_under_noeviction_only() -> None:
    assert refusal(_limit(100, 98)) == FULL.format(used=98, limit=100)
    assert refusal(_limit(100, 97)) is None
    assert refusal(_limit(100, 120)) == FULL.format(used=120, limit=100)
    assert refusal({**_limit(100, 100), "maxmemory_policy": "allkeys-lru"}) is None
    assert refusal({key: value for key, value in _limit(100, 100).items()
                    if key != "maxmemory_policy"}) is None


def test_memory_not_counted_for_eviction_is_taken_off_what_is_used() -> None:
    """Replication and AOF buffers don't count toward the limit, so not toward full."""
    assert refusal(_limit(100, 110, mem_not_counted_for_evict="13")) is None
    assert refusal(_limit(100, 110, mem_not_counted_for_evict="12")) == FULL.format(
        used=98, limit=100)
    # Without ``used_memory``, what is used is 0 less what is not counted.
    assert refusal({"maxmemory": "100", "maxmemory_policy": "noeviction",
                    "mem_not_counted_for_evict": "-99"}) == FULL.format(used=99, limit=100)


@pytest.mark.parametrize("field", ["maxmemory", "used_memory", "mem_not_counted_for_evict"])
def test_a_size_that_is_not_a_whole_number_says_nothing(field: str) -> None:
    assert refusal({**_limit(100, 100), field: "1.5"}) is None


def test_a_store_that_refused_writes_counts_as_full_from_90_percent() -> None:
    refused = {"errorstat_OOM": "count=4"}
    assert refusal(_limit(100, 90, **refused)) == REFUSED.format(used=90, limit=100, refused=4)
    assert refusal(_limit(100, 89, **refused)) is None
    assert refusal(_limit(100, 97)) is None  # nothing refused: 98 % is the bound
    assert refusal(_limit(100, 97, errorstat_OOM="count=0")) is None
    assert refusal(_limit(100, 10, **refused)) is None  # refused once, far from full now
    # At 98 % it is full whether or not it refused anything: the first clause.
    assert refusal(_limit(100, 98, **refused)) == FULL.format(used=98, limit=100)


# -- oom_refusals ------------------------------------------------------------------------


def test_the_oom_count_from_either_form_of_info() -> None:
    assert oom_refusals({"errorstat_OOM": "count=12"}) == 12
    assert oom_refusals(parse_info({"errorstat_OOM": {"count": 31}})) == 31  # redis-py
    assert oom_refusals({"errorstat_OOM": "count : 5"}) == 5
    assert oom_refusals({"errorstat_OOM": "calls=9"}) == 0
    assert oom_refusals({}) == 0


# -- ask_refusal ---------------------------------------------------------------------------


class Probe:
    """The probe's own client: ``execute_many`` with a scripted reply or failure."""

    def __init__(self, reply: Any = None, error: Exception | None = None) -> None:
        self.reply, self.error = reply, error
        self.sent: list[list[tuple[Any, ...]]] = []

    def execute_many(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        self.sent.append(list(commands))
        if self.error is not None:
            raise self.error
        return [self.reply]


def test_ask_refusal_sends_one_info_and_reads_its_text() -> None:
    probe = Probe(b"# Replication\r\nrole:slave\r\nmaster_host:db1\r\nmaster_port:6379\r\n")
    assert ask_refusal(probe) == ("the store is a read-only replica (of db1:6379): point beat "
                                  "and the workers at the primary")
    assert probe.sent == [[("INFO",)]]
    assert ask_refusal(Probe(b"role:master\r\nmaxmemory:0\r\n")) is None


def test_ask_refusal_reads_redis_py_s_dict() -> None:
    class RedisPy:
        def execute_command(self, *args: Any) -> Any:
            assert args == ("INFO",)
            return {"role": "master", "maxmemory": 100, "used_memory": 99,
                    "maxmemory_policy": "noeviction"}

    assert ask_refusal(RedisPy()) == FULL.format(used=99, limit=100)


def test_ask_refusal_says_nothing_when_info_fails() -> None:
    """A store that fails now is diagnosed by the next read; a denied ``INFO`` says nothing."""
    assert ask_refusal(Probe(error=ConnectionError("gone"))) is None
    assert ask_refusal(Probe(ValueError("NOPERM this user has no permissions"))) is None
    assert ask_refusal(Probe(ValueError("role:slave"))) is None  # an error is never INFO
    assert ask_refusal(fakeredis.FakeRedis()) is None  # fakeredis has no INFO: an error reply
