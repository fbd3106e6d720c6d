"""Every name the outside world reads (docs/redis-schema.md), and every refusal of a name.

Dashboards, ACLs and other readers address these keys by their exact text, so each one is
pinned here whole; a name that can't be a key is refused in one line that says what is
accepted.
"""

from __future__ import annotations

import pytest

from worker.core.errors import ConfigError
from worker.core.names import (
    DEFAULT_PREFIX,
    EXPIRES_HEADER,
    HEALTH_TASK,
    NODE_TASK,
    NODES_SUFFIX,
    PRIORITY_SEPARATOR,
    PRIORITY_STEPS,
    PUBLISHED_AT_HEADER,
    QUEUE_MAX_MESSAGES,
    QUEUE_PREFIX,
    SERVICE_HEADER,
    Keys,
    default_queue,
    nodes_exchange,
    queue_arguments,
    queue_lists,
    validate_node,
    validate_prefix,
    validate_queue,
    validate_service,
)


def test_every_key_of_a_service_by_its_whole_name() -> None:
    keys = Keys("acme:hb")
    tag = "acme:hb:{billing}"
    assert [keys.latest("billing"), keys.history("billing"), keys.beat("billing"),
            keys.discarded("billing"), keys.nodes("billing"), keys.incidents("billing"),
            keys.observed("billing"), keys.silence("billing"), keys.entries("billing"),
            keys.entry_runs("billing"), keys.entry_incidents("billing"),
            keys.entry_observed("billing"), keys.entry_silence("billing")] == [
        tag, f"{tag}:history", f"{tag}:beat", f"{tag}:discarded", f"{tag}:nodes",
        f"{tag}:incidents", f"{tag}:observed", f"{tag}:silence", f"{tag}:entries",
        f"{tag}:entry_runs", f"{tag}:entry_incidents", f"{tag}:entry_observed",
        f"{tag}:entry_silence"]
    # forget deletes exactly these, in this order
    assert keys.service_keys("billing") == [
        tag, f"{tag}:history", f"{tag}:beat", f"{tag}:discarded", f"{tag}:nodes",
        f"{tag}:incidents", f"{tag}:observed", f"{tag}:silence", f"{tag}:entries",
        f"{tag}:entry_runs", f"{tag}:entry_incidents", f"{tag}:entry_observed",
        f"{tag}:entry_silence"]
    assert keys.entry_monitor_keys("billing") == [
        f"{tag}:entry_observed", f"{tag}:entry_incidents", f"{tag}:silence",
        f"{tag}:entry_silence"]


def test_the_global_keys_and_the_scripts_key_lists() -> None:
    keys = Keys()
    assert keys.prefix == DEFAULT_PREFIX == "petsage:hb"
    assert (keys.index, keys.events, keys.outbox) == (
        "petsage:hb:index", "petsage:hb:events", "petsage:hb:outbox")
    assert keys.webhook_cursor("a1b2") == "petsage:hb:webhook:{a1b2}:cursor"
    assert keys.webhook_lock("a1b2") == "petsage:hb:webhook:{a1b2}:lock"
    assert keys.read_keys(["a", "b"]) == [
        "petsage:hb:{a}", "petsage:hb:{a}:beat", "petsage:hb:{a}:discarded",
        "petsage:hb:{a}:nodes", "petsage:hb:{b}", "petsage:hb:{b}:beat",
        "petsage:hb:{b}:discarded", "petsage:hb:{b}:nodes"]
    assert keys.monitor_keys(["a", "b"]) == [
        "petsage:hb:{a}:observed", "petsage:hb:{a}:incidents", "petsage:hb:{a}:silence",
        "petsage:hb:{b}:observed", "petsage:hb:{b}:incidents", "petsage:hb:{b}:silence"]
    assert keys.read_keys([]) == [] and keys.monitor_keys([]) == []


def test_keys_compare_and_hash_by_prefix_and_show_it() -> None:
    assert Keys("a:b") == Keys("a:b") and hash(Keys("a:b")) == hash("a:b")
    assert Keys("a:b") != Keys("a:c") and Keys("a:b") != "a:b"
    assert {Keys("a:b"), Keys("a:b"), Keys("x")} == {Keys("a:b"), Keys("x")}
    assert repr(Keys("a:b")) == "Keys('a:b')"


@pytest.mark.parametrize("method", ["latest", "history", "beat", "discarded", "nodes",
                                    "incidents", "observed", "silence", "entries",
                                    "entry_runs", "entry_incidents", "entry_observed",
                                    "entry_silence", "webhook_cursor", "webhook_lock"])
def test_every_key_refuses_a_service_that_would_change_its_slot(method: str) -> None:
    with pytest.raises(ConfigError, match=r"^service name 'a}b' is invalid; accepted: 1-64 "):
        getattr(Keys(), method)("a}b")


@pytest.mark.parametrize("build", [Keys().read_keys, Keys().monitor_keys])
def test_the_scripts_key_lists_refuse_a_bad_service(build: object) -> None:
    with pytest.raises(ConfigError, match=r"^service name '\*' is invalid"):
        build(["ok", "*"])  # type: ignore[operator]


