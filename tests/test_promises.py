"""Documented promises that nothing else pins down, each with known values: every metric,
every hook variable, the full JSON shapes of ``check`` and ``watch``, the discard note's
TTL, ``worker_slow`` for a missing heartbeat, and a non-default prefix end to end.

Each test here was written against a change that once left the whole suite green (see
docs/development.md, mutation testing); it fails with that change.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
from fastapi.testclient import TestClient

from tests.support.helpers import Proc, RedisServer, cli_argv, heartbeat_env, wait_for
from tests.support.processes import run as run_process
from tests.support.publishing import backdate, publish
from tests.support.stores import make_store
from worker.cli.watch import Watcher
from worker.core.errors import ConfigError
from worker.core.names import Keys
from worker.core.redis_io import redis_time_ms
from worker.core.settings import Settings
from worker.core.states import State, Thresholds
from worker.http.metrics import FAMILIES, RECORD_FAMILIES, exposition
from worker.observe.record import record
from worker.publish.beat_marker import BeatMarker
from worker.publish.store import HeartbeatStore
from worker.read.fleet import read_fleet
from worker.read.incidents import read_incidents
from worker.read.reader import read_heartbeat


def _samples(text: str) -> dict[str, float]:
    """``name{labels}`` -> value, for every sample line of an exposition."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_every_metric_with_known_values() -> None:
    client = fakeredis.FakeRedis()
    keys = Keys()
    now_ms = redis_time_ms(client.time())
    # The node set first: a heartbeat's summary says whether its service has one.
    client.zadd(keys.nodes("api"), {"w1@a": now_ms - 1000, "w2@b": now_ms - 100_000})
    publish(client, "api", interval_s=10, backlog={"depth": 4})
    publish(client, "old", interval_s=10)
    backdate(client, "old", 40)
    BeatMarker(client, keys, "old", interval_s=10, retention_s=60).record_publish()
    record(client, keys, read_fleet(client, keys).reports, monitor_id="m")
    client.set(keys.silence("old"), json.dumps({"until_ms": now_ms + 60_000, "reason": "r"}))
    fleet = read_fleet(client, keys)
    _, records = read_incidents(client, keys, ["api", "old"])
    text = exposition(fleet, records).decode()
    got = _samples(text)
    api = '{service="api"}'
    expected = {
        "petsage_heartbeat_store_up": 1.0,
        f"petsage_heartbeat_up{api}": 1.0,
        'petsage_heartbeat_up{service="old"}': 0.0,
        'petsage_heartbeat_state{service="api",state="fresh"}': 1.0,
        'petsage_heartbeat_state{service="api",state="stale"}': 0.0,
        'petsage_heartbeat_state{service="old",state="stale"}': 1.0,
        'petsage_heartbeat_diagnosis{diagnosis="no_consumer",service="old"}': 1.0,
        f"petsage_heartbeat_seq{api}": 1.0,
        f"petsage_heartbeat_queue_lag_seconds{api}": 0.003,
        f"petsage_heartbeat_duration_seconds{api}": 0.001,
        f"petsage_heartbeat_interval_seconds{api}": 10.0,
        f"petsage_heartbeat_stale_after_seconds{api}": 30.0,
        f"petsage_heartbeat_queue_depth{api}": 4.0,
        'petsage_heartbeat_node_up{node="w1@a",service="api"}': 1.0,
        'petsage_heartbeat_node_up{node="w2@b",service="api"}': 0.0,
        'petsage_heartbeat_nodes{service="api",state="fresh"}': 1.0,
        'petsage_heartbeat_nodes{service="api",state="stale"}': 1.0,
        'petsage_heartbeat_beats{service="old"}': 1.0,
        'petsage_heartbeat_silenced{service="old"}': 1.0,
        f"petsage_heartbeat_silenced{api}": 0.0,
        'petsage_heartbeat_uptime_ratio{service="api",window="24h"}': 1.0,
        'petsage_heartbeat_uptime_ratio{service="old",window="30d"}': 0.0,
        'petsage_heartbeat_outages{service="old",window="7d"}': 1.0,
        'petsage_heartbeat_outages{service="api",window="24h"}': 0.0,
    }
    for name, value in expected.items():
        assert got.get(name) == pytest.approx(value), name
    assert got[f"petsage_heartbeat_age_seconds{api}"] == pytest.approx(0.0, abs=1.0)
    assert got['petsage_heartbeat_age_seconds{service="old"}'] == pytest.approx(40.0, abs=1.0)
    assert got['petsage_heartbeat_node_age_seconds{node="w2@b",service="api"}'] == \
        pytest.approx(100.0, abs=1.0)
    stored = json.loads(client.get(keys.latest("api")) or b"")
    assert got[f"petsage_heartbeat_last_timestamp_seconds{api}"] == stored["ts_ms"] / 1000
    assert got['petsage_heartbeat_monitored_seconds{service="api",window="24h"}'] >= 0.0
    # Every documented family is written (a HELP line each), none more.
    helped = {line.split()[2] for line in text.splitlines() if line.startswith("# HELP")}
    assert helped == {"petsage_heartbeat_store_up", *(f"petsage_heartbeat_{n}" for n, _ in
                                                     FAMILIES + RECORD_FAMILIES)}
    documented = (Path(__file__).parents[1] / "docs" / "http.md").read_text()
    for name in helped:
        assert f"`{name}" in documented, name


