"""The one settings object, read from the environment and validated once.

Every program here (the Celery config, the CLI, the HTTP server) builds its settings with
``Settings.from_env()``; a bad value raises ``ConfigError`` whose message is one line that
names the variable and says what it accepts. Entry points turn that into an exit code.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import NamedTuple

from worker.core.entries import parse_entries_filter
from worker.core.errors import ConfigError
from worker.core.names import (
    DEFAULT_PREFIX,
    Keys,
    default_queue,
    validate_prefix,
    validate_queue,
    validate_service,
)
from worker.core.states import STALE_FACTOR, Thresholds
from worker.core.urls import (
    BROKER_SCHEMES,
    REDIS_SCHEMES,
    is_cluster,
    masked_repr,
    redact,
    validate_url,
)
from worker.core.webhook_urls import Webhook, parse_format, parse_webhook, parse_webhooks

DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
"""Broker used when ``CELERY_BROKER_URL`` is unset (the store defaults to the broker)."""

DEFAULT_SERVICE = "petsage"
"""Service name heartbeats are published under (``HEARTBEAT_SERVICE``)."""

DEFAULT_INTERVAL_S = 10.0
"""Seconds between heartbeats (``HEARTBEAT_INTERVAL_S``)."""

MIN_INTERVAL_S = 0.5
"""The shortest interval accepted; Celery beat can't keep a tighter schedule honestly."""

DEFAULT_RETENTION_S = 7 * 24 * 3600
"""TTL of the latest payload and of the history stream (``HEARTBEAT_RETENTION_S``)."""

DEFAULT_HISTORY_LEN = 120
"""Approximate cap of the history stream (``HEARTBEAT_HISTORY_LEN``, ``MAXLEN ~``).

Twice the dashboard's 60 points: about 10.8 KB of Redis per service with the payload and
its index entry, where 1,000 entries cost 52.7 KB (98% of it the stream)."""

DEFAULT_INCIDENTS_LEN = 1000
"""Transitions kept per service in its incident stream (``HEARTBEAT_INCIDENTS_LEN``)."""

DEFAULT_NODE_RETENTION_S = 600
"""How long a worker node that stopped renewing its node heartbeat stays listed
(``HEARTBEAT_NODE_RETENTION_S``): a crashed pod shows as stale this long, then is pruned.
A worker that shuts down cleanly removes its own record at once."""

DEFAULT_REDIS_TIMEOUT_S = 2.0
"""Connect and read timeout of the worker's store client (``HEARTBEAT_REDIS_TIMEOUT_S``)."""

_CHECK_SPEC = re.compile(
    r"(?:(?P<name>[A-Za-z0-9._-]{1,64})=)?(?P<module>[A-Za-z_][\w.]*):(?P<attr>[A-Za-z_]\w*)"
)


MAX_INTERVAL_S = 86_400.0
"""The longest interval accepted (a day); beyond it a schedule is no heartbeat."""

MAX_STALE_AFTER_S = 10 * MAX_INTERVAL_S
"""The longest stale threshold accepted."""

MAX_RETENTION_S = 10 * 365 * 86_400
"""The longest retention accepted (ten years): far beyond any use, well inside Redis's TTLs."""

MAX_HISTORY_LEN = 10_000_000
"""The longest history stream accepted."""

MAX_REDIS_TIMEOUT_S = 300.0
"""The longest store timeout accepted: a heartbeat must end within its time limit."""


