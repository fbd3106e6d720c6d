"""Webhook URLs: what is accepted, the one line for what is not, the id and what logs show."""

from __future__ import annotations

import hashlib

import pytest

from worker.core.errors import ConfigError
from worker.core.webhook_urls import FORMATS, Webhook, parse_format, parse_webhook, parse_webhooks

_ACCEPTED = "accepted: http:// or https:// URLs with a host, separated by commas or spaces"


def test_a_webhook_is_its_url_a_hash_of_it_and_scheme_with_host() -> None:
    url = "https://user:pw@hooks.example.com:8443/services/T0/B0/secret?x=1"
    hook = parse_webhook(url, source="S")
    assert hook == Webhook(url, hashlib.sha256(url.encode()).hexdigest()[:16],
                           "https://hooks.example.com:8443")
    assert len(hook.id) == 16
    assert parse_webhook("http://h/p", source="S").shown == "http://h"
    assert "secret" not in repr(hook) and "pw" not in repr(hook)


@pytest.mark.parametrize(("url", "what"), [
    ("ftp://h/x", "scheme 'ftp'"),
    ("javascript-alert://h", "scheme 'javascrip"),  # cut at 10 characters
    ("https://", "value"),
    ("h/x", "value"),
    ("https://h:99999/", "value"),
    ("", "value"),
])
def test_a_bad_url_is_one_line_naming_what_was_wrong(url: str, what: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_webhook(url, source="HEARTBEAT_WEBHOOK_URLS")
    assert str(refused.value).startswith(f"HEARTBEAT_WEBHOOK_URLS has an invalid {what}")
    assert str(refused.value).endswith(f"; {_ACCEPTED}")
    assert "\n" not in str(refused.value)


def test_the_list_splits_on_commas_and_spaces_and_keeps_each_url_once() -> None:
    hooks = parse_webhooks(" http://a/1 ,https://b/2\n\thttp://a/1,, http://c/3 ")
    assert [h.url for h in hooks] == ["http://a/1", "https://b/2", "http://c/3"]
    assert parse_webhooks("") == () and parse_webhooks(" , ") == ()
    with pytest.raises(ConfigError, match=r"^HEARTBEAT_WEBHOOK_URLS has an invalid scheme"):
        parse_webhooks("http://a/1 smtp://b")
    with pytest.raises(ConfigError, match=r"^X has an invalid value"):
        parse_webhooks("http://", source="X")


def test_the_body_format() -> None:
    assert FORMATS == ("json", "slack")
    assert parse_format("") == "json" and parse_format("  ") == "json"
    assert parse_format(" Slack ") == "slack" and parse_format("JSON") == "json"
    with pytest.raises(ConfigError) as refused:
        parse_format("teams-and-more-and-more-and-more")
    assert str(refused.value) == (
        "HEARTBEAT_WEBHOOK_FORMAT 'teams-and-more-and-m' is invalid; accepted: json, slack")
    with pytest.raises(ConfigError, match=r"^F 'x' is invalid"):
        parse_format("x", source="F")
