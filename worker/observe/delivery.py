"""Deliver the outbox to one webhook: in order, once across monitors, retried with back-off.

Each webhook has its own delivery thread in every monitor, a lease in Redis that lets one
of them deliver at a time, and a cursor (the last outbox entry delivered). The holder
posts the entries after the cursor one by one and moves the cursor after each success, so
a monitor that dies hands over to another at the entry it was on. A failing receiver
(5xx, 408, 429, a timeout, a refused connection) is retried with back-off, 1 s doubling to
60 s, while the lease is renewed; later entries wait behind it, so a receiver sees a
service's transitions in order. A refusal that won't change (another 4xx) or an entry
older than ``max_age_s`` is dropped with one log line; so is a redirect (3xx: never
followed, so no ``Authorization`` leaves the URL's origin) and an entry that is not one a
monitor writes (``event_problem``: whoever else can write the outbox gets no webhook's
trust). One POST has one deadline, ``POST_TIMEOUT_S`` for all of it, half the lease, however
slowly the receiver trickles its answer. Every log line escapes the entry's text. A
webhook new to the store starts after the notifications queued when the first monitor
that knows it starts. The judging thread never waits for any of this.

At least once: a holder that stops after its POST and before moving the cursor (killed,
or paused beyond its lease), or whose POST outlasts its lease (a receiver slower than
the lease), lets the next holder post that entry again, at most once per lease expiry;
every body carries the outbox entry's ``id`` for receivers to drop a repeat. Whoever
delivered an entry moves the cursor to it, lease or not, and only forward: a slow
receiver never stalls the outbox on one entry, and a late sender never moves the cursor
back over what the next holder delivered.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from worker.core.names import Keys
from worker.core.redis_io import as_text, lua_script, redis_time_ms
from worker.core.urls import redact
from worker.core.version import __version__
from worker.core.webhook_urls import Webhook
from worker.observe.webhooks import EVENT_MAX_BYTES, event_body, event_problem, render
from worker.read.render import escape

log = logging.getLogger("petsage_heartbeat.webhooks")

BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 60.0)
"""Waits between attempts at one notification; the last repeats."""

LEASE_S = 10.0
"""How long a delivering monitor's lease lasts unless renewed (before every attempt and
every second of a back-off): a monitor killed mid-delivery hands over within this."""

POST_TIMEOUT_S = 5.0
"""The longest one POST may take, all of it (connect, TLS, send, the answer's status and
headers), however slowly the receiver trickles: half the lease, so a POST ends before
the lease it started under (renewed just before it) runs out."""

MAX_AGE_S = 3600.0
"""A notification not delivered within an hour is dropped: old news pages nobody."""

POLL_S = 0.5
"""How often an idle delivery thread looks for new entries."""

HOLD_SCRIPT = lua_script(__package__, "webhook_hold.lua")
ADVANCE_SCRIPT = lua_script(__package__, "webhook_advance.lua")
START_SCRIPT = lua_script(__package__, "webhook_start.lua")
RELEASE_SCRIPT = lua_script(__package__, "webhook_release.lua")

CURSOR_TTL_MS = 35 * 86_400_000
"""A webhook's cursor outlives its last delivery by 35 days: a removed webhook's cursor
goes, a quiet one's stays (the outbox keeps at most 10,000 notifications anyway)."""

Poster = Callable[[str, bytes, float], int]
"""Posts a body to a URL within a timeout and returns the HTTP status; raises OSError."""


