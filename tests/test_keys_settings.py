"""Key names, name validation and settings parsing."""

from __future__ import annotations

import pytest

from worker.core.errors import ConfigError
from worker.core.names import Keys, validate_service
from worker.core.settings import Settings
from worker.core.urls import redact, validate_url

BAD_NAMES = ["", "a b", "a:b", "a*", "a?", "x\ny", "{x}", "x" * 65, "x" * 1000, "a/b", "é"]


def test_key_names_share_a_hash_tag_per_service() -> None:
    keys = Keys()
    assert keys.latest("petsage") == "petsage:hb:{petsage}"
    assert keys.history("petsage") == "petsage:hb:{petsage}:history"
    assert keys.beat("petsage") == "petsage:hb:{petsage}:beat"
    assert keys.index == "petsage:hb:index"
    assert keys.events == "petsage:hb:events"
    assert Keys("acme:prod").latest("api-1.eu_w") == "acme:prod:{api-1.eu_w}"


@pytest.mark.parametrize("name", BAD_NAMES)
def test_invalid_service_names_are_refused_before_a_key_is_built(name: str) -> None:
    with pytest.raises(ConfigError, match="accepted"):
        validate_service(name)
    with pytest.raises(ConfigError):
        Keys().latest(name)


@pytest.mark.parametrize("prefix", ["", "a b", "a*", "a:", ":a", "a::b", "{a}", "x" * 200, "a\n"])
def test_invalid_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ConfigError, match="accepted"):
        Keys(prefix)


def test_defaults() -> None:
    s = Settings.from_env({})
    assert (s.service, s.interval_s, s.stale_after_s, s.late_after_s) == ("petsage", 10, 30, 15)
    assert s.redis_url == s.broker_url == "redis://127.0.0.1:6379/0"
    assert s.urls_defaulted
    assert s.retention_s == 7 * 24 * 3600 and s.history_len == 120