def _bound(value: float) -> str:
    """A bound as people write it: ``315360000``, not ``3.1536e+08``; ``0.05``."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float,
            maximum: float, integer: bool = False, what: str = "seconds",
            why: str = "") -> float:
    """Read one number strictly: junk, NaN, infinities and values out of bounds are refused.

    ``why`` says where a minimum that depends on another setting comes from.
    """
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    kind = "a whole number" if integer else "a number"
    accepted = f"{kind} of {what} >= {_bound(minimum)} and <= {_bound(maximum)}"
    if why:
        accepted += f" ({why})"
    shown = raw if len(raw) <= 40 else raw[:40] + "..."
    try:
        # No count is 41 digits long, and int() of a huge string is slow: out of range.
        value = (math.inf if len(raw) > 40 else int(raw)) if integer else float(raw)
    except ValueError:
        raise ConfigError(f"{name}={shown!r} is not {kind}; accepted: {accepted}") from None
    if not math.isfinite(value) or not minimum <= value <= maximum:
        raise ConfigError(f"{name}={shown!r} is out of range; accepted: {accepted}")
    return value


class CheckSpec(NamedTuple):
    """A user check named in ``HEARTBEAT_CHECKS``: ``[name=]module:function``."""

    name: str
    module: str
    attr: str


def parse_check_specs(raw: str, *, source: str = "HEARTBEAT_CHECKS") -> tuple[CheckSpec, ...]:
    """Parse a comma-separated list of ``[name=]module:function`` check references."""
    specs = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        match = _CHECK_SPEC.fullmatch(item)
        if match is None:
            raise ConfigError(
                f"{source} entry {item!r} is invalid; accepted: [name=]module:function, "
                "e.g. db=myapp.health:ping_db"
            )
        specs.append(CheckSpec(match["name"] or match["attr"], match["module"], match["attr"]))
    return tuple(specs)


class Settings(NamedTuple):
    """Everything the worker, beat and the readers need to agree on."""

    broker_url: str = DEFAULT_BROKER_URL
    #: Where heartbeats are stored; the broker URL unless ``HEARTBEAT_REDIS_URL`` is set.
    redis_url: str = DEFAULT_BROKER_URL
    service: str = DEFAULT_SERVICE
    interval_s: float = DEFAULT_INTERVAL_S
    stale_after_s: float = DEFAULT_INTERVAL_S * STALE_FACTOR
    key_prefix: str = DEFAULT_PREFIX
    retention_s: int = DEFAULT_RETENTION_S
    history_len: int = DEFAULT_HISTORY_LEN
    redis_timeout_s: float = DEFAULT_REDIS_TIMEOUT_S
    checks: tuple[CheckSpec, ...] = ()
    #: True when neither URL was set: ``run`` starts the embedded server in that case.
    urls_defaulted: bool = False
    #: The queue heartbeats travel on (``HEARTBEAT_QUEUE``): one per service, so two
    #: services on one broker database never run each other's heartbeats.
    queue: str = default_queue(DEFAULT_SERVICE)
    node_retention_s: int = DEFAULT_NODE_RETENTION_S
    #: Where the monitor posts each transition (``HEARTBEAT_WEBHOOK_URLS``).
    webhooks: tuple[Webhook, ...] = ()
    webhook_format: str = "json"
    #: A link to the dashboard that notifications carry (``HEARTBEAT_DASHBOARD_URL``).
    dashboard_url: str | None = None
    incidents_len: int = DEFAULT_INCIDENTS_LEN
    #: Which beat entries of the app are watched (``HEARTBEAT_ENTRIES``): a regular
    #: expression matched against whole names; None watches every entry.
    entries: str | None = None

    @property
    def incidents_ttl_ms(self) -> int:
        """How long the monitors' record of a service outlives its last change: 35 days
        (past the 30-day uptime window), or the retention if that is longer."""
        return max(35 * 86_400, self.retention_s) * 1000

    @property
    def late_after_s(self) -> float:
        """Age beyond which a heartbeat is late."""
        return Thresholds.for_interval(self.interval_s, self.stale_after_s).late_after_s

    @property
    def keys(self) -> Keys:
        """Key names for this prefix."""
        return Keys(self.key_prefix)

    def __repr__(self) -> str:
        """Every URL masked (store, broker, webhooks, dashboard), at every depth: a settings
        object printed anywhere (a log, a traceback, ``celery inspect report``) shows no
        password, webhook path or token."""
        return masked_repr(self)

    def describe(self) -> str:
        """One line for logs, with passwords hidden."""
        return (
            f"service={self.service} interval={self.interval_s:g}s "
            f"stale_after={self.stale_after_s:g}s store={redact(self.redis_url)} "
            f"broker={redact(self.broker_url)} prefix={self.key_prefix} queue={self.queue}"
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, redis_url: str | None = None,
                 service: str | None = None, prefix: str | None = None) -> Settings:
        """Build and validate settings from environment variables (``os.environ`` by default).

        ``redis_url``, ``service`` and ``prefix`` are a command's flags (``--redis``,
        ``--service``, ``--prefix``): given, each replaces its variable and is validated
        once, here, under the flag's name.
        """
        env = os.environ if env is None else env
        broker_raw = env.get("CELERY_BROKER_URL", "").strip()
        store_raw = env.get("HEARTBEAT_REDIS_URL", "").strip() if redis_url is None else redis_url
        store_source = "HEARTBEAT_REDIS_URL" if redis_url is None else "--redis"
        broker_url = validate_url(
            broker_raw or DEFAULT_BROKER_URL, source="CELERY_BROKER_URL", schemes=BROKER_SCHEMES
        )
        if is_cluster(broker_url):
            raise ConfigError(
                "CELERY_BROKER_URL cannot be a Redis Cluster (kombu has no cluster transport); "
                "accepted: one Redis, sentinel:// or amqp://, with the cluster as "
                "HEARTBEAT_REDIS_URL"
            )
        broker_is_redis = broker_url.split("://", 1)[0] in REDIS_SCHEMES
        if not store_raw and redis_url is None and not broker_is_redis:
            raise ConfigError(
                "HEARTBEAT_REDIS_URL is required when CELERY_BROKER_URL is not a Redis URL; "
                "accepted: redis://, rediss://, sentinel://"
            )
        redis_url = validate_url(store_raw or broker_url if redis_url is None else redis_url,
                                 source=store_source)
        service = validate_service(
            env.get("HEARTBEAT_SERVICE", DEFAULT_SERVICE) if service is None else service,
            source="HEARTBEAT_SERVICE" if service is None else "--service",
        )
        interval_s = _number(
            env, "HEARTBEAT_INTERVAL_S", DEFAULT_INTERVAL_S, minimum=MIN_INTERVAL_S,
            maximum=MAX_INTERVAL_S,
        )
        stale_after_s = _number(
            env, "HEARTBEAT_STALE_AFTER_S", interval_s * STALE_FACTOR, minimum=interval_s,
            maximum=MAX_STALE_AFTER_S,
            why="at least HEARTBEAT_INTERVAL_S",
        )
        retention_s = int(_number(
            env, "HEARTBEAT_RETENTION_S", DEFAULT_RETENTION_S,
            minimum=max(60, math.ceil(stale_after_s)), maximum=MAX_RETENTION_S, integer=True,
            why="at least 60 and at least the stale threshold",
        ))
        history_len = int(_number(
            env, "HEARTBEAT_HISTORY_LEN", DEFAULT_HISTORY_LEN, minimum=1, maximum=MAX_HISTORY_LEN,
            integer=True,
            what="entries",
        ))
        redis_timeout_s = _number(
            env, "HEARTBEAT_REDIS_TIMEOUT_S", DEFAULT_REDIS_TIMEOUT_S, minimum=0.05,
            maximum=MAX_REDIS_TIMEOUT_S,
        )
        prefix = validate_prefix(
            env.get("HEARTBEAT_KEY_PREFIX", DEFAULT_PREFIX) if prefix is None else prefix,
            source="HEARTBEAT_KEY_PREFIX" if prefix is None else "--prefix",
        )
        queue = validate_queue(env.get("HEARTBEAT_QUEUE", "").strip() or default_queue(service),
                               source="HEARTBEAT_QUEUE")
        node_retention_s = int(_number(
            env, "HEARTBEAT_NODE_RETENTION_S", DEFAULT_NODE_RETENTION_S,
            minimum=math.ceil(2 * stale_after_s), maximum=MAX_RETENTION_S, integer=True,
            why="at least twice the stale threshold: a dead node shows stale first",
        ))
        dashboard = env.get("HEARTBEAT_DASHBOARD_URL", "").strip()
        if dashboard:
            parse_webhook(dashboard, source="HEARTBEAT_DASHBOARD_URL")
        return cls(
            webhooks=parse_webhooks(env.get("HEARTBEAT_WEBHOOK_URLS", "")),
            webhook_format=parse_format(env.get("HEARTBEAT_WEBHOOK_FORMAT", "")),
            dashboard_url=dashboard or None,
            incidents_len=int(_number(
                env, "HEARTBEAT_INCIDENTS_LEN", DEFAULT_INCIDENTS_LEN, minimum=10,
                maximum=1_000_000, integer=True, what="entries")),
            broker_url=broker_url,
            redis_url=redis_url,
            service=service,
            interval_s=interval_s,
            stale_after_s=stale_after_s,
            key_prefix=prefix,
            retention_s=retention_s,
            history_len=history_len,
            redis_timeout_s=redis_timeout_s,
            checks=parse_check_specs(env.get("HEARTBEAT_CHECKS", "")),
            urls_defaulted=not broker_raw and not store_raw,
            queue=queue,
            node_retention_s=node_retention_s,
            entries=parse_entries_filter(env.get("HEARTBEAT_ENTRIES", "")),
        )


def tls_options_or_exit(url: str) -> dict[str, object]:
    """``urls.tls_options`` for the Celery config: a bad value prints one line and exits 2."""
    from worker.core.urls import tls_options

    try:
        return tls_options(url)
    except ConfigError as exc:
        from worker.core.exits import fail

        raise SystemExit(fail(None, f"CELERY_BROKER_URL: {exc}")) from None


def load_or_exit(env: Mapping[str, str] | None = None) -> Settings:
    """``Settings.from_env()`` for entry points: a bad value prints one line and exits 2."""
    try:
        return Settings.from_env(env)
    except ConfigError as exc:
        from worker.core.exits import fail

        raise SystemExit(fail(None, str(exc))) from None
