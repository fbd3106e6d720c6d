"""``petsage-heartbeat serve`` as a real process: HTTP, /metrics with promtool, Chromium."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.support.helpers import (
    REPO,
    STARTUP_S,
    Proc,
    RedisServer,
    cli_argv,
    free_port,
    heartbeat_env,
    require_binary,
    wait_for,
)
from tests.support.processes import run as run_process
from tests.support.publishing import backdate, publish
from worker.core.names import Keys
from worker.publish.entry_store import EntrySpec, EntryStore

ARTIFACTS = REPO / "test-artifacts"


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def served(own_redis: RedisServer, procs: list[Proc], tmp_path: Path) -> str:
    port = free_port()
    proc = Proc(cli_argv("serve", "--port", str(port)), heartbeat_env(own_redis.url), tmp_path,
                "serve")
    procs.append(proc)
    base = f"http://127.0.0.1:{port}"
    # /system/health: answering without a fleet read, which serve would share for a second
    wait_for(lambda: _get(base + "/system/health")[0] in (200, 503), STARTUP_S,
             what="serve answering")
    return base


def _metric(text: str, name: str, **labels: str) -> float | None:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(name + (f"{{{wanted}}}" if wanted else "")) + r" (\S+)"
    match = re.search("^" + pattern + "$", text, re.MULTILINE)
    return None if match is None else float(match.group(1))


def test_health_metrics_and_store_outage_over_http(served: str, own_redis: RedisServer,
                                                   tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    client = own_redis.client()
    publish(client, "petsage")
    publish(client, "retired")
    status, body = _get(served + "/system/health")
    assert status == 200 and json.loads(body)["state"] == "fresh"
    assert _get(served + "/system/health/nobody")[0] == 503

    status, text = _get(served + "/metrics")
    exposition = tmp_path / "metrics.txt"
    exposition.write_text(text)
    check = run_process([promtool, "check", "metrics"], input=text,
                        capture_output=True, text=True, timeout=30, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    stored = json.loads(client.get(Keys().latest("petsage")) or b"")
    assert _metric(text, "petsage_heartbeat_seq", service="petsage") == stored["seq"]
    assert _metric(text, "petsage_heartbeat_last_timestamp_seconds",
                   service="petsage") == stored["ts_ms"] / 1000
    assert _metric(text, "petsage_heartbeat_queue_lag_seconds", service="petsage") == 0.003
    assert _metric(text, "petsage_heartbeat_up", service="petsage") == 1
    assert _metric(text, "petsage_heartbeat_store_up") == 1
    assert _metric(text, "petsage_heartbeat_up", service="retired") == 1

    client.zrem(Keys().index, "retired")
    # no dead series, from the first scrape after the one kept for a second
    wait_for(lambda: 'service="retired"' not in _get(served + "/metrics")[1], 3,
             what="the retired service's series gone")

    own_redis.kill()
    wait_for(lambda: _metric(_get(served + "/metrics")[1], "petsage_heartbeat_store_up") == 0,
             3, what="store_up 0")
    status, text = _get(served + "/metrics")
    assert status == 200 and _metric(text, "petsage_heartbeat_store_up") == 0
    status, body = _get(served + "/system/health")
    assert status == 503 and json.loads(body)["diagnosis"] == "store_unreachable"
    assert _get(served + "/")[0] == 200  # the dashboard still answers, with a banner
    own_redis.start()
    wait_for(lambda: _metric(_get(served + "/metrics")[1], "petsage_heartbeat_store_up") == 1,
             15, what="store_up back to 1")


def test_alert_rules_pass_promtool_unit_tests() -> None:
    promtool = require_binary("promtool")
    rules = REPO / "deploy" / "prometheus"
    for argv in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]):
        done = run_process([promtool, *argv], cwd=rules, capture_output=True, text=True,
                           timeout=60, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_rule_is_tested_firing_and_respects_silences() -> None:
    rules = REPO / "deploy" / "prometheus"
    shipped = yaml.safe_load((rules / "alerts.yml").read_text())
    tests = yaml.safe_load((rules / "alerts_test.yml").read_text())
    fired = {case["alertname"] for test in tests["tests"]
             for case in test.get("alert_rule_test", []) if case.get("exp_alerts")}
    for group in shipped["groups"]:
        for rule in group["rules"]:
            assert rule["alert"] in fired, f"{rule['alert']} is never tested firing"
            if "service" in rule["expr"] or rule["alert"].startswith("PetsageEntry"):
                assert "unless on(service) petsage_heartbeat_silenced == 1" in rule["expr"], \
                    rule["alert"]
            if "petsage_entry_" in rule["expr"] or rule["alert"].startswith("PetsageEntry"):
                # A silenced entry is quiet; the other entries of its service are not.
                assert "unless on(service, entry) petsage_entry_silenced == 1" in rule["expr"], \
                    rule["alert"]
    entry_rules = [r for g in shipped["groups"] for r in g["rules"]
                   if r["alert"].startswith("PetsageEntry")]
    assert {"PetsageEntryMissed", "PetsageEntryFailed", "PetsageEntryNotStarted",
            "PetsageEntryOverrun"} <= {r["alert"] for r in entry_rules}
    # Each entry rule is tested quiet for a silenced entry while another entry fires.
    silenced_quiet = {case["alertname"] for test in tests["tests"]
                      if any(s["series"].startswith("petsage_entry_silenced{")
                             and s["values"].startswith("1") for s in test["input_series"])
                      for case in test.get("alert_rule_test", []) if case.get("exp_alerts")}
    assert {r["alert"] for r in entry_rules} <= silenced_quiet


def _chromium(url: str, tmp_path: Path, *extra: str) -> str:
    binary = require_binary("chromium")
    done = run_process(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path}/chrome",
         "--enable-logging=stderr", "--v=0", "--window-size=1280,420", *extra, url],
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    # The page's CSP allows its own script and style (by hash) and nothing else: a
    # violation would be logged to the console, and the page would be unstyled or static.
    assert "Content Security Policy" not in done.stderr, done.stderr[-2000:]
    return done.stdout


def test_dashboard_renders_in_headless_chromium(served: str, own_redis: RedisServer,
                                                tmp_path: Path) -> None:
    client = own_redis.client()
    for _ in range(12):
        publish(client, "api")
    publish(client, "billing")
    backdate(client, "billing", 45)
    # A beat entry whose name is markup: the page must show it as text, never run it.
    hostile = '<script>document.title="owned"</script><img src=x onerror=alert(1)>'
    store = EntryStore(client, Keys(), "api", retention_s=600)
    store.sync([EntrySpec(hostile, "app.task", "every 60s", "interval", None, "celery", 30.0,
                          None, 60.0, 60_000)])
    store.dispatched(hostile, "t1", due_in_ms=0, next_due_in_ms=60_000, beat_id="b",
                     depth=0)
    store.started(hostile, "t1", "w@h")
    store.finished(hostile, "t1", "failed", error_type="ValueError", error="<b>bold</b>")
    # Virtual time long enough for the page's own refresh (every 3 s) to run once.
    dom = _chromium(served + "/", tmp_path, "--virtual-time-budget=4500", "--dump-dom")
    section = re.search(r'<section class="entries" data-service="api">.*?</section>', dom,
                        re.S)
    assert section is not None  # rendered, and still there after the refresh
    assert "&lt;script&gt;document.title=\"owned\"&lt;/script&gt;&lt;img src=x " \
        "onerror=alert(1)&gt;" in section.group(0)
    assert "&lt;b&gt;bold&lt;/b&gt;" in section.group(0)
    elements = re.sub(r'="[^"]*"', "", dom)  # attribute values are text, not elements
    assert "<img" not in elements and elements.count("<script") == 1  # the page's own only
    assert "<title>PetSage heartbeat</title>" in dom
    assert re.search(r'<tr data-service="api" data-state="fresh">.*?>fresh<', dom, re.S)
    assert re.search(r'<tr data-service="billing" data-state="stale">.*?>stale<', dom, re.S)
    stale_row = dom[dom.index('data-service="billing"'):]
    assert "beat_down" in stale_row.split("</tr>")[0]
    assert "<polyline" in dom  # the lag/duration chart of "api"
    updated = re.search(r'<span id="updated">([^<]+)</span>', dom)
    assert updated is not None and updated.group(1).endswith("Z")  # set by the refresh script
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    _chromium(served + "/", tmp_path, f"--screenshot={shot}", "--virtual-time-budget=1000")
    assert shot.exists() and shot.stat().st_size > 5000
