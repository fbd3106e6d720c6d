"""Webhook URLs: checked, named in Redis by a hash, shown without their secret.

A webhook URL often is the secret (a Slack incoming webhook carries its token in the
path), so it is shown only as scheme and host, and known to Redis only by a hash
(``Webhook.id``): logs, errors and keys never hold the rest.
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import urlsplit

from worker.core.errors import ConfigError

FORMATS = ("json", "slack")
"""Body formats: the full JSON event, or Slack's ``{"text": ...}`` (Mattermost, Rocket.Chat
and Discord's ``/slack`` endpoints take it too)."""

_SPLIT = re.compile(r"[,\s]+")


class Webhook(NamedTuple):
    """One receiver of notifications."""

    url: str
    id: str  #: a hash of the URL: names its delivery cursor and lease in Redis
    shown: str  #: what logs say: scheme://host[:port], never the path or credentials

    def __repr__(self) -> str:
        """The URL masked: a stray repr shows no credentials, path or query."""
        from worker.core.urls import masked_repr

        return masked_repr(self)


def parse_webhook(url: str, *, source: str) -> Webhook:
    """One webhook URL, checked: http or https, a host, no spaces. One line if not."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        scheme = url.split("://", 1)[0] if "://" in url else ""
        what = f"scheme {scheme[:10]!r}" if scheme and scheme not in ("http", "https") else \
            "value"
        raise ConfigError(f"{source} has an invalid {what}; accepted: http:// or https:// "
                          "URLs with a host, separated by commas or spaces")
    host = parts.hostname if port is None else f"{parts.hostname}:{port}"
    shown = f"{parts.scheme}://{host}"
    import hashlib  # here: the probes load these settings and never need it

    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return Webhook(url, digest, shown)


def parse_webhooks(raw: str, *, source: str = "HEARTBEAT_WEBHOOK_URLS") -> tuple[Webhook, ...]:
    """The webhooks of a comma- or space-separated list; duplicates kept once."""
    out: dict[str, Webhook] = {}
    for part in _SPLIT.split(raw.strip()):
        if part:
            hook = parse_webhook(part, source=source)
            out.setdefault(hook.id, hook)
    return tuple(out.values())


def parse_format(raw: str, *, source: str = "HEARTBEAT_WEBHOOK_FORMAT") -> str:
    """``json`` or ``slack``; anything else is one line."""
    value = raw.strip().lower() or "json"
    if value not in FORMATS:
        raise ConfigError(f"{source} {raw[:20]!r} is invalid; accepted: {', '.join(FORMATS)}")
    return value


