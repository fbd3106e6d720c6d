"""Beat's marker, exactly: beat's id, the marker's bytes on fakeredis (the real
``beat_marker.lua``), the script's arguments, beat's estimate of the Redis clock, and the
back-off after a failed write with its two log lines. Clocks are set by hand."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace
from typing import Any

import fakeredis
import pytest

from worker.core.names import Keys
from worker.publish import beat_marker
from worker.publish.beat_marker import BeatMarker, beat_identity

KEYS = Keys()
KEY = "petsage:hb:{petsage}:beat"
LOGGER = "worker.publish.beat_marker"


class Clock:
    """``time`` as the marker sees it: wall and monotonic clocks set by hand."""

    def __init__(self) -> None:
        self.wall = 1_700_000_000.0
        self.mono = 0.5

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(beat_marker, "time", fake)
    return fake


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fixed host, pid, random part and version, so the marker's bytes are known."""
    monkeypatch.setattr(beat_marker, "socket", SimpleNamespace(gethostname=lambda: "web 1"))
    monkeypatch.setattr(beat_marker, "os", SimpleNamespace(getpid=lambda: 42))
    monkeypatch.setattr(beat_marker, "secrets", SimpleNamespace(token_hex=lambda n: "ab" * n))
    monkeypatch.setattr(beat_marker, "__version__", "9.8.7")


def _records(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]


# -- beat's id ------------------------------------------------------------------------------

@pytest.mark.parametrize(("hostname", "shown"), [
    ("web-1.example_2", "web-1.example_2"),
    ("my host/ü:1", "my_host___1"),
    ("h" * 70, "h" * 64),
    ("", "host"),
    ("!!", "__"),
])
def test_beat_id_is_the_hosts_safe_name_the_pid_and_three_random_bytes(
        monkeypatch: pytest.MonkeyPatch, hostname: str, shown: str) -> None:
    monkeypatch.setattr(beat_marker, "socket", SimpleNamespace(gethostname=lambda: hostname))
    monkeypatch.setattr(beat_marker, "os", SimpleNamespace(getpid=lambda: 4321))
    monkeypatch.setattr(beat_marker, "secrets", SimpleNamespace(token_hex=lambda n: "ab" * n))
    assert beat_identity() == f"{shown}:4321:ababab"


def test_a_restarted_beat_has_another_id() -> None:
    first, second = beat_identity(), beat_identity()
    assert first != second and first.rsplit(":", 1)[0] == second.rsplit(":", 1)[0]


# -- the marker on fakeredis ----------------------------------------------------------------

@pytest.mark.usefixtures("host")
def test_a_publish_writes_the_whole_marker_with_its_retention() -> None:
    client = fakeredis.FakeRedis()
    beat = BeatMarker(client, KEYS, "petsage", interval_s=10, retention_s=60)
    assert beat.beat_id == "web_1:42:ababab"
    beat.record_publish(3)
    raw: Any = client.get(KEY)
    now = json.loads(raw)["published_at_ms"]
    assert raw.decode() == (
        f'{{"published_at_ms":{now},"next_due_ms":{now + 10_000},"seq":1,"queue_depth":3,'
        f'"since_ms":{now},"beat_id":"web_1:42:ababab","other_beat":null,'
        '"service":"petsage","interval_s":10,"stale_after_s":30.0,"queue":"heartbeat.petsage",'
        '"hostname":"web 1","pid":42,"version":"9.8.7"}')
    assert 59_000 < client.pttl(KEY) <= 60_000


@pytest.mark.usefixtures("host")
def test_the_markers_own_fields_take_the_given_threshold_and_queue() -> None:
    client = fakeredis.FakeRedis()
    beat = BeatMarker(client, KEYS, "petsage", interval_s=2.5, retention_s=5,
                      stale_after_s=20, queue="jobs")
    beat.record_publish()
    raw: Any = client.get(KEY)
    marker = json.loads(raw)
    assert marker["next_due_ms"] - marker["published_at_ms"] == 2500
    assert marker["queue_depth"] is None
    assert raw.decode().endswith(
        '"other_beat":null,"service":"petsage","interval_s":2.5,"stale_after_s":20,'
        '"queue":"jobs","hostname":"web 1","pid":42,"version":"9.8.7"}')
    assert 4_000 < client.pttl(KEY) <= 5_000


def test_a_refused_publish_is_noted_with_its_error_made_safe() -> None:
    """Quotes, backslashes and anything but printable ASCII become ``?``, the error is cut
    to 200 characters, and an empty one says "unknown error"."""
    client = fakeredis.FakeRedis()
    beat = BeatMarker(client, KEYS, "petsage", interval_s=10, retention_s=60)
    beat.record_failure('Err "1" \\ é\t~' + "x" * 300)
    raw: Any = client.get(KEY)
    marker = json.loads(raw)
    assert marker["publish_error"] == ("Err ?1? ? ??~" + "x" * 300)[:200]
    assert marker["published_at_ms"] is None and marker["seq"] == 0
    beat.record_failure("")
    raw = client.get(KEY)
    assert json.loads(raw)["publish_error"] == "unknown error"


def test_the_offset_to_the_redis_clock_is_measured_at_start() -> None:
    client = fakeredis.FakeRedis()
    beat = BeatMarker(client, KEYS, "petsage", interval_s=10, retention_s=60)
    assert beat.offset_ms is None
    beat.measure_offset()
    assert beat.offset_ms is not None and abs(beat.offset_ms) < 2000


# -- the script's arguments and the Redis clock ---------------------------------------------