def post(url: str, body: bytes, timeout_s: float) -> int:
    """POST ``body`` as JSON within ``timeout_s`` overall; return the HTTP status.

    One deadline for the whole exchange (connect, TLS, send, the answer's status line and
    headers): a timer shuts the socket at ``timeout_s``, so a receiver that trickles a byte
    a second is cut there all the same (``TimeoutError``). The answer's body is never read.
    Certificates and host names are verified (``ssl.create_default_context()``).

    Redirects are never followed: a 3xx is returned as it is, and the request, with its
    ``Authorization``, only ever goes to the URL's own origin. Credentials in the URL
    (``https://user:password@host/...``) are sent as HTTP Basic authentication, as curl
    does, never as part of the host.
    """
    target, authorization = split_credentials(url)
    parts = urlsplit(target)
    headers = {"Content-Type": "application/json",
               "User-Agent": f"petsage-heartbeat/{__version__}",
               "Content-Length": str(len(body))}
    if authorization is not None:
        headers["Authorization"] = authorization
    host, port = parts.hostname or "", parts.port
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(host, port, timeout=timeout_s,
                                                 context=ssl.create_default_context())
    elif parts.scheme == "http":
        connection = http.client.HTTPConnection(host, port, timeout=timeout_s)
    else:
        raise ValueError(f"unsupported scheme {parts.scheme[:10]!r}")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    cut = threading.Event()

    def cut_off() -> None:
        cut.set()
        sock = connection.sock
        if sock is not None:  # the plain socket's shutdown, under TLS too: reads end now
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    timer = threading.Timer(timeout_s, cut_off)
    timer.daemon = True
    timer.start()
    try:
        connection.request("POST", path, body=body, headers=headers)
        with connection.getresponse() as answer:
            status = int(answer.status)
        if cut.is_set():
            raise TimeoutError
        return status
    except (OSError, http.client.HTTPException, ValueError) as exc:
        if cut.is_set():
            raise TimeoutError(f"timed out, no answer within {timeout_s:g} s") from None
        if isinstance(exc, OSError | ValueError):
            raise
        raise ConnectionError(f"a malformed answer ({type(exc).__name__})") from None
    finally:
        timer.cancel()
        connection.close()