def test_a_missing_heartbeat_with_a_recent_discard_is_worker_slow() -> None:
    client = fakeredis.FakeRedis()
    BeatMarker(client, Keys(), "petsage", interval_s=0.5, retention_s=60).record_publish()
    assert read_heartbeat(client, "petsage").diagnosis == "no_consumer"
    make_store(client).record_discard("petsage", published_at_ms=redis_time_ms(client.time()),
                                      lag_ms=4200.0)
    report = read_heartbeat(client, "petsage")
    assert (report.state, report.diagnosis) == (State.MISSING, "worker_slow")


def test_the_discard_note_is_compact_json_with_whole_ms_and_a_rounded_lag() -> None:
    client = fakeredis.FakeRedis()
    make_store(client).record_discard("petsage", published_at_ms=1_800_000_000_123.6,
                                      lag_ms=4200.123456)
    assert client.get(Keys().discarded("petsage")) == (
        b'{"published_at_ms":1800000000124,"lag_ms":4200.123}')


def test_the_discard_note_expires_after_the_retention() -> None:
    client = fakeredis.FakeRedis()
    store = make_store(client)
    store.record_discard("petsage", published_at_ms=1.0, lag_ms=1.0)
    ttl_ms = client.pttl(Keys().discarded("petsage"))
    retention_ms = Settings().retention_s * 1000
    assert retention_ms - 5000 < ttl_ms <= retention_ms


HOOK_VARIABLES = ("TIME", "SERVICE", "OLD_STATE", "NEW_STATE", "AGE_S", "SEQ", "REASON",
                  "DIAGNOSIS", "EXIT_CODE", "ENTRY")


def test_every_hook_variable_of_watch_exec(tmp_path: Path) -> None:
    client = fakeredis.FakeRedis()
    publish(client, interval_s=10)
    backdate(client, "petsage", 40)
    out = tmp_path / "env.txt"
    watcher = Watcher(Settings(), all_services=False, as_json=True, timeout_s=1,
                      exec_cmd=f"env | grep '^PETSAGE_' > {out}.tmp && mv {out}.tmp {out}",
                      emit=lambda _line: None)
    watcher.observe([read_heartbeat(client, "petsage")])
    wait_for(out.exists, 10, what="the hook's output")
    assert watcher.hooks is not None and watcher.hooks.running is not None
    watcher.hooks.running.wait(10)  # reaped here: no process is left behind
    env = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert sorted(env) == sorted(f"PETSAGE_{name}" for name in HOOK_VARIABLES)
    assert env["PETSAGE_SERVICE"] == "petsage"
    assert (env["PETSAGE_OLD_STATE"], env["PETSAGE_NEW_STATE"]) == ("unknown", "stale")
    assert env["PETSAGE_EXIT_CODE"] == "2" and env["PETSAGE_SEQ"] == "1"
    assert env["PETSAGE_DIAGNOSIS"] == "beat_down"
    assert float(env["PETSAGE_AGE_S"]) == pytest.approx(40, abs=1)
    assert "over 30s" in env["PETSAGE_REASON"] and env["PETSAGE_TIME"].startswith("20")
    assert env["PETSAGE_ENTRY"] == ""  # the heartbeat's transition: no entry
    main_help = run_process(cli_argv("watch", "--help"), capture_output=True, text=True,
                            check=True).stdout
    for name in HOOK_VARIABLES:
        assert f"PETSAGE_{name}" in main_help


CHECK_KEYS = {"service", "state", "exit_code", "age_s", "late_after_s", "stale_after_s",
              "reason", "diagnosis", "clock_offset_ms", "nodes", "second_beat", "beat",
              "heartbeat", "silence"}


