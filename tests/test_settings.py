"""Settings, exactly: every default, every bound (the last value accepted and the first
refused), every refusal's whole line, which flag or variable it names, and the one-line
exits of the entry points.

A setting read wrongly is silent: the worker runs, with another interval or another store.
So each variable is pinned by value, not only by "it raises".
"""

from __future__ import annotations

import ssl

import pytest

from worker.core.errors import ConfigError
from worker.core.names import Keys
from worker.core.settings import (
    CheckSpec,
    Settings,
    load_or_exit,
    parse_check_specs,
    tls_options_or_exit,
)


def test_no_variable_set_is_every_documented_default() -> None:
    assert Settings.from_env({}) == Settings(
        broker_url="redis://127.0.0.1:6379/0", redis_url="redis://127.0.0.1:6379/0",
        service="petsage", interval_s=10.0, stale_after_s=30.0, key_prefix="petsage:hb",
        retention_s=604_800, history_len=120, redis_timeout_s=2.0, checks=(),
        urls_defaulted=True, queue="heartbeat.petsage", node_retention_s=600, webhooks=(),
        webhook_format="json", dashboard_url=None, incidents_len=1000)


def test_blank_variables_are_the_defaults() -> None:
    blank = {name: "  " for name in (
        "CELERY_BROKER_URL", "HEARTBEAT_REDIS_URL", "HEARTBEAT_INTERVAL_S",
        "HEARTBEAT_STALE_AFTER_S", "HEARTBEAT_RETENTION_S", "HEARTBEAT_HISTORY_LEN",
        "HEARTBEAT_REDIS_TIMEOUT_S", "HEARTBEAT_QUEUE", "HEARTBEAT_NODE_RETENTION_S",
        "HEARTBEAT_DASHBOARD_URL", "HEARTBEAT_WEBHOOK_URLS", "HEARTBEAT_WEBHOOK_FORMAT",
        "HEARTBEAT_INCIDENTS_LEN", "HEARTBEAT_CHECKS")}
    assert Settings.from_env(blank) == Settings.from_env({})


def test_every_variable_set_is_read_into_its_field() -> None:
    settings = Settings.from_env({
        "CELERY_BROKER_URL": "redis://:pw@broker:6380/1",
        "HEARTBEAT_REDIS_URL": "redis://store:6381/2",
        "HEARTBEAT_SERVICE": "api-1",
        "HEARTBEAT_INTERVAL_S": "2.5",
        "HEARTBEAT_STALE_AFTER_S": "9",
        "HEARTBEAT_KEY_PREFIX": "acme:hb",
        "HEARTBEAT_RETENTION_S": "3600",
        "HEARTBEAT_HISTORY_LEN": "60",
        "HEARTBEAT_REDIS_TIMEOUT_S": "0.75",
        "HEARTBEAT_CHECKS": "db=os.path:exists, os:getcwd",
        "HEARTBEAT_QUEUE": "hb.api",
        "HEARTBEAT_NODE_RETENTION_S": "120",
        "HEARTBEAT_WEBHOOK_URLS": "https://hooks.example.com/a",
        "HEARTBEAT_WEBHOOK_FORMAT": "Slack",
        "HEARTBEAT_DASHBOARD_URL": "https://dash.example.com/",
        "HEARTBEAT_INCIDENTS_LEN": "50",
    })
    hook = settings.webhooks[0]
    assert settings == Settings(
        broker_url="redis://:pw@broker:6380/1", redis_url="redis://store:6381/2",
        service="api-1", interval_s=2.5, stale_after_s=9.0, key_prefix="acme:hb",
        retention_s=3600, history_len=60, redis_timeout_s=0.75,
        checks=(CheckSpec("db", "os.path", "exists"), CheckSpec("getcwd", "os", "getcwd")),
        urls_defaulted=False, queue="hb.api", node_retention_s=120, webhooks=(hook,),
        webhook_format="slack", dashboard_url="https://dash.example.com/", incidents_len=50)
    assert (hook.url, hook.shown) == ("https://hooks.example.com/a", "https://hooks.example.com")
    assert type(settings.retention_s) is int and type(settings.history_len) is int
    assert type(settings.node_retention_s) is int and type(settings.incidents_len) is int