def test_service_names_their_bounds_and_the_refusal_line() -> None:
    assert validate_service("a") == "a"
    assert validate_service("A-z_0.9" * 9 + "x") == "A-z_0.9" * 9 + "x"
    assert validate_service("x" * 64) == "x" * 64
    for bad in ["", "x" * 65, "a b", "a:b", "a{b", "a*", "a\n", "é"]:
        with pytest.raises(ConfigError):
            validate_service(bad)
    with pytest.raises(ConfigError) as refused:
        validate_service("x" * 65, source="HEARTBEAT_SERVICE")
    assert str(refused.value) == (
        f"HEARTBEAT_SERVICE '{'x' * 40}...' is invalid; accepted: 1-64 characters of "
        "A-Z a-z 0-9 . _ -")
    with pytest.raises(ConfigError, match=r"^service name 'None' is invalid"):
        validate_service(None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^service name 'a\\nb' is invalid"):
        validate_service("a\nb")


def test_a_refused_value_is_shown_up_to_40_characters() -> None:
    with pytest.raises(ConfigError) as refused:
        validate_service("y" * 40 + "!")
    assert str(refused.value).startswith(f"service name '{'y' * 40}...' is invalid")
    with pytest.raises(ConfigError) as refused:
        validate_service("y" * 39 + "!")
    assert str(refused.value).startswith(f"service name '{'y' * 39}!' is invalid")


def test_node_names_their_bounds_and_the_refusal_line() -> None:
    assert validate_node("celery@host-1.example") == "celery@host-1.example"
    assert validate_node("h" * 255) == "h" * 255
    with pytest.raises(ConfigError) as refused:
        validate_node("a b")
    assert str(refused.value) == (
        "node name 'a b' is invalid; accepted: a Celery node name (name@host) or its host "
        "part, 1-255 characters of A-Z a-z 0-9 . _ - @")
    for bad in ["", "h" * 256, "a:b", "a/b", None]:
        with pytest.raises(ConfigError, match=r"^--node '.*' is invalid"):
            validate_node(bad, source="--node")  # type: ignore[arg-type]


def test_queue_names_their_bounds_and_the_refusal_line() -> None:
    assert validate_queue("heartbeat.petsage") == "heartbeat.petsage"
    assert validate_queue("q" * 128) == "q" * 128
    with pytest.raises(ConfigError) as refused:
        validate_queue("q" * 129, source="HEARTBEAT_QUEUE")
    assert str(refused.value) == (
        f"HEARTBEAT_QUEUE '{'q' * 40}...' is invalid; accepted: 1-128 characters of "
        "A-Z a-z 0-9 . _ - (default heartbeat.SERVICE)")
    for bad in ["", "a@b", "a:b", None]:
        with pytest.raises(ConfigError, match=r"^queue name '.*' is invalid"):
            validate_queue(bad)  # type: ignore[arg-type]


def test_prefixes_their_parts_and_the_refusal_line() -> None:
    for good in ["p", "a:b:c:d", "x" * 32 + ":" + "y" * 32]:
        assert validate_prefix(good) == good
    with pytest.raises(ConfigError) as refused:
        validate_prefix("a:b:c:d:e", source="HEARTBEAT_KEY_PREFIX")
    assert str(refused.value) == (
        "HEARTBEAT_KEY_PREFIX 'a:b:c:d:e' is invalid; accepted: up to 4 parts joined by ':', "
        "each 1-32 characters of A-Z a-z 0-9 . _ - (e.g. petsage:hb)")
    for bad in ["", "x" * 33, "a::b", ":a", "a:", "a{b}", None]:
        with pytest.raises(ConfigError, match=r"^key prefix '.*' is invalid"):
            validate_prefix(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^key prefix 'a b' is invalid"):
        Keys("a b")


def test_what_beat_and_the_worker_agree_on() -> None:
    assert (HEALTH_TASK, NODE_TASK) == ("health", "health.node")
    assert (PUBLISHED_AT_HEADER, EXPIRES_HEADER, SERVICE_HEADER) == (
        "published_at_ms", "heartbeat_expires_ms", "heartbeat_service")
    assert (QUEUE_PREFIX, NODES_SUFFIX) == ("heartbeat.", ".nodes")
    assert default_queue("billing") == "heartbeat.billing"
    assert nodes_exchange("heartbeat.billing") == "heartbeat.billing.nodes"


def test_the_lists_kombu_keeps_a_queue_in() -> None:
    assert (PRIORITY_SEPARATOR, PRIORITY_STEPS) == ("\x06\x16", (0, 3, 6, 9))
    assert queue_lists("heartbeat.a") == [
        "heartbeat.a", "heartbeat.a\x06\x163", "heartbeat.a\x06\x166", "heartbeat.a\x06\x169"]


def test_rabbitmq_bounds_a_heartbeat_queue_to_ten_messages_of_ten_intervals() -> None:
    assert QUEUE_MAX_MESSAGES == 10
    assert queue_arguments(5.0) == {"x-max-length": 10, "x-message-ttl": 50_000}
    assert queue_arguments(0.0005) == {"x-max-length": 10, "x-message-ttl": 5}
    assert queue_arguments(0.00017) == {"x-max-length": 10, "x-message-ttl": 2}  # rounded