def split_credentials(url: str) -> tuple[str, str | None]:
    """``url`` without its ``user:password@``, and the Basic ``Authorization`` it makes."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.netloc.rsplit("@", 1)[1]
    user = unquote(parts.username or "")
    secret = unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{secret}".encode()).decode()
    return urlunsplit(parts._replace(netloc=host)), f"Basic {token}"


def _retryable(status: int) -> bool:
    return status >= 500 or status in (408, 425, 429)


def _refusal(status: int) -> str:
    """Why a final answer is final, for its one log line."""
    if 300 <= status < 400:
        return f"HTTP {status}, a redirect: not followed"
    return f"HTTP {status}"


class Delivery(threading.Thread):
    """The delivery thread of one webhook in one monitor."""

    def __init__(self, client: Any, keys: Keys, webhook: Webhook, *, owner: str, fmt: str,
                 dashboard_url: str | None, poster: Poster = post,
                 backoff_s: tuple[float, ...] = BACKOFF_S, lease_s: float = LEASE_S,
                 timeout_s: float = POST_TIMEOUT_S, max_age_s: float = MAX_AGE_S,
                 poll_s: float = POLL_S) -> None:
        super().__init__(name=f"webhook-{webhook.id}", daemon=True)
        self.client, self.keys, self.webhook = client, keys, webhook
        self.owner, self.fmt, self.dashboard_url = owner, fmt, dashboard_url
        self.poster, self.backoff_s, self.lease_ms = poster, backoff_s, round(lease_s * 1000)
        self.timeout_s, self.max_age_ms, self.poll_s = timeout_s, round(max_age_s * 1000), poll_s
        self.stopping = threading.Event()
        self.delivered = 0
        self._lock_key = keys.webhook_lock(webhook.id)
        self._cursor_key = keys.webhook_cursor(webhook.id)
        self._store_down = False

    def stop(self) -> None:
        """Stop after the current attempt and give the lease up."""
        self.stopping.set()

    def run(self) -> None:
        while not self.stopping.wait(self.poll_s):
            try:
                self.step()
                if self._store_down:
                    log.warning("webhook %s: the store answers again", self.webhook.shown)
                    self._store_down = False
            except Exception as exc:  # a store error: try again, said once per outage
                if not self._store_down:
                    log.warning("webhook %s: cannot read the outbox: %s", self.webhook.shown,
                                redact(str(exc))[:200])
                    self._store_down = True
        with contextlib.suppress(Exception):  # else the lease expires on its own
            self.client.eval(RELEASE_SCRIPT, 1, self._lock_key, self.owner)

    def start_cursor(self) -> str:
        """The webhook's cursor; a webhook new to this store starts after what is queued now:
        it is told what happens from now on, not an hour of old news. Called before the
        first judging round, so nothing that round queues is skipped."""
        return as_text(self.client.eval(START_SCRIPT, 2, self._cursor_key, self.keys.outbox,
                                        CURSOR_TTL_MS))

    def hold(self) -> bool:
        """Take or renew the lease; False when another monitor holds it."""
        return bool(self.client.eval(HOLD_SCRIPT, 1, self._lock_key, self.owner, self.lease_ms))

    def step(self) -> None:
        """Deliver what waits after the cursor, while this monitor holds the lease."""
        if not self.hold():
            return
        cursor = self.start_cursor()  # one that expired or was deleted starts again
        entries = self.client.xrange(self.keys.outbox, f"({cursor}", "+", count=50)
        if not entries:
            return
        now_ms = redis_time_ms(self.client.time())
        for entry_id, fields in entries:
            entry = as_text(entry_id)
            if not self._deliver(entry, fields, now_ms) or not self._advance(entry):
                return
            now_ms = redis_time_ms(self.client.time())

    def _advance(self, entry: str) -> bool:
        """Move the cursor forward to ``entry``, delivered; False when it is there or further
        on already (another holder went on while this POST was slow): stop, read it again."""
        return bool(self.client.eval(ADVANCE_SCRIPT, 1, self._cursor_key, entry,
                                     CURSOR_TTL_MS))

    def _deliver(self, entry: str, fields: dict[Any, Any], now_ms: int) -> bool:
        """Post one entry until it is delivered or dropped (True), or the lease is lost or
        the monitor stops (False: the entry stays for the next holder)."""
        raw = fields.get(b"event", fields.get("event"))
        try:
            if raw is not None and len(raw) > EVENT_MAX_BYTES:
                raise ValueError
            event = json.loads(raw or b"")
            if not isinstance(event, dict):
                raise TypeError
        except (TypeError, ValueError):
            log.warning("webhook %s: outbox entry %s is not JSON; skipped",
                        self.webhook.shown, entry)
            return True
        problem = event_problem(event)
        if problem is not None:
            # Not written by a monitor: posting it would lend it the webhook's trust.
            log.warning("webhook %s: outbox entry %s dropped, not a monitor's: %s",
                        self.webhook.shown, entry, escape(problem))
            return True
        body = render(self.fmt, event_body(entry, event, self.dashboard_url))
        data = json.dumps(body).encode()
        named = f" entry {event['entry']!r}" if isinstance(event.get("entry"), str) else ""
        what = escape(f"{event.get('service')}{named} {event.get('old_state')} -> "
                      f"{event.get('new_state')}")
        attempt = 0
        while True:
            if int(entry.split("-", 1)[0]) < now_ms - self.max_age_ms:
                log.warning("webhook %s: dropped %s, not delivered within %d s",
                            self.webhook.shown, what, self.max_age_ms // 1000)
                return True
            if self.stopping.is_set() or not self.hold():
                return False
            status, why = self._post(data)
            if status is not None and 200 <= status < 300:
                self.delivered += 1
                log.info("webhook %s: delivered %s", self.webhook.shown, what)
                return True
            if status is not None and not _retryable(status):
                log.warning("webhook %s: dropped %s: the receiver refused it (%s)",
                            self.webhook.shown, what, _refusal(status))
                return True
            wait_s = self.backoff_s[min(attempt, len(self.backoff_s) - 1)]
            attempt += 1
            log.warning("webhook %s: %s not delivered (%s); retry %d in %g s",
                        self.webhook.shown, what, why, attempt, wait_s)
            if not self._wait(wait_s):
                return False
            now_ms += round(wait_s * 1000)

    def _post(self, data: bytes) -> tuple[int | None, str]:
        try:
            status = self.poster(self.webhook.url, data, self.timeout_s)
        except (OSError, ValueError) as exc:  # refused, reset, timed out, TLS
            reason = getattr(exc, "reason", None) or exc
            text = str(reason).replace(self.webhook.url, self.webhook.shown)
            return None, escape(redact(f"{type(exc).__name__}: {text}"))[:200]
        return status, f"HTTP {status}"

    def _wait(self, seconds: float) -> bool:
        """Wait out a back-off, renewing the lease each second; False if it is lost."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.stopping.wait(min(left, 1.0)):
                return False
            if not self.hold():
                return False
        return True
