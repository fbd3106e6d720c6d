"""The only place the names of Redis keys, channels, queues and tasks are built.

Names (prefix ``petsage:hb`` by default, service ``petsage``)::

    petsage:hb:{petsage}           latest payload (string, JSON, TTL = retention)
    petsage:hb:{petsage}:history   stream, one entry per heartbeat, capped
    petsage:hb:{petsage}:beat      beat's last publish of the heartbeat task (string, JSON)
    petsage:hb:{petsage}:discarded the last heartbeat a worker discarded as expired (JSON)
    petsage:hb:{petsage}:nodes     sorted set: member = Celery node name, score = ts_ms of
                                   that node's last node heartbeat (TTL = node retention)
    petsage:hb:{petsage}:incidents stream, one entry per state transition (monitor), capped
    petsage:hb:{petsage}:observed  hash: the state the monitors last recorded and notified
    petsage:hb:{petsage}:silence   string, JSON: why and until when notifications are held
    petsage:hb:{petsage}:entries   hash: beat entry name -> its record (JSON: schedule, next
                                   due, last run's check-ins; docs/entries.md)
    petsage:hb:{petsage}:entry_runs stream: every check-in of the entries' runs, capped
    petsage:hb:{petsage}:entry_incidents stream, one entry per entry transition (monitor)
    petsage:hb:{petsage}:entry_observed hash: entry name -> the state the monitors last
                                   recorded and notified for it (JSON)
    petsage:hb:{petsage}:entry_silence hash: entry name -> its silence (JSON: until, reason)
    petsage:hb:outbox              stream: notifications waiting for the webhooks
    petsage:hb:webhook:{ID}:cursor the last outbox entry delivered to webhook ID (a hash of
                                   its URL: the URL itself, which may hold a secret, is
                                   never stored)
    petsage:hb:webhook:{ID}:lock   which monitor delivers to webhook ID (a lease)
    petsage:hb:index               sorted set: member = service, score = last ts_ms
    petsage:hb:summary:{0000}..{2047} hash shards: member = service, value = its compact
                                   summary (JSON: seq, ts_ms, timestamp, interval_s,
                                   stale_after_s, status, ...); shard = CRC-32 of the name
                                   modulo 2,048
    petsage:hb:transitions         counter: transitions the monitors recorded (for monitors)
    petsage:hb:events              pub/sub channel: each payload as published

The service part is wrapped in braces, a Redis Cluster *hash tag*, so that all of one
service's keys live in one slot and its write stays one atomic script on a cluster too.
The names are the same whether or not the store is a cluster, so dashboards never have to
know.

Beat and the worker agree on the task names, the queues and the message headers here too.
"""

from __future__ import annotations

import re
from zlib import crc32

from worker.core.errors import ConfigError

SERVICE_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
"""What a service name may be: no globs, colons, braces, spaces or newlines."""

QUEUE_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,128}")
"""What a heartbeat queue name may be (``HEARTBEAT_QUEUE``)."""

NODE_PATTERN = re.compile(r"[A-Za-z0-9._@-]{1,255}")
"""What a Celery node name (``name@host``) or its host part may be (``check --node``)."""

PREFIX_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,32}(:[A-Za-z0-9._-]{1,32}){0,3}")
"""What a key prefix may be: up to four colon-separated parts of the service alphabet."""

DEFAULT_PREFIX = "petsage:hb"
"""The default key prefix (``HEARTBEAT_KEY_PREFIX``)."""

SUMMARY_SHARDS = 2048
"""Hash shards of the fleet's compact summaries: 1,000,000 services are about 490 fields a
shard (the most loaded under 600), so no shard nears 1,000 fields below about 1.7 million
services, and a fleet read needs no command over 1,000 fields. A contract: writers and
readers of every version must agree on it."""


def summary_shard(service: str) -> int:
    """The shard of ``service``'s summary: a stable hash (CRC-32 of the UTF-8 name)."""
    return crc32(service.encode()) % SUMMARY_SHARDS


def _shown(value: str) -> str:
    """Quote a refused value for an error line, cut short and with control characters escaped."""
    shown = value if len(value) <= 40 else value[:40] + "..."
    return repr(shown)


def validate_service(service: str, *, source: str = "service name") -> str:
    """Return ``service`` if it is a valid service name, else raise ``ConfigError``."""
    if not isinstance(service, str) or not SERVICE_PATTERN.fullmatch(service):
        raise ConfigError(
            f"{source} {_shown(str(service))} is invalid; "
            "accepted: 1-64 characters of A-Z a-z 0-9 . _ -"
        )
    return service


def validate_node(node: str, *, source: str = "node name") -> str:
    """Return ``node`` if it is a valid Celery node name or host part, else raise."""
    if not isinstance(node, str) or not NODE_PATTERN.fullmatch(node):
        raise ConfigError(
            f"{source} {_shown(str(node))} is invalid; accepted: a Celery node name "
            "(name@host) or its host part, 1-255 characters of A-Z a-z 0-9 . _ - @"
        )
    return node