def test_store_defaults_to_broker_and_fractions_are_allowed() -> None:
    s = Settings.from_env({"CELERY_BROKER_URL": "redis://h:1/2", "HEARTBEAT_INTERVAL_S": "0.5"})
    assert s.redis_url == "redis://h:1/2" and s.interval_s == 0.5 and s.stale_after_s == 1.5
    assert not s.urls_defaulted


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"HEARTBEAT_INTERVAL_S": "abc"}, "HEARTBEAT_INTERVAL_S"),
        ({"HEARTBEAT_INTERVAL_S": "0"}, "HEARTBEAT_INTERVAL_S"),
        ({"HEARTBEAT_INTERVAL_S": "-1"}, "HEARTBEAT_INTERVAL_S"),
        ({"HEARTBEAT_INTERVAL_S": "nan"}, "HEARTBEAT_INTERVAL_S"),
        ({"HEARTBEAT_INTERVAL_S": "inf"}, "HEARTBEAT_INTERVAL_S"),
        ({"HEARTBEAT_INTERVAL_S": "0.1"}, "HEARTBEAT_INTERVAL_S"),
        ({"HEARTBEAT_INTERVAL_S": "10", "HEARTBEAT_STALE_AFTER_S": "5"}, "HEARTBEAT_STALE_AFTER_S"),
        ({"HEARTBEAT_HISTORY_LEN": "1.5"}, "HEARTBEAT_HISTORY_LEN"),
        ({"HEARTBEAT_HISTORY_LEN": "0"}, "HEARTBEAT_HISTORY_LEN"),
        ({"HEARTBEAT_RETENTION_S": "10"}, "HEARTBEAT_RETENTION_S"),
        ({"HEARTBEAT_SERVICE": "bad name"}, "HEARTBEAT_SERVICE"),
        ({"HEARTBEAT_KEY_PREFIX": "a*"}, "HEARTBEAT_KEY_PREFIX"),
        ({"CELERY_BROKER_URL": "http://x"}, "CELERY_BROKER_URL"),
        ({"HEARTBEAT_REDIS_URL": "memcache://x"}, "HEARTBEAT_REDIS_URL"),
        ({"HEARTBEAT_REDIS_URL": "redis://:6379/0"}, "HEARTBEAT_REDIS_URL"),
        ({"HEARTBEAT_REDIS_URL": "redis://h:99999/0"}, "HEARTBEAT_REDIS_URL"),
        ({"HEARTBEAT_REDIS_URL": "redis://h:port/0"}, "HEARTBEAT_REDIS_URL"),
        ({"HEARTBEAT_REDIS_URL": "redis://h/abc"}, "HEARTBEAT_REDIS_URL"),
        ({"CELERY_BROKER_URL": "amqp://guest@h//"}, "HEARTBEAT_REDIS_URL"),
        ({"HEARTBEAT_CHECKS": "not a spec"}, "HEARTBEAT_CHECKS"),
    ],
)
def test_bad_settings_name_the_variable_in_one_line(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    message = str(info.value)
    assert variable in message and "\n" not in message
    assert "accepted" in message or "e.g." in message


def test_passwords_are_redacted_everywhere() -> None:
    assert redact("redis://:s3cret@h:1/0") == "redis://:***@h:1/0"
    assert redact("x rediss://user:p%40ss@h/0 y") == "x rediss://user:***@h/0 y"
    with pytest.raises(ConfigError) as info:
        validate_url("redis://:s3cret@h:badport/0", source="X")
    assert "s3cret" not in str(info.value)
    assert "s3cret" not in Settings.from_env({"HEARTBEAT_REDIS_URL": "redis://:s3cret@h/0"}).describe()


def test_sentinel_urls_need_a_master() -> None:
    validate_url("sentinel://a:26379,b:26380/0?master=m", source="X")
    with pytest.raises(ConfigError, match="master"):
        validate_url("sentinel://a:26379/0", source="X")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("REDIS://:hunter2@h:1/0", "REDIS://:***@h:1/0"),
        ("redis://:p@ss@h:1/0", "redis://:***@h:1/0"),
        ("redis://user:hunter2@h/0?password=hunter2&db=1", "redis://user:***@h/0?password=***&db=1"),
        ("error 'rediss://u:hunter2@h:6380/0' failed", "error 'rediss://u:***@h:6380/0' failed"),
        ("sentinel://:hunter2@a:1,b:2/0?master=m", "sentinel://:***@a:1,b:2/0?master=m"),
        ("redis://user:hun#ter2@host:6379/0", "redis://user:***@host:6379/0"),
        ("redis://:hunter2/x@h", "redis://:***@h"),
        ("redis://u:hun?ter2@h", "redis://u:***@h"),
        ('redis://u:hun"ter2@h', "redis://u:***@h"),
        ("sentinel://u:hunter2@h1/0;sentinel://u:hunter2b@h2/0", "sentinel://u:***@h2/0"),
    ],
)
def test_redaction_covers_case_at_signs_and_query_passwords(text: str, shown: str) -> None:
    assert redact(text) == shown
    assert "hunter2" not in redact(text)


def test_uppercase_schemes_are_accepted_and_normalised() -> None:
    from worker.core.urls import tls_options

    s = Settings.from_env({"CELERY_BROKER_URL": "REDISS://h:6380/0"})
    assert s.broker_url.startswith("rediss://")
    assert tls_options(s.broker_url)["ssl_cert_reqs"] != 0  # CERT_NONE is 0: verified
    with pytest.raises(ConfigError, match="ssl_cert_reqs"):
        tls_options("rediss://h/0?ssl_cert_reqs=maybe")


def test_a_cluster_cannot_be_the_broker() -> None:
    with pytest.raises(ConfigError, match="CELERY_BROKER_URL cannot be a Redis Cluster"):
        Settings.from_env({"CELERY_BROKER_URL": "redis://n:7000/0?cluster=true"})
    s = Settings.from_env({"HEARTBEAT_REDIS_URL": "redis://n:7000/0?cluster=true"})
    assert s.redis_url.endswith("cluster=true")
    with pytest.raises(ConfigError, match="cluster"):
        Settings.from_env({"HEARTBEAT_REDIS_URL": "redis://n:7000/0?cluster=maybe"})
