"""``petsage-heartbeat monitor``: record every transition of every service, notify webhooks."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import sys
from typing import Any

from worker.cli.check import positive_seconds
from worker.core.errors import ConfigError
from worker.core.exits import fail
from worker.core.redis_clients import make_client
from worker.core.settings import MAX_INTERVAL_S, Settings
from worker.core.webhook_urls import parse_format, parse_webhooks

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def webhook_value(value: str) -> tuple[str, str]:
    """What one ``--webhook`` gives, and where from: a URL as it is, ``@/path/to/file``
    (the URLs in the file, commas, spaces or lines between them), or the name of an
    environment variable that holds them. The last two keep a URL that is a secret (a
    Slack token in its path, a password) out of ``ps`` and ``/proc/PID/cmdline``.
    A file that can't be read or a variable unset is one line, the value never quoted."""
    if value.startswith("@"):
        path = value[1:]
        try:
            with open(path, encoding="utf-8") as file:
                text = file.read(65_536)
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else \
                type(exc).__name__
            raise ConfigError(f"--webhook @{path[:200]!r}: can't be read ({reason})") from None
        if not text.strip():
            raise ConfigError(f"--webhook @{path[:200]!r}: the file holds no URL")
        return text, f"--webhook @{path[:200]}"
    if _ENV_NAME.fullmatch(value):
        text = os.environ.get(value, "")
        if not text.strip():
            raise ConfigError(f"--webhook {value}: no such environment variable, or it is "
                              "empty; accepted: a URL, @/path/to/file or a variable's name")
        return text, f"--webhook {value}"
    return value, "--webhook"


def run_monitor(*, redis_url: str | None, prefix: str | None, every_s: float | None,
                webhooks: list[str], webhook_format: str | None) -> int:
    """Judge and record until SIGTERM or Ctrl-C; return 0 (or 2 for a bad setting)."""
    try:
        positive_seconds("--every", every_s, MAX_INTERVAL_S)
        settings = Settings.from_env(None, redis_url=redis_url, prefix=prefix)
        for value in webhooks:
            text, source = webhook_value(value)
            settings = settings._replace(webhooks=settings.webhooks + tuple(
                hook for hook in parse_webhooks(text, source=source)
                if hook.id not in {known.id for known in settings.webhooks}))
        if webhook_format is not None:
            settings = settings._replace(webhook_format=parse_format(
                webhook_format, source="--webhook-format"))
    except ConfigError as exc:
        return fail("monitor", str(exc))
    from worker.observe.monitor import Monitor

    client = make_client(settings.redis_url, timeout_s=settings.redis_timeout_s)
    monitor = Monitor(settings, client, every_s=every_s or settings.interval_s)
    hooks = ", ".join(hook.shown for hook in settings.webhooks) or "none"
    logging.getLogger("petsage_heartbeat.monitor").info(
        "monitor %s: judging every service under %s every %g s; webhooks: %s (%s)",
        monitor.owner, settings.key_prefix, monitor.every_s, hooks, settings.webhook_format)

    def stop(*_: Any) -> None:
        monitor.stop()

    signal.signal(signal.SIGTERM, stop)
    with contextlib.suppress(KeyboardInterrupt):
        monitor.run()
    print("petsage-heartbeat monitor: stopped", file=sys.stderr)
    return 0