class Script:
    """A registered marker script: records each call, replies as told (or fails)."""

    def __init__(self) -> None:
        self.replies: list[Any] = []
        self.calls: list[dict[str, Any]] = []
        self.error: BaseException | None = None

    def __call__(self, keys: Any = None, args: Any = None, client: Any = None) -> Any:
        self.calls.append({"keys": keys, "args": args, "client": client})
        if self.error is not None:
            raise self.error
        return self.replies.pop(0)


class StubClient:
    def __init__(self) -> None:
        self.script = Script()
        self.time_reply: Any = (1_700_000_001, 250_000)
        self.time_error: BaseException | None = None

    def register_script(self, source: str) -> Script:
        assert "publish_failed_at_ms" in source
        return self.script

    def time(self) -> Any:
        if self.time_error is not None:
            raise self.time_error
        return self.time_reply


def _stubbed(**kwargs: Any) -> tuple[BeatMarker, StubClient]:
    stub = StubClient()
    kwargs = {"interval_s": 10, "retention_s": 60, **kwargs}
    return BeatMarker(stub, KEYS, "petsage", **kwargs), stub  # type: ignore[arg-type]


@pytest.mark.usefixtures("host", "clock")
def test_the_script_gets_every_argument_as_its_header_says() -> None:
    """interval ms, retention ms, beat's fields, its id, its previous publish (0 before
    the first, and only publishes count), the second-beat window (10 intervals), the
    failure ('' for a publish) and the depth (-1 for unknown)."""
    beat, stub = _stubbed(interval_s=1.5, retention_s=7)
    fields = ('{"service":"petsage","interval_s":1.5,"stale_after_s":4.5,'
              '"queue":"heartbeat.petsage","hostname":"web 1","pid":42,"version":"9.8.7"}')
    stub.script.replies = [[1_700_000_123_456, -1], [1_700_000_200_000, -1],
                           [1_700_000_300_000, 0]]
    beat.record_publish()
    beat.record_failure("refused")
    beat.record_publish(0)
    assert stub.script.calls == [
        {"keys": [KEY], "args": [1500, 7000, fields, "web_1:42:ababab", 0, 15_000, "", -1],
         "client": None},
        {"keys": [KEY], "args": [1500, 7000, fields, "web_1:42:ababab", 1_700_000_123_456,
                                 15_000, "refused", -1], "client": None},
        {"keys": [KEY], "args": [1500, 7000, fields, "web_1:42:ababab", 1_700_000_123_456,
                                 15_000, "", 0], "client": None},
    ]


@pytest.mark.usefixtures("clock")
def test_the_fields_are_compact_json_of_the_real_host() -> None:
    beat, _ = _stubbed()
    fields = json.loads(beat._fields)
    assert fields["pid"] > 0 and fields["hostname"]
    assert ", " not in beat._fields and '": ' not in beat._fields


def test_beat_estimates_the_redis_clock_from_each_write(clock: Clock) -> None:
    """Its own clock until measured; then its clock plus the last measured offset, from
    ``TIME`` at start or from the time each marker write returns."""
    beat, stub = _stubbed()
    assert beat.redis_now_ms() == 1_700_000_000_000.0
    beat.measure_offset()
    assert beat.offset_ms == 1250.0
    assert beat.redis_now_ms() == 1_700_000_001_250.0
    stub.script.replies = [[1_700_000_123_456, -1], [1_699_999_999_999, -1]]
    beat.record_publish()
    assert beat.offset_ms == 123_456.0
    clock.wall += 1
    assert beat.redis_now_ms() == 1_700_000_124_456.0
    beat.record_failure("down")
    assert beat.offset_ms == -1001.0


def test_an_offset_of_zero_is_kept(clock: Clock) -> None:
    beat, stub = _stubbed()
    stub.time_reply = (1_700_000_000, 0)
    beat.measure_offset()
    assert beat.offset_ms == 0.0 and beat.redis_now_ms() == 1_700_000_000_000.0


# -- a failing store: skipped for 5 s, said once, recovery said once ------------------------

def test_a_failed_write_is_said_once_and_not_tried_again_for_five_seconds(
        clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    beat, stub = _stubbed()
    stub.script.error = ConnectionError("Error 111 connecting to redis://:pw@store:6379/0")
    with caplog.at_level(logging.INFO):
        clock.mono = 0.5  # the very first write is tried, whatever the monotonic clock
        beat.record_publish()
        assert len(stub.script.calls) == 1
        clock.mono = 5.499
        beat.record_publish()
        beat.record_failure("x")
        beat.measure_offset()
        assert len(stub.script.calls) == 1
        clock.mono = 5.5
        beat.record_publish()
        assert len(stub.script.calls) == 2
        stub.script.error = None
        stub.script.replies = [[1_700_000_000_000, -1], [1_700_000_000_001, -1]]
        clock.mono = 10.5
        beat.record_publish()
        beat.record_publish()
        assert len(stub.script.calls) == 4
        stub.time_error = OSError("timed out")
        clock.mono = 11.0
        beat.measure_offset()
    assert _records(caplog) == [
        (logging.WARNING, "beat marker not written (beat keeps publishing): ConnectionError: "
                          "Error 111 connecting to redis://:***@store:6379/0"),
        (logging.WARNING, "beat marker written again"),
        (logging.WARNING, "beat marker not written (beat keeps publishing): OSError: timed out"),
    ]


def test_a_store_that_always_works_says_nothing(
        clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    beat, stub = _stubbed()
    stub.script.replies = [[1_700_000_000_000, 2]]
    with caplog.at_level(logging.INFO):
        beat.measure_offset()
        beat.record_publish(2)
    assert _records(caplog) == []