def test_only_one_url_set_is_not_defaulted() -> None:
    assert not Settings.from_env({"CELERY_BROKER_URL": "redis://b:1/0"}).urls_defaulted
    store_only = Settings.from_env({"HEARTBEAT_REDIS_URL": "redis://s:1/0"})
    assert not store_only.urls_defaulted
    assert store_only.broker_url == "redis://127.0.0.1:6379/0"
    assert store_only.redis_url == "redis://s:1/0"


def test_an_amqp_broker_with_a_store_is_accepted() -> None:
    settings = Settings.from_env({"CELERY_BROKER_URL": "amqp://guest@rabbit//",
                                  "HEARTBEAT_REDIS_URL": "redis://s:1/0"})
    assert (settings.broker_url, settings.redis_url) == ("amqp://guest@rabbit//",
                                                          "redis://s:1/0")
    flagged = Settings.from_env({"CELERY_BROKER_URL": "amqp://guest@rabbit//"},
                                redis_url="redis://flag:1/0")
    assert flagged.redis_url == "redis://flag:1/0"


def test_flags_replace_their_variables() -> None:
    env = {"HEARTBEAT_REDIS_URL": "redis://env:1/0", "HEARTBEAT_SERVICE": "envsvc",
           "HEARTBEAT_KEY_PREFIX": "env:hb"}
    settings = Settings.from_env(env, redis_url="redis://flag:2/0", service="flagsvc",
                                 prefix="flag:hb")
    assert (settings.redis_url, settings.service, settings.key_prefix) == (
        "redis://flag:2/0", "flagsvc", "flag:hb")
    assert settings.queue == "heartbeat.flagsvc"
    assert not settings.urls_defaulted


def test_a_flag_alone_is_not_defaulted_and_an_empty_flag_is_refused() -> None:
    assert not Settings.from_env({}, redis_url="redis://flag:1/0").urls_defaulted
    with pytest.raises(ConfigError):
        Settings.from_env({}, redis_url="")


def test_a_redis_broker_is_known_by_its_scheme_alone() -> None:
    url = "redis://h:1/0?client_name=a://b"
    assert Settings.from_env({"CELERY_BROKER_URL": url}).redis_url == url


def test_whole_numbers_are_read_as_written_up_to_40_characters() -> None:
    padded = "0" * 38 + "60"
    assert Settings.from_env({"HEARTBEAT_RETENTION_S": padded}).retention_s == 60
    with pytest.raises(ConfigError, match="is not a whole number"):
        Settings.from_env({"HEARTBEAT_RETENTION_S": "0" * 36 + "60.0"})
    with pytest.raises(ConfigError, match="is out of range"):  # never read as 60.5 -> 60
        Settings.from_env({"HEARTBEAT_RETENTION_S": "0" * 37 + "60.5"})


def test_the_stale_threshold_follows_the_interval_and_late_follows_both() -> None:
    settings = Settings.from_env({"HEARTBEAT_INTERVAL_S": "4"})
    assert (settings.stale_after_s, settings.late_after_s) == (12.0, 6.0)
    given = Settings.from_env({"HEARTBEAT_INTERVAL_S": "4", "HEARTBEAT_STALE_AFTER_S": "5"})
    assert (given.stale_after_s, given.late_after_s) == (5.0, 5.0)


def test_the_incident_record_outlives_the_30_day_window() -> None:
    assert Settings.from_env({}).incidents_ttl_ms == 35 * 86_400_000
    long = Settings.from_env({"HEARTBEAT_RETENTION_S": str(40 * 86_400)})
    assert long.incidents_ttl_ms == 40 * 86_400_000


def test_keys_use_the_prefix() -> None:
    keys = Settings.from_env({"HEARTBEAT_KEY_PREFIX": "acme:hb"}).keys
    assert isinstance(keys, Keys)
    assert keys.latest("api") == "acme:hb:{api}"


def test_describe_hides_passwords_and_names_everything() -> None:
    settings = Settings.from_env({
        "CELERY_BROKER_URL": "redis://:pw@h:1/2", "HEARTBEAT_REDIS_URL": "redis://u:pw2@s:3/4",
        "HEARTBEAT_INTERVAL_S": "2.5", "HEARTBEAT_STALE_AFTER_S": "7.25",
        "HEARTBEAT_KEY_PREFIX": "acme:hb", "HEARTBEAT_SERVICE": "api"})
    assert settings.describe() == (
        "service=api interval=2.5s stale_after=7.25s store=redis://u:***@s:3/4 "
        "broker=redis://:***@h:1/2 prefix=acme:hb queue=heartbeat.api")


