"""The beat entries on the HTTP surfaces, in-process on fakeredis: ``/metrics`` lines,
``/api/entries`` and its schema, the dashboard's entries with hostile names escaped.

Records are written by the real writer (``EntryStore``, its Lua on fakeredis), read by the
real reader; only the clock is the fake server's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest
import redis
from fastapi.testclient import TestClient

from tests.support.publishing import publish
from worker.core.entries import EntryState
from worker.core.names import Keys
from worker.core.settings import Settings
from worker.http.metrics import ENTRY_FAMILIES, ENTRY_PREFIX, RUN_OUTCOMES
from worker.http.router import configure, create_app
from worker.publish.entry_store import EntrySpec, EntryStore
from worker.read.entries import read_entries
from worker.read.entry_scrape import read_fleet_entries

SETTINGS = Settings.from_env({"HEARTBEAT_SERVICE": "petsage"})
HOSTILE = '<script>alert("x")</script> & \\ "quoted"'
"""A printable entry name (so watched) that HTML, label escaping and JSON must all survive."""


def _spec(name: str, *, next_due_in_ms: int = 60_000, max_runtime_s: float | None = None,
          queue: str = "celery") -> EntrySpec:
    return EntrySpec(name, "app.task", "every 60s", "interval", None, queue, 30.0,
                     max_runtime_s, 60.0, next_due_in_ms)


def _store(client: fakeredis.FakeRedis, service: str = "petsage") -> EntryStore:
    return EntryStore(client, Keys(), service, retention_s=3600)


def _run(store: EntryStore, name: str, task_id: str, outcome: str | None, **error: str) -> None:
    store.dispatched(name, task_id, due_in_ms=0, next_due_in_ms=60_000, beat_id="beat-1",
                     depth=0)
    store.started(name, task_id, "w1@host")
    if outcome is not None:
        store.finished(name, task_id, outcome, **error)


@pytest.fixture
def client() -> fakeredis.FakeRedis:
    fake = fakeredis.FakeRedis()
    publish(fake, "petsage")  # indexed, with a beat marker: entries are judged against it
    store = _store(fake)
    store.sync([_spec("nightly export"), _spec("cleanup"), _spec(HOSTILE), _spec("gone")])
    _run(store, "nightly export", "t1", "failed", error_type="ValueError", error="boom")
    _run(store, "cleanup", "t2", "retrying")
    store.started("cleanup", "t2", "w1@host")  # the retry: the same task id, no dispatch
    store.finished("cleanup", "t2", "succeeded")
    _run(store, HOSTILE, "t4", "succeeded")
    store.prune(["nightly export", "cleanup", HOSTILE])  # "gone" removed
    return fake


@pytest.fixture
def app(client: fakeredis.FakeRedis) -> Iterator[TestClient]:
    configure(settings=SETTINGS, client=client)
    with TestClient(create_app()) as test_client:
        yield test_client
    configure()


def _samples(text: str) -> dict[str, str]:
    """``name{labels}`` -> value text, for every sample line."""
    return dict(line.rsplit(" ", 1) for line in text.splitlines()
                if line and not line.startswith("#"))


def _label(name: str) -> str:
    return name.replace("\\", "\\\\").replace('"', '\\"')


def test_metrics_write_every_entry_family_with_exact_lines(
        app: TestClient, client: fakeredis.FakeRedis) -> None:
    response = app.get("/metrics")
    assert response.status_code == 200
    text = response.text
    got = _samples(text)
    p = ENTRY_PREFIX
    export = 'entry="nightly export",service="petsage"'
    assert got[f"{p}_read_up"] == "1.0" and got[f"{p}_omitted"] == "0.0"
    assert got[f"{p}_up{{{export}}}"] == "0.0"
    for state in EntryState:
        expected = "1.0" if state is EntryState.FAILED else "0.0"
        assert got[f'{p}_state{{{export},state="{state.value}"}}'] == expected, state
    assert got[f'{p}_diagnosis{{diagnosis="task_failed",{export}}}'] == "1.0"
    runs = {o: got[f'{p}_runs_total{{entry="nightly export",outcome="{o}",service="petsage"}}']
            for o in RUN_OUTCOMES}
    assert runs == {"dispatched": "1.0", "succeeded": "0.0", "failed": "1.0",
                    "retrying": "0.0", "revoked": "0.0", "rejected": "0.0"}
    assert f"{p}_last_success_timestamp_seconds{{{export}}}" not in got  # never succeeded

    cleanup = 'entry="cleanup",service="petsage"'
    record = {e.name: e.record for e in read_entries(client, "petsage").entries}["cleanup"]
    assert got[f"{p}_up{{{cleanup}}}"] == "1.0"
    assert got[f'{p}_state{{{cleanup},state="ok"}}'] == "1.0"
    assert got[f"{p}_last_success_timestamp_seconds{{{cleanup}}}"] == repr(
        record["last_success_ms"] / 1000)
    assert got[f"{p}_next_due_timestamp_seconds{{{cleanup}}}"] == repr(
        record["next_due_ms"] / 1000)
    assert got[f"{p}_duration_seconds{{{cleanup}}}"] == repr(
        record["run"]["duration_ms"] / 1000)
    assert got[f"{p}_queue_wait_seconds{{{cleanup}}}"] == repr(
        record["run"]["queue_wait_ms"] / 1000)
    assert float(got[f"{p}_duration_seconds{{{export}}}"]) >= 0  # a failed run's too
    assert got[f'{p}_runs_total{{entry="cleanup",outcome="retrying",service="petsage"}}'] == "1.0"
    assert got[f'{p}_runs_total{{entry="cleanup",outcome="succeeded",service="petsage"}}'] == \
        "1.0"
    assert got[f'{p}_runs_total{{entry="cleanup",outcome="dispatched",service="petsage"}}'] == \
        "1.0"
    assert not any(f'{p}_diagnosis{{diagnosis="{d}",{cleanup}}}' in got
                   for d in ("task_failed", "removed"))

    # A removed entry keeps its series, state removed and down, until the service's keys go.
    gone = 'entry="gone",service="petsage"'
    assert got[f'{p}_state{{{gone},state="removed"}}'] == "1.0"
    assert got[f"{p}_up{{{gone}}}"] == "0.0"
    assert got[f'{p}_diagnosis{{diagnosis="removed",{gone}}}'] == "1.0"

    # The hostile name: one label value, escaped per the text format, never a new line.
    hostile = f'entry="{_label(HOSTILE)}",service="petsage"'
    assert got[f'{p}_state{{{hostile},state="ok"}}'] == "1.0"
    assert all(line.startswith(("#", "petsage_")) for line in text.splitlines() if line)

    # Every entry family is written (HELP and TYPE once each) and documented.
    documented = (Path(__file__).parents[1] / "docs" / "http.md").read_text()
    for name, kind, _ in ENTRY_FAMILIES:
        assert text.count(f"# HELP {p}_{name} ") == 1, name
        assert f"# TYPE {p}_{name} {kind}\n" in text, name
        assert f"`{p}_{name}" in documented, name


def test_a_forgotten_service_s_entry_series_end(app: TestClient,
                                                client: fakeredis.FakeRedis) -> None:
    assert 'entry="gone"' in app.get("/metrics").text
    client.delete(Keys().entries("petsage"))
    text = app.get("/metrics").text
    assert "petsage_entry_state{" not in text
    assert "petsage_entry_read_up 1.0" in text  # read, with nothing to say


def test_metrics_without_entries_and_without_the_store() -> None:
    fake = fakeredis.FakeRedis()
    publish(fake, "petsage")
    configure(settings=SETTINGS, client=fake)
    try:
        text = TestClient(create_app()).get("/metrics").text
    finally:
        configure()
    assert "petsage_entry_read_up 1.0" in text and "petsage_entry_up{" not in text
    configure(settings=SETTINGS, client=redis.Redis(port=1, socket_connect_timeout=0.3,
                                                    retry=None))
    try:
        text = TestClient(create_app()).get("/metrics").text
    finally:
        configure()
    assert "petsage_heartbeat_store_up 0.0" in text and "petsage_entry" not in text


def test_the_scrape_reads_only_services_with_entries_within_the_bound() -> None:
    fake = fakeredis.FakeRedis()
    for service in ("a", "b", "c"):
        publish(fake, service)
    _store(fake, "a").sync([_spec("x"), _spec("y")])
    _store(fake, "c").sync([_spec("z")])
    read = read_fleet_entries(fake, ["a", "b", "c"], Keys())
    assert [r.service for r in read.reports] == ["a", "c"]
    assert (read.omitted, read.problem) == (0, None)
    bounded = read_fleet_entries(fake, ["a", "b", "c"], Keys(), limit=1)
    assert [r.service for r in bounded.reports] == ["c"] and bounded.omitted == 2
    fake.set(Keys().entries("b"), "not a hash")
    broken = read_fleet_entries(fake, ["a", "b", "c"], Keys())
    assert [r.service for r in broken.reports] == ["a", "c"]
    assert broken.problem is not None and broken.problem.startswith("b: ")


def test_api_entries_lists_them_worst_first(app: TestClient) -> None:
    response = app.get("/api/entries", params={"service": "petsage"})
    assert response.status_code == 200
    body = response.json()
    assert (body["store_up"], body["store_problem"], body["service"]) == (True, None, "petsage")
    names = [(e["name"], e["state"], e["diagnosis"]) for e in body["entries"]]
    assert names == [("nightly export", "failed", "task_failed"), ("gone", "removed", "removed"),
                     (HOSTILE, "ok", None), ("cleanup", "ok", None)] or names == [
        ("nightly export", "failed", "task_failed"), ("gone", "removed", "removed"),
        ("cleanup", "ok", None), (HOSTILE, "ok", None)]
    export = body["entries"][0]
    assert export["run"]["error_type"] == "ValueError" and export["counts"]["failed"] == 1
    assert export["schedule"] == "every 60s" and export["queue"] == "celery"
    default = app.get("/api/entries").json()  # the configured service by default
    assert default["service"] == "petsage"
    assert [e["name"] for e in default["entries"]] == [e["name"] for e in body["entries"]]
    assert app.get("/api/entries", params={"service": "nobody"}).json()["entries"] == []


@pytest.mark.parametrize("query", ["service=a*b", "service=", "other=1",
                                   "service=petsage&service=petsage"])
def test_api_entries_refuses_a_bad_query_with_one_line(app: TestClient, query: str) -> None:
    response = app.get(f"/api/entries?{query}")
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and "accepted" in detail


def test_api_entries_is_503_when_the_store_cannot_be_asked() -> None:
    configure(settings=SETTINGS, client=redis.Redis(port=1, socket_connect_timeout=0.3,
                                                    retry=None))
    try:
        response = TestClient(create_app()).get("/api/entries")
    finally:
        configure()
    assert response.status_code == 503
    body = response.json()
    assert body["store_up"] is False and body["entries"] == []
    assert body["store_problem"].startswith("Redis could not be asked")


def test_the_schema_lists_api_entries_with_exactly_its_codes(app: TestClient) -> None:
    schema = app.get("/openapi.json").json()
    operation = schema["paths"]["/api/entries"]["get"]
    assert set(operation["responses"]) == {"200", "400", "503"}
    (parameter,) = operation["parameters"]
    assert parameter["name"] == "service" and parameter["in"] == "query"
    assert parameter["schema"]["pattern"].startswith("^")
    assert "EntriesResponse" in json.dumps(operation["responses"]["200"])


def test_the_dashboard_shows_entries_with_every_field_escaped(app: TestClient) -> None:
    page = app.get("/").text
    section = app.get("/dashboard/entries").text
    for html in (page, section):
        assert "<script>alert" not in html  # only the page's own script tag is raw
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; \\ &quot;quoted&quot;" \
            in html
        assert '<section class="entries" data-service="petsage">' in html
        row = re.search(r'<tr data-entry="nightly export" data-state="failed">(.*?)</tr>',
                        html, re.S)
        assert row is not None
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)
        assert cells[0] == "nightly export" and ">failed<" in cells[1]
        assert cells[2] == "task_failed" and cells[3] == "every 60s" and cells[4] == "-"
        assert cells[5].startswith("in ") and cells[6].endswith(" ms")
        assert "ValueError boom" in cells[8]
    assert page.count("<script") == 1  # the page's own refresh
    assert not re.search(r'(src|href)="(https?:)?//', page)  # no external loads


def test_an_unreadable_record_is_failed_invalid_with_no_counts(
        app: TestClient, client: fakeredis.FakeRedis) -> None:
    client.hset(Keys().entries("petsage"), "broken", b"{not json")
    got = _samples(app.get("/metrics").text)
    broken = 'entry="broken",service="petsage"'
    assert got[f'petsage_entry_state{{{broken},state="failed"}}'] == "1.0"
    assert got[f'petsage_entry_diagnosis{{diagnosis="invalid",{broken}}}'] == "1.0"
    assert not any(key.startswith("petsage_entry_runs_total{entry=\"broken\"") for key in got)
    row = re.search(r'<tr data-entry="broken" data-state="failed">.*?</tr>',
                    app.get("/dashboard/entries").text, re.S)
    assert row is not None and "the stored record is unreadable" in row.group(0)


def _silence_entry(client: fakeredis.FakeRedis, service: str, name: str, left_ms: int,
                   reason: str = "db migration") -> int:
    seconds, micros = client.time()
    now_ms = seconds * 1000 + micros // 1000
    client.hset(Keys().entry_silence(service), name, json.dumps(
        {"until_ms": now_ms + left_ms, "since_ms": now_ms, "reason": reason}))
    return now_ms + left_ms


def test_metrics_say_which_entries_are_silenced_with_exact_lines(
        app: TestClient, client: fakeredis.FakeRedis) -> None:
    _silence_entry(client, "petsage", "nightly export", 3_600_000)
    _silence_entry(client, "petsage", HOSTILE, 3_600_000)
    _silence_entry(client, "petsage", "cleanup", -1000)  # ended on the Redis clock
    _silence_entry(client, "petsage", "not an entry", 3_600_000)  # no series of its own
    text = app.get("/metrics").text
    lines = [line for line in text.splitlines() if line.startswith("petsage_entry_silenced")]
    assert sorted(lines) == sorted([
        'petsage_entry_silenced{entry="nightly export",service="petsage"} 1.0',
        f'petsage_entry_silenced{{entry="{_label(HOSTILE)}",service="petsage"}} 1.0',
        'petsage_entry_silenced{entry="cleanup",service="petsage"} 0.0',
        'petsage_entry_silenced{entry="gone",service="petsage"} 0.0'])
    assert ("# HELP petsage_entry_silenced 1 while an operator's silence of the entry holds "
            "its notifications and alert rules back, else 0\n"
            "# TYPE petsage_entry_silenced gauge\n") in text
    # The silence changes no state: the silenced failed entry is still failed and down.
    got = _samples(text)
    export = 'entry="nightly export",service="petsage"'
    assert got[f'petsage_entry_state{{{export},state="failed"}}'] == "1.0"
    assert got[f"petsage_entry_up{{{export}}}"] == "0.0"


def test_entry_silences_come_in_the_same_round_trips_as_the_entries(
        client: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch) -> None:
    import worker.read.entry_scrape as entry_scrape

    for service in ("a", "b"):
        publish(client, service)
        _store(client, service).sync([_spec("x")])
    _silence_entry(client, "a", "x", 60_000)
    calls: list[int] = []
    real = entry_scrape.execute_many

    def counted(target: object, commands: list[tuple[object, ...]]) -> list[object]:
        calls.append(len(commands))
        return real(target, commands)

    monkeypatch.setattr(entry_scrape, "execute_many", counted)
    read = read_fleet_entries(client, ["a", "b", "petsage"], Keys())
    assert len(calls) == 2  # the HLEN pass, then one for the records and silences
    silenced = {(r.service, e.name): e.silence is not None
                for r in read.reports for e in r.entries}
    assert silenced[("a", "x")] and not silenced[("b", "x")]
    assert not any(v for (s, _), v in silenced.items() if s == "petsage")


def test_a_silence_hash_of_the_wrong_type_is_no_silence_and_no_error(
        app: TestClient, client: fakeredis.FakeRedis) -> None:
    client.set(Keys().entry_silence("petsage"), "not a hash")
    text = app.get("/metrics").text
    assert "petsage_entry_read_up 1.0" in text
    assert 'petsage_entry_silenced{entry="nightly export",service="petsage"} 0.0' in text


def test_the_dashboard_says_an_entry_is_silenced_beside_its_state(
        app: TestClient, client: fakeredis.FakeRedis) -> None:
    _silence_entry(client, "petsage", "nightly export", 30 * 60_000, reason="<b>deploy</b>")
    section = app.get("/dashboard/entries").text
    row = re.search(r'<tr data-entry="nightly export" data-state="failed">(.*?)</tr>',
                    section, re.S)
    assert row is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)
    assert ">failed<" in cells[1]
    assert re.search(r'<br><span class="silenced">silenced (29|30) min more: '
                     r"&lt;b&gt;deploy&lt;/b&gt;</span>$", cells[1])
    other = re.search(r'<tr data-entry="cleanup" data-state="ok">(.*?)</tr>', section, re.S)
    assert other is not None and "silenced" not in other.group(1)