def _cli(url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_process(cli_argv(*args), env=heartbeat_env(url, **env), capture_output=True,
                       text=True, timeout=60, check=False)


def test_check_json_has_every_field_with_its_value(redis_server: RedisServer,
                                                   real: redis.Redis) -> None:
    publish(real, interval_s=10)
    backdate(real, "petsage", 20)
    started = time.monotonic()
    done = _cli(redis_server.url, "check", "--json")
    took_s = time.monotonic() - started  # the process's start, seconds on a busy machine
    data = json.loads(done.stdout)
    assert done.returncode == 1 and set(data) == CHECK_KEYS, done.stdout + done.stderr
    assert (data["service"], data["state"], data["exit_code"]) == ("petsage", "late", 1)
    # The age the check saw: the 20 s of the backdate plus the time until its read, which
    # is before it answered (the margin: the ms rounding and Redis's clock vs ours).
    assert 20 - 0.1 <= data["age_s"] <= 20 + took_s + 0.1, (data["age_s"], took_s)
    assert (data["late_after_s"], data["stale_after_s"]) == (15, 30)
    assert data["diagnosis"] == "beat_down" and "over 15s" in data["reason"]
    assert data["heartbeat"]["seq"] == 1 and data["heartbeat"]["status"] == "ok"
    assert data["silence"] is None and data["second_beat"] is None


def test_a_non_default_prefix_end_to_end(redis_server: RedisServer, real: redis.Redis,
                                         procs: list[Proc], tmp_path: Path) -> None:
    acme = Keys("acme:hb")
    publish(real, "shop", interval_s=10, keys=acme)
    url = redis_server.url
    assert _cli(url, "check", "--service", "shop").returncode == 2  # not under petsage:hb
    done = _cli(url, "check", "--service", "shop", "--prefix", "acme:hb")
    assert done.returncode == 0 and done.stdout.startswith("OK - shop heartbeat"), done.stdout
    done = _cli(url, "check", "--service", "shop", HEARTBEAT_KEY_PREFIX="acme:hb")
    assert done.returncode == 0, done.stdout
    status = json.loads(_cli(url, "status", "--all", "--json", "--prefix", "acme:hb").stdout)
    assert [(s["service"], s["state"]) for s in status] == [("shop", "fresh")]
    watch = Proc(cli_argv("watch", "--all", "--prefix", "acme:hb"), heartbeat_env(url),
                 tmp_path, "watch")
    procs.append(watch)
    wait_for(lambda: "shop unknown -> fresh" in watch.output(), 15, what="watch under acme:hb")
    from worker.http.router import configure, create_app

    configure(settings=Settings.from_env(heartbeat_env(url, HEARTBEAT_KEY_PREFIX="acme:hb")),
              client=real)
    try:
        with TestClient(create_app()) as http:
            assert http.get("/system/health/shop").json()["state"] == "fresh"
            assert 'petsage_heartbeat_up{service="shop"} 1.0' in http.get("/metrics").text
            services: Any = http.get("/api/heartbeats").json()["services"]
            assert [s["service"] for s in services] == ["shop"]
    finally:
        configure()


def test_every_key_expires_as_the_schema_says(redis_server: RedisServer,
                                              real: redis.Redis) -> None:
    """docs/redis-schema.md and docs/incidents.md: which key lives how long (a real Redis)."""
    keys = Keys()
    retention_ms = 3_600_000  # the test store's retention
    publish(real, interval_s=10)  # through the store, retention 1 h
    store = HeartbeatStore(real, keys, retention_s=3600, history_len=50)
    store.record_node("petsage", "w1@a", retention_s=600)
    store.record_discard("petsage", published_at_ms=1.0, lag_ms=1.0)
    BeatMarker(real, keys, "petsage", interval_s=10, retention_s=3600).record_publish()

    def ttl(key: str) -> int:
        return int(real.pttl(key))

    for key in (keys.latest("petsage"), keys.history("petsage"), keys.discarded("petsage"),
                keys.beat("petsage")):
        assert retention_ms - 5000 < ttl(key) <= retention_ms, key
    assert 600_000 - 5000 < ttl(keys.nodes("petsage")) <= 600_000
    record(real, keys, [read_heartbeat(real, "petsage")], monitor_id="m", ttl_ms=9_000_000)
    backdate(real, "petsage", 40)
    record(real, keys, [read_heartbeat(real, "petsage")], monitor_id="m", ttl_ms=9_000_000)
    for key in (keys.observed("petsage"), keys.incidents("petsage")):
        assert 9_000_000 - 5000 < ttl(key) <= 9_000_000, key
    done = _cli(redis_server.url, "silence", "petsage", "--for", "90s")
    assert done.returncode == 0, done.stderr
    assert 85_000 < ttl(keys.silence("petsage")) <= 90_000
    assert ttl(keys.index) == -1  # the index lives as long as the fleet


def test_watch_json_has_every_field_with_its_value() -> None:
    client = fakeredis.FakeRedis()
    publish(client, interval_s=10)
    lines: list[str] = []
    watcher = Watcher(Settings(), all_services=False, exec_cmd=None, as_json=True,
                      timeout_s=1, emit=lines.append)
    watcher.observe([read_heartbeat(client, "petsage")])
    backdate(client, "petsage", 20)
    watcher.observe([read_heartbeat(client, "petsage")])
    watcher.observe([read_heartbeat(client, "petsage")])  # no change: nothing said
    first, second = (json.loads(line) for line in lines)
    assert set(first) == {"time", "service", "old_state", "new_state", "age_s", "seq",
                          "reason", "diagnosis", "exit_code"}
    assert (first["old_state"], first["new_state"], first["exit_code"]) == ("unknown", "fresh",
                                                                             0)
    assert first["diagnosis"] is None and first["seq"] == 1 and first["age_s"] < 5
    assert (second["old_state"], second["new_state"], second["exit_code"]) == ("fresh", "late",
                                                                               1)
    assert second["diagnosis"] == "beat_down" and second["age_s"] == pytest.approx(20, abs=1)
    assert second["time"].endswith("+00:00") and "over 15s" in second["reason"]


def test_metrics_edges_escaping_node_counts_second_beats_and_records_in_any_order() -> None:
    from worker.http.metrics import _label
    from worker.read.fleet import Fleet
    from worker.read.incidents import Transition, summarize
    from worker.read.nodes import NodeReport
    from worker.read.reader import HeartbeatReport

    assert _label('a"b\\c\nd') == 'a\\"b\\\\c\\nd' and _label("plain@h") == "plain@h"
    assert (_label("a\\b"), _label('a"b'), _label("a\nb")) == ("a\\\\b", 'a\\"b', "a\\nb")
    down = _samples(exposition(Fleet([], "Redis could not be asked")).decode())
    assert down == {"petsage_heartbeat_store_up": 0.0}
    nodes = (NodeReport("n1@a", State.FRESH, 1.0, 1), NodeReport("n2@b", State.FRESH, 2.0, 1),
             NodeReport('odd"node', State.STALE, 90.0, 1))
    reports = [HeartbeatReport(s, State.FRESH, "r", nodes=nodes, beat={"seq": 1},
                               second_beat="other:1" if s == "c" else None)
               for s in ("a", "b", "c")]
    now = 10 * 86_400_000
    records = {
        "b": summarize("b", {}, [], None, now),  # not judged by a monitor yet
        "c": summarize("c", {"state": "fresh", "first_ms": str(now - 7_200_000)},
                       [Transition("1-0", "fresh", "stale", "no_consumer", "r", now - 3_600_000),
                        Transition("2-0", "stale", "fresh", "", "r", now - 3_540_000)],
                       None, now),
    }
    got = _samples(exposition(Fleet(reports), records).decode())
    assert got['petsage_heartbeat_nodes{service="a",state="fresh"}'] == 2.0
    assert got['petsage_heartbeat_nodes{service="a",state="stale"}'] == 1.0
    assert got['petsage_heartbeat_nodes{service="a",state="late"}'] == 0.0
    assert got['petsage_heartbeat_node_up{node="odd\\"node",service="a"}'] == 0.0
    assert got['petsage_heartbeat_beats{service="c"}'] == 2.0
    assert got['petsage_heartbeat_beats{service="a"}'] == 1.0
    assert 'petsage_heartbeat_silenced{service="a"}' not in got  # no record read for it
    assert got['petsage_heartbeat_silenced{service="b"}'] == 0.0
    assert not any('service="b",window' in name for name in got)  # never judged: no uptime
    assert got['petsage_heartbeat_mttr_seconds{service="c",window="24h"}'] == 60.0
    assert got['petsage_heartbeat_outages{service="c",window="24h"}'] == 1.0
    assert got['petsage_heartbeat_uptime_ratio{service="c",window="24h"}'] == \
        pytest.approx(1 - 60 / 7200)
    assert got['petsage_heartbeat_monitored_seconds{service="c",window="24h"}'] == 7200.0


@pytest.mark.parametrize(("text", "shown"), [
    ("redis://u:p:q@h/0", "redis://u:***@h/0"),
    ("redis://us/er:pw@h/0", "redis://us:***@h/0"),  # a "/" in the user hides what follows
    ("redis://a/b@h/0", "redis://a:***@h/0"),
    ("redis://user@h/0", "redis://user@h/0"),  # a user alone is no secret
    ("see redis://:pw@h/0, then amqp://g:s3@h2// ok",
     "see redis://:***@h/0, then amqp://g:***@h2// ok"),
    ("x9redis://:pw@h/0", "x9redis://:***@h/0"),
    ("..redis://:pw@h/0", "..redis://:***@h/0"),
    ("redis://:pw@h/0 redis://:pw2@h2/0", "redis://:***@h/0 redis://:***@h2/0"),
    ("redis://h/0?password=pw&db=1", "redis://h/0?password=***&db=1"),
    ("no url here", "no url here"), ("redis://", "redis://"), ("9://:pw@h", "9://:pw@h"),
    ("Error 111 connecting to redis://:pw@h:6379/0. Connection refused.",
     "Error 111 connecting to redis://:***@h:6379/0. Connection refused."),
    ("redis://a/b/c@h/0", "redis://a:***@h/0"),  # from the first "/" of the user on
    ("see a://:pw@h", "see a://:***@h"),  # a one-letter scheme after a space
    ("1a://:pw@h", "1a://:***@h"),  # the scheme starts at its first letter
    ("1://:123@4", "1://:123@4"),  # no letter: no scheme, and nothing to read past the end
    ("a:// u:pw@h", "a:// u:pw@h"),  # a URL ends at a space
    ("a://:p1@h b://:p2@h c://:p3@h", "a://:***@h b://:***@h c://:***@h"),
])
def test_redaction_shows_exactly_what_it_should(text: str, shown: str) -> None:
    from worker.core.urls import redact

    assert redact(text) == shown


def _sound_payload(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "seq": 7, "ts_ms": 1_800_000_000_000, "timestamp": "2027-01-15T08:00:00.000+00:00",
        "schema": 1, "service": "petsage", "status": "ok", "message": "m", "interval_s": 10,
        "stale_after_s": 30, "checks": {}, "queue_lag_ms": 1.5, "duration_ms": 2,
        "clock_offset_ms": None,
    }
    data.update(changes)
    return data


PAYLOAD_CASES: list[tuple[Any, str | None]] = [
    (_sound_payload(), None),
    (_sound_payload(stale_after_s=10), None),  # stale may equal the interval
    # Sound at the edges: the first and last ts_ms and seq, the shortest and longest
    # intervals, every optional number as an int, a float and null.
    (_sound_payload(ts_ms=0, seq=1), None),
    (_sound_payload(ts_ms=2**53 - 1, seq=2**53 - 1), None),
    (_sound_payload(seq=1000, ts_ms=1000), None),
    (_sound_payload(interval_s=0.5, stale_after_s=0.5), None),
    (_sound_payload(interval_s=1e9 - 2, stale_after_s=1e9 - 1), None),
    (_sound_payload(queue_lag_ms=3, duration_ms=2.5, clock_offset_ms=-4), None),
    (_sound_payload(queue_lag_ms=None, duration_ms=None, clock_offset_ms=1.5), None),
    ({k: v for k, v in _sound_payload().items()
      if k not in ("queue_lag_ms", "duration_ms", "clock_offset_ms")}, None),
    ([], "payload is a JSON list, not an object"),
    ({k: v for k, v in _sound_payload().items() if k != "seq"}, "payload has no 'seq'"),
    (_sound_payload(seq="7"), "payload field 'seq' has the wrong type (str)"),
    (_sound_payload(seq=True), "payload field 'seq' has the wrong type (bool)"),
    (_sound_payload(interval_s=float("nan")), "payload field 'interval_s' is not finite"),
    (_sound_payload(schema=2), "payload schema 2 is not 1"),
    (_sound_payload(service="other"), "payload is for service 'other', not 'petsage'"),
    (_sound_payload(status="weird"), "payload status 'weird' is not one of ok, degraded, error"),
    (_sound_payload(ts_ms=-1), "payload ts_ms or seq is out of range"),
    (_sound_payload(ts_ms=2**53), "payload ts_ms or seq is out of range"),
    (_sound_payload(seq=0), "payload ts_ms or seq is out of range"),
    (_sound_payload(seq=2**53), "payload ts_ms or seq is out of range"),
    (_sound_payload(timestamp="yesterday"), "payload timestamp is not ISO-8601"),
    (_sound_payload(interval_s=0), "payload interval_s/stale_after_s are out of range"),
    (_sound_payload(stale_after_s=9), "payload interval_s/stale_after_s are out of range"),
    (_sound_payload(stale_after_s=1e9), "payload interval_s/stale_after_s are out of range"),
    (_sound_payload(queue_lag_ms="x"), "payload field 'queue_lag_ms' is not a finite number"),
    (_sound_payload(duration_ms=float("inf")),
     "payload field 'duration_ms' is not a finite number"),
    (_sound_payload(clock_offset_ms=[1]),
     "payload field 'clock_offset_ms' is not a finite number"),
    # Shown values are cut: a service name to 64 characters, a status to 20.
    (_sound_payload(service="s" * 70), f"payload is for service {'s' * 64!r}, not 'petsage'"),
    (_sound_payload(status="w" * 25),
     f"payload status {'w' * 20!r} is not one of ok, degraded, error"),
    # The last values accepted, with a later problem so that every rule is walked through.
    (_sound_payload(ts_ms=0, seq=1, queue_lag_ms="x"),
     "payload field 'queue_lag_ms' is not a finite number"),
    (_sound_payload(ts_ms=2**53 - 1, seq=2**53 - 1, queue_lag_ms="x"),
     "payload field 'queue_lag_ms' is not a finite number"),
    (_sound_payload(interval_s=0.5, stale_after_s=0.5, duration_ms="x"),
     "payload field 'duration_ms' is not a finite number"),
    (_sound_payload(interval_s=1e9 - 2, stale_after_s=1e9 - 1, duration_ms="x"),
     "payload field 'duration_ms' is not a finite number"),
]
"""Payloads and what a reader says of each: sound (None), or the one line that refuses it."""


@pytest.mark.parametrize(("payload", "problem"), PAYLOAD_CASES)
def test_each_payload_refusal_says_exactly_what_is_wrong(payload: Any,
                                                         problem: str | None) -> None:
    from worker.core.payload import payload_problem

    assert payload_problem(payload, "petsage") == problem


@pytest.mark.parametrize(("payload", "problem"), PAYLOAD_CASES)
def test_the_fast_check_agrees_with_the_explanation(payload: Any, problem: str | None) -> None:
    """A fleet read judges each payload with one expression first (``_sound``); only one it
    refuses is explained field by field. The two must agree, or a sound payload takes the
    slow path (or worse, a broken one the fast)."""
    from worker.core.payload import _explain, _sound

    if type(payload) is dict:
        assert _sound(payload, "petsage") is (problem is None)
    assert _explain(payload, "petsage") == problem


def test_a_sound_payload_never_takes_the_slow_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.core import payload as module

    def slow(data: Any, service: str) -> str:
        raise AssertionError("explained a sound payload")

    monkeypatch.setattr(module, "_explain", slow)
    assert module.payload_problem(_sound_payload(), "petsage") is None
    assert module.payload_problem(_sound_payload(stale_after_s=10), "petsage") is None


def test_the_worst_status() -> None:
    from worker.core.payload import worst_status

    assert worst_status([]) == "ok"
    assert worst_status(["ok", "error", "degraded"]) == "error"
    assert worst_status(["degraded", "ok"]) == "degraded"
    assert worst_status(["ok", "ok"]) == "ok"


def test_beat_publish_failures_and_sightings() -> None:
    from worker.read.diagnosis import beat_seen_ms, parse_discard, publish_failure

    assert publish_failure(None) is None
    assert publish_failure({"published_at_ms": 5}) is None
    assert publish_failure({"publish_failed_at_ms": 10, "publish_error": "x" * 300,
                            "published_at_ms": None}) == (10, "x" * 200)
    assert publish_failure({"publish_failed_at_ms": 10, "publish_error": "refused",
                            "published_at_ms": 9}) == (10, "refused")
    assert publish_failure({"publish_failed_at_ms": 10, "published_at_ms": 10}) == (10, "")
    assert publish_failure({"publish_failed_at_ms": 10, "published_at_ms": 11}) is None
    assert beat_seen_ms(None) is None
    assert beat_seen_ms({"published_at_ms": 7}) == 7
    assert beat_seen_ms({"publish_failed_at_ms": 10, "published_at_ms": None}) == 10
    assert beat_seen_ms({"publish_failed_at_ms": 10, "published_at_ms": 4}) == 10
    assert beat_seen_ms({"publish_failed_at_ms": 10, "published_at_ms": 12}) == 12
    assert parse_discard(b'{"published_at_ms": 5, "lag_ms": 1.5}') == {"published_at_ms": 5,
                                                                      "lag_ms": 1.5}
    assert parse_discard(b'{"published_at_ms": 0, "lag_ms": 0}') is not None
    for bad in (b'{"published_at_ms": -1, "lag_ms": 1}', b'{"published_at_ms": 5.0, "lag_ms": 1}',
                b'{"published_at_ms": 9007199254740992, "lag_ms": 1}',
                b'{"published_at_ms": true, "lag_ms": 1}', b'{"published_at_ms": 5}',
                b'{"published_at_ms": 5, "lag_ms": -1}', b'{"published_at_ms": 5, "lag_ms": true}',
                b'{"published_at_ms": 5, "lag_ms": 9007199254740992}', b"[]", b"junk", None):
        assert parse_discard(bad) is None, bad


def test_each_pipeline_hop_with_its_exact_reason_and_boundaries() -> None:
    from worker.read.diagnosis import diagnose

    now = 1_000_000
    t = Thresholds(15, 30)

    def hop(marker: dict[str, Any] | None, *, discard: dict[str, Any] | None = None,
            state: State = State.MISSING) -> tuple[Any, str]:
        return diagnose(state, now_ms=now, age_s=None, payload=None, marker=marker,
                        thresholds=t, discard=discard)

    assert hop(None) == ("never_seen", "no heartbeat and no publish by beat were ever recorded")
    assert hop({"published_at_ms": None}) == ("beat_down", "beat has recorded no publish")
    assert hop({"published_at_ms": now - 20_000}) == ("beat_down",
                                                       "beat last published 20.0s ago")
    # Exactly late_after old is still alive: the queue or the worker, not beat.
    assert hop({"published_at_ms": now - 15_000})[0] == "no_consumer"
    assert hop({"published_at_ms": now + 5_000})[1].startswith("beat published 0.0s ago")
    assert hop({"published_at_ms": now - 3_000, "queue_depth": 2}) == (
        "no_consumer", "beat published 3.0s ago, 2 heartbeat(s) queued, but no heartbeat "
                       "was ever written")
    marker = {"published_at_ms": now - 1_000}
    # A discard counts while it is at most stale_after old (by when it was discarded).
    assert hop(marker, discard={"published_at_ms": now - 31_000, "lag_ms": 1_000})[0] == \
        "worker_slow"
    assert hop(marker, discard={"published_at_ms": now - 31_001, "lag_ms": 1_000})[0] == \
        "no_consumer"


@pytest.mark.parametrize(("value", "read"), [
    (0.5, 0.5), (7, 7.0), (1e9 - 1, 1e9 - 1),
    (0, 3.0), (-1, 3.0), (1e9, 3.0), (True, 3.0), ("5", 3.0), (None, 3.0),
])
def test_a_stored_interval_is_used_only_when_sane(value: Any, read: float) -> None:
    """Beat's marker carries its interval; junk there falls back to the default, not a crash."""
    from worker.read.reader import positive_number

    assert positive_number(value, 3.0) == read
    assert type(positive_number(value, 3.0)) is float


@pytest.mark.parametrize(("query", "options"), [
    ("", {"ssl_cert_reqs": "CERT_REQUIRED"}),
    ("?ssl_cert_reqs=optional", {"ssl_cert_reqs": "CERT_OPTIONAL"}),
    ("?ssl_cert_reqs=CERT_NONE", {"ssl_cert_reqs": "CERT_NONE"}),
    ("?ssl_cert_reqs=none&ssl_cert_reqs=Required", {"ssl_cert_reqs": "CERT_REQUIRED"}),
    ("?ssl_ca_certs=/ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/k.pem",
     {"ssl_cert_reqs": "CERT_REQUIRED", "ssl_ca_certs": "/ca.pem", "ssl_certfile": "/c.pem",
      "ssl_keyfile": "/k.pem"}),
])
def test_tls_options_of_a_broker_url(query: str, options: dict[str, str]) -> None:
    """What kombu is told about a ``rediss://`` broker's certificates: verified by default."""
    import ssl

    from worker.core.urls import tls_options

    expected = {k: getattr(ssl, v) if k == "ssl_cert_reqs" else v for k, v in options.items()}
    assert tls_options(f"rediss://h:6380/0{query}") == expected


def test_a_bad_tls_mode_is_one_line_without_the_password() -> None:
    from worker.core.urls import tls_options

    with pytest.raises(ConfigError) as info:
        tls_options("rediss://:secret@h:6380/0?ssl_cert_reqs=cert_maybe")
    assert str(info.value) == ("ssl_cert_reqs='maybe' in 'rediss://:***@h:6380/0?"
                               "ssl_cert_reqs=cert_maybe' is invalid; accepted: required, "
                               "optional, none")


def test_a_scrape_reads_the_record_only_when_the_store_answered() -> None:
    from worker.http.metrics import scrape
    from worker.read.fleet import Fleet
    from worker.read.incidents import summarize
    from worker.read.reader import HeartbeatReport

    asked: list[list[str]] = []
    now = 10 * 86_400_000
    record = {"a": summarize("a", {"state": "missing", "first_ms": str(now - 3_600_000)}, [],
                             None, now)}

    def records(services: list[str]) -> dict[str, Any]:
        asked.append(services)
        return record

    report = HeartbeatReport("a", State.MISSING, "none")
    body = scrape(lambda: Fleet([report]), records).decode()
    assert asked == [["a"]]
    assert 'petsage_heartbeat_state{service="a",state="missing"} 1' in body
    assert body == exposition(Fleet([report]), record).decode()
    assert 'petsage_heartbeat_uptime_ratio{service="a",window="24h"}' in body
    down = scrape(lambda: Fleet([], "Redis could not be asked"), records).decode()
    assert asked == [["a"]]
    assert "petsage_heartbeat_store_up 0" in down
    assert scrape(lambda: Fleet([report])).decode() == exposition(Fleet([report])).decode()


@pytest.mark.parametrize(("url", "kombu", "master"), [
    ("sentinel://:pw@s1:26379,s2:26380/2?master=mymaster",
     "sentinel://:pw@s1:26379/2;sentinel://:pw@s2:26380/2", "mymaster"),
    ("sentinel://s1:26379?master=a&master=b", "sentinel://s1:26379/0", "b"),
    ("sentinel://u:p@s1:1,s2:2,s3:3/0?master=m",
     "sentinel://u:p@s1:1/0;sentinel://u:p@s2:2/0;sentinel://u:p@s3:3/0", "m"),
])
def test_a_sentinel_broker_as_kombu_spells_it(url: str, kombu: str, master: str) -> None:
    from worker.core.urls import kombu_sentinel

    assert kombu_sentinel(url) == (kombu, master)


@pytest.mark.parametrize(("query", "refused"), [
    ("socket_timeout=0.5", None), ("socket_timeout=3600", None),
    ("socket_connect_timeout=0", "socket_connect_timeout='0'"),
    ("health_check_interval=3600.5", "health_check_interval='3600.5'"),
    ("db=1&socket_timeout=-1", "socket_timeout='-1'"),  # after a parameter of another kind
    ("socket_timeout=" + "9" * 50, "socket_timeout='" + "9" * 40 + "'"),
])
def test_a_urls_timeouts_are_bounded(query: str, refused: str | None) -> None:
    from worker.core.urls import validate_url

    url = f"redis://:pw@h:1/0?{query}"
    if refused is None:
        assert validate_url(url, source="--redis") == url
        return
    with pytest.raises(ConfigError) as info:
        validate_url(url, source="--redis")
    assert str(info.value) == (f"--redis 'redis://:***@h:1/0?{query}' has {refused}; accepted: "
                               "a number of seconds > 0 and <= 3600")


@pytest.mark.parametrize(("query", "clustered"), [
    ("", False), ("?cluster=true", True), ("?cluster=1", True), ("?cluster=yes", True),
    ("?cluster=YES", True), ("?cluster=True&cluster=false", False), ("?cluster=no", False),
])
def test_cluster_urls(query: str, clustered: bool) -> None:
    # Not "cluster": a test parameter of that name reads as the real-cluster fixture.
    from worker.core.urls import is_cluster

    assert is_cluster(f"redis://h:1/0{query}") is clustered


def test_a_query_parameter_is_dropped_and_the_rest_kept() -> None:
    from worker.core.urls import without_param

    assert without_param("redis://:pw@h:1/0?cluster=true&ssl_cert_reqs=none&cluster=1",
                         "cluster") == "redis://:pw@h:1/0?ssl_cert_reqs=none"
    assert without_param("redis://h:1/0?cluster=true", "cluster") == "redis://h:1/0"
    assert without_param("redis://h:1/0?a=1&b=2", "x") == "redis://h:1/0?a=1&b=2"


def test_a_node_heartbeat_is_recorded_refused_when_expired_and_forgotten() -> None:
    client = fakeredis.FakeRedis()
    store = make_store(client)
    keys = Keys()
    now_ms = redis_time_ms(client.time())
    ts_ms = store.record_node("petsage", "hb@a", retention_s=60)
    assert ts_ms is not None and abs(ts_ms - now_ms) < 1000
    assert client.zscore(keys.nodes("petsage"), "hb@a") == ts_ms
    assert 50_000 < client.pttl(keys.nodes("petsage")) <= 60_000
    fresh = store.record_node("petsage", "hb@b", retention_s=60,
                              published_at_ms=now_ms - 400.4, expires_ms=5000.6)
    assert fresh is not None and client.zscore(keys.nodes("petsage"), "hb@b") == fresh
    # A node heartbeat that waited in a backlog past its expiry proves nothing.
    assert store.record_node("petsage", "hb@c", retention_s=60,
                             published_at_ms=now_ms - 9000, expires_ms=5000) is None
    # Either time alone judges nothing: the node is recorded.
    assert store.record_node("petsage", "hb@d", retention_s=60, published_at_ms=now_ms - 9000)
    assert store.record_node("petsage", "hb@e", retention_s=60, expires_ms=5000)
    client.zrem(keys.nodes("petsage"), "hb@d", "hb@e")
    assert client.zscore(keys.nodes("petsage"), "hb@c") is None
    store.forget_node("petsage", "hb@a")
    members: Any = client.zrange(keys.nodes("petsage"), 0, -1)
    assert members == [b"hb@b"]