@pytest.mark.parametrize(("name", "lowest", "highest"), [
    ("HEARTBEAT_INTERVAL_S", "0.5", "86400"),
    ("HEARTBEAT_STALE_AFTER_S", "10", "864000"),
    ("HEARTBEAT_RETENTION_S", "60", "315360000"),
    ("HEARTBEAT_HISTORY_LEN", "1", "10000000"),
    ("HEARTBEAT_REDIS_TIMEOUT_S", "0.05", "300"),
    ("HEARTBEAT_NODE_RETENTION_S", "60", "315360000"),
    ("HEARTBEAT_INCIDENTS_LEN", "10", "1000000"),
])
def test_each_number_is_accepted_at_its_bounds(name: str, lowest: str, highest: str) -> None:
    field = {"HEARTBEAT_INTERVAL_S": "interval_s", "HEARTBEAT_STALE_AFTER_S": "stale_after_s",
             "HEARTBEAT_RETENTION_S": "retention_s", "HEARTBEAT_HISTORY_LEN": "history_len",
             "HEARTBEAT_REDIS_TIMEOUT_S": "redis_timeout_s",
             "HEARTBEAT_NODE_RETENTION_S": "node_retention_s",
             "HEARTBEAT_INCIDENTS_LEN": "incidents_len"}[name]
    for raw in (lowest, highest):
        env = {name: raw}
        if name == "HEARTBEAT_INTERVAL_S" and raw == highest:
            env["HEARTBEAT_STALE_AFTER_S"] = "864000"  # three days would be out of range
            env["HEARTBEAT_RETENTION_S"] = "864000"
            env["HEARTBEAT_NODE_RETENTION_S"] = "1728000"
        if name == "HEARTBEAT_STALE_AFTER_S" and raw == highest:
            env["HEARTBEAT_RETENTION_S"] = "864000"
            env["HEARTBEAT_NODE_RETENTION_S"] = "1728000"
        assert getattr(Settings.from_env(env), field) == float(raw)


