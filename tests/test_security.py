"""Security: JSON only, passwords never shown, TLS verified by default, least-privilege ACLs."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest
import redis
from celery import Celery

from tests.support.certs import make_certs
from tests.support.helpers import (
    STARTUP_S,
    Proc,
    RedisServer,
    celery_argv,
    cli_argv,
    free_port,
    heartbeat_env,
    wait_for,
)
from tests.support.processes import run as run_process
from tests.support.publishing import publish
from worker import State, read_heartbeat
from worker.core.names import Keys

pytestmark = pytest.mark.e2e
SECRET = "hunter2-Xq9-s3cret"

# The former two-user ACLs (one writer for beat, worker and monitor; one reader), still
# working for deployments that keep them; the documented per-role ACLs are tested verbatim
# in tests/test_acl_matrix.py.
WORKER_ACL = ("on", f">{SECRET}", "resetkeys", "~petsage:hb:*", "~heartbeat.petsage",
              "~heartbeat.petsage\x06\x16*", "~bcast.*",
              "~_kombu.*", "~unacked*", "~*.celery.pidbox*", "~*.reply.celery.pidbox*",
              "resetchannels", "&*", "-@all", "+@connection",
              "+@read", "+@write", "+@keyspace", "+@list", "+@set", "+@sortedset", "+@hash",
              "+@string", "+@stream", "+@scripting", "+@pubsub", "+@transaction", "+time",
              "-@dangerous")
READER_ACL = ("on", f">{SECRET}", "resetkeys", "%R~petsage:hb:*", "resetchannels",
              "&petsage:hb:events", "-@all", "+@connection", "+get", "+getrange", "+strlen",
              "+type", "+exists", "+time", "+zcard", "+zrange", "+zrevrange", "+xrevrange",
              "+xrange", "+xlen", "+hmget", "+hget", "+hgetall", "+hscan", "+hlen", "+hkeys",
              "+hstrlen", "+eval_ro", "+info",
              "+subscribe", "+unsubscribe",
              # The entries' silences, read bounded by a script in the entries' pipeline.
              "(~petsage:hb:*:entry_silence +eval +hlen +hkeys +hstrlen +hget)")


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())
    except urllib.error.HTTPError as exc:
        return str(exc.read().decode())


def test_a_pickled_message_is_refused_and_never_runs(own_redis: RedisServer, procs: list[Proc],
                                                     tmp_path: Path) -> None:
    worker = Proc(celery_argv("worker"), heartbeat_env(own_redis.url), tmp_path, "worker")
    procs.append(worker)
    wait_for(lambda: re.search(r"hbtest@\S+ ready\.", worker.output()), 30, what="ready")
    attacker = Celery("attacker", broker=own_redis.url)
    attacker.conf.update(task_serializer="pickle", accept_content=["pickle", "json"])
    attacker.send_task("health", queue="heartbeat.petsage", serializer="pickle")
    wait_for(lambda: "ContentDisallowed" in worker.output(), 15,
             what="the worker refusing the pickle")
    assert own_redis.client().get(Keys().latest("petsage")) is None  # never executed
    assert "Task health" not in worker.output()


def test_passwords_never_appear_anywhere(procs: list[Proc], tmp_path: Path) -> None:
    server = RedisServer("--requirepass", SECRET).start()
    try:
        url = f"redis://:{SECRET}@127.0.0.1:{server.port}/0"
        wrong = f"redis://:wrong-{SECRET}@127.0.0.1:{server.port}/0"
        env = heartbeat_env(url)
        procs.append(Proc(celery_argv("beat", "--loglevel", "DEBUG"), env, tmp_path, "beat"))
        procs.append(Proc(celery_argv("worker", "--loglevel", "DEBUG"), env, tmp_path, "worker"))
        port = free_port()
        serve = Proc(cli_argv("serve", "--port", str(port)), env, tmp_path, "serve")
        procs.append(serve)
        watch = Proc(cli_argv("watch", "--all", "--json"), env, tmp_path, "watch")
        procs.append(watch)
        bad_watch = Proc(cli_argv("watch", "--redis", wrong), env, tmp_path, "bad-watch")
        procs.append(bad_watch)
        hook = f"http://hook-user:{SECRET}@127.0.0.1:{free_port()}/hooks/{SECRET}"
        monitor = Proc(cli_argv("monitor", "--webhook", hook), env, tmp_path, "monitor")
        procs.append(monitor)
        bad_monitor = Proc(cli_argv("monitor", "--redis", wrong), env, tmp_path, "bad-monitor")
        procs.append(bad_monitor)
        admin = server.client(password=SECRET)
        wait_for(lambda: read_heartbeat(admin, "petsage").state is State.FRESH, STARTUP_S,
                 what="fresh")
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: "petsage_heartbeat_store_up 1.0" in _get(base + "/metrics"), 30,
                 what="serve")
        outputs = [_get(base + path) for path in ("/system/health", "/metrics", "/",
                                                  "/api/heartbeats", "/openapi.json")]
        for args in (["check"], ["check", "--json"], ["status", "--all"], ["status", "--json"],
                     ["check", "--redis", wrong], ["check", "--redis", wrong, "--json"],
                     ["status", "--all", "--redis", wrong], ["check", "--redis",
                                                             f"foo://:{SECRET}@h/0"]):
            done = run_process(cli_argv(*args), env=env, capture_output=True, text=True,
                               timeout=30, check=False)
            outputs += [done.stdout, done.stderr]
        bad_env = heartbeat_env(wrong, HEARTBEAT_INTERVAL_S="x")
        bad_run = run_process(cli_argv("run"), env=bad_env, capture_output=True, text=True,
                              timeout=30, check=False)
        outputs += [bad_run.stdout, bad_run.stderr]
        wait_for(lambda: "unreachable" in bad_watch.output(), 15, what="watch with a bad password")
        wait_for(lambda: "cannot judge the fleet" in bad_monitor.output(), 15,
                 what="monitor with a bad password")
        wait_for(lambda: admin.hget(Keys().observed("petsage"), "state") == b"fresh", 15,
                 what="the monitor's record")
        assert "http://127.0.0.1:" in monitor.output()  # the webhook, shown as its host only
        outputs += [p.output() for p in procs]
        for text in outputs:
            assert SECRET not in text
        assert any("AUTH failed" in text or "invalid password" in text.lower()
                   or "WRONGPASS" in text for text in outputs)
    finally:
        server.close()


def test_tls_pipeline_verifies_certificates_by_default(procs: list[Proc],
                                                       tmp_path: Path) -> None:
    ours = make_certs(tmp_path, "ours")
    other = make_certs(tmp_path, "other")
    tls_port = free_port()
    server = RedisServer("--port", "0", "--tls-port", str(tls_port), "--tls-cert-file",
                         str(ours["crt"]), "--tls-key-file", str(ours["key"]),
                         "--tls-ca-cert-file", str(ours["ca"]), "--tls-auth-clients", "no")
    server.port = tls_port
    server._pingable = lambda: _tls_up(tls_port, ours["ca"])  # type: ignore[method-assign]
    server.start()
    try:
        good = f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={ours['ca']}"
        env = heartbeat_env(good)
        procs.append(Proc(celery_argv("beat"), env, tmp_path, "beat"))
        procs.append(Proc(celery_argv("worker"), env, tmp_path, "worker"))
        wait_for(lambda: run_process(cli_argv("check"), env=env, capture_output=True,
                                     timeout=30, check=False).returncode == 0, 30,
                 what="a fresh heartbeat over TLS")
        bad = f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={other['ca']}"
        untrusted = Proc(celery_argv("worker"), heartbeat_env(bad), tmp_path, "untrusted")
        procs.append(untrusted)
        wait_for(lambda: "CERTIFICATE_VERIFY_FAILED" in untrusted.output(), 30,
                 what="the worker refusing an untrusted certificate")
        no_ca = Proc(celery_argv("worker"), heartbeat_env(f"rediss://127.0.0.1:{tls_port}/0"),
                     tmp_path, "no-ca")
        procs.append(no_ca)
        wait_for(lambda: "CERTIFICATE_VERIFY_FAILED" in no_ca.output(), 30,
                 what="verification by default (system CAs don't know the test CA)")
        done = run_process(cli_argv("check", "--redis", bad), env=env, capture_output=True,
                           text=True, timeout=30, check=False)
        assert done.returncode == 3 and "not trusted" in done.stdout
    finally:
        server.close()


def _tls_up(port: int, ca: Path) -> bool:
    try:
        client = redis.Redis(port=port, ssl=True, ssl_ca_certs=str(ca), socket_timeout=1)
        return bool(client.ping())
    except redis.RedisError:
        return False


def test_least_privilege_acls(procs: list[Proc], tmp_path: Path) -> None:
    server = RedisServer().start()
    try:
        admin = server.client()
        admin.execute_command("ACL", "SETUSER", "petsage-worker", *WORKER_ACL)
        admin.execute_command("ACL", "SETUSER", "petsage-reader", *READER_ACL)
        worker_url = f"redis://petsage-worker:{SECRET}@127.0.0.1:{server.port}/0"
        reader_url = f"redis://petsage-reader:{SECRET}@127.0.0.1:{server.port}/0"
        env = heartbeat_env(worker_url)
        procs.append(Proc(celery_argv("beat"), env, tmp_path, "beat"))
        worker = Proc(celery_argv("worker"), env, tmp_path, "worker")
        procs.append(worker)
        wait_for(lambda: read_heartbeat(admin, "petsage").state is State.FRESH, STARTUP_S,
                 what="fresh under the worker's ACL")
        wait_for(lambda: read_heartbeat(admin, "petsage").nodes, 30,
                 what="the worker's node heartbeat under its ACL")
        assert "NOPERM" not in worker.output()
        # The monitor runs under the worker's user, as the docs say.
        monitor = Proc(cli_argv("monitor"), env, tmp_path, "monitor")
        procs.append(monitor)
        wait_for(lambda: admin.hget(Keys().observed("petsage"), "state") == b"fresh", 30,
                 what="the monitor's record under the worker's ACL")
        assert "NOPERM" not in monitor.output() and "cannot" not in monitor.output()
        reader_env = heartbeat_env(reader_url)
        one = json.loads(run_process(cli_argv("status", "--json"), env=reader_env,
                                     capture_output=True, text=True, timeout=30,
                                     check=False).stdout)
        assert one[0]["incidents"]["monitored"] is True  # the record, under the reader's ACL
        for args in (["check"], ["status", "--all", "--json"]):
            done = run_process(cli_argv(*args), env=reader_env, capture_output=True,
                               text=True, timeout=30, check=False)
            assert done.returncode == 0, done.stdout + done.stderr
        reports = json.loads(run_process(cli_argv("status", "--all", "--json"),
                                         env=reader_env, capture_output=True, text=True,
                                         timeout=30, check=False).stdout)
        assert reports[0]["state"] == "fresh" and reports[0]["diagnosis"] is None
        reader = redis.Redis.from_url(reader_url)
        assert read_heartbeat(reader, "petsage").state is State.FRESH
        with pytest.raises(redis.exceptions.NoPermissionError):
            reader.set(Keys().latest("petsage"), "forged")
        with pytest.raises(redis.exceptions.NoPermissionError):
            reader.get("some-other-app:secret")
        with pytest.raises(redis.exceptions.NoPermissionError):
            publish(reader)
    finally:
        server.close()


def _sweep(env: dict[str, str], tmp_path: Path, name: str, *, refused: bool) -> list[str]:
    """Every CLI output, and a monitor's log until it has judged (or, ``refused``, said it
    cannot)."""
    outputs = []
    for args in (["check"], ["check", "--json"], ["status", "--all"],
                 ["status", "--all", "--json"], ["status", "--json"]):
        done = run_process(cli_argv(*args, "--timeout", "2"), env=env, capture_output=True,
                           text=True, timeout=60, check=False)
        outputs += [done.stdout, done.stderr]
    monitor = Proc(cli_argv("monitor"), env, tmp_path, f"monitor-{name}")
    try:
        wait_for(lambda: "judging every service" in monitor.output(), 15, what="the monitor")
        if refused:
            wait_for(lambda: "cannot judge the fleet" in monitor.output(), 15,
                     what="the monitor saying it cannot judge")
    finally:
        monitor.stop()
    return [*outputs, monitor.output()]


@pytest.mark.parametrize("form", ["user", "query", "sentinel", "amqp"])
def test_every_password_form_stays_out_of_every_output(form: str, procs: list[Proc],
                                                       tmp_path: Path) -> None:
    """The live sweep, for each way a password is written in a URL, right and wrong."""
    server = RedisServer("--requirepass", SECRET).start()
    sentinels = None
    try:
        admin = server.client(password=SECRET)
        admin.execute_command("ACL", "SETUSER", "sweeper", "on", f">{SECRET}", "~*", "&*",
                              "+@all")
        port = server.port
        right_store = f"redis://:{SECRET}@127.0.0.1:{port}/0"
        if form == "user":
            urls = [f"redis://sweeper:{SECRET}@127.0.0.1:{port}/0",
                    f"redis://sweeper:wrong-{SECRET}@127.0.0.1:{port}/0"]
        elif form == "query":
            urls = [f"redis://127.0.0.1:{port}/0?password={SECRET}",
                    f"redis://127.0.0.1:{port}/0?password=wrong-{SECRET}"]
        elif form == "sentinel":
            from tests.support.sentinel import SentinelSet

            sentinels = SentinelSet()  # a password its servers don't need: still never shown
            urls = [sentinels.url.replace("sentinel://", f"sentinel://:{SECRET}@")]
        else:
            urls = [right_store]
        outputs: list[str] = []
        for index, url in enumerate(urls):
            outputs += _sweep(heartbeat_env(url), tmp_path, f"{form}-{index}",
                              refused=index == 1)
        if form == "amqp":
            # A broker password, wrong on purpose: beat and the worker say they can't connect.
            env = heartbeat_env(right_store, CELERY_BROKER_URL=(
                f"amqp://guest:{SECRET}@127.0.0.1:5672//"))
            beat = Proc(celery_argv("beat"), env, tmp_path, "beat")
            worker = Proc(celery_argv("worker"), env, tmp_path, "worker")
            procs += [beat, worker]
            wait_for(lambda: "ACCESS_REFUSED" in worker.output() or "Cannot connect" in
                     worker.output() or "refused" in worker.output().lower(), 30,
                     what="the worker refused by the broker")
            outputs += [beat.output(), worker.output()]
        assert any(outputs)
        for text in outputs:
            assert SECRET not in text
    finally:
        if sentinels is not None:
            sentinels.close()
        server.close()
