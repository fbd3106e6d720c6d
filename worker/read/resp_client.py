"""A small Redis client for the probe path: a socket, RESP encoding, and hiredis to parse.

``petsage-heartbeat check`` runs as a fresh process on every Kubernetes probe, so import
cost is most of its cost: redis-py's package import alone costs about a third of
``celery inspect ping``. This client imports only ``socket``, ``hiredis`` and (for
``rediss://``) ``ssl``. It speaks to one server: ``redis://`` and ``rediss://`` URLs with
AUTH (password, or ACL user and password), TLS with certificate verification, database
selection, and one deadline for connect and reads. ``sentinel://`` goes through redis-py.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis

from worker.core.errors import ReplyError, StoreUnreachableError
from worker.core.redis_io import Command
from worker.core.urls import redact


def encode(command: Command) -> bytes:
    """One command in RESP: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(command)]
    for arg in command:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class ProbeClient:
    """Sends a batch of commands in one round trip; what ``redis_io.execute_many`` expects."""

    def __init__(self, url: str, *, timeout_s: float) -> None:
        """``url``: a ``redis://`` or ``rediss://`` URL that ``Settings`` validated."""
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 6379
        self.tls = parts.scheme == "rediss"
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password is not None else None
        self.db = int(parts.path.strip("/") or 0)
        self.timeout_s = timeout_s
        self.ssl_options = query
        self._sock: socket.socket | None = None

    def _connect(self, deadline: float) -> socket.socket:
        # An ASCII host as bytes skips the "idna" codec import that a str host costs.
        host: str | bytes = self.host.encode() if self.host.isascii() else self.host
        sock = socket.create_connection((host, self.port), timeout=_left(deadline))  # type: ignore[arg-type]
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not self.tls:
            return sock
        import ssl

        context = ssl.create_default_context(cafile=self.ssl_options.get("ssl_ca_certs"))
        reqs = self.ssl_options.get("ssl_cert_reqs", "required").lower()
        if reqs in ("none", "cert_none"):
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif self.ssl_options.get("ssl_check_hostname", "true").lower() in ("false", "0", "no"):
            context.check_hostname = False
        if "ssl_certfile" in self.ssl_options:
            context.load_cert_chain(self.ssl_options["ssl_certfile"],
                                    self.ssl_options.get("ssl_keyfile"))
        sock.settimeout(_left(deadline))
        try:
            return context.wrap_socket(sock, server_hostname=self.host)
        except ssl.SSLCertVerificationError as exc:
            sock.close()
            raise StoreUnreachableError(
                f"TLS certificate of {self.host}:{self.port} was not trusted "
                f"({exc.verify_message}); pass ?ssl_ca_certs=/path/ca.pem") from None

    def execute_many(self, commands: Sequence[Command]) -> list[Any]:
        """Connect (AUTH and SELECT in the same round trip), send ``commands``, read replies."""
        deadline = time.monotonic() + self.timeout_s
        prelude: list[Command] = []
        if self.password is not None:
            prelude.append(("AUTH", self.username, self.password) if self.username
                           else ("AUTH", self.password))
        if self.db:
            prelude.append(("SELECT", self.db))
        try:
            sock = self._sock or self._connect(deadline)
            self._sock = sock
            sock.sendall(b"".join(encode(c) for c in (*prelude, *commands)))
            replies = self._read(sock, len(prelude) + len(commands), deadline)
        except StoreUnreachableError:
            self.close()
            raise
        except (OSError, hiredis.ProtocolError) as exc:
            self.close()
            raise StoreUnreachableError(redact(f"{type(exc).__name__}: {exc}")) from None
        for command, reply in zip(prelude, replies, strict=False):
            if isinstance(reply, ReplyError):
                self.close()
                raise StoreUnreachableError(f"{command[0]!s} failed: {redact(str(reply))}")
        return replies[len(prelude):]

    def _read(self, sock: socket.socket, count: int, deadline: float) -> list[Any]:
        reader = hiredis.Reader(replyError=ReplyError)
        replies: list[Any] = []
        while len(replies) < count:
            reply = reader.gets()
            if reply is not False:
                replies.append(reply)
                continue
            sock.settimeout(_left(deadline))
            data = sock.recv(65536)
            if not data:
                raise StoreUnreachableError("Redis closed the connection")
            reader.feed(data)
        return replies

    def __enter__(self) -> ProbeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the socket (the next call reconnects)."""
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise StoreUnreachableError("timed out")
    return left
