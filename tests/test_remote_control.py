"""What Celery's remote control shows of the heartbeat: no password, webhook path or token.

``celery inspect conf`` and ``inspect report`` need only the broker login and print the
worker's ``app.conf``; Celery masks its own keys there (``broker_url``...), nothing else. The
heartbeat's settings stay out of ``app.conf`` (``heartbeat_settings(app)``), and their repr
masks every URL anyway. With remote control turned off the heartbeat keeps working: node
heartbeats travel on a broadcast queue of their own, not on Celery's pidbox.
"""

from __future__ import annotations

import json
import os
import pprint
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import pytest
from celery import Celery

from tests.support.helpers import (
    REPO,
    STARTUP_S,
    Proc,
    RedisServer,
    celery_argv,
    heartbeat_env,
    wait_for,
)
from tests.support.processes import run as run_process
from worker import State, read_heartbeat
from worker.core.settings import CheckSpec, Settings
from worker.core.urls import mask_url, masked_repr, redact
from worker.core.webhook_urls import parse_webhook, parse_webhooks

PASSWORD = "Rd5-pw-s3cret"
HOOK = "https://user:hookpw@hooks.example/T0K3N?key=abc"
SECRETS = (PASSWORD, "hookpw", "T0K3N", "key=abc")


# -- the repr of the settings ---------------------------------------------------------------

def test_the_settings_repr_masks_every_url_at_every_depth() -> None:
    settings = Settings(
        broker_url="amqp://guest:bpw@rabbit:5672//",
        redis_url="redis://u:spw@h:6379/0?pass=qpw&db=1",
        checks=(CheckSpec("db", "app.health", "ping"),),
        webhooks=parse_webhooks(f"{HOOK} http://plain:8080"),
        dashboard_url="https://dash:dpw@dash.example/wallT0K3N?token=dtk",
    )
    shown = (
        "Settings(broker_url='amqp://guest:***@rabbit:5672//', "
        "redis_url='redis://u:***@h:6379/0?pass=***&db=1', service='petsage', "
        "interval_s=10.0, stale_after_s=30.0, key_prefix='petsage:hb', retention_s=604800, "
        "history_len=120, redis_timeout_s=2.0, "
        "checks=(CheckSpec(name='db', module='app.health', attr='ping'),), "
        "urls_defaulted=False, queue='heartbeat.petsage', node_retention_s=600, "
        "webhooks=(Webhook(url='https://hooks.example/***', id='3ab150d302b864f7', "
        "shown='https://hooks.example'), Webhook(url='http://plain:8080', "
        "id='b2f49c8c01d4dcd7', shown='http://plain:8080')), webhook_format='json', "
        "dashboard_url='https://dash.example/***', incidents_len=1000, entries=None)"
    )
    assert repr(settings) == shown
    assert str(settings) == shown and f"{settings}" == shown
    assert pprint.pformat(settings, width=40) == shown  # pprint keeps a tuple's own repr
    for secret in ("bpw", "spw", "qpw", "hookpw", "T0K3N", "abc", "dpw", "dtk", "wall"):
        assert secret not in repr(settings) + repr(settings.webhooks)
    # The values themselves are untouched: only their repr is masked.
    assert settings.webhooks[0].url == HOOK
    assert settings.redis_url == "redis://u:spw@h:6379/0?pass=qpw&db=1"


def test_a_webhook_repr_shows_scheme_and_host_only() -> None:
    hook = parse_webhook(HOOK, source="X")
    assert repr(hook) == ("Webhook(url='https://hooks.example/***', id='3ab150d302b864f7', "
                          "shown='https://hooks.example')")
    assert repr((hook,)) == f"({hook!r},)"


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://:pw@h:1/0", "redis://:***@h:1/0"),
    ("redis://u:pw@h/0?pass=x&db=1", "redis://u:***@h/0?pass=***&db=1"),
    ("sentinel://:pw@a:1,b:2/0?master=m", "sentinel://:***@a:1,b:2/0?master=m"),
    ("amqp://g:pw@h//", "amqp://g:***@h//"),
    ("redis://h:1/0", "redis://h:1/0"),
    (HOOK, "https://hooks.example/***"),
    ("https://hooks.example", "https://hooks.example"),
    ("http://h:8080", "http://h:8080"),
    ("http://h:8080/", "http://h:8080/***"),
    ("https://u:p@h", "https://h/***"),
    ("https://h?token=t", "https://h/***"),
    ("https://[::1]:8443/T0K3N", "https://[::1]:8443/***"),
    ("HTTPS://hooks.example/T0K3N", "HTTPS://hooks.example/***"),
    ("https://h:99999/T0K3N", "https://***"),  # a port out of range: does not parse
    ("https://[::1/T0K3N", "https://***"),
    ("redis://:pa ss@h/0", "redis://***"),  # a space: nothing past the scheme
    ("redis://:p\tw@h/0", "redis://***"),
    ("redis://:p\x00w@h/0", "redis://***"),
    ("no scheme at all", "***"),
])
def test_mask_url_leaves_nothing_secret(url: str, shown: str) -> None:
    assert mask_url(url) == shown