INT = "a whole number"
RET = ">= 60 and <= 315360000"
REFUSED = [
    ({"HEARTBEAT_INTERVAL_S": "abc"},
     "HEARTBEAT_INTERVAL_S='abc' is not a number; accepted: a number of seconds >= 0.5 and "
     "<= 86400"),
    ({"HEARTBEAT_INTERVAL_S": "0.49"},
     "HEARTBEAT_INTERVAL_S='0.49' is out of range; accepted: a number of seconds >= 0.5 and "
     "<= 86400"),
    ({"HEARTBEAT_INTERVAL_S": "86400.1"},
     "HEARTBEAT_INTERVAL_S='86400.1' is out of range; accepted: a number of seconds >= 0.5 "
     "and <= 86400"),
    ({"HEARTBEAT_INTERVAL_S": "-inf"},
     "HEARTBEAT_INTERVAL_S='-inf' is out of range; accepted: a number of seconds >= 0.5 and "
     "<= 86400"),
    ({"HEARTBEAT_STALE_AFTER_S": "9.9"},
     "HEARTBEAT_STALE_AFTER_S='9.9' is out of range; accepted: a number of seconds >= 10 and "
     "<= 864000 (at least HEARTBEAT_INTERVAL_S)"),
    ({"HEARTBEAT_STALE_AFTER_S": "864000.5"},
     "HEARTBEAT_STALE_AFTER_S='864000.5' is out of range; accepted: a number of seconds >= 10 "
     "and <= 864000 (at least HEARTBEAT_INTERVAL_S)"),
    ({"HEARTBEAT_RETENTION_S": "59"},
     f"HEARTBEAT_RETENTION_S='59' is out of range; accepted: {INT} of seconds {RET} "
     "(at least 60 and at least the stale threshold)"),
    ({"HEARTBEAT_RETENTION_S": "1.5"},
     f"HEARTBEAT_RETENTION_S='1.5' is not {INT}; accepted: {INT} of seconds {RET} "
     "(at least 60 and at least the stale threshold)"),
    ({"HEARTBEAT_RETENTION_S": "315360001"},
     f"HEARTBEAT_RETENTION_S='315360001' is out of range; accepted: {INT} of seconds {RET} "
     "(at least 60 and at least the stale threshold)"),
    ({"HEARTBEAT_STALE_AFTER_S": "100", "HEARTBEAT_RETENTION_S": "99"},
     f"HEARTBEAT_RETENTION_S='99' is out of range; accepted: {INT} of seconds >= 100 and "
     "<= 315360000 (at least 60 and at least the stale threshold)"),
    ({"HEARTBEAT_STALE_AFTER_S": "100.5", "HEARTBEAT_RETENTION_S": "100"},
     f"HEARTBEAT_RETENTION_S='100' is out of range; accepted: {INT} of seconds >= 101 and "
     "<= 315360000 (at least 60 and at least the stale threshold)"),
    ({"HEARTBEAT_HISTORY_LEN": "0"},
     f"HEARTBEAT_HISTORY_LEN='0' is out of range; accepted: {INT} of entries >= 1 and "
     "<= 10000000"),
    ({"HEARTBEAT_HISTORY_LEN": "10000001"},
     f"HEARTBEAT_HISTORY_LEN='10000001' is out of range; accepted: {INT} of entries >= 1 and "
     "<= 10000000"),
    ({"HEARTBEAT_REDIS_TIMEOUT_S": "0.04"},
     "HEARTBEAT_REDIS_TIMEOUT_S='0.04' is out of range; accepted: a number of seconds >= 0.05 "
     "and <= 300"),
    ({"HEARTBEAT_REDIS_TIMEOUT_S": "300.5"},
     "HEARTBEAT_REDIS_TIMEOUT_S='300.5' is out of range; accepted: a number of seconds >= 0.05 "
     "and <= 300"),
    ({"HEARTBEAT_NODE_RETENTION_S": "59"},
     f"HEARTBEAT_NODE_RETENTION_S='59' is out of range; accepted: {INT} of seconds {RET} "
     "(at least twice the stale threshold: a dead node shows stale first)"),
    ({"HEARTBEAT_STALE_AFTER_S": "40.2", "HEARTBEAT_NODE_RETENTION_S": "80"},
     f"HEARTBEAT_NODE_RETENTION_S='80' is out of range; accepted: {INT} of seconds >= 81 and "
     "<= 315360000 (at least twice the stale threshold: a dead node shows stale first)"),
    ({"HEARTBEAT_INCIDENTS_LEN": "9"},
     f"HEARTBEAT_INCIDENTS_LEN='9' is out of range; accepted: {INT} of entries >= 10 and "
     "<= 1000000"),
    ({"HEARTBEAT_INCIDENTS_LEN": "1000001"},
     f"HEARTBEAT_INCIDENTS_LEN='1000001' is out of range; accepted: {INT} of entries >= 10 and "
     "<= 1000000"),
    ({"HEARTBEAT_INTERVAL_S": "1" * 40},
     f"HEARTBEAT_INTERVAL_S='{'1' * 40}' is out of range; accepted: a number of seconds >= 0.5 "
     "and <= 86400"),
    ({"HEARTBEAT_INTERVAL_S": "1" * 41},
     f"HEARTBEAT_INTERVAL_S='{'1' * 40}...' is out of range; accepted: a number of seconds "
     ">= 0.5 and <= 86400"),
    ({"HEARTBEAT_HISTORY_LEN": "1" * 41},
     f"HEARTBEAT_HISTORY_LEN='{'1' * 40}...' is out of range; accepted: {INT} of entries >= 1 "
     "and <= 10000000"),
    ({"CELERY_BROKER_URL": "amqp://guest@h//"},
     "HEARTBEAT_REDIS_URL is required when CELERY_BROKER_URL is not a Redis URL; accepted: "
     "redis://, rediss://, sentinel://"),
    ({"CELERY_BROKER_URL": "redis://h:1/0?cluster=true"},
     "CELERY_BROKER_URL cannot be a Redis Cluster (kombu has no cluster transport); accepted: "
     "one Redis, sentinel:// or amqp://, with the cluster as HEARTBEAT_REDIS_URL"),
    ({"HEARTBEAT_CHECKS": "a=b:c, bad"},
     "HEARTBEAT_CHECKS entry 'bad' is invalid; accepted: [name=]module:function, e.g. "
     "db=myapp.health:ping_db"),
    ({"HEARTBEAT_QUEUE": "a b"},
     "HEARTBEAT_QUEUE 'a b' is invalid; accepted: 1-128 characters of A-Z a-z 0-9 . _ - "
     "(default heartbeat.SERVICE)"),
    ({"HEARTBEAT_SERVICE": "a b"},
     "HEARTBEAT_SERVICE 'a b' is invalid; accepted: 1-64 characters of A-Z a-z 0-9 . _ -"),
    ({"HEARTBEAT_KEY_PREFIX": "a*"},
     "HEARTBEAT_KEY_PREFIX 'a*' is invalid; accepted: up to 4 parts joined by ':', each 1-32 "
     "characters of A-Z a-z 0-9 . _ - (e.g. petsage:hb)"),
    ({"HEARTBEAT_DASHBOARD_URL": "ftp://x"},
     "HEARTBEAT_DASHBOARD_URL has an invalid scheme 'ftp'; accepted: http:// or https:// URLs "
     "with a host, separated by commas or spaces"),
    ({"HEARTBEAT_WEBHOOK_FORMAT": "teams"},
     "HEARTBEAT_WEBHOOK_FORMAT 'teams' is invalid; accepted: json, slack"),
    ({"HEARTBEAT_REDIS_URL": "memcache://x"},
     "HEARTBEAT_REDIS_URL has unknown scheme memcache:// in 'memcache://x'; accepted: "
     "redis://, rediss://, sentinel://"),
    ({"CELERY_BROKER_URL": "http://x"},
     "CELERY_BROKER_URL has unknown scheme http:// in 'http://x'; accepted: redis://, "
     "rediss://, sentinel://, amqp://, amqps://, pyamqp://"),
]