def validate_queue(queue: str, *, source: str = "queue name") -> str:
    """Return ``queue`` if it is a valid heartbeat queue name, else raise ``ConfigError``."""
    if not isinstance(queue, str) or not QUEUE_PATTERN.fullmatch(queue):
        raise ConfigError(
            f"{source} {_shown(str(queue))} is invalid; accepted: 1-128 characters of "
            "A-Z a-z 0-9 . _ - (default heartbeat.SERVICE)"
        )
    return queue


def validate_prefix(prefix: str, *, source: str = "key prefix") -> str:
    """Return ``prefix`` if it is a valid key prefix, else raise ``ConfigError``."""
    if not isinstance(prefix, str) or not PREFIX_PATTERN.fullmatch(prefix):
        raise ConfigError(
            f"{source} {_shown(str(prefix))} is invalid; accepted: up to 4 parts joined by ':', "
            "each 1-32 characters of A-Z a-z 0-9 . _ - (e.g. petsage:hb)"
        )
    return prefix


class Keys:
    """Key names for one prefix; build every name through this object.

    A plain class rather than a dataclass: ``dataclasses`` costs the ``check`` probe more
    import time than everything else it needs.
    """

    __slots__ = ("prefix",)

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = validate_prefix(prefix)

    def __repr__(self) -> str:
        return f"Keys({self.prefix!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Keys) and other.prefix == self.prefix

    def __hash__(self) -> int:
        return hash(self.prefix)

    def _join(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def latest(self, service: str) -> str:
        """The string key holding the latest payload of ``service``."""
        return self._join("{" + validate_service(service) + "}")

    def history(self, service: str) -> str:
        """The capped stream of ``service``'s heartbeats."""
        return self._join("{" + validate_service(service) + "}", "history")

    def beat(self, service: str) -> str:
        """The beat marker of ``service``: beat's last publish of the heartbeat task."""
        return self._join("{" + validate_service(service) + "}", "beat")

    def discarded(self, service: str) -> str:
        """The last heartbeat of ``service`` the worker discarded as expired (string, JSON)."""
        return self._join("{" + validate_service(service) + "}", "discarded")

    def nodes(self, service: str) -> str:
        """The worker nodes of ``service``: member = node name, score = its last ts_ms."""
        return self._join("{" + validate_service(service) + "}", "nodes")

    def incidents(self, service: str) -> str:
        """The capped stream of ``service``'s state transitions, written by the monitors."""
        return self._join("{" + validate_service(service) + "}", "incidents")

    def observed(self, service: str) -> str:
        """The monitors' record of ``service``: the state recorded last and notified last."""
        return self._join("{" + validate_service(service) + "}", "observed")

    def silence(self, service: str) -> str:
        """``service``'s silence (JSON: until, reason); it expires when the silence ends."""
        return self._join("{" + validate_service(service) + "}", "silence")

    def entries(self, service: str) -> str:
        """The records of the beat entries of ``service``'s app (hash: name -> JSON)."""
        return self._join("{" + validate_service(service) + "}", "entries")

    def entry_runs(self, service: str) -> str:
        """The capped stream of check-ins of ``service``'s beat entries."""
        return self._join("{" + validate_service(service) + "}", "entry_runs")

    def entry_incidents(self, service: str) -> str:
        """The capped stream of transitions of ``service``'s beat entries (the monitors)."""
        return self._join("{" + validate_service(service) + "}", "entry_incidents")

    def entry_observed(self, service: str) -> str:
        """The monitors' record of ``service``'s entries (hash: entry name -> JSON)."""
        return self._join("{" + validate_service(service) + "}", "entry_observed")

    def entry_silence(self, service: str) -> str:
        """The silences of ``service``'s entries (hash: entry name -> JSON: until, reason)."""
        return self._join("{" + validate_service(service) + "}", "entry_silence")

    def entry_monitor_keys(self, service: str) -> list[str]:
        """The entry record script's keys: the entries' record, their incident stream,
        the service's silence and the entries' silences."""
        return [self.entry_observed(service), self.entry_incidents(service),
                self.silence(service), self.entry_silence(service)]

    def service_keys(self, service: str) -> list[str]:
        """Every key of ``service`` (``forget`` deletes them all)."""
        return [self.latest(service), self.history(service), self.beat(service),
                self.discarded(service), self.nodes(service), self.incidents(service),
                self.observed(service), self.silence(service), self.entries(service),
                self.entry_runs(service), self.entry_incidents(service),
                self.entry_observed(service), self.entry_silence(service)]

    def monitor_keys(self, services: list[str]) -> list[str]:
        """The record script's keys: observed, incidents and silence of each service."""
        out: list[str] = []
        for service in services:
            tag = f"{self.prefix}:{{{validate_service(service)}}}"
            out += (tag + ":observed", tag + ":incidents", tag + ":silence")
        return out

    @property
    def outbox(self) -> str:
        """The stream of notifications waiting for the webhooks."""
        return self._join("outbox")

    def webhook_cursor(self, webhook_id: str) -> str:
        """The id of the last outbox entry delivered to the webhook ``webhook_id``."""
        return self._join("webhook", "{" + validate_service(webhook_id) + "}", "cursor")

    def webhook_lock(self, webhook_id: str) -> str:
        """The lease of the monitor that delivers to the webhook ``webhook_id``."""
        return self._join("webhook", "{" + validate_service(webhook_id) + "}", "lock")

    def read_keys(self, services: list[str]) -> list[str]:
        """The read script's keys: latest, beat, discarded and nodes of each service in turn.

        Each name is validated once (a fleet read builds 40,000 keys for 10,000 services).
        """
        out: list[str] = []
        for service in services:
            tag = f"{self.prefix}:{{{validate_service(service)}}}"
            out += (tag, tag + ":beat", tag + ":discarded", tag + ":nodes")
        return out

    @property
    def index(self) -> str:
        """The fleet index: member = service, score = last heartbeat ts_ms."""
        return self._join("index")

    def summary(self, shard: int) -> str:
        """Summary shard ``shard`` (a hash: service -> compact summary), its own hash tag."""
        if not 0 <= shard < SUMMARY_SHARDS:
            raise ValueError(f"summary shard {shard} is not in 0..{SUMMARY_SHARDS - 1}")
        return self._join("summary", f"{{{shard:04d}}}")

    def summary_of(self, service: str) -> str:
        """The summary shard that holds ``service``'s summary."""
        return self.summary(summary_shard(validate_service(service)))

    @property
    def transitions(self) -> str:
        """A counter the monitors add their recorded transitions to: a monitor that sees it
        moved by another's sends every service to the record again (``monitor.py``)."""
        return self._join("transitions")

    @property
    def events(self) -> str:
        """The pub/sub channel every payload is published on."""
        return self._join("events")


# Tasks, queues and message headers: what beat and the worker agree on.

HEALTH_TASK = "health"
"""Name of the service heartbeat task: some worker of the service runs it."""

NODE_TASK = "health.node"
"""Name of the node heartbeat task: broadcast, so every worker of the service runs it."""

PUBLISHED_AT_HEADER = "published_at_ms"
"""Message header: publish time, epoch ms on the Redis clock (beat's estimate)."""

EXPIRES_HEADER = "heartbeat_expires_ms"
"""Message header: a heartbeat not started within this many ms of publish is discarded."""

SERVICE_HEADER = "heartbeat_service"
"""Message header: the service whose beat published it; another service's worker drops it."""

QUEUE_PREFIX = "heartbeat."
"""A service's heartbeat queue is ``heartbeat.{service}`` unless ``HEARTBEAT_QUEUE`` says."""

NODES_SUFFIX = ".nodes"
"""The fanout exchange of a queue's node heartbeats is ``{queue}.nodes``."""


def default_queue(service: str) -> str:
    """The queue a service's heartbeats travel on: one per service, never shared."""
    return QUEUE_PREFIX + service


def nodes_exchange(queue: str) -> str:
    """The fanout exchange that delivers a node heartbeat to every worker of ``queue``."""
    return queue + NODES_SUFFIX


PRIORITY_SEPARATOR = "\x06\x16"
"""kombu's Redis transport names priority sub-queues ``{queue}\\x06\\x16{priority}``."""

PRIORITY_STEPS = (0, 3, 6, 9)
"""kombu's default priority steps: step 0 is the queue's own list."""


def queue_lists(queue: str) -> list[str]:
    """The Redis lists kombu keeps one queue in (the queue, then its priority sub-queues)."""
    return [queue if step == 0 else f"{queue}{PRIORITY_SEPARATOR}{step}" for step in PRIORITY_STEPS]


QUEUE_MAX_MESSAGES = 10
"""At most this many heartbeats wait in the heartbeat queue; older ones are dropped.

A heartbeat is useless after one interval (the worker discards it as expired), so a queue
nobody consumes must not grow: RabbitMQ bounds it by queue arguments, and beat trims a
Redis broker's lists after each publish. Ten keep the evidence of a slow worker (it still
takes, and discards, expired ones) at about 10 KB per service."""


def queue_arguments(interval_s: float) -> dict[str, int]:
    """RabbitMQ arguments of a heartbeat queue (the service's, and each worker's node queue):
    at most ``QUEUE_MAX_MESSAGES`` messages, none older than that many intervals (the oldest
    is dropped first)."""
    return {"x-max-length": QUEUE_MAX_MESSAGES,
            "x-message-ttl": round(QUEUE_MAX_MESSAGES * interval_s * 1000)}