class _Pair(NamedTuple):
    left: object
    right: object


@pytest.mark.parametrize(("value", "shown"), [
    ((), "()"),
    (("a",), "('a',)"),
    (("a", 2), "('a', 2)"),
    ((("redis://:pw@h/0",),), "(('redis://:***@h/0',),)"),
    (_Pair("https://h/T0K3N", ("x", None)), "_Pair(left='https://h/***', right=('x', None))"),
    ("plain", "'plain'"),
    ("redis://:pw@h/0", "'redis://:***@h/0'"),
    (1.5, "1.5"),
    (None, "None"),
])
def test_masked_repr_at_every_depth(value: object, shown: str) -> None:
    assert masked_repr(value) == shown


# -- redaction of query parameters named for a secret ---------------------------------------

@pytest.mark.parametrize(("text", "shown"), [
    ("redis://h/0?pass=pw&db=1", "redis://h/0?pass=***&db=1"),
    ("redis://h/0?PASS=pw", "redis://h/0?PASS=***"),
    ("redis://h/0?password=pw", "redis://h/0?password=***"),
    ("redis://h/0?passwd=pw&pwd=pw2", "redis://h/0?passwd=***&pwd=***"),
    ("redis://h/0?db=1;token=t", "redis://h/0?db=1;token=***"),
    ("redis://h/0?db=1&access_token=t#frag", "redis://h/0?db=1&access_token=***#frag"),
    ("redis://h/0?secret=s&Client_Secret=s2", "redis://h/0?secret=***&Client_Secret=***"),
    ("redis://h/0?key=k&api_key=k2&apikey=k3", "redis://h/0?key=***&api_key=***&apikey=***"),
    ("redis://h/0?auth=a&signature=s&credential=c",
     "redis://h/0?auth=***&signature=***&credential=***"),
    ("redis://h/0?p%61ss=pw", "redis://h/0?p%61ss=***"),  # the name is read decoded
    ("redis://h/0?ssl_keyfile=/k.pem&ssl_certfile=/c.pem",
     "redis://h/0?ssl_keyfile=***&ssl_certfile=/c.pem"),
    ("redis://h/0?master=m&db=1&ssl_cert_reqs=none", "redis://h/0?master=m&db=1&ssl_cert_reqs=none"),
    ("redis://token=t", "redis://token=***"),  # a name at the start of the run
    ("redis://h/0?=x&token", "redis://h/0?=x&token"),  # no name; a name without a value
    ("see redis://:pw@h/0?token=t&x=1 then", "see redis://:***@h/0?token=***&x=1 then"),
    ("https://user:hookpw@hooks.example/T0K3N?key=abc",
     "https://user:***@hooks.example/T0K3N?key=***"),
])
def test_query_parameters_named_for_a_secret_are_masked(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_masking_query_parameters_stays_linear() -> None:
    for text in ("a://" + "?password=" * 100_000, "a://" + "passpass" * 125_000 + "=x",
                 "a://?" + "x" * 1_000_000):
        # CPU time of this thread, not wall time: a busy machine stretches the wall clock,
        # not the work. Linear is milliseconds for a megabyte; quadratic would be hours.
        started = time.thread_time()
        redact(text)
        assert time.thread_time() - started < 5.0, text[:20]


def test_serve_refuses_a_password_with_a_space_and_shows_none_of_it(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from worker.cli.serve import run_serve

    for name in list(os.environ):
        if name.startswith(("HEARTBEAT_", "CELERY_")):
            monkeypatch.delenv(name)
    code = run_serve(host="127.0.0.1", port=8080, redis_url="redis://:pa ss@127.0.0.1:1/0",
                     prefix=None)
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err == ("petsage-heartbeat: --redis holds a space or a control character (not "
                   "shown); accepted: a URL without them (percent-encode them in a password, "
                   "a space as %20)\n")


# -- the settings out of app.conf -----------------------------------------------------------

def test_install_keeps_the_settings_out_of_app_conf() -> None:
    from worker.publish.consumer import HeartbeatConsumer, retry_max_s
    from worker.publish.install import heartbeat_settings, install_heartbeat

    settings = Settings.from_env({"CELERY_BROKER_URL": f"redis://:{PASSWORD}@127.0.0.1:1/0",
                                  "HEARTBEAT_WEBHOOK_URLS": HOOK,
                                  "HEARTBEAT_INTERVAL_S": "3"})
    app = Celery("remote-control-test", broker=settings.broker_url)
    assert heartbeat_settings(app) is None
    assert install_heartbeat(app, settings) is settings
    assert heartbeat_settings(app) is settings
    assert "heartbeat_settings" not in app.conf
    dumped = json.dumps(app.conf.table(with_defaults=True), default=repr) + app.conf.humanize(
        with_defaults=True)
    assert not [s for s in SECRETS if s in dumped]
    # The consumer reads its reconnect pace from there.
    consumer = HeartbeatConsumer.__new__(HeartbeatConsumer)
    consumer.app = app
    assert consumer._retry_max_s() == retry_max_s(3.0) == 1.5
    consumer.app = Celery("not-installed")
    assert consumer._retry_max_s() == retry_max_s(10.0) == 5.0


_DUMP = """
import json
from celery.worker import control
from worker.celery import app

class State:
    pass

state = State()
state.app = app
print(json.dumps([control.conf(state), control.conf(state, with_defaults=True),
                  control.report(state)], default=repr))
"""


def test_the_standalone_apps_conf_and_report_hold_no_secret() -> None:
    """What ``inspect conf`` and ``inspect report`` answer, computed by the same functions in
    a process of its own (the Celery config reads the environment on import)."""
    url = f"redis://:{PASSWORD}@127.0.0.1:1/0"
    env = heartbeat_env(url, HEARTBEAT_WEBHOOK_URLS=HOOK,
                        HEARTBEAT_DASHBOARD_URL=f"https://u:{PASSWORD}@dash.example/T0K3N")
    done = run_process([sys.executable, "-c", _DUMP], env=env, cwd=REPO, capture_output=True,
                       text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    conf, full, report = json.loads(done.stdout)
    assert not [s for s in SECRETS if s in done.stdout + done.stderr]
    assert conf["broker_url"] == "redis://:********@127.0.0.1:1/0"  # Celery's own mask
    assert "heartbeat_settings" not in conf and "heartbeat_settings" not in full
    # Nothing but settings: no helper, import or settings object of the config module.
    assert not [k for k in conf if not k.islower() or k in (
        "annotations", "load_or_exit", "tls_options_or_exit", "kombu_sentinel")]
    assert "broker_url: 'redis://:********@127.0.0.1:1/0'" in report["ok"]


# -- real processes -------------------------------------------------------------------------

def _inspect(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_process([sys.executable, "-m", "celery", "-A", "worker", "inspect", *args,
                        "--timeout", "5"], env=env, cwd=REPO, capture_output=True, text=True,
                       timeout=120, check=False)


@pytest.mark.e2e
def test_inspect_conf_and_report_of_a_live_worker_show_no_secret(
        procs: list[Proc], tmp_path: Path) -> None:
    server = RedisServer("--requirepass", PASSWORD).start()
    try:
        env = heartbeat_env(f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0",
                            HEARTBEAT_WEBHOOK_URLS=HOOK)
        worker = Proc(celery_argv("worker"), env, tmp_path, "worker")
        procs.append(worker)
        wait_for(lambda: _inspect(env, "ping").returncode == 0, STARTUP_S,
                 what="the worker answering remote control")
        answers = {what: _inspect(env, what) for what in ("conf", "report", "stats")}
        for what, done in answers.items():
            assert done.returncode == 0 and "hbtest@" in done.stdout, (what, done.stderr)
            assert not [s for s in SECRETS if s in done.stdout + done.stderr], what
        assert f"redis://:********@127.0.0.1:{server.port}/0" in answers["conf"].stdout
        assert "heartbeat_settings" not in answers["conf"].stdout
        assert "heartbeat_settings" not in answers["report"].stdout
        assert not [s for s in SECRETS if s in worker.output()]
    finally:
        server.close()


@pytest.mark.e2e
def test_the_heartbeat_works_with_remote_control_off(own_redis: RedisServer,
                                                     procs: list[Proc], tmp_path: Path) -> None:
    """``worker_enable_remote_control=False``: service and node heartbeats stay fresh, no
    remote control command is answered, and the worker never binds Celery's pidbox."""
    env = heartbeat_env(own_redis.url)
    procs.append(Proc(celery_argv("beat"), env, tmp_path, "beat"))
    procs.append(Proc(celery_argv("worker", "--", "worker_enable_remote_control=false"),
                      env, tmp_path, "worker"))
    client = own_redis.client()

    def fresh_with_node() -> bool:
        report = read_heartbeat(client, "petsage")
        return report.state is State.FRESH and [n.state for n in report.nodes] == [State.FRESH]

    wait_for(fresh_with_node, STARTUP_S, what="the service and its node fresh")
    ping = _inspect(env, "ping")
    assert ping.returncode != 0 and "No nodes replied" in ping.stdout + ping.stderr
    assert client.exists("_kombu.binding.celery.pidbox") == 0
    assert client.exists("_kombu.binding.heartbeat.petsage.nodes") == 1  # the node broadcast
    wait_for(fresh_with_node, STARTUP_S, what="still fresh after the inspect")
