"""``petsage-heartbeat monitor``: record every transition of every service, notify webhooks."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
from typing import Any

from worker.cli.check import positive_seconds
from worker.core.errors import ConfigError
from worker.core.exits import fail
from worker.core.redis_clients import make_client
from worker.core.settings import MAX_INTERVAL_S, Settings
from worker.core.webhook_urls import parse_format, parse_webhooks


def run_monitor(*, redis_url: str | None, prefix: str | None, every_s: float | None,
                webhooks: list[str], webhook_format: str | None) -> int:
    """Judge and record until SIGTERM or Ctrl-C; return 0 (or 2 for a bad setting)."""
    try:
        positive_seconds("--every", every_s, MAX_INTERVAL_S)
        settings = Settings.from_env(None, redis_url=redis_url, prefix=prefix)
        if webhooks:
            settings = settings._replace(webhooks=settings.webhooks + parse_webhooks(
                " ".join(webhooks), source="--webhook"))
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