@pytest.mark.parametrize(("env", "message"), REFUSED, ids=[str(e) for e, _ in REFUSED])
def test_each_refusal_is_its_whole_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert str(info.value) == message


@pytest.mark.parametrize(("flag", "value", "start"), [
    ("redis_url", "nope://x", "--redis has unknown scheme nope://"),
    ("service", "a b", "--service 'a b' is invalid"),
    ("prefix", "a*", "--prefix 'a*' is invalid"),
])
def test_a_flag_is_named_as_the_flag(flag: str, value: str, start: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({}, **{flag: value})
    assert str(info.value).startswith(start)


def test_check_specs() -> None:
    assert parse_check_specs(" , db=myapp.health:ping_db ,,x.y:z ") == (
        CheckSpec("db", "myapp.health", "ping_db"), CheckSpec("z", "x.y", "z"))
    assert parse_check_specs("") == ()
    with pytest.raises(ConfigError) as info:
        parse_check_specs("nocolon", source="--check")
    assert str(info.value) == ("--check entry 'nocolon' is invalid; accepted: "
                               "[name=]module:function, e.g. db=myapp.health:ping_db")
    with pytest.raises(ConfigError):
        parse_check_specs(f"{'n' * 65}=a:b")
    assert parse_check_specs(f"{'n' * 64}=a:b")[0].name == "n" * 64


def test_entry_points_exit_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        load_or_exit({"HEARTBEAT_INTERVAL_S": "abc"})
    assert info.value.code == 2
    assert capsys.readouterr().err == (
        "petsage-heartbeat: HEARTBEAT_INTERVAL_S='abc' is not a number; accepted: a number of "
        "seconds >= 0.5 and <= 86400\n")
    assert load_or_exit({"HEARTBEAT_SERVICE": "api"}).service == "api"


def test_tls_options_or_exit(capsys: pytest.CaptureFixture[str]) -> None:
    assert tls_options_or_exit("rediss://h:1/0") == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    with pytest.raises(SystemExit) as info:
        tls_options_or_exit("rediss://:pw@h:1/0?ssl_cert_reqs=maybe")
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err == ("petsage-heartbeat: CELERY_BROKER_URL: ssl_cert_reqs='maybe' in "
                   "'rediss://:***@h:1/0?ssl_cert_reqs=maybe' is invalid; accepted: required, "
                   "optional, none\n")
